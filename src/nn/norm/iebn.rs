//! IEBN (Liang, Huang, Liang & Yang, "Instance Enhancement Batch Normalization: an Adaptive
//! Regulator of Batch Noise", arXiv 1908.04008, AAAI 2020), docs/norms.md §6: non-affine BN scaled
//! by a per-sample, per-channel attention taken from the GAP of the raw input,
//! `y = BN(x)·(γ·sigmoid(w_r·GAP(x) + b_r)) + β`, with w_r = 0, b_r = −1 at init (§6.1).

use candle_core::{Result, Tensor};

use super::gate::emit_gap_gate;
use super::stats::{as_ncl, RunningStats};
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::{gap_gate, Activation};
use crate::onnx::graph::OnnxGraph;

/// γ, β, w_r, b_r (C): 4C parameters; buffers running mean/var (C).
#[derive(Debug)]
pub struct InstanceEnhancementBn {
    weight: Tensor,
    bias: Tensor,
    weight_readjust: Tensor,
    bias_readjust: Tensor,
    stats: RunningStats,
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("iebn", build);

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(InstanceEnhancementBn {
        weight: nb.param("weight", c, 1.0)?,
        bias: nb.param("bias", c, 0.0)?,
        weight_readjust: nb.param("weight_readjust", c, 0.0)?,
        bias_readjust: nb.param("bias_readjust", c, -1.0)?,
        stats: RunningStats::new(c, cfg, nb)?,
    }))
}

impl InstanceEnhancementBn {
    /// The attention a = sigmoid(w_r·GAP(x) + b_r), shape (N, C, 1) (docs/norms.md §6.2).
    pub fn attention(&self, x3: &Tensor) -> Result<Tensor> {
        gap_gate(x3, &self.weight_readjust, &self.bias_readjust)
    }
}

impl Norm for InstanceEnhancementBn {
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let c = self.weight.elem_count();
        let (x3, dims) = as_ncl(x, c, ENTRY.name)?;
        let n = x3.dim(0)?;
        // BN with a per-sample, per-channel scale γ·a: one fused kernel (stats::RunningStats).
        let scale = self
            .attention(&x3)?
            .reshape((n, c))?
            .broadcast_mul(&self.weight)?;
        self.stats
            .forward_t(&x3, Some((&scale, &self.bias)), train, act)?
            .reshape(dims)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// docs/norms.md §6.3: Sigmoid gate from GlobalAveragePool, BatchNormalization(scale = γ,
    /// B = 0), then Mul by the gate and Add β.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let c = self.weight.elem_count() as i64;
        let a = emit_gap_gate(g, input, &self.weight_readjust, &self.bias_readjust)?;
        let zeros = self.bias.zeros_like()?;
        let z = self.stats.emit(g, input, Some((&self.weight, &zeros)))?;
        let za = g.add_node("Mul", &[&z, &a], vec![]);
        let beta = g.add_tensor("iebn_beta", &self.bias, &[c, 1, 1])?;
        Ok(g.add_node("Add", &[&za, &beta], vec![]))
    }
}
