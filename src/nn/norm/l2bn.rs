//! L2BN (Wang et al., "L2BN: Enhancing Batch Normalization by Equalizing the L2 Norms of
//! Features", arXiv 2207.02625), docs/norms.md §3: each sample is scaled to a common norm over all
//! non-batch axes, then ordinary BN with γ, β and running stats follows.
//!
//! Mode `rms` (default, §3.3) divides by the root mean square, `l2` (§3.2, faithful) by the
//! l2 norm; both clamp the divisor at 1e-12 like `F.normalize`, and gradients flow through it.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::stats::{as_ncl, RunningStats};
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::options::Options;
use crate::nn::ops::{Activation, SampleScaling};
use crate::onnx::graph::{attr_int, attr_ints, OnnxGraph};

/// How L2BN scales each sample before BN (docs/norms.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum L2bnMode {
    /// Divide by the root mean square over (C, H, W): length-independent (recommended).
    #[default]
    Rms,
    /// Divide by the l2 norm over (C, H, W), as `F.normalize` in the reference (§3.2).
    L2,
}

/// L2BN's settings (`norm_config.l2bn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct L2bnOptions {
    /// How each sample is scaled (docs/norms.md §3.3).
    pub mode: L2bnMode,
}

impl Options for L2bnOptions {
    const KEY: &'static str = "l2bn";
}

/// Clamp of the per-sample divisor (`F.normalize` default eps, docs/norms.md §3.1).
const NORM_FLOOR: f64 = 1e-12;

/// γ, β (C); buffers running mean/var (C); 0 extra parameters over BN.
#[derive(Debug)]
pub struct L2BatchNorm {
    mode: L2bnMode,
    weight: Tensor,
    bias: Tensor,
    stats: RunningStats,
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("l2bn", build).configured_by::<L2bnOptions>();

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(L2BatchNorm {
        mode: cfg.options::<L2bnOptions>().mode,
        weight: nb.param("weight", c, 1.0)?,
        bias: nb.param("bias", c, 0.0)?,
        stats: RunningStats::new(c, cfg, nb)?,
    }))
}

impl Norm for L2BatchNorm {
    /// x / max(r_n, 1e-12), r_n the per-sample l2 norm or RMS, then BN: one op in training.
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let (x3, dims) = as_ncl(x, self.weight.elem_count(), ENTRY.name)?;
        let scaling = SampleScaling {
            mean: self.mode == L2bnMode::Rms,
            floor: NORM_FLOOR,
        };
        let affine = (&self.weight, &self.bias);
        self.stats
            .forward_scaled_t(&x3, affine, train, act, scaling)?
            .reshape(dims)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// docs/norms.md §3.4: per-sample divisor (ReduceL2 or ReduceMean of X², axes attribute),
    /// Max with 1e-12, Div, then BatchNormalization.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let r = match self.mode {
            L2bnMode::L2 => g.add_node(
                "ReduceL2",
                &[input],
                vec![attr_ints("axes", &[1, 2, 3]), attr_int("keepdims", 1)],
            ),
            L2bnMode::Rms => {
                let sq = g.add_node("Mul", &[input, input], vec![]);
                let ms = emit_reduce_mean_chw(g, &sq);
                g.add_node("Sqrt", &[&ms], vec![])
            }
        };
        let floor = g.add_initializer("l2bn_floor", &[NORM_FLOOR as f32], &[]);
        let r = g.add_node("Max", &[&r, &floor], vec![]);
        let xt = g.add_node("Div", &[input, &r], vec![]);
        self.stats.emit(g, &xt, Some((&self.weight, &self.bias)))
    }
}

/// ReduceMean over the non-batch axes of a rank-4 input (opset 17: `axes` is an attribute).
fn emit_reduce_mean_chw(g: &mut OnnxGraph, input: &str) -> String {
    g.add_node(
        "ReduceMean",
        &[input],
        vec![attr_ints("axes", &[1, 2, 3]), attr_int("keepdims", 1)],
    )
}
