//! GroupNorm (Wu & He, arXiv 1803.08494), docs/norms.md §2.2. Also the core of LN (G = 1, §2.3)
//! and IN (G = C, §2.4), which are thin wrappers choosing the group count, and of GN+ (§4), which
//! uses its group normalization and ONNX decomposition.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::stats::as_ncl;
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::{standardize, Activation, Grouping};
use crate::nn::options::Options;
use crate::onnx::graph::{attr_float, OnnxGraph};

/// GN's settings (`norm_config.gn`), which GN+ uses too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GnOptions {
    /// GN (and GN+) use the largest divisor of C that is at most this (docs/norms.md §2.2).
    pub max_groups: usize,
}

impl Options for GnOptions {
    const KEY: &'static str = "gn";
}

impl Default for GnOptions {
    fn default() -> Self {
        Self { max_groups: 32 }
    }
}

/// γ, β (C); no running statistics, train = eval.
#[derive(Debug)]
pub struct GroupNorm {
    pub(crate) name: &'static str,
    pub(crate) groups: usize,
    eps: f64,
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    /// A per-channel-affine group norm with an explicit group count (must divide `c`).
    pub fn new(
        name: &'static str,
        c: usize,
        groups: usize,
        cfg: &NormConfig,
        nb: &NormBuilder,
    ) -> Result<Self> {
        if groups == 0 || !c.is_multiple_of(groups) {
            candle_core::bail!("{name}: {groups} groups do not divide {c} channels");
        }
        Ok(Self {
            name,
            groups,
            eps: cfg.eps,
            weight: nb.param("weight", c, 1.0)?,
            bias: nb.param("bias", c, 0.0)?,
        })
    }

    /// The group count actually used (docs/norms.md §2.2 asks to log it).
    pub fn groups(&self) -> usize {
        self.groups
    }
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("gn", build)
    .standardizing(one_group_per_channel)
    .configured_by::<GnOptions>();

/// With G = C every (sample, channel) map is standardized on its own (docs/norms.md §2.2).
pub(crate) fn one_group_per_channel(c: usize, cfg: &NormConfig) -> bool {
    cfg.groups_for(c) == c
}

/// G = the largest divisor of C that is ≤ `cfg.gn.max_groups` (docs/norms.md §2.2).
pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    Ok(Box::new(GroupNorm::new(
        ENTRY.name,
        c,
        cfg.groups_for(c),
        cfg,
        nb,
    )?))
}

impl Norm for GroupNorm {
    fn forward_act_t(&self, x: &Tensor, _train: bool, act: Activation) -> Result<Tensor> {
        let (x3, dims) = as_ncl(x, self.weight.elem_count(), self.name)?;
        group_normalize(
            &x3,
            self.groups,
            self.eps,
            Some((&self.weight, &self.bias)),
            act,
        )?
        .reshape(dims)
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let c = self.weight.elem_count();
        if self.groups == c {
            // IN (§2.4): one InstanceNormalization carries the per-channel affine itself.
            let gamma = g.add_tensor("in_scale", &self.weight, &[c as i64])?;
            let beta = g.add_tensor("in_bias", &self.bias, &[c as i64])?;
            return Ok(g.add_node(
                "InstanceNormalization",
                &[input, &gamma, &beta],
                vec![attr_float("epsilon", self.eps as f32)],
            ));
        }
        emit_group_norm(g, input, self.groups, self.eps, &self.weight, &self.bias)
    }
}

/// Per-sample group normalization (docs/norms.md §2.2): statistics over the C/G channels of each
/// group and all of L, biased variance, ε inside the square root; `affine` = (γ, β) of shape (C).
pub fn group_normalize(
    x: &Tensor,
    groups: usize,
    eps: f64,
    affine: Option<(&Tensor, &Tensor)>,
    act: Activation,
) -> Result<Tensor> {
    let (gamma, beta) = affine.unzip();
    Ok(standardize(x, gamma, beta, Grouping::SampleGroups(groups), eps, act)?.y)
}

/// ONNX group norm for rank-4 input (docs/norms.md §2.2): Reshape to (N, G, −1),
/// InstanceNormalization with unit scale, Reshape back to Shape(X), per-channel Mul/Add.
/// Works with dynamic N, H and W; opset 17 has no usable GroupNormalization.
pub fn emit_group_norm(
    g: &mut OnnxGraph,
    input: &str,
    groups: usize,
    eps: f64,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<String> {
    let c = gamma.elem_count() as i64;
    let gr = groups as i64;
    let shape = g.add_node("Shape", &[input], vec![]);
    let target = g.add_initializer_i64("gn_shape", &[0, gr, -1], &[3]);
    let x3 = g.add_node("Reshape", &[input, &target], vec![]);
    let ones = g.add_initializer("gn_ones", &vec![1.0; groups], &[gr]);
    let zeros = g.add_initializer("gn_zeros", &vec![0.0; groups], &[gr]);
    let y3 = g.add_node(
        "InstanceNormalization",
        &[&x3, &ones, &zeros],
        vec![attr_float("epsilon", eps as f32)],
    );
    let y = g.add_node("Reshape", &[&y3, &shape], vec![]);
    let gname = g.add_tensor("gn_gamma", gamma, &[c, 1, 1])?;
    let bname = g.add_tensor("gn_beta", beta, &[c, 1, 1])?;
    let scaled = g.add_node("Mul", &[&y, &gname], vec![]);
    Ok(g.add_node("Add", &[&scaled, &bname], vec![]))
}
