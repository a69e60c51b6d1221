//! BatchNorm (Ioffe & Szegedy, arXiv 1502.03167), docs/norms.md §2.1.
//!
//! Written on the shared BN core ([`RunningStats`]) rather than `candle_nn::BatchNorm`, so the
//! running statistics live in the buffer store, the per-channel reductions run over a trailing
//! dim, and M = N·H·W = 1 is an error instead of NaN.

use candle_core::{Result, Tensor};

use super::stats::{as_ncl, RunningStats};
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::Activation;
use crate::onnx::graph::OnnxGraph;

/// γ, β (C); buffers running mean/var (C).
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    stats: RunningStats,
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("bn", build);

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(BatchNorm {
        weight: nb.param("weight", c, 1.0)?,
        bias: nb.param("bias", c, 0.0)?,
        stats: RunningStats::new(c, cfg, nb)?,
    }))
}

impl Norm for BatchNorm {
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let (x3, dims) = as_ncl(x, self.weight.elem_count(), ENTRY.name)?;
        self.stats
            .forward_t(&x3, Some((&self.weight, &self.bias)), train, act)?
            .reshape(dims)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        self.stats.emit(g, input, Some((&self.weight, &self.bias)))
    }

    /// γ·(x − μ)/√(σ² + ε) + β with the running μ, σ², as the eval forward applies it.
    fn eval_affine(&self) -> Result<Option<(Tensor, Tensor)>> {
        self.stats
            .eval_affine(Some((&self.weight, &self.bias)))
            .map(Some)
    }
}
