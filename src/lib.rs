//! `asc`: acoustic scene classification in Rust.
//!
//! The data path (`design.md`): WAV ([`audio`]) → log-mel ([`features`]) → candle models with a
//! pluggable normalization layer → ONNX export → tract inference.

pub mod audio;
pub mod error;
pub mod features;
pub mod fsutil;
pub mod nn;
pub mod progress;
pub mod train;

pub use error::FileError;
