//! Standardization over groups of planes with a fused affine, and a plain per-plane affine: the
//! kernels every normalization layer is built from (docs/norms.md §1–§6).
//!
//! Why: composed of candle ops, BN's forward and backward on a 32×16×128×431 activation took
//! 2.6 s (docs/norm-costs.md): per-channel statistics need a transpose, every broadcast in the
//! chain is a pass of its own in both directions, and candle reduces over non-trailing dims in a
//! single-threaded loop. Here the input is viewed as (N, C, L) planes of L contiguous values.
//! The forward reads it twice (the mean, then centred squares, so no cancellation) and writes
//! once; the backward reads it once for per-plane sums and writes the input gradient once; all
//! passes are parallel over planes. Sums run in f32 lanes over short blocks, accumulated in f64.
//!
//! Statistics are biased (divide by the count) with ε inside the square root, as BN and GN in
//! PyTorch; the mean and variance are returned detached for the running buffers (docs/norms.md §1).

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::across::Across;
use super::planes::{Grouping, PlaneGeom, Standardized};
use super::{cpu_f32, grad_tensor, par_fill, use_cpu_kernels, with_f32, Activation};
use crate::kernels::{reduce, Isa};

/// `act(γ·(x − μ)/sqrt(σ² + ε) + β)` for `x` (N, C, L); `gamma` and `beta` are per channel (C)
/// or per plane (N, C), ones and zeros when absent.
pub fn standardize(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    grouping: Grouping,
    eps: f64,
    act: Activation,
) -> Result<Standardized> {
    let geom = PlaneGeom::new(x, grouping)?;
    let gamma = coef_or(gamma, &geom, x, 1.0, "standardize: gamma")?;
    let beta = coef_or(beta, &geom, x, 0.0, "standardize: beta")?;
    // Refuses synchronised statistics where only the candle-op path can run.
    Across::for_op(&geom, &[x, &gamma, &beta])?;
    if !use_cpu_kernels(&[x, &gamma, &beta]) {
        let mut st = super::fallback::standardize(x, &gamma, &beta, &geom, eps)?;
        st.y = act.apply(&st.y)?;
        return Ok(st);
    }
    run_standardize(x, gamma, beta, Variant::Plain, geom, eps, act)
}

/// `act(γ·x̂ + k·x + β)`: [`standardize`] plus a skip term, the input it standardizes times a
/// per-channel `k`, in the same passes. GN+'s `g_s·x + BN(x)` (docs/norms.md §4) composed of
/// ops was four passes more forward (the scaled copy, the sum, the activation) and five more
/// backward; its parts' gradients all follow from the sums the backward already takes.
/// `gamma`, `skip` and `beta` are per channel (C).
pub fn standardize_skip(
    x: &Tensor,
    gamma: &Tensor,
    skip: &Tensor,
    beta: &Tensor,
    grouping: Grouping,
    eps: f64,
    act: Activation,
) -> Result<Standardized> {
    let geom = PlaneGeom::new(x, grouping)?;
    for (t, what) in [(gamma, "gamma"), (skip, "skip"), (beta, "beta")] {
        if t.elem_count() != geom.c {
            bail!(
                "standardize_skip: {what}: expected {} (per channel) values, got shape {:?}",
                geom.c,
                t.dims()
            );
        }
    }
    Across::for_op(&geom, &[x, gamma, skip, beta])?;
    if !use_cpu_kernels(&[x, gamma, skip, beta]) {
        let mut st = super::fallback::standardize(x, gamma, beta, &geom, eps)?;
        let k = skip.reshape((1, geom.c, 1))?;
        st.y = act.apply(&(st.y + x.broadcast_mul(&k)?)?)?;
        return Ok(st);
    }
    // The op takes three inputs: γ and k travel as one (2C) coefficient.
    let gk = Tensor::cat(&[gamma, skip], 0)?;
    run_standardize(x, gk, beta.clone(), Variant::Skip, geom, eps, act)
}

/// Per-sample scaling of the input before its statistics are taken: x̃ = x·s_n with
/// s_n = 1/max(sqrt(Σx²/d), floor) over the sample's C·L values, d = C·L for the root mean square
/// and 1 for the l2 norm (L2BN, docs/norms.md §3; [`super::equalize_samples`] alone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleScaling {
    /// Divide Σx² by C·L (the RMS) rather than by 1 (the l2 norm).
    pub mean: bool,
    /// The divisor's floor; no gradient flows through a floored divisor.
    pub floor: f64,
}

/// `act(γ·(x̃ − μ)/sqrt(σ² + ε) + β)` with x̃ = `x` scaled per sample by `scaling` and per-channel
/// statistics of x̃: L2BN's train step (docs/norms.md §3) as one op. Composed as
/// [`super::equalize_samples`] then [`standardize`] it took two more passes over the activation
/// each way and kept x̃ as one more activation for the backward; the scale's own gradient
/// follows from per-plane sums the backward takes anyway. `gamma` and `beta` are per channel.
pub fn standardize_scaled(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
    scaling: SampleScaling,
) -> Result<Standardized> {
    let geom = PlaneGeom::new(x, Grouping::Channel)?;
    for (t, what) in [(gamma, "gamma"), (beta, "beta")] {
        if t.elem_count() != geom.c {
            bail!(
                "standardize_scaled: {what}: expected {} (per channel) values, got shape {:?}",
                geom.c,
                t.dims()
            );
        }
    }
    Across::for_op(&geom, &[x, gamma, beta])?;
    if !use_cpu_kernels(&[x, gamma, beta]) {
        let xt = super::equalize_samples(x, scaling.mean, scaling.floor)?;
        let mut st = super::fallback::standardize(&xt, gamma, beta, &geom, eps)?;
        st.y = act.apply(&st.y)?;
        return Ok(st);
    }
    let variant = Variant::Scaled(scaling);
    run_standardize(x, gamma.clone(), beta.clone(), variant, geom, eps, act)
}

/// What a [`StandardizeOp`] adds to plain standardization.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    Plain,
    /// The gamma input is (2C): γ, then the skip coefficients k ([`standardize_skip`]).
    Skip,
    /// The input is scaled per sample first ([`standardize_scaled`]).
    Scaled(SampleScaling),
}

/// The CPU op behind [`standardize`], [`standardize_skip`] and [`standardize_scaled`].
fn run_standardize(
    x: &Tensor,
    gamma: Tensor,
    beta: Tensor,
    variant: Variant,
    geom: PlaneGeom,
    eps: f64,
    act: Activation,
) -> Result<Standardized> {
    let (x, gamma, beta) = (x.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
    let stats = Arc::new(OnceLock::new());
    let op = StandardizeOp {
        geom,
        eps,
        act,
        variant,
        across: Across::for_op(&geom, &[&x])?,
        stats: stats.clone(),
    };
    let y = if x.track_op() || gamma.track_op() || beta.track_op() {
        x.apply_op3(&gamma, &beta, op)?
    } else {
        x.apply_op3_no_bwd(&gamma, &beta, &op)?
    };
    let Some(s) = stats.get() else {
        bail!("standardize: the forward pass recorded no statistics");
    };
    let mean = Tensor::from_vec(s.mean.clone(), s.mean.len(), x.device())?;
    let var = Tensor::from_vec(s.var.clone(), s.var.len(), x.device())?;
    Ok(Standardized {
        y,
        mean,
        var,
        count: s.count,
    })
}

/// `act(x·s + t)` for `x` (N, C, L) with `s` and `t` per channel (C) or per plane (N, C): a
/// channel affine, or a per-sample gate (IEBN, UBN), without candle's broadcast passes.
pub fn plane_affine(x: &Tensor, s: &Tensor, t: &Tensor, act: Activation) -> Result<Tensor> {
    let geom = PlaneGeom::new(x, Grouping::Channel)?;
    let s = checked_coef(s, &geom, "plane_affine: scale")?;
    let t = checked_coef(t, &geom, "plane_affine: shift")?;
    if !use_cpu_kernels(&[x, s, t]) {
        return act.apply(&super::fallback::plane_affine(x, s, t, &geom)?);
    }
    let (x, s, t) = (x.contiguous()?, s.contiguous()?, t.contiguous()?);
    let op = AffineOp { geom, act };
    if x.track_op() || s.track_op() || t.track_op() {
        x.apply_op3(&s, &t, op)
    } else {
        x.apply_op3_no_bwd(&s, &t, &op)
    }
}

/// `t` when it is a valid (C) or (N, C) coefficient, else an error naming `what`.
fn checked_coef<'a>(t: &'a Tensor, g: &PlaneGeom, what: &str) -> Result<&'a Tensor> {
    let len = t.elem_count();
    if len != g.c && len != g.n * g.c {
        bail!(
            "{what}: expected {} (per channel) or {}x{} (per sample and channel) values, got shape {:?}",
            g.c,
            g.n,
            g.c,
            t.dims()
        );
    }
    Ok(t)
}

/// The given coefficient, or a constant (C) one of `value`.
fn coef_or(
    t: Option<&Tensor>,
    g: &PlaneGeom,
    x: &Tensor,
    value: f64,
    what: &str,
) -> Result<Tensor> {
    match t {
        Some(t) => Ok(checked_coef(t, g, what)?.clone()),
        None => Tensor::full(value as f32, g.c, x.device())?.to_dtype(x.dtype()),
    }
}

/// γ and, for an op with a skip term, the k that follow it in the same (2C) coefficient.
fn split_skip(gamma: &[f32], variant: Variant, c: usize) -> (&[f32], Option<&[f32]>) {
    if variant == Variant::Skip {
        let (g, k) = gamma.split_at(c);
        (g, Some(k))
    } else {
        (gamma, None)
    }
}

/// Coefficient of plane `p` from a (C) or (N, C) slice.
#[inline]
fn coef_at(v: &[f32], c: usize, p: usize) -> f32 {
    if v.len() == c {
        v[p % c]
    } else {
        v[p]
    }
}

/// Per-plane values summed into the shape of a (C) or (N, C) coefficient.
fn reduce_to(per_plane: &[f64], c: usize, len: usize) -> Vec<f32> {
    if len == per_plane.len() {
        return per_plane.iter().map(|&v| v as f32).collect();
    }
    let mut out = vec![0f64; c];
    for (p, v) in per_plane.iter().enumerate() {
        out[p % c] += v;
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// Per-group mean and biased variance as recorded by the forward pass, and the number of values
/// each covers (over every rank, when synchronised); for a scaled standardization, statistics of
/// the scaled input x̃, and the scales.
struct GroupStats {
    mean: Vec<f32>,
    var: Vec<f32>,
    count: f64,
    scales: Option<SampleScales>,
}

/// The per-sample scales of [`standardize_scaled`] and what its backward needs of the unscaled
/// input.
struct SampleScales {
    /// s_n as applied, per sample.
    s: Vec<f32>,
    /// Whether s_n is the floor's, per sample (no gradient through the divisor there).
    floored: Vec<bool>,
    /// Σx and Σx² per plane.
    sum: Vec<f64>,
    sq: Vec<f64>,
    /// What Σx² is divided by under the square root: C·L or 1.
    d: f64,
}

impl SampleScales {
    /// The scales from Σx² per plane; Σx is set once the group means no longer need it apart.
    fn new(sq: Vec<f64>, c: usize, l: usize, scaling: SampleScaling) -> Self {
        let d = if scaling.mean { (c * l) as f64 } else { 1.0 };
        let r: Vec<f64> = sq
            .chunks(c)
            .map(|s| (s.iter().sum::<f64>() / d).sqrt())
            .collect();
        Self {
            s: r.iter()
                .map(|r| (1.0 / r.max(scaling.floor)) as f32)
                .collect(),
            floored: r.iter().map(|&r| r < scaling.floor).collect(),
            sum: Vec::new(),
            sq,
            d,
        }
    }
}

impl GroupStats {
    /// 1 / sqrt(σ² + ε) per group.
    fn inv_std(&self, eps: f64) -> Vec<f32> {
        self.var
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect()
    }

    /// The scale of plane `p`'s sample: 1 unless scaled.
    #[inline]
    fn scale(&self, g: &PlaneGeom, p: usize) -> f32 {
        self.scales.as_ref().map_or(1.0, |s| s.s[p / g.c])
    }

    /// Plane `p`'s group mean in the units of the unscaled input, μ/s_n: (x̃ − μ) = s_n·(x − μ/s_n).
    #[inline]
    fn shift(&self, g: &PlaneGeom, p: usize) -> f32 {
        self.mean[g.group_of(p)] / self.scale(g, p)
    }
}

/// Two passes over the planes: group means, then group variances from centred squares (each
/// summed over the ranks when synchronised). Scaled, the first pass also takes Σx² per plane for
/// the scales, and the statistics are x̃'s: Σx̃ = s_n·Σx, Σ(x̃ − μ)² = s_n²·Σ(x − μ/s_n)².
fn group_stats(
    x: &[f32],
    g: &PlaneGeom,
    across: &Across,
    scaling: Option<SampleScaling>,
) -> GroupStats {
    let (l, isa) = (g.l, Isa::active());
    let (sums, squares): (Vec<f64>, Vec<f64>) = x
        .par_chunks(l)
        .with_min_len(g.min_planes())
        .map(|xp| {
            let sq = scaling.map_or(0.0, |_| reduce::centred_squares(xp, 0.0, isa));
            (reduce::sum(xp, isa), sq)
        })
        .unzip();
    let mut stats = GroupStats {
        mean: Vec::new(),
        var: Vec::new(),
        count: 0.0,
        scales: scaling.map(|sc| SampleScales::new(squares, g.c, l, sc)),
    };
    let mut mean = vec![0f64; g.n_groups()];
    for (p, s) in sums.iter().enumerate() {
        mean[g.group_of(p)] += s * stats.scale(g, p) as f64;
    }
    if let Some(sc) = &mut stats.scales {
        sc.sum = sums;
    }
    let count = across.sum_with_count(&mut mean, g.count());
    stats.mean = mean.iter().map(|s| (s / count) as f32).collect();
    let sq: Vec<f64> = x
        .par_chunks(l)
        .with_min_len(g.min_planes())
        .enumerate()
        .map(|(p, xp)| {
            let s = stats.scale(g, p) as f64;
            reduce::centred_squares(xp, stats.shift(g, p), isa) * (s * s)
        })
        .collect();
    let mut var = vec![0f64; g.n_groups()];
    for (p, s) in sq.iter().enumerate() {
        var[g.group_of(p)] += s;
    }
    across.sum(&mut var);
    stats.var = var.iter().map(|s| (s / count) as f32).collect();
    stats.count = count;
    stats
}

struct StandardizeOp {
    geom: PlaneGeom,
    eps: f64,
    act: Activation,
    variant: Variant,
    /// The ranks whose rows share the statistics (synchronised BN), if any.
    across: Across,
    /// Written by the forward pass; read by the caller (running buffers) and the backward.
    stats: Arc<OnceLock<GroupStats>>,
}

impl CustomOp3 for StandardizeOp {
    fn name(&self) -> &'static str {
        "asc-standardize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "standardize")?;
        let gamma = cpu_f32(s2, l2, "standardize")?;
        let beta = cpu_f32(s3, l3, "standardize")?;
        let (gamma, skip) = split_skip(gamma, self.variant, g.c);
        let scaling = match self.variant {
            Variant::Scaled(sc) => Some(sc),
            _ => None,
        };
        let stats = group_stats(x, g, &self.across, scaling);
        let istd = stats.inv_std(self.eps);
        let act = self.act;
        let y = par_fill(x.len(), g.l, g.min_planes(), |p, yp| {
            let s = g.group_of(p);
            let (m, a) = (stats.mean[s], coef_at(gamma, g.c, p) * istd[s]);
            let b = coef_at(beta, g.c, p);
            let xp = &x[p * g.l..];
            match (skip, &stats.scales) {
                (Some(k), _) => {
                    let k = k[p % g.c];
                    for (yv, xv) in yp.iter_mut().zip(xp) {
                        yv.write(act.eval((xv - m) * a + k * xv + b));
                    }
                }
                (None, Some(sc)) => {
                    let sn = sc.s[p / g.c];
                    for (yv, xv) in yp.iter_mut().zip(xp) {
                        yv.write(act.eval((xv * sn - m) * a + b));
                    }
                }
                (None, None) => {
                    for (yv, xv) in yp.iter_mut().zip(xp) {
                        yv.write(act.eval((xv - m) * a + b));
                    }
                }
            }
        });
        // A second forward of the same op (never done by candle) would keep the first stats.
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.l))))
    }

    /// With x̂ = (x − μ)·r, r = 1/sqrt(σ²+ε), per group of M values and plane coefficient γ:
    /// ∂x = γ·r·∂y − r/M·(Σγ∂y + x̂·Σγ∂y·x̂), ∂γ = Σ∂y·x̂, ∂β = Σ∂y (docs/norms.md §1). A skip
    /// term k·x adds k·∂y to ∂x, and ∂k = Σ∂y·x = Σ∂y·(x − μ) + μ·Σ∂y, from the same sums.
    /// Scaled, this gives ∂x̃, and ∂x = s·∂x̃ − x·s³/d·Σ∂x̃·x per sample ([`sample_terms`]).
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let act = self.act;
        let Some(stats) = self.stats.get() else {
            bail!("standardize backward: no statistics from the forward pass");
        };
        let istd = stats.inv_std(self.eps);
        let need_gx = x.track_op();
        let (gx, dgamma, dbeta) = with_f32(x, "standardize backward", |xs| {
            with_f32(gamma, "standardize backward", |gk| {
                let (gs, skip) = split_skip(gk, self.variant, g.c);
                with_planes(gy, res, "standardize backward", |gys, ys| {
                    // Per plane: Σ∂z and Σ∂z·(x − μ/s), ∂z the gradient before the activation
                    // (s = 1 unless scaled).
                    let sums: Vec<(f64, f64)> = xs
                        .par_chunks(g.l)
                        .zip(gys.par_chunks(g.l).zip(ys.par_chunks(g.l)))
                        .with_min_len(g.min_planes())
                        .enumerate()
                        .map(|(p, (xp, (gp, yp)))| {
                            let [dy, dyc] = act.moments(gp, yp, xp, stats.shift(&g, p));
                            (dy, dyc)
                        })
                        .collect();
                    let (f, dzc): (Vec<f64>, Vec<f64>) = sums.into_iter().unzip();
                    // Σ∂z·(x̃ − μ) = s·Σ∂z·(x − μ/s).
                    let centred: Vec<f64> = dzc
                        .iter()
                        .enumerate()
                        .map(|(p, v)| v * stats.scale(&g, p) as f64)
                        .collect();
                    let e: Vec<f64> = centred
                        .iter()
                        .enumerate()
                        .map(|(p, v)| v * istd[g.group_of(p)] as f64)
                        .collect();
                    let gx = need_gx.then(|| {
                        let mut a = vec![0f64; g.n_groups()];
                        let mut b = vec![0f64; g.n_groups()];
                        for p in 0..f.len() {
                            let s = g.group_of(p);
                            let gp = coef_at(gs, g.c, p) as f64;
                            a[s] += gp * f[p];
                            b[s] += gp * e[p];
                        }
                        self.across.sum_pair(&mut a, &mut b);
                        let mut k = GradCoefs {
                            gamma: gs,
                            skip,
                            stats,
                            istd: &istd,
                            a: &a,
                            b: &b,
                            sample: None,
                        };
                        let terms = stats
                            .scales
                            .as_ref()
                            .map(|sc| sample_terms(&k, sc, (&f, &dzc), &g));
                        k.sample = terms.as_deref();
                        input_grad(xs, gys, ys, act, &k, &g)
                    });
                    let mut dgamma = reduce_to(&e, g.c, gs.len());
                    if skip.is_some() {
                        let dk: Vec<f64> = (0..f.len())
                            .map(|p| centred[p] + stats.mean[g.group_of(p)] as f64 * f[p])
                            .collect();
                        dgamma.extend(reduce_to(&dk, g.c, g.c));
                    }
                    Ok((gx, dgamma, reduce_to(&f, g.c, beta.elem_count())))
                })
            })
        })?;
        Ok((
            grad_tensor(x, gx)?,
            grad_tensor(gamma, Some(dgamma))?,
            grad_tensor(beta, Some(dbeta))?,
        ))
    }
}

/// What the input gradient needs per group: γ, the skip coefficients, the statistics,
/// A = Σγ∂z, B = Σγ∂z·x̂, and when scaled, [`sample_terms`]' t per sample.
struct GradCoefs<'a> {
    gamma: &'a [f32],
    skip: Option<&'a [f32]>,
    stats: &'a GroupStats,
    istd: &'a [f32],
    a: &'a [f64],
    b: &'a [f64],
    sample: Option<&'a [f64]>,
}

impl GradCoefs<'_> {
    /// k1, k2, k3 of plane `p` in ∂x̃ = k1·∂z + k2·(x̃ − μ) + k3 (see [`input_grad`]).
    fn plane(&self, g: &PlaneGeom, p: usize) -> [f64; 3] {
        let s = g.group_of(p);
        let (r, count) = (self.istd[s] as f64, self.stats.count);
        let skip = self.skip.map_or(0.0, |v| v[p % g.c] as f64);
        [
            coef_at(self.gamma, g.c, p) as f64 * r + skip,
            -r * r * self.b[s] / count,
            -r * self.a[s] / count,
        ]
    }
}

/// Per sample of a scaled standardization, t = s³/d·Σ∂x̃·x (0 where the divisor is floored), from
/// per-plane sums alone: Σ∂x̃·x = k1·Σ∂z·x + k2·Σ(x̃ − μ)·x + k3·Σx, with Σ∂z·x = Σ∂z·(x − μ/s) +
/// μ/s·Σ∂z and Σ(x̃ − μ)·x = s·Σx² − μ·Σx. `sums` = (Σ∂z, Σ∂z·(x − μ/s)) per plane.
fn sample_terms(
    k: &GradCoefs,
    sc: &SampleScales,
    (f, dzc): (&[f64], &[f64]),
    g: &PlaneGeom,
) -> Vec<f64> {
    let mut t = vec![0f64; g.n];
    for p in 0..g.n * g.c {
        let [k1, k2, k3] = k.plane(g, p);
        let (s, shift) = (k.stats.scale(g, p) as f64, k.stats.shift(g, p) as f64);
        let mean = k.stats.mean[g.group_of(p)] as f64;
        let dz_x = dzc[p] + shift * f[p];
        let xc_x = s * sc.sq[p] - mean * sc.sum[p];
        t[p / g.c] += k1 * dz_x + k2 * xc_x + k3 * sc.sum[p];
    }
    for (n, t) in t.iter_mut().enumerate() {
        let s = sc.s[n] as f64;
        *t = if sc.floored[n] {
            0.0
        } else {
            s * s * s / sc.d * *t
        };
    }
    t
}

/// ∂x = k1·∂z + k2·(x − μ) + k3 per plane, with k1 = γr (+ k with a skip term), k2 = −r²·B/M,
/// k3 = −r·A/M, and ∂z the incoming gradient times the activation's slope at the output `ys`.
/// Scaled, with t from [`sample_terms`]: ∂x = s·k1·∂z + (s²·k2 − t)·(x − μ/s) + s·k3 − t·μ/s.
fn input_grad(
    xs: &[f32],
    gys: &[f32],
    ys: &[f32],
    act: Activation,
    k: &GradCoefs,
    g: &PlaneGeom,
) -> Vec<f32> {
    par_fill(xs.len(), g.l, g.min_planes(), |p, gxp| {
        let [k1, k2, k3] = k.plane(g, p);
        let m = k.stats.shift(g, p);
        let [k1, k2, k3] = match k.sample {
            None => [k1, k2, k3],
            Some(t) => {
                let (s, t) = (k.stats.scale(g, p) as f64, t[p / g.c]);
                [s * k1, s * s * k2 - t, s * k3 - t * m as f64]
            }
        }
        .map(|v| v as f32);
        let at = p * g.l;
        let (xp, gp, yp) = (&xs[at..at + g.l], &gys[at..at + g.l], &ys[at..at + g.l]);
        for (((o, xv), dy), yv) in gxp.iter_mut().zip(xp).zip(gp).zip(yp) {
            o.write(k1 * dy * act.slope(*yv) + k2 * (xv - m) + k3);
        }
    })
}

/// Runs `f` on the contiguous data of the incoming gradient and of the op's output.
fn with_planes<R>(
    gy: &Tensor,
    y: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32], &[f32]) -> Result<R>,
) -> Result<R> {
    with_f32(gy, op, |gys| with_f32(y, op, |ys| f(gys, ys)))
}

struct AffineOp {
    geom: PlaneGeom,
    act: Activation,
}

impl CustomOp3 for AffineOp {
    fn name(&self) -> &'static str {
        "asc-plane-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "plane_affine")?;
        let sc = cpu_f32(s2, l2, "plane_affine")?;
        let sh = cpu_f32(s3, l3, "plane_affine")?;
        let act = self.act;
        let y = par_fill(x.len(), g.l, g.min_planes(), |p, yp| {
            let (a, b) = (coef_at(sc, g.c, p), coef_at(sh, g.c, p));
            for (yv, xv) in yp.iter_mut().zip(&x[p * g.l..]) {
                yv.write(act.eval(xv * a + b));
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.l))))
    }

    /// ∂x = s·∂y, ∂s = Σ∂y·x, ∂t = Σ∂y per plane (summed over the batch for per-channel ones).
    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        t: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let act = self.act;
        let (gx, ds, dt) = with_f32(x, "plane_affine backward", |xs| {
            with_f32(s, "plane_affine backward", |ss| {
                with_planes(gy, res, "plane_affine backward", |gys, ys| {
                    let gx = x.track_op().then(|| {
                        par_fill(xs.len(), g.l, g.min_planes(), |p, o| {
                            let a = coef_at(ss, g.c, p);
                            let at = p * g.l;
                            let (gp, yp) = (&gys[at..at + g.l], &ys[at..at + g.l]);
                            for ((ov, dy), yv) in o.iter_mut().zip(gp).zip(yp) {
                                ov.write(a * dy * act.slope(*yv));
                            }
                        })
                    });
                    let sums: Vec<(f64, f64)> = xs
                        .par_chunks(g.l)
                        .zip(gys.par_chunks(g.l).zip(ys.par_chunks(g.l)))
                        .with_min_len(g.min_planes())
                        .map(|(xp, (gp, yp))| {
                            let [dz, dzx] = act.moments(gp, yp, xp, 0.0);
                            (dzx, dz)
                        })
                        .collect();
                    let (e, f): (Vec<f64>, Vec<f64>) = sums.into_iter().unzip();
                    Ok((
                        gx,
                        reduce_to(&e, g.c, ss.len()),
                        reduce_to(&f, g.c, t.elem_count()),
                    ))
                })
            })
        })?;
        Ok((
            grad_tensor(x, gx)?,
            grad_tensor(s, Some(ds))?,
            grad_tensor(t, Some(dt))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Largest absolute difference of two tensors.
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Forward, statistics and every gradient of the kernel against candle's autograd through
    /// the fallback composition, for both groupings and per-channel and per-plane coefficients.
    #[test]
    fn standardize_matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (3, 6, 37);
        let cases = [
            Grouping::Channel,
            Grouping::SampleGroups(2),
            Grouping::SampleGroups(6),
        ]
        .into_iter()
        .flat_map(|g| [false, true].map(|p| (g, p)))
        .flat_map(|(g, p)| [Activation::Identity, Activation::Relu].map(|a| (g, p, a)));
        for (grouping, per_plane, act) in cases {
            let cl = if per_plane { n * c } else { c };
            let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (n, c, l), &dev)? + 3.0)?)?;
            let gm = Var::from_tensor(&Tensor::randn(1f32, 0.5, cl, &dev)?)?;
            let bt = Var::from_tensor(&Tensor::randn(0f32, 0.5, cl, &dev)?)?;
            let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
            let fast = standardize(&x, Some(&gm), Some(&bt), grouping, 1e-5, act)?;
            let geom = PlaneGeom::new(&x, grouping)?;
            let mut slow = super::super::fallback::standardize(&x, &gm, &bt, &geom, 1e-5)?;
            if act == Activation::Relu {
                slow.y = slow.y.relu()?; // candle's own, not ours
            }
            let what = format!("{grouping:?} per_plane={per_plane} {act:?}");
            assert!(max_diff(&fast.y, &slow.y) < 1e-5, "{what}: y");
            assert!(max_diff(&fast.mean, &slow.mean) < 1e-5, "{what}: mean");
            assert!(max_diff(&fast.var, &slow.var) < 1e-4, "{what}: var");
            let g1 = (&fast.y * &r)?.sum_all()?.backward()?;
            let g2 = (&slow.y * &r)?.sum_all()?.backward()?;
            for (name, v) in [("x", &x), ("gamma", &gm), ("beta", &bt)] {
                let d = max_diff(g1.get(v).expect("grad"), g2.get(v).expect("grad"));
                assert!(d < 2e-4, "{what}: d{name} differs by {d}");
            }
        }
        Ok(())
    }

    /// The skip term's forward and every gradient (k's included) against candle's autograd
    /// through the fallback composition.
    #[test]
    fn standardize_skip_matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (3, 4, 29);
        for grouping in [Grouping::Channel, Grouping::SampleGroups(2)] {
            for act in [Activation::Identity, Activation::Relu] {
                let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (n, c, l), &dev)? + 1.5)?)?;
                let [gm, k, bt] = [1f32, 0.5, 0.0]
                    .map(|m| Var::from_tensor(&Tensor::randn(m, 0.5, c, &dev).unwrap()).unwrap());
                let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
                let fast = standardize_skip(&x, &gm, &k, &bt, grouping, 1e-5, act)?;
                let geom = PlaneGeom::new(&x, grouping)?;
                let st = super::super::fallback::standardize(&x, &gm, &bt, &geom, 1e-5)?;
                let mut slow = (st.y + x.broadcast_mul(&k.reshape((1, c, 1))?)?)?;
                if act == Activation::Relu {
                    slow = slow.relu()?; // candle's own, not ours
                }
                let what = format!("{grouping:?} {act:?}");
                assert!(max_diff(&fast.y, &slow) < 1e-5, "{what}: y");
                let g1 = (&fast.y * &r)?.sum_all()?.backward()?;
                let g2 = (&slow * &r)?.sum_all()?.backward()?;
                for (name, v) in [("x", &x), ("gamma", &gm), ("skip", &k), ("beta", &bt)] {
                    let d = max_diff(g1.get(v).expect("grad"), g2.get(v).expect("grad"));
                    assert!(d < 2e-4, "{what}: d{name} differs by {d}");
                }
            }
        }
        Ok(())
    }

    /// The scaled op (L2BN's train step) against candle's autograd through the per-sample
    /// division and the fallback composition: forward, statistics (of x̃) and every gradient,
    /// both divisors, both activations, per-sample norms far apart.
    #[test]
    fn standardize_scaled_matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (4, 5, 31);
        for mean in [true, false] {
            for act in [Activation::Identity, Activation::Relu] {
                let spread = Tensor::new(&[0.3f32, 1.0, 4.0, 20.0], &dev)?.reshape((n, 1, 1))?;
                let x0 = (Tensor::randn(0f32, 1.0, (n, c, l), &dev)? + 0.5)?;
                let x = Var::from_tensor(&x0.broadcast_mul(&spread)?)?;
                let gm = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev)?)?;
                let bt = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &dev)?)?;
                let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
                let scaling = SampleScaling { mean, floor: 1e-12 };
                let fast = standardize_scaled(&x, &gm, &bt, 1e-5, act, scaling)?;
                let d = if mean { (c * l) as f64 } else { 1.0 };
                let norm = (x.sqr()?.flatten_from(1)?.sum_keepdim(1)? / d)?.sqrt()?;
                let xt = x.broadcast_div(&norm.maximum(1e-12)?.reshape((n, 1, 1))?)?;
                let geom = PlaneGeom::new(&xt, Grouping::Channel)?;
                let mut slow = super::super::fallback::standardize(&xt, &gm, &bt, &geom, 1e-5)?;
                if act == Activation::Relu {
                    slow.y = slow.y.relu()?; // candle's own, not ours
                }
                let what = format!("mean={mean} {act:?}");
                assert!(max_diff(&fast.y, &slow.y) < 1e-4, "{what}: y");
                let scale = if mean { 1.0 } else { ((c * l) as f32).sqrt() };
                assert!(
                    max_diff(&fast.mean, &slow.mean) * scale < 1e-5,
                    "{what}: mean"
                );
                assert!(
                    max_diff(&fast.var, &slow.var) * scale * scale < 1e-4,
                    "{what}: var"
                );
                let g1 = (&fast.y * &r)?.sum_all()?.backward()?;
                let g2 = (&slow.y * &r)?.sum_all()?.backward()?;
                for (name, v) in [("x", &x), ("gamma", &gm), ("beta", &bt)] {
                    let (a, b) = (g1.get(v).expect("grad"), g2.get(v).expect("grad"));
                    let top = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                    let d = max_diff(a, b);
                    assert!(
                        d <= 2e-4 * top.max(1.0),
                        "{what}: d{name} differs by {d} of {top}"
                    );
                }
            }
        }
        Ok(())
    }

    /// A sample whose divisor is floored (RMS 1e-4 under a floor of 1e-3) gets ∂x = s·∂x̃ only,
    /// as [`super::super::equalize_samples`] followed by [`standardize`] gives it.
    #[test]
    fn standardize_scaled_matches_the_composition_at_the_floor() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (3, 4, 19);
        let mut v = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?.to_vec3::<f32>()?;
        v[1].iter_mut().flatten().for_each(|x| *x *= 1e-4);
        let x = Var::from_tensor(&Tensor::new(v, &dev)?)?;
        let gm = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev)?)?;
        let bt = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &dev)?)?;
        let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
        let act = Activation::Relu;
        let scaling = SampleScaling {
            mean: true,
            floor: 1e-3,
        };
        let fast = standardize_scaled(&x, &gm, &bt, 1e-5, act, scaling)?;
        let xt = super::super::equalize_samples(&x, true, 1e-3)?;
        let slow = standardize(&xt, Some(&gm), Some(&bt), Grouping::Channel, 1e-5, act)?;
        assert!(max_diff(&fast.y, &slow.y) < 1e-5);
        let g1 = (&fast.y * &r)?.sum_all()?.backward()?;
        let g2 = (&slow.y * &r)?.sum_all()?.backward()?;
        for v in [&x, &gm, &bt] {
            let (a, b) = (g1.get(v).expect("grad"), g2.get(v).expect("grad"));
            let top = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(max_diff(a, b) <= 1e-4 * top.max(1.0), "{}", max_diff(a, b));
        }
        Ok(())
    }

    #[test]
    fn plane_affine_matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (4, 5, 23);
        let shapes = [(c, c), (n * c, c), (n * c, n * c), (c, n * c)];
        for ((sl, tl), act) in shapes
            .into_iter()
            .flat_map(|s| [Activation::Identity, Activation::Relu].map(|a| (s, a)))
        {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, l), &dev)?)?;
            let s = Var::from_tensor(&Tensor::randn(0f32, 1.0, sl, &dev)?)?;
            let t = Var::from_tensor(&Tensor::randn(0f32, 1.0, tl, &dev)?)?;
            let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
            let geom = PlaneGeom::new(&x, Grouping::Channel)?;
            let fast = plane_affine(&x, &s, &t, act)?;
            let mut slow = super::super::fallback::plane_affine(&x, &s, &t, &geom)?;
            if act == Activation::Relu {
                slow = slow.relu()?;
            }
            assert!(max_diff(&fast, &slow) < 1e-5);
            let g1 = (&fast * &r)?.sum_all()?.backward()?;
            let g2 = (&slow * &r)?.sum_all()?.backward()?;
            for v in [&x, &s, &t] {
                let d = max_diff(g1.get(v).expect("grad"), g2.get(v).expect("grad"));
                assert!(d < 1e-4, "({sl}, {tl}) {act:?}: gradient differs by {d}");
            }
        }
        Ok(())
    }

    /// A large mean relative to the spread must not cost precision (centred second pass).
    #[test]
    fn variance_survives_a_large_offset() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (8, 2, 5000), &dev)? + 1000.0)?;
        let st = standardize(&x, None, None, Grouping::Channel, 0.0, Activation::Identity)?;
        let var = st.var.to_vec1::<f32>()?;
        for v in var {
            assert!((v - 1.0).abs() < 0.05, "variance {v}");
        }
        let y = st.y.flatten_all()?;
        let m = y.mean_all()?.to_scalar::<f32>()?;
        assert!(m.abs() < 1e-3, "mean of standardized output {m}");
        Ok(())
    }

    #[test]
    fn rejects_bad_coefficients() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &dev).unwrap();
        let g = Tensor::ones(5, candle_core::DType::F32, &dev).unwrap();
        let e = standardize(
            &x,
            Some(&g),
            None,
            Grouping::Channel,
            1e-5,
            Activation::Identity,
        )
        .err()
        .expect("error")
        .to_string();
        assert!(e.contains("gamma") && e.contains("[5]"), "{e}");
        let e = standardize(
            &x,
            None,
            None,
            Grouping::SampleGroups(2),
            1e-5,
            Activation::Identity,
        )
        .err()
        .expect("error")
        .to_string();
        assert!(e.contains("2 groups do not divide 3"), "{e}");
    }
}
