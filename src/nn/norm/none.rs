//! Identity "normalization": the no-norm baseline of the comparison (`--norm none`,
//! docs/architecture.md; docs/norms.md §2.5).

use candle_core::{Result, Tensor};

use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::Activation;
use crate::onnx::graph::OnnxGraph;

/// No parameters, no buffers; the forward returns its input (activated).
#[derive(Debug)]
pub struct NoNorm;

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("none", build);

pub fn build(_c: usize, _cfg: &NormConfig, _nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(NoNorm))
}

impl Norm for NoNorm {
    fn forward_act_t(&self, x: &Tensor, _train: bool, act: Activation) -> Result<Tensor> {
        act.apply(x)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// No node: the output is the input value itself.
    fn emit_onnx(&self, _g: &mut OnnxGraph, input: &str) -> Result<String> {
        Ok(input.to_string())
    }
}
