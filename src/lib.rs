//! `asc`: acoustic scene classification in Rust.
//!
//! The data path (`docs/architecture.md`): WAV ([`audio`]) → log-mel ([`features`]) → data sets
//! ([`dataset`], [`synth`]) → candle models with a pluggable normalization layer ([`nn`]) →
//! training ([`train`]) → ONNX export ([`export`], writing with [`onnx`]) → tract inference
//! ([`infer`], reading with [`onnx`]).

pub mod audio;
pub mod compare;
pub mod complexity;
pub mod dataset;
pub mod error;
pub mod export;
pub mod features;
pub mod fsutil;
pub mod infer;
pub mod kernels;
pub mod nn;
pub mod onnx;
pub mod process;
pub mod progress;
pub mod quickstart;
pub mod synth;
pub mod train;

pub use error::FileError;

/// This build: the crate version and the commit it was built from (`build.rs`), e.g.
/// `0.1.0 (60ae74e)`; recorded with every trained epoch.
pub const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ASC_BUILD_COMMIT"),
    ")"
);
pub use infer::{Classifier, Prediction};
