//! Max and average pooling with kernel, stride and padding per axis, and PyTorch's semantics
//! (`ceil_mode=False`; max pooling ignores padding; the first maximum in row-major window order
//! wins ties and NaN propagates; average pooling with `count_include_pad` selectable).
//!
//! Why: candle's `max_pool2d` backward is wrong (it scales by the mean of the max mask and, for
//! odd widths, routes gradient to the wrong columns; `docs/architecture.md` § "candle on CPU",
//! `docs/candle-defects.md`), and neither candle pool takes padding. The forward stores each
//! output's argmax so the backward is a plain scatter. CP-Mobile's strided shortcut is AvgPool 3×3
//! pad 1 with PyTorch's default `count_include_pad=True` (`docs/models.md` § cp-mobile).

use super::window::{valid_range, Window2d};
use super::{cpu_f32, use_cpu_kernels, with_f32};
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Max pooling of `x` (N, C, H, W) with `kernel`, `stride`, `padding` as (height, width).
/// The gradient goes to the first maximum of each window, as in PyTorch.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (geom, out) = Window2d::pool("max_pool2d", x.dims(), kernel, stride, padding)?;
    if !use_cpu_kernels(&[x]) {
        return super::fallback::max_pool2d(x, kernel, stride, padding);
    }
    let x = x.contiguous()?;
    let op = MaxPoolOp {
        geom,
        out,
        argmax: Mutex::new(None),
    };
    if x.track_op() {
        x.apply_op1(op)
    } else {
        x.apply_op1_no_bwd(&op)
    }
}

/// Average pooling of `x` (N, C, H, W). With `count_include_pad` the divisor counts padded cells
/// (PyTorch's default); without, only the real ones.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let (geom, out) = Window2d::pool("avg_pool2d", x.dims(), kernel, stride, padding)?;
    if !use_cpu_kernels(&[x]) {
        return super::fallback::avg_pool2d(x, kernel, stride, padding, count_include_pad);
    }
    let x = x.contiguous()?;
    let op = AvgPoolOp {
        geom,
        out,
        count_include_pad,
    };
    if x.track_op() {
        x.apply_op1(op)
    } else {
        x.apply_op1_no_bwd(&op)
    }
}

/// Max of one plane; writes values and, if given, the argmax (index into the plane).
///
/// Works a whole output row at a time, visiting kernel taps in row-major order `(i, j)` so that
/// for every window the candidates arrive in PyTorch's order and a strict `>` keeps the first
/// maximum; the inner loop over output columns is branch-light and contiguous for stride 1.
fn max_plane(
    x: &[f32],
    g: &Window2d,
    y: &mut [f32],
    mut idx: Option<&mut [u32]>,
    arg: &mut Vec<u32>,
) {
    arg.resize(g.ow, 0);
    for oh in 0..g.oh {
        let best = &mut y[oh * g.ow..(oh + 1) * g.ow];
        best.fill(f32::NEG_INFINITY);
        let hs = (oh * g.sh) as isize - g.ph as isize;
        // PyTorch's initial index: the clipped window start.
        let h0 = hs.max(0) as usize;
        for (ow, a) in arg.iter_mut().enumerate() {
            *a = (h0 * g.w + (ow * g.sw).saturating_sub(g.pw)) as u32;
        }
        for i in 0..g.kh {
            let ih = hs + i as isize;
            if ih < 0 || ih as usize >= g.h {
                continue;
            }
            let ih = ih as usize;
            let xr = &x[ih * g.w..(ih + 1) * g.w];
            for j in 0..g.kw {
                let (lo, hi) = valid_range(g.ow, g.w, g.sw, g.pw, j);
                if lo == hi {
                    continue;
                }
                let first = lo * g.sw + j - g.pw;
                let cand = xr[first..].iter().step_by(g.sw);
                for (k, ((b, a), &v)) in best[lo..hi]
                    .iter_mut()
                    .zip(&mut arg[lo..hi])
                    .zip(cand)
                    .enumerate()
                {
                    // PyTorch's CPU kernel: strictly greater (first max wins), NaN propagates.
                    if v > *b || v.is_nan() {
                        *b = v;
                        *a = (ih * g.w + first + k * g.sw) as u32;
                    }
                }
            }
        }
        if let Some(idx) = idx.as_deref_mut() {
            idx[oh * g.ow..(oh + 1) * g.ow].copy_from_slice(arg);
        }
    }
}

struct MaxPoolOp {
    geom: Window2d,
    out: [usize; 4],
    /// Argmax per output element, written by the forward, read by the backward.
    argmax: Mutex<Option<Vec<u32>>>,
}

impl MaxPoolOp {
    fn run(&self, x: &[f32], keep_argmax: bool) -> Result<(Vec<f32>, Option<Vec<u32>>)> {
        let g = &self.geom;
        if g.h * g.w > u32::MAX as usize {
            bail!(
                "max_pool2d: plane {}x{} too large for u32 indices",
                g.h,
                g.w
            );
        }
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut y = vec![0f32; g.n * g.c * ohw];
        if keep_argmax {
            let mut idx = vec![0u32; g.n * g.c * ohw];
            y.par_chunks_mut(ohw)
                .zip(idx.par_chunks_mut(ohw))
                .enumerate()
                .for_each_init(Vec::new, |arg, (p, (yp, ip))| {
                    max_plane(&x[p * hw..(p + 1) * hw], g, yp, Some(ip), arg)
                });
            Ok((y, Some(idx)))
        } else {
            y.par_chunks_mut(ohw)
                .enumerate()
                .for_each_init(Vec::new, |arg, (p, yp)| {
                    max_plane(&x[p * hw..(p + 1) * hw], g, yp, None, arg)
                });
            Ok((y, None))
        }
    }
}

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "asc-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "max_pool2d")?;
        let (y, idx) = self.run(x, true)?;
        *self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg("max_pool2d: poisoned argmax lock".into()))? = idx;
        Ok((CpuStorage::F32(y), Shape::from(self.out.to_vec())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = &self.geom;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut guard = self
            .argmax
            .lock()
            .map_err(|_| candle_core::Error::Msg("max_pool2d: poisoned argmax lock".into()))?;
        if guard.is_none() {
            // Only reachable if the forward ran without recording (it always records): recompute.
            let idx = with_f32(arg, "max_pool2d backward", |x| Ok(self.run(x, true)?.1))?;
            *guard = idx;
        }
        let idx = guard.as_deref().unwrap_or(&[]);
        let gx = with_f32(grad, "max_pool2d backward", |gy| {
            let mut gx = vec![0f32; g.n * g.c * hw];
            gx.par_chunks_mut(hw).enumerate().for_each(|(p, gp)| {
                let gyp = &gy[p * ohw..(p + 1) * ohw];
                for (&i, &v) in idx[p * ohw..(p + 1) * ohw].iter().zip(gyp) {
                    gp[i as usize] += v;
                }
            });
            Ok(gx)
        })?;
        Ok(Some(Tensor::from_vec(gx, arg.shape(), arg.device())?))
    }
}

struct AvgPoolOp {
    geom: Window2d,
    out: [usize; 4],
    count_include_pad: bool,
}

impl AvgPoolOp {
    /// 1 / divisor per output position (the same for every plane).
    fn inv_divisors(&self) -> Vec<f32> {
        let g = &self.geom;
        let mut inv = Vec::with_capacity(g.oh * g.ow);
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let (h0, h1, w0, w1, padded) = g.window(oh, ow);
                let n = if self.count_include_pad {
                    padded
                } else {
                    (h1 - h0) * (w1 - w0)
                };
                inv.push(1.0 / n as f32);
            }
        }
        inv
    }
}

/// `dst[k] += src[k · step]` for every k of `dst`. Stride 1 runs over plain slices, which the
/// compiler vectorises; a `step_by` iterator it does not, even with a step of 1.
#[inline(always)]
fn add_strided(dst: &mut [f32], src: &[f32], step: usize) {
    if step == 1 {
        let n = dst.len();
        for (d, s) in dst.iter_mut().zip(&src[..n]) {
            *d += s;
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src.iter().step_by(step)) {
            *d += s;
        }
    }
}

/// `dst[k · step] += src[k]` for every k of `src`: the adjoint of [`add_strided`].
#[inline(always)]
fn scatter_add_strided(dst: &mut [f32], src: &[f32], step: usize) {
    if step == 1 {
        for (d, s) in dst[..src.len()].iter_mut().zip(src) {
            *d += s;
        }
    } else {
        for (d, s) in dst.iter_mut().step_by(step).zip(src) {
            *d += s;
        }
    }
}

/// Calls `f(ih, lo, hi, first)` for each kernel tap `(i, j)` of output row `oh` that reads input
/// row `ih`: outputs `lo..hi` of the row read input columns `first, first + sw, ...`.
#[inline]
fn for_taps(g: &Window2d, oh: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let hs = (oh * g.sh) as isize - g.ph as isize;
    for i in 0..g.kh {
        let ih = hs + i as isize;
        if ih < 0 || ih as usize >= g.h {
            continue;
        }
        for j in 0..g.kw {
            let (lo, hi) = valid_range(g.ow, g.w, g.sw, g.pw, j);
            if lo < hi {
                f(ih as usize, lo, hi, lo * g.sw + j - g.pw);
            }
        }
    }
}

impl CustomOp1 for AvgPoolOp {
    fn name(&self) -> &'static str {
        "asc-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s, l, "avg_pool2d")?;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let mut y = vec![0f32; g.n * g.c * ohw];
        let inv = self.inv_divisors();
        y.par_chunks_mut(ohw).enumerate().for_each(|(p, yp)| {
            let xp = &x[p * hw..(p + 1) * hw];
            for oh in 0..g.oh {
                let yr = &mut yp[oh * g.ow..(oh + 1) * g.ow];
                for_taps(g, oh, |ih, lo, hi, first| {
                    add_strided(&mut yr[lo..hi], &xp[ih * g.w + first..], g.sw);
                });
                for (yv, d) in yr.iter_mut().zip(&inv[oh * g.ow..(oh + 1) * g.ow]) {
                    *yv *= d;
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from(self.out.to_vec())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = &self.geom;
        let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
        let gx = with_f32(grad, "avg_pool2d backward", |gy| {
            let mut gx = vec![0f32; g.n * g.c * hw];
            let inv = self.inv_divisors();
            gx.par_chunks_mut(hw)
                .enumerate()
                .for_each_init(Vec::new, |v, (p, gp)| {
                    let gyp = &gy[p * ohw..(p + 1) * ohw];
                    for oh in 0..g.oh {
                        let r = oh * g.ow..(oh + 1) * g.ow;
                        v.clear();
                        v.extend(gyp[r.clone()].iter().zip(&inv[r]).map(|(a, b)| a * b));
                        for_taps(g, oh, |ih, lo, hi, first| {
                            scatter_add_strided(&mut gp[ih * g.w + first..], &v[lo..hi], g.sw);
                        });
                    }
                });
            Ok(gx)
        })?;
        Ok(Some(Tensor::from_vec(gx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn check_against_fallback(avg: bool) -> Result<()> {
        let dev = Device::Cpu;
        let cases = [
            ((3, 3), (1, 2), (1, 1)),
            ((3, 3), (2, 1), (1, 1)),
            ((2, 2), (2, 2), (0, 0)),
        ];
        for (k, s, p) in cases {
            // Values on a coarse grid so max pooling sees ties.
            let x = (Tensor::randn(0f32, 2., (2, 3, 7, 11), &dev)?.round()? * 0.5)?;
            let x = Var::from_tensor(&x)?;
            let (y, yr) = if avg {
                (
                    avg_pool2d(&x, k, s, p, true)?,
                    super::super::fallback::avg_pool2d(&x, k, s, p, true)?,
                )
            } else {
                (
                    max_pool2d(&x, k, s, p)?,
                    super::super::fallback::max_pool2d(&x, k, s, p)?,
                )
            };
            let d = (&y - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "forward differs by {d}");
            let gy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
            let g1 = (&y * &gy)?.sum_all()?.backward()?;
            let g2 = (&yr * &gy)?.sum_all()?.backward()?;
            let (a, b) = (g1.get(&x).expect("grad"), g2.get(&x).expect("grad"));
            let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "gradient differs by {d} for {k:?} {s:?} {p:?}");
        }
        Ok(())
    }

    #[test]
    fn max_pool_matches_fallback() -> Result<()> {
        check_against_fallback(false)
    }

    #[test]
    fn avg_pool_matches_fallback() -> Result<()> {
        check_against_fallback(true)
    }

    #[test]
    fn rejects_too_much_padding() {
        let x = Tensor::zeros((1, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, (3, 3), (1, 1), (2, 1)).is_err());
        assert!(avg_pool2d(&x, (2, 2), (1, 1), (0, 0), true).is_ok());
    }
}
