//! GN+ / "NewGN" (Gunawan, Yin & Zhang, "Understanding and Improving Group Normalization",
//! arXiv 2207.01972), docs/norms.md §4: a GN output mixed with a batch-normalized copy of itself,
//! `y = (s·xg + (1−s)·xb)·γ + β` with `s = sigmoid(λ)`, λ₀ = 1.
//!
//! * `deployable` (default, §4.2): standard GN, per-channel BN with running stats; eval is
//!   batch-independent and folds into a GN with modified affine (exported that way).
//! * `faithful` (§4.1, reference `GNPlusSequentialGNFirst`): unbiased std with ε on the std in
//!   both parts, the "BN" part over the batch axis only, batch statistics even in eval; it needs
//!   N ≥ 2 and cannot be exported.

use candle_core::{bail, Result, Tensor};
use candle_nn::{ops::sigmoid, Init};
use serde::{Deserialize, Serialize};

use super::gn::{emit_group_norm, group_normalize};
use super::stats::{as_ncl, RunningStats};
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::options::Options;
use crate::nn::ops::across::Across;
use crate::nn::ops::{plane_affine, Activation};
use crate::onnx::graph::OnnxGraph;

/// γ, β (C) and λ (1): 2C + 1 parameters; the deployable variant adds running mean/var (C).
#[derive(Debug)]
pub struct GnPlus {
    groups: usize,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
    lambda: Tensor,
    /// `None` for the faithful variant, which has no running statistics.
    stats: Option<RunningStats>,
}

/// Which GN+ to build (docs/norms.md §4.1 vs §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GnPlusVariant {
    /// Standard GN + per-channel BN with running stats; batch-independent at inference.
    #[default]
    Deployable,
    /// The reference code: unbiased std, ε on the std, batch-axis stats even at inference.
    Faithful,
}

/// GN+'s settings (`norm_config.gnplus`); its group count is GN's (`norm_config.gn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct GnPlusOptions {
    /// Which GN+ to build (docs/norms.md §4.2).
    pub variant: GnPlusVariant,
}

impl Options for GnPlusOptions {
    const KEY: &'static str = "gnplus";
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("gnplus", build)
    .standardizing(standardizes_each_map)
    .configured_by::<GnPlusOptions>();

/// The deployable variant with G = C: its BN part re-normalizes maps that GN already left with
/// zero mean (docs/norms.md §4.2). The faithful one mixes in batch-axis statistics.
fn standardizes_each_map(c: usize, cfg: &NormConfig) -> bool {
    super::gn::one_group_per_channel(c, cfg) && cfg.options::<GnPlusOptions>().variant == GnPlusVariant::Deployable
}

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    let stats = match cfg.options::<GnPlusOptions>().variant {
        GnPlusVariant::Deployable => Some(RunningStats::new(c, cfg, nb)?),
        GnPlusVariant::Faithful => None,
    };
    Ok(Box::new(GnPlus {
        groups: cfg.groups_for(c),
        eps: cfg.eps,
        weight: nb.param("weight", c, 1.0)?,
        bias: nb.param("bias", c, 0.0)?,
        lambda: nb.params.get_with_hints(1, "lambda", Init::Const(1.0))?,
        stats,
    }))
}

/// (x − mean)/(std_unbiased + ε) along `dim` (keepdim), the reference's own normalization.
fn normalize_unbiased(x: &Tensor, dim: usize, eps: f64, what: &str) -> Result<Tensor> {
    let n = x.dim(dim)?;
    if n < 2 {
        bail!(
            "gnplus (faithful): {what} needs at least 2 values, got shape {:?}",
            x.dims()
        );
    }
    let xc = x.broadcast_sub(&x.mean_keepdim(dim)?)?;
    let std = (xc.sqr()?.sum_keepdim(dim)? / (n as f64 - 1.0))?.sqrt()?;
    xc.broadcast_div(&(std + eps)?)
}

impl GnPlus {
    /// The mixing weights of `(s·xg + (1−s)·xb)·γ + β` per channel: (γ·s, γ·(1−s)),
    /// `s = sigmoid(λ)`.
    fn mix_weights(&self) -> Result<(Tensor, Tensor)> {
        let s = sigmoid(&self.lambda)?;
        let g_s = self.weight.broadcast_mul(&s)?;
        let g_rest = self.weight.broadcast_mul(&s.affine(-1.0, 1.0)?)?;
        Ok((g_s, g_rest))
    }

    /// Eval fold (§4.2): γ' = γ(s + (1−s)a), β' = β − γ(1−s)·rm·a with a = 1/sqrt(rv+ε).
    fn folded_affine(&self, stats: &RunningStats) -> Result<(Tensor, Tensor)> {
        let s = sigmoid(&self.lambda.detach())?;
        let one_minus = s.affine(-1.0, 1.0)?;
        let (a, b) = stats.fold()?; // b = −rm·a
        let gamma = self.weight.detach();
        let g2 = (&gamma * a.broadcast_mul(&one_minus)?.broadcast_add(&s)?)?;
        let b2 = (self.bias.detach() + (&gamma * b.broadcast_mul(&one_minus)?)?)?;
        Ok((g2, b2))
    }
}

impl Norm for GnPlus {
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let (x3, dims) = as_ncl(x, self.weight.elem_count(), ENTRY.name)?;
        let (n, c, l) = x3.dims3()?;
        let id = Activation::Identity;
        let (g_s, g_rest) = self.mix_weights()?;
        if let Some(stats) = &self.stats {
            // g_s·x_GN + ((1−s)·γ·BN(x_GN) + β) and the activation in one op: the BN kernel
            // carries the mixing weights, β and the skip term itself.
            let xg = group_normalize(&x3, self.groups, self.eps, None, id)?;
            let y = stats.forward_skip_t(&xg, (&g_rest, &self.bias), &g_s, train, act)?;
            return y.reshape(dims);
        }
        if train && Across::current().is_some() {
            bail!("gnplus (faithful) takes its batch-axis statistics with candle ops, which --sync-bn cannot synchronise; use the deployable variant");
        }
        let xg = x3.reshape((n, self.groups, (c / self.groups) * l))?;
        let xg = normalize_unbiased(&xg, 2, self.eps, "a group")?.reshape((n, c, l))?;
        let xb = normalize_unbiased(&xg, 0, self.eps, "the batch axis")?;
        let xb = plane_affine(&xb, &g_rest, &self.bias, id)?;
        let y = (plane_affine(&xg, &g_s, &self.bias.zeros_like()?, id)? + xb)?;
        act.apply(&y)?.reshape(dims)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// The deployable variant is a GN with folded affine (§4.2); faithful GN+ is transductive.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let Some(stats) = &self.stats else {
            bail!("gnplus (faithful) uses test-batch statistics and cannot be exported; use the deployable variant");
        };
        let (gamma, beta) = self.folded_affine(stats)?;
        emit_group_norm(g, input, self.groups, self.eps, &gamma, &beta)
    }
}
