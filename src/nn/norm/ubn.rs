//! UBN (Wang, Zhang, Liu & Yan, "Unified Batch Normalization: Identifying and Alleviating the
//! Feature Condensation in Batch Normalization and a Unified Framework", arXiv 2311.15993),
//! docs/norms.md §5, following the reference `UBN.py`:
//!
//! 1. FCT gate (§5.2): the EMA `c` of the mean off-diagonal cosine between the first ≤ 16
//!    samples decides whether BN uses (and updates) batch statistics or the running ones.
//! 2. Centering calibration `x1 = x + w_c·GAP(x)`, non-affine BN, scaling calibration
//!    `g = sigmoid(w_s·GAP(x̂) + b_s)`, and the BNET affine: a depthwise k×k conv with bias,
//!    `y = g·(DWConv(x̂) + b_k)`.
//!
//! `c` is a buffer (`moving_cos`), updated only in train mode and saved with the checkpoint
//! (judgement, §5.6.4). Rank-4 input only (the BNET conv is 2-D).

use candle_core::{bail, DType, Result, Tensor, Var};
use candle_nn::Init;
use serde::{Deserialize, Serialize};

use super::gate::emit_gap_gate;
use super::stats::{as_ncl, gap, RunningStats};
use super::{Norm, NormBuilder, NormConfig, NormEntry};
use crate::nn::ops::across::Across;
use crate::nn::ops::{gated_depthwise, plane_affine, unit_row_sum, Activation, BatchRows};
use crate::nn::options::Options;
use crate::onnx::graph::{attr_int, attr_ints, OnnxGraph};

/// Direction of UBN's feature-condensation gate (docs/norms.md §5.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FctMode {
    /// Batch statistics while the EMA cosine is above τ (the reference code).
    #[default]
    BatchWhenAbove,
    /// Batch statistics while the EMA cosine is at or below τ.
    BatchWhenBelow,
}

/// Initialization of UBN's depthwise BNET kernel (docs/norms.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BnetInit {
    /// Kaiming-normal fan-out kernel N(0, 2/(k²C)), bias U(−1/k, 1/k), as the reference ResNet.
    #[default]
    Reference,
    /// Center tap 1, other taps and bias 0: UBN starts as σ(1)·BN(x).
    Identity,
}

/// UBN's settings (`norm_config.ubn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UbnOptions {
    /// FCT threshold τ (docs/norms.md §5.6.2).
    pub tau: f64,
    /// EMA factor of the moving cosine (`momentum_cos`, docs/norms.md §5.2).
    pub momentum_cos: f64,
    /// At most this many leading samples enter the cosine statistic (docs/norms.md §5.6.3).
    pub cos_samples: usize,
    /// Gate direction (docs/norms.md §5.6.1).
    pub fct_mode: FctMode,
    /// BNET kernel init (docs/norms.md §5.1).
    pub bnet_init: BnetInit,
    /// BNET kernel size k (odd).
    pub kernel: usize,
}

impl Options for UbnOptions {
    const KEY: &'static str = "ubn";
}

impl Default for UbnOptions {
    fn default() -> Self {
        Self {
            tau: 0.15,
            momentum_cos: 0.1,
            cos_samples: 16,
            fct_mode: FctMode::BatchWhenAbove,
            bnet_init: BnetInit::Reference,
            kernel: 3,
        }
    }
}

/// `torch.nn.functional.cosine_similarity` eps.
const COS_EPS: f64 = 1e-8;

/// w_c, w_s, b_s, b_k (C) and K (C, 1, k, k): (k² + 4)·C parameters; buffers running mean/var
/// (C) and `moving_cos` (1).
#[derive(Debug)]
pub struct UnifiedBn {
    center_weight: Tensor,
    scale_weight: Tensor,
    scale_bias: Tensor,
    kernel: Tensor,
    kernel_bias: Tensor,
    k: usize,
    stats: RunningStats,
    moving_cos: Var,
    tau: f64,
    momentum_cos: f64,
    cos_samples: usize,
    fct_mode: FctMode,
}

/// The registry entry (docs/architecture.md, "Adding a norm").
pub const ENTRY: NormEntry = NormEntry::new("ubn", build).configured_by::<UbnOptions>();

pub fn build(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Box<dyn Norm>> {
    let opts: UbnOptions = cfg.options();
    let k = opts.kernel;
    if k.is_multiple_of(2) {
        bail!("ubn: the BNET kernel size must be odd, got {k}");
    }
    let conv = nb.params.pp("bnconv");
    let fresh = !conv.contains_tensor("weight");
    let (k_init, b_init) = match opts.bnet_init {
        // kaiming_normal(fan_out, relu) with fan_out = C·k² for a depthwise kernel (§5.1).
        BnetInit::Reference => (
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / (k * k * c) as f64).sqrt(),
            },
            Init::Uniform {
                lo: -1.0 / k as f64,
                up: 1.0 / k as f64,
            },
        ),
        BnetInit::Identity => (Init::Const(0.0), Init::Const(0.0)),
    };
    let kernel = conv.get_with_hints((c, 1, k, k), "weight", k_init)?;
    let kernel_bias = conv.get_with_hints(c, "bias", b_init)?;
    if fresh && opts.bnet_init == BnetInit::Identity {
        let mut taps = vec![0f32; c * k * k];
        for ch in 0..c {
            taps[ch * k * k + (k * k) / 2] = 1.0;
        }
        let ident =
            Tensor::from_vec(taps, (c, 1, k, k), kernel.device())?.to_dtype(kernel.dtype())?;
        Var::from_tensor(&kernel)?.set(&ident)?;
    }
    Ok(Box::new(UnifiedBn {
        center_weight: nb.param("center_weight", c, 0.0)?,
        scale_weight: nb.param("scale_weight", c, 0.0)?,
        scale_bias: nb.param("scale_bias", c, 1.0)?,
        kernel,
        kernel_bias,
        k,
        stats: RunningStats::new(c, cfg, nb)?,
        moving_cos: nb.buffer("moving_cos", 1, 1.0)?,
        tau: opts.tau,
        momentum_cos: opts.momentum_cos,
        cos_samples: opts.cos_samples.max(1),
        fct_mode: opts.fct_mode,
    }))
}

impl UnifiedBn {
    /// Mean off-diagonal cosine similarity of the first ≤ `cos_samples` samples, flattened
    /// over (C, H, W), without gradient; 1 for a single sample (§5.2, §5.6.3).
    fn batch_cosine(&self, x: &Tensor) -> Result<f64> {
        if let Some((across, rows)) = Across::current() {
            return self.synchronised_cosine(x, &across, rows);
        }
        let n = x.dim(0)?.min(self.cos_samples);
        if n == 1 {
            return Ok(1.0);
        }
        Ok(mean_cosine(&unit_row_sum(&x.narrow(0, 0, n)?, COS_EPS)?, n))
    }

    /// [`Self::batch_cosine`] over the whole batch of a data-parallel step (synchronised BN),
    /// whose first samples may sit on several ranks: each rank sends the sum of its unit rows
    /// among them ([`mean_cosine`]; every rank then takes the same gate decision, as it must: the
    /// batch branch all-reduces, the other not).
    fn synchronised_cosine(&self, x: &Tensor, across: &Across, rows: BatchRows) -> Result<f64> {
        let n = rows.total.min(self.cos_samples);
        if n == 1 {
            return Ok(1.0);
        }
        let local = n.saturating_sub(rows.first).min(x.dim(0)?);
        let d = x.elem_count() / x.dim(0)?.max(1);
        let mut sum = vec![0f64; d];
        if local > 0 {
            sum = unit_row_sum(&x.narrow(0, 0, local)?, COS_EPS)?;
        }
        across.sum(&mut sum);
        Ok(mean_cosine(&sum, n))
    }

    /// Updates `moving_cos` and returns whether batch statistics are used (FCT, §5.2).
    fn fct_gate(&self, x: &Tensor) -> Result<bool> {
        let s = self.batch_cosine(x)?;
        let cur = self.moving_cos.as_tensor();
        let old = cur.to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
        let c = (1.0 - self.momentum_cos) * old + self.momentum_cos * s;
        let new = Tensor::new(&[c], cur.device())?.to_dtype(cur.dtype())?;
        self.moving_cos.set(&new)?;
        Ok(match self.fct_mode {
            FctMode::BatchWhenAbove => c > self.tau,
            FctMode::BatchWhenBelow => c <= self.tau,
        })
    }
}

/// Mean off-diagonal cosine of `n` unit rows from their sum: the sum of every pair's cosine,
/// the diagonal's n ones included, is |Σ x̂ᵢ|², so the n × n Gram matrix (n²·d multiply-adds, the
/// gate's main cost) is never formed.
fn mean_cosine(unit_sum: &[f64], n: usize) -> f64 {
    let all: f64 = unit_sum.iter().map(|v| v * v).sum();
    (all - n as f64) / (n * (n - 1)) as f64
}

impl Norm for UnifiedBn {
    fn forward_act_t(&self, x: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let c = self.center_weight.elem_count();
        if x.rank() != 4 {
            bail!(
                "ubn: expected input (N, {c}, H, W), got shape {:?}",
                x.dims()
            );
        }
        let (x3, dims) = as_ncl(x, c, ENTRY.name)?;
        let use_batch = train && self.fct_gate(x)?;
        let n = x3.dim(0)?;
        let xh = if use_batch {
            // Centring and batch statistics in one op.
            self.stats.centre_batch(&x3, &self.center_weight)?
        } else {
            let shift = gap(&x3)?
                .reshape((n, c))?
                .broadcast_mul(&self.center_weight)?;
            let ones = self.center_weight.ones_like()?;
            let x1 = plane_affine(&x3, &ones, &shift, Activation::Identity)?;
            self.stats
                .normalize_running(&x1, None, Activation::Identity)?
        };
        // The scaling gate and the BNET conv with its bias in one op.
        let p = (self.k - 1) / 2;
        let coefs = Tensor::cat(
            &[&self.scale_weight, &self.scale_bias, &self.kernel_bias],
            0,
        )?;
        gated_depthwise(&xh.reshape(dims)?, &self.kernel, &coefs, (p, p), act)
    }

    fn name(&self) -> &'static str {
        ENTRY.name
    }

    /// docs/norms.md §5.4: GAP-centering, BatchNormalization(scale 1, B 0), Sigmoid gate, grouped
    /// Conv (group = C), Mul.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let c = self.center_weight.elem_count() as i64;
        let k = self.k as i64;
        let p = (k - 1) / 2;
        let a = g.add_node("GlobalAveragePool", &[input], vec![]);
        let wc = g.add_tensor("ubn_center_w", &self.center_weight, &[1, c, 1, 1])?;
        let aw = g.add_node("Mul", &[&a, &wc], vec![]);
        let x1 = g.add_node("Add", &[input, &aw], vec![]);
        let xh = self.stats.emit(g, &x1, None)?;
        let gate = emit_gap_gate(g, &xh, &self.scale_weight, &self.scale_bias)?;
        let kern = g.add_tensor("ubn_kernel", &self.kernel, &[c, 1, k, k])?;
        let kb = g.add_tensor("ubn_kernel_bias", &self.kernel_bias, &[c])?;
        let z = g.add_node(
            "Conv",
            &[&xh, &kern, &kb],
            vec![
                attr_int("group", c),
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("pads", &[p, p, p, p]),
                attr_ints("strides", &[1, 1]),
            ],
        );
        Ok(g.add_node("Mul", &[&gate, &z], vec![]))
    }
}
