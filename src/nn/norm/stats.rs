//! Statistics shared by the layers: the (N, C, L) view, GAP, and per-channel batch statistics
//! with running buffers (the BN core, docs/norms.md §1, §2.1) with their eval-mode fold and
//! `BatchNormalization` emitter.
//!
//! Inputs are viewed as (N, C, L) with L the product of the spatial dims, so one code path serves
//! rank 2, 3 and 4. The arithmetic runs in the fused kernels of [`crate::nn::ops::standardize`]
//! (one forward and one backward pass per layer instead of a chain of candle broadcasts).

use candle_core::{bail, DType, Result, Tensor, Var};

use super::{NormBuilder, NormConfig};
use crate::nn::ops::{
    centre_standardize, equalize_samples, plane_affine, standardize, standardize_scaled,
    standardize_skip, Activation, Grouping, SampleScaling, Standardized,
};
use crate::onnx::graph::{attr_float, OnnxGraph};

/// `x` viewed as (N, C, L), checking rank and channel count; also returns the original dims.
pub fn as_ncl(x: &Tensor, c: usize, layer: &str) -> Result<(Tensor, Vec<usize>)> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 || dims[1] != c {
        bail!("{layer}: expected input (N, {c}, ...) of rank >= 2, got shape {dims:?}");
    }
    let l: usize = dims[2..].iter().product();
    Ok((x.reshape((dims[0], c, l))?, dims))
}

/// Global average pool per sample and channel: (N, C, L) → (N, C, 1) (docs/norms.md §1 "GAP").
pub fn gap(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(2)
}

/// Refuses (N, C, L) input with fewer than 2 values per channel, N·L, for batch statistics.
fn check_batch_count(x: &Tensor) -> Result<()> {
    let (n, c, l) = x.dims3()?;
    if n * l < 2 {
        bail!("batch statistics need N·H·W >= 2 values per channel, got input {n}x{c}x{l}");
    }
    Ok(())
}

/// Running mean/var buffers plus the batch-statistics normalization that feeds them: the BN
/// core every BN-like layer shares (docs/norms.md §1). Affine parameters belong to the layer.
#[derive(Debug)]
pub struct RunningStats {
    pub mean: Var,
    pub var: Var,
    pub eps: f64,
    pub momentum: f64,
    c: usize,
}

impl RunningStats {
    /// Buffers `running_mean` = 0 and `running_var` = 1 (docs/norms.md §1).
    pub fn new(c: usize, cfg: &NormConfig, nb: &NormBuilder) -> Result<Self> {
        Ok(Self {
            mean: nb.buffer("running_mean", c, 0.0)?,
            var: nb.buffer("running_var", c, 1.0)?,
            eps: cfg.eps,
            momentum: cfg.momentum,
            c,
        })
    }

    /// The channel count C.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Normalizes (N, C, L) input: batch statistics when `train` (updating the buffers),
    /// running statistics otherwise. `affine` = (γ, β), each per channel (C) or per sample and
    /// channel (N, C).
    pub fn forward_t(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        train: bool,
        act: Activation,
    ) -> Result<Tensor> {
        if train {
            self.normalize_batch(x, affine, true, act)
        } else {
            self.normalize_running(x, affine, act)
        }
    }

    /// Batch statistics over (N, L) per channel, biased variance; when `update`, the running
    /// buffers move by the PyTorch rule with the unbiased variance (docs/norms.md §1).
    pub fn normalize_batch(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        update: bool,
        act: Activation,
    ) -> Result<Tensor> {
        check_batch_count(x)?;
        let (gamma, beta) = affine.unzip();
        let st = standardize(x, gamma, beta, Grouping::Channel, self.eps, act)?;
        if update {
            self.update(&st)?;
        }
        Ok(st.y)
    }

    /// [`RunningStats::forward_t`] with a skip term, `act(γ·x̂ + k·x + β)`, all per channel: the
    /// BN half and the GN half of GN+'s deployable form in one op (docs/norms.md §4).
    pub fn forward_skip_t(
        &self,
        x: &Tensor,
        (gamma, beta): (&Tensor, &Tensor),
        skip: &Tensor,
        train: bool,
        act: Activation,
    ) -> Result<Tensor> {
        if !train {
            let (scale, shift) = self.eval_affine(Some((gamma, beta)))?;
            return plane_affine(x, &(scale + skip)?, &shift, act);
        }
        check_batch_count(x)?;
        let st = standardize_skip(x, gamma, skip, beta, Grouping::Channel, self.eps, act)?;
        self.update(&st)?;
        Ok(st.y)
    }

    /// [`RunningStats::forward_t`] of the input scaled per sample first, `BN(x·s_n)` with γ, β per
    /// channel (L2BN, docs/norms.md §3): in train mode one op, [`standardize_scaled`].
    pub fn forward_scaled_t(
        &self,
        x: &Tensor,
        (gamma, beta): (&Tensor, &Tensor),
        train: bool,
        act: Activation,
        scaling: SampleScaling,
    ) -> Result<Tensor> {
        if !train {
            let xt = equalize_samples(x, scaling.mean, scaling.floor)?;
            return self.normalize_running(&xt, Some((gamma, beta)), act);
        }
        check_batch_count(x)?;
        let st = standardize_scaled(x, gamma, beta, self.eps, act, scaling)?;
        self.update(&st)?;
        Ok(st.y)
    }

    /// UBN's train-mode `BN(x + w·GAP(x))` without affine, batch statistics, the buffers
    /// updated (docs/norms.md §5.2): one op, [`centre_standardize`].
    pub fn centre_batch(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        check_batch_count(x)?;
        let st = centre_standardize(x, w, self.eps)?;
        self.update(&st)?;
        Ok(st.y)
    }

    /// Moves the running buffers by the PyTorch rule with the unbiased variance of the values
    /// the statistics cover (every rank's, when synchronised).
    fn update(&self, st: &Standardized) -> Result<()> {
        let mom = self.momentum;
        let rm = (self.mean.as_tensor().affine(1.0 - mom, 0.0)? + st.mean.affine(mom, 0.0)?)?;
        let m = st.count;
        let unbiased = m / (m - 1.0);
        let rv =
            (self.var.as_tensor().affine(1.0 - mom, 0.0)? + st.var.affine(mom * unbiased, 0.0)?)?;
        self.mean.set(&rm)?;
        self.var.set(&rv)
    }

    /// `a = 1/sqrt(rv+ε)` and `b = −rm·a` (C), detached: x̂ = a·x + b.
    pub fn fold(&self) -> Result<(Tensor, Tensor)> {
        let a = (self.var.as_tensor().detach() + self.eps)?
            .sqrt()?
            .recip()?;
        let b = (self.mean.as_tensor().detach() * &a)?.neg()?;
        Ok((a, b))
    }

    /// Running-statistics normalization of (N, C, L) input; gradients still flow to `x`
    /// (UBN's gate-off branch trains through it, docs/norms.md §5.2).
    pub fn normalize_running(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        act: Activation,
    ) -> Result<Tensor> {
        let (_, c, _) = x.dims3()?;
        if c != self.c {
            bail!(
                "running stats: expected {} channels, got input {:?}",
                self.c,
                x.dims()
            );
        }
        let (scale, shift) = self.eval_affine(affine)?;
        plane_affine(x, &scale, &shift, act)
    }

    /// The eval-mode normalization as one affine: (γ·a, γ·b + β) with [`RunningStats::fold`]'s
    /// a, b; (a, b) without `affine`. γ, β per channel (C) or per sample and channel (N, C).
    pub fn eval_affine(&self, affine: Option<(&Tensor, &Tensor)>) -> Result<(Tensor, Tensor)> {
        let (a, b) = self.fold()?;
        match affine {
            None => Ok((a, b)),
            Some((gamma, beta)) => Ok((
                gamma.broadcast_mul(&a)?,
                gamma.broadcast_mul(&b)?.broadcast_add(beta)?,
            )),
        }
    }

    /// ONNX `BatchNormalization` (training_mode 0) with the running stats (docs/norms.md §2.1);
    /// without `affine`, scale 1 and bias 0.
    pub fn emit(
        &self,
        g: &mut OnnxGraph,
        input: &str,
        affine: Option<(&Tensor, &Tensor)>,
    ) -> Result<String> {
        let c = self.c as i64;
        let (scale, bias) = match affine {
            Some((gamma, beta)) => (gamma.clone(), beta.clone()),
            None => (
                Tensor::ones(self.c, DType::F32, self.mean.device())?,
                Tensor::zeros(self.c, DType::F32, self.mean.device())?,
            ),
        };
        let scale = g.add_tensor("bn_scale", &scale, &[c])?;
        let bias = g.add_tensor("bn_bias", &bias, &[c])?;
        let mean = g.add_tensor("bn_mean", self.mean.as_tensor(), &[c])?;
        let var = g.add_tensor("bn_var", self.var.as_tensor(), &[c])?;
        Ok(g.add_node(
            "BatchNormalization",
            &[input, &scale, &bias, &mean, &var],
            vec![attr_float("epsilon", self.eps as f32)],
        ))
    }
}
