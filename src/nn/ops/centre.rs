//! UBN's centring calibration and batch standardization as one op (docs/norms.md §5.2):
//! `x̂ = BN(x + w·GAP(x))` with batch statistics per channel and no affine.
//!
//! Why: composed, the centring was a global-average pass, a per-plane affine (one pass forward,
//! two backward) and the GAP's gradient added onto the affine's (one more pass), around the
//! standardization's own three passes forward and two backward. Every extra quantity follows
//! from per-plane sums the standardization takes anyway: the plane means give the shifts
//! t = w·mean, the statistics of x + t are those of x centred per plane on μ − t, and the
//! gradients of t (hence of w and of x through the mean) are per-plane sums of the gradient of
//! x + t, which the backward's first pass already has.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::across::Across;
use super::planes::{Grouping, PlaneGeom, Standardized};
use super::{cpu_f32, grad_tensor, par_fill, use_cpu_kernels, with_f32, Activation};
use crate::kernels::{reduce, Isa};

/// `(x + w·GAP(x) − μ)/sqrt(σ² + ε)` for `x` (N, C, L), `w` (C); μ and σ² the biased batch
/// statistics per channel of `x + w·GAP(x)`, returned detached for the running buffers.
pub fn centre_standardize(x: &Tensor, w: &Tensor, eps: f64) -> Result<Standardized> {
    let geom = PlaneGeom::new(x, Grouping::Channel)?;
    if w.elem_count() != geom.c {
        bail!(
            "centre_standardize: expected {} centring weights, got shape {:?}",
            geom.c,
            w.dims()
        );
    }
    let across = Across::for_op(&geom, &[x, w])?;
    if !use_cpu_kernels(&[x, w]) {
        let shift = x
            .mean_keepdim(2)?
            .broadcast_mul(&w.reshape((1, geom.c, 1))?)?;
        let x1 = x.broadcast_add(&shift)?;
        let (one, zero) = (w.ones_like()?, w.zeros_like()?);
        return super::fallback::standardize(&x1, &one, &zero, &geom, eps);
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let stats = Arc::new(OnceLock::new());
    let op = CentreOp {
        geom,
        eps,
        across,
        stats: stats.clone(),
    };
    let y = if x.track_op() || w.track_op() {
        x.apply_op2(&w, op)?
    } else {
        x.apply_op2_no_bwd(&w, &op)?
    };
    let Some(s) = stats.get() else {
        bail!("centre_standardize: the forward pass recorded no statistics");
    };
    let mean = Tensor::from_vec(s.mean.clone(), geom.c, x.device())?;
    let var = Tensor::from_vec(s.var.clone(), geom.c, x.device())?;
    Ok(Standardized {
        y,
        mean,
        var,
        count: s.count,
    })
}

/// What the forward pass measured, per plane and per channel.
struct CentreStats {
    /// Σ x over each plane.
    sums: Vec<f64>,
    /// μ − t per plane: the value x is centred on, (x − centre)·r = x̂.
    centre: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    /// 1 / sqrt(σ² + ε) per channel.
    istd: Vec<f32>,
    /// Values per channel (over every rank, when synchronised).
    count: f64,
}

fn centre_stats(x: &[f32], w: &[f32], g: &PlaneGeom, eps: f64, across: &Across) -> CentreStats {
    let (l, isa) = (g.l, Isa::active());
    let sums: Vec<f64> = x
        .par_chunks(l)
        .with_min_len(g.min_planes())
        .map(|xp| reduce::sum(xp, isa))
        .collect();
    // The shifted plane sums Σ(x + t) = S·(1 + w), summed per channel.
    let mut mean = vec![0f64; g.c];
    for (p, s) in sums.iter().enumerate() {
        mean[p % g.c] += s * (1.0 + w[p % g.c] as f64);
    }
    let count = across.sum_with_count(&mut mean, g.count());
    let mean: Vec<f32> = mean.iter().map(|s| (s / count) as f32).collect();
    let centre: Vec<f32> = sums
        .iter()
        .enumerate()
        .map(|(p, s)| {
            let c = p % g.c;
            (mean[c] as f64 - w[c] as f64 * s / l as f64) as f32
        })
        .collect();
    let sq: Vec<f64> = x
        .par_chunks(l)
        .with_min_len(g.min_planes())
        .zip(&centre)
        .map(|(xp, &m)| reduce::centred_squares(xp, m, isa))
        .collect();
    let mut var = vec![0f64; g.c];
    for (p, s) in sq.iter().enumerate() {
        var[p % g.c] += s;
    }
    across.sum(&mut var);
    let var: Vec<f32> = var.iter().map(|s| (s / count) as f32).collect();
    let istd = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    CentreStats {
        sums,
        centre,
        mean,
        var,
        istd,
        count,
    }
}

struct CentreOp {
    geom: PlaneGeom,
    eps: f64,
    /// The ranks whose rows share the statistics (synchronised BN), if any.
    across: Across,
    /// Written by the forward pass; read by the caller (running buffers) and the backward.
    stats: Arc<OnceLock<CentreStats>>,
}

impl CustomOp2 for CentreOp {
    fn name(&self) -> &'static str {
        "asc-centre-standardize"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "centre_standardize")?;
        let w = cpu_f32(s2, l2, "centre_standardize")?;
        let st = centre_stats(x, w, g, self.eps, &self.across);
        let y = par_fill(x.len(), g.l, g.min_planes(), |p, yp| {
            let (m, r) = (st.centre[p], st.istd[p % g.c]);
            for (yv, xv) in yp.iter_mut().zip(&x[p * g.l..]) {
                yv.write((xv - m) * r);
            }
        });
        let _ = self.stats.set(st);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.l))))
    }

    /// With x1 = x + t, t = w·S/L per plane, and M values per channel, the standardization's
    /// ∂x1 = r·∂y − r/M·(A + x̂·B), A = Σ∂y, B = Σ∂y·x̂ per channel. Per plane G = Σ∂x1 =
    /// r·F − r/M·(L·A + B·X) with F = Σ∂y and X = Σx̂ = r·(S − L·centre); then
    /// ∂x = ∂x1 + w·G/L and ∂w = Σ G·S/L over the planes of a channel.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let Some(st) = self.stats.get() else {
            bail!("centre_standardize backward: no statistics from the forward pass");
        };
        let (m, l) = (st.count, g.l as f64);
        let (gx, dw) = with_f32(x, "centre_standardize backward", |xs| {
            with_f32(w, "centre_standardize backward", |ws| {
                with_f32(gy, "centre_standardize backward", |gys| {
                    with_f32(res, "centre_standardize backward", |ys| {
                        let sums: Vec<[f64; 2]> = xs
                            .par_chunks(g.l)
                            .zip(gys.par_chunks(g.l).zip(ys.par_chunks(g.l)))
                            .with_min_len(g.min_planes())
                            .enumerate()
                            .map(|(p, (xp, (gp, yp)))| {
                                Activation::Identity.moments(gp, yp, xp, st.centre[p])
                            })
                            .collect();
                        let (mut a, mut b) = (vec![0f64; g.c], vec![0f64; g.c]);
                        for (p, [f, e]) in sums.iter().enumerate() {
                            a[p % g.c] += f;
                            b[p % g.c] += e * st.istd[p % g.c] as f64;
                        }
                        self.across.sum_pair(&mut a, &mut b);
                        // G per plane, then ∂w.
                        let planes: Vec<f64> = sums
                            .iter()
                            .enumerate()
                            .map(|(p, [f, _])| {
                                let c = p % g.c;
                                let r = st.istd[c] as f64;
                                let xhat = r * (st.sums[p] - l * st.centre[p] as f64);
                                r * f - r / m * (l * a[c] + b[c] * xhat)
                            })
                            .collect();
                        let mut dw = vec![0f64; g.c];
                        for (p, gp) in planes.iter().enumerate() {
                            dw[p % g.c] += gp * st.sums[p] / l;
                        }
                        let gx = x.track_op().then(|| {
                            par_fill(xs.len(), g.l, g.min_planes(), |p, o| {
                                let c = p % g.c;
                                let r = st.istd[c] as f64;
                                let k1 = r as f32;
                                let k2 = (-r * r * b[c] / m) as f32;
                                let k3 = (-r * a[c] / m + ws[c] as f64 * planes[p] / l) as f32;
                                let centre = st.centre[p];
                                let at = p * g.l;
                                let (xp, gp) = (&xs[at..at + g.l], &gys[at..at + g.l]);
                                for ((ov, xv), dy) in o.iter_mut().zip(xp).zip(gp) {
                                    ov.write(k1 * dy + k2 * (xv - centre) + k3);
                                }
                            })
                        });
                        Ok((gx, dw.into_iter().map(|v| v as f32).collect::<Vec<_>>()))
                    })
                })
            })
        })?;
        Ok((grad_tensor(x, gx)?, grad_tensor(w, Some(dw))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .expect("difference")
    }

    /// Forward, statistics and both gradients against candle's autograd through the composition
    /// (GAP, broadcast add, the fallback standardization), with an offset mean and both signs of w.
    #[test]
    fn matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (3, 5, 41);
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (n, c, l), &dev)? + 1.5)?)?;
        let w = Var::from_tensor(&Tensor::new(&[0.3f32, -0.7, 0.0, 1.2, -0.2], &dev)?)?;
        let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
        let fast = centre_standardize(&x, &w, 1e-5)?;
        let geom = PlaneGeom::new(&x, Grouping::Channel)?;
        let x1 = x.broadcast_add(&x.mean_keepdim(2)?.broadcast_mul(&w.reshape((1, c, 1))?)?)?;
        let (one, zero) = (w.ones_like()?, w.zeros_like()?);
        let slow = super::super::fallback::standardize(&x1, &one, &zero, &geom, 1e-5)?;
        assert!(max_diff(&fast.y, &slow.y) < 1e-5, "y");
        assert!(max_diff(&fast.mean, &slow.mean) < 1e-5, "mean");
        assert!(max_diff(&fast.var, &slow.var) < 1e-4, "var");
        let g1 = (&fast.y * &r)?.sum_all()?.backward()?;
        let g2 = (&slow.y * &r)?.sum_all()?.backward()?;
        for (name, v) in [("x", &x), ("w", &w)] {
            let d = max_diff(g1.get(v).expect("grad"), g2.get(v).expect("grad"));
            assert!(d < 2e-4, "d{name} differs by {d}");
        }
        Ok(())
    }
}
