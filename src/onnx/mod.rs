//! ONNX as the crate writes and reads it, with nothing of training: the graph builder over the
//! protobuf types of `tract_onnx::pb` (opset 17; docs/architecture.md, "Dependencies"), the
//! model's self-description in `metadata_props`, and the log-mel front end as ONNX ops.
//!
//! A leaf of the data path: the layers and norms of [`crate::nn`] emit their eval-mode graphs
//! through [`graph`], [`crate::export`] assembles a trained run into a file, and
//! [`crate::infer`] reads the metadata back without touching training code.

pub mod frontend;
pub mod graph;
pub mod metadata;
pub mod precision;

pub use graph::{Dim, OnnxGraph};
pub use metadata::{InputKind, MetadataError, ModelMetadata};
