//! The architectures of `docs/models.md`, each built from a [`ModelConfig`] and a norm factory, so
//! every model takes every normalization layer by name.

mod cnn;
mod cp_mobile;
pub mod input_norm;

pub use cnn::Cnn;
pub use cp_mobile::CpMobile;
pub use input_norm::{InputNorm, Standardized};

pub use super::norm::NormFactory;
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Names accepted for `--model`.
pub const MODEL_NAMES: &[&str] = &["cnn", "cp-mobile"];

/// `name` against [`MODEL_NAMES`], as `nn::norm::check_name` does for norms.
pub fn check_name(name: &str) -> std::result::Result<(), crate::error::UnknownName> {
    if MODEL_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(crate::error::UnknownName::new("model", name, MODEL_NAMES))
    }
}

/// Everything needed to rebuild a model (saved in the run's `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `cnn` or `cp-mobile`.
    pub name: String,
    pub n_classes: usize,
    /// Input channels (1 for a log-mel).
    #[serde(default = "one")]
    pub in_channels: usize,
    /// Dropout probability (the `cnn` baseline uses 0.3; `cp-mobile` none).
    #[serde(default)]
    pub dropout: f32,
    /// Input standardisation with the training set's statistics ([`input_norm`]); configs
    /// written before it existed have none.
    #[serde(default)]
    pub input_norm: InputNorm,
}

fn one() -> usize {
    1
}

impl ModelConfig {
    pub fn new(name: &str, n_classes: usize) -> Self {
        let dropout = if name == "cnn" { 0.3 } else { 0.0 };
        Self {
            name: name.to_string(),
            n_classes,
            in_channels: 1,
            dropout,
            input_norm: InputNorm::None,
        }
    }
}

/// A classifier: NCHW log-mel in, logits (N, n_classes) out.
pub trait Model: Send + Sync {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// Seeds the dropout masks of the next training step (reproducible runs and resumes).
    fn reseed(&self, seed: u64);
    /// Multiply-accumulates of one forward pass on a 1 × C × H × W input, torchinfo's convention
    /// (`docs/datasets.md`): convolutions (Cin/groups)·Cout·kh·kw·Hout·Wout, linear layers their
    /// weight and bias counts, and 2C per norm layer, as for BatchNorm.
    fn macs(&self, input_hw: (usize, usize)) -> u64;
    /// Appends the eval-mode network to `g`, reading the NCHW value `input`; returns the name
    /// of the logits value (N, n_classes). Dropout is the identity at inference and emits nothing.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String>;
    /// The input standardisation in front of the network, if the model has one.
    fn input_stats(&self) -> Option<&Standardized> {
        None
    }
}

/// Builds the model named in `config`; parameters come from `vb` (the optimiser's VarMap),
/// norm layers from `norm`.
pub fn build(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Box<dyn Model>> {
    match config.name.as_str() {
        "cnn" => Ok(Box::new(Cnn::new(config, vb, norm)?)),
        "cp-mobile" => Ok(Box::new(CpMobile::new(config, vb, norm)?)),
        other => candle_core::bail!(
            "{}",
            crate::error::UnknownName::new("model", other, MODEL_NAMES)
        ),
    }
}
