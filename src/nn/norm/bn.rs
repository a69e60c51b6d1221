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

/// γ, β (C), absent in the non-affine form; buffers running mean/var (C).
#[derive(Debug)]
pub struct BatchNorm {
    affine: Option<(Tensor, Tensor)>,
    stats: RunningStats,
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("bn", build);

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(BatchNorm {
        affine: Some((nb.param("weight", c, 1.0)?, nb.param("bias", c, 0.0)?)),
        stats: RunningStats::new(c, cfg, nb)?,
    }))
}

/// BN without γ and β (Keras's `BatchNormalization(center=False, scale=False)`): only the
/// running statistics, in the buffer store. Architectures whose reference fixes a plain BN in
/// one place whatever norm is being compared (`fcnn`'s last one) build it with this.
pub fn non_affine(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(BatchNorm {
        affine: None,
        stats: RunningStats::new(c, cfg, nb)?,
    }))
}

impl BatchNorm {
    fn affine(&self) -> Option<(&Tensor, &Tensor)> {
        self.affine.as_ref().map(|(w, b)| (w, b))
    }
}

impl Norm for BatchNorm {
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let (x3, dims) = as_ncl(x, self.stats.channels(), ENTRY.name)?;
        self.stats
            .forward_t(&x3, self.affine(), train, act)?
            .reshape(dims)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        self.stats.emit(g, input, self.affine())
    }

    /// γ·(x − μ)/√(σ² + ε) + β with the running μ, σ², as the eval forward applies it.
    fn eval_affine(&self) -> Result<Option<(Tensor, Tensor)>> {
        self.stats
            .eval_affine(self.affine())
            .map(Some)
    }
}
