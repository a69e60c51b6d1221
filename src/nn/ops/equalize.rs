//! Per-sample scaling to a common root mean square or l2 norm (L2BN's first step, docs/norms.md
//! §3), as one kernel with its own backward.
//!
//! Why: as candle ops it is a square, a reduction, a broadcast division and their backward, about
//! eight passes over the activation, and it made L2BN the slowest BN-like layer in CP-Mobile;
//! here it is one read and one write each way.

use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::planes::{Grouping, PlaneGeom};
use super::{cpu_f32, par_fill, use_cpu_kernels, with_f32};
use crate::kernels::{reduce, Isa};

/// `x / max(sqrt(Σx² / d), floor)` per sample of `x` (N, C, L), with `d` = C·L when `mean`
/// (the RMS) and 1 otherwise (the l2 norm, `F.normalize`); gradients flow through the divisor
/// except where the floor applies.
pub fn equalize_samples(x: &Tensor, mean: bool, floor: f64) -> Result<Tensor> {
    let geom = PlaneGeom::new(x, Grouping::Channel)?;
    let d = if mean { (geom.c * geom.l) as f64 } else { 1.0 };
    if !use_cpu_kernels(&[x]) {
        let (n, _, _) = x.dims3()?;
        let s = x.sqr()?.flatten_from(1)?.sum_keepdim(1)?;
        let r = (s / d)?.sqrt()?.maximum(floor)?.reshape((n, 1, 1))?;
        return x.broadcast_div(&r);
    }
    let x = x.contiguous()?;
    let op = Equalize {
        geom,
        d,
        floor,
        norms: OnceLock::new(),
    };
    if x.track_op() {
        x.apply_op1(op)
    } else {
        x.apply_op1_no_bwd(&op)
    }
}

struct Equalize {
    geom: PlaneGeom,
    d: f64,
    floor: f64,
    /// The per-sample divisors of the forward pass, kept for the backward (no second read of x).
    norms: OnceLock<Vec<f64>>,
}

impl Equalize {
    /// Per sample: the divisor before the floor, r = sqrt(Σx²/d).
    fn norms(&self, x: &[f32]) -> Vec<f64> {
        let (g, isa) = (&self.geom, Isa::active());
        let per_plane: Vec<f64> = x
            .par_chunks(g.l)
            .with_min_len(g.min_planes())
            .map(|xp| reduce::centred_squares(xp, 0.0, isa))
            .collect();
        per_plane
            .chunks(g.c)
            .map(|s| (s.iter().sum::<f64>() / self.d).sqrt())
            .collect()
    }

    /// Per-sample Σ over its planes of `f(plane index)`.
    fn per_sample(&self, f: impl Fn(usize) -> f64 + Sync + Send) -> Vec<f64> {
        let g = &self.geom;
        let per_plane: Vec<f64> = (0..g.n * g.c)
            .into_par_iter()
            .with_min_len(g.min_planes())
            .map(f)
            .collect();
        per_plane.chunks(g.c).map(|s| s.iter().sum()).collect()
    }
}

impl CustomOp1 for Equalize {
    fn name(&self) -> &'static str {
        "asc-equalize-samples"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s, l, "equalize_samples")?;
        let norms = self.norms(x);
        let scale: Vec<f32> = norms
            .iter()
            .map(|r| (1.0 / r.max(self.floor)) as f32)
            .collect();
        let y = par_fill(x.len(), g.l, g.min_planes(), |p, yp| {
            let s = scale[p / g.c];
            for (yv, xv) in yp.iter_mut().zip(&x[p * g.l..]) {
                yv.write(xv * s);
            }
        });
        // A second forward of the same op (never done by candle) would keep the first divisors.
        let _ = self.norms.set(norms);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.l))))
    }

    /// With s = 1/r: ∂x = s·∂y − x·s³/d·Σ∂y·x per sample; where r < floor, ∂x = ∂y/floor.
    fn bwd(&self, x: &Tensor, _y: &Tensor, gy: &Tensor) -> Result<Option<Tensor>> {
        let g = self.geom;
        let gx = with_f32(x, "equalize backward", |xs| {
            with_f32(gy, "equalize backward", |gys| {
                let Some(r) = self.norms.get() else {
                    candle_core::bail!("equalize backward: no divisors from the forward pass");
                };
                let dot = self.per_sample(|p| {
                    let (xp, gp) = (&xs[p * g.l..(p + 1) * g.l], &gys[p * g.l..(p + 1) * g.l]);
                    reduce::dot(xp, gp, Isa::active())
                });
                let coef: Vec<(f32, f32)> = r
                    .iter()
                    .zip(&dot)
                    .map(|(&r, &dot)| {
                        if r < self.floor {
                            ((1.0 / self.floor) as f32, 0.0)
                        } else {
                            let s = 1.0 / r;
                            (s as f32, (-s * s * s / self.d * dot) as f32)
                        }
                    })
                    .collect();
                Ok(par_fill(xs.len(), g.l, g.min_planes(), |p, o| {
                    let (a, b) = coef[p / g.c];
                    let at = p * g.l;
                    let (xp, gp) = (&xs[at..at + g.l], &gys[at..at + g.l]);
                    for ((ov, xv), dv) in o.iter_mut().zip(xp).zip(gp) {
                        ov.write(a * dv + b * xv);
                    }
                }))
            })
        })?;
        Tensor::from_vec(gx, x.shape(), x.device()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Output and gradient against the candle-op composition, both divisors, and a sample below
    /// the floor (all zeros: gradient ∂y/floor).
    #[test]
    fn matches_candle_autograd() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, l) = (4, 3, 301);
        for mean in [true, false] {
            let mut v = Tensor::randn(0f32, 1.5, (n, c, l), &dev)?.to_vec3::<f32>()?;
            v[2].iter_mut().for_each(|row| row.fill(0.0));
            let x = Var::from_tensor(&Tensor::new(v, &dev)?)?;
            let r = Tensor::randn(0f32, 1.0, (n, c, l), &dev)?;
            let d = if mean { (c * l) as f64 } else { 1.0 };
            let y1 = equalize_samples(&x, mean, 1e-12)?;
            let s = x.sqr()?.flatten_from(1)?.sum_keepdim(1)?;
            let y2 = x.broadcast_div(&(s / d)?.sqrt()?.maximum(1e-12)?.reshape((n, 1, 1))?)?;
            let dy = (&y1 - &y2)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(dy < 1e-5, "mean={mean}: output differs by {dy}");
            let g1 = (&y1 * &r)?.sum_all()?.backward()?;
            let g2 = (&y2 * &r)?.sum_all()?.backward()?;
            let (a, b) = (g1.get(&x).expect("grad"), g2.get(&x).expect("grad"));
            // The all-zero sample: candle's sqrt backward at 0 is NaN/inf there; ours is ∂y/floor.
            let live = [0usize, 1, 3];
            for &i in &live {
                let d = (a.get(i)? - b.get(i)?)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                let scale = b.get(i)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                assert!(d <= 1e-4 * scale.max(1.0), "mean={mean} sample {i}: {d}");
            }
            let zero = a.get(2)?;
            let want = (r.get(2)? / 1e-12)?;
            let d = ((zero - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?)
                / 1e12;
            assert!(d < 1e-4, "floor gradient off by {d}·1e12");
        }
        Ok(())
    }
}
