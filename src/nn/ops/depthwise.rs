//! Depthwise 2-D convolution (groups = channels, one filter per channel) as a direct kernel with
//! separate height/width strides and paddings.
//!
//! Why: candle runs a grouped conv as one conv per group plus a `cat` (345 ms forward+backward
//! for 64 channels against 7.6 ms for a direct kernel, `docs/architecture.md` § "candle on CPU"),
//! and CP-Mobile's blocks are depthwise 3×3 with strides (2, 2), (1, 2), (2, 1) (`docs/models.md`
//! § cp-mobile). The forward pass is the shared kernel of [`crate::kernels::depthwise`] (which
//! inference runs too); the backward pass lives here. Forward and input gradient are parallel over
//! (batch, channel) planes; the weight gradient over channels, summed in f64 across the batch.

use super::planes::lane_sum;
use super::window::{valid_range, Window2d};
use super::{cpu_f32, grad_tensor, use_cpu_kernels, with_f32};
use crate::kernels::{depthwise as kdw, Isa};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Depthwise convolution of `x` (N, C, H, W) with `w` (C, 1, KH, KW); `stride` and `padding` as
/// (height, width). No bias, no dilation, channel multiplier 1.
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let geom = Window2d::depthwise(x.dims(), w.dims(), stride, padding)?;
    if !use_cpu_kernels(&[x, w]) {
        return super::fallback::depthwise_conv2d(x, w, stride, padding);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let op = DepthwiseOp { geom };
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, op)
    } else {
        x.apply_op2_no_bwd(&w, &op)
    }
}

/// The depthwise kernel's own uses of its geometry.
impl Window2d {
    /// The forward kernel's geometry, one sample's worth.
    fn kernel(&self) -> kdw::Depthwise {
        kdw::Depthwise {
            c: self.c,
            h: self.h,
            w: self.w,
            kh: self.kh,
            kw: self.kw,
            sh: self.sh,
            sw: self.sw,
            ph: self.ph,
            pw: self.pw,
        }
    }

    /// Per kernel column j, the output columns `lo..hi` whose input column is inside the plane
    /// (computed once per backward call: per row it cost two divisions, on rows of 17 values).
    fn col_ranges(&self) -> Vec<(usize, usize)> {
        (0..self.kw)
            .map(|j| valid_range(self.ow, self.w, self.sw, self.pw, j))
            .collect()
    }

    /// Calls `f(oh, ih, i)` for every output row `oh` and kernel row `i` that reads input row `ih`.
    #[inline]
    fn for_rows(&self, mut f: impl FnMut(usize, usize, usize)) {
        for oh in 0..self.oh {
            for i in 0..self.kh {
                let ih = (oh * self.sh + i) as isize - self.ph as isize;
                if ih >= 0 && (ih as usize) < self.h {
                    f(oh, ih as usize, i);
                }
            }
        }
    }
}

/// One input plane of the batch: its index and, when the input needs a gradient, its slice of it.
type PlaneSlot<'a> = (usize, Option<&'a mut [f32]>);

/// Input gradient of one plane (added into `gx`) and the plane's contribution to the kernel
/// gradient (added into `gk`, f64).
fn backward_plane(
    x: &[f32],
    k: &[f32],
    gy: &[f32],
    g: &Window2d,
    cols: &[(usize, usize)],
    gx: Option<&mut [f32]>,
    gk: &mut [f64],
) {
    if let Some(gx) = gx {
        g.for_rows(|oh, ih, i| {
            let gyr = &gy[oh * g.ow..(oh + 1) * g.ow];
            let gxr = &mut gx[ih * g.w..(ih + 1) * g.w];
            for j in 0..g.kw {
                let kv = k[i * g.kw + j];
                let (lo, hi) = cols[j];
                if lo == hi {
                    continue;
                }
                let first = lo * g.sw + j - g.pw;
                if g.sw == 1 {
                    for (xv, yv) in gxr[first..first + hi - lo].iter_mut().zip(&gyr[lo..hi]) {
                        *xv += kv * yv;
                    }
                } else {
                    for (xv, yv) in gxr[first..].iter_mut().step_by(g.sw).zip(&gyr[lo..hi]) {
                        *xv += kv * yv;
                    }
                }
            }
        });
    }
    let mut acc = vec![0f64; g.kh * g.kw];
    g.for_rows(|oh, ih, i| {
        let gyr = &gy[oh * g.ow..(oh + 1) * g.ow];
        let xr = &x[ih * g.w..(ih + 1) * g.w];
        for j in 0..g.kw {
            let (lo, hi) = cols[j];
            if lo == hi {
                continue;
            }
            let first = lo * g.sw + j - g.pw;
            // Lanes break the add chain a plain `.sum()` keeps in order (it cannot vectorize).
            let (gyr, xr) = (&gyr[lo..hi], &xr[first..]);
            let s = if g.sw == 1 {
                lane_sum(hi - lo, |t| gyr[t] * xr[t])
            } else {
                lane_sum(hi - lo, |t| gyr[t] * xr[t * g.sw])
            };
            acc[i * g.kw + j] += s;
        }
    });
    for (a, b) in gk.iter_mut().zip(&acc) {
        *a += b;
    }
}

struct DepthwiseOp {
    geom: Window2d,
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "asc-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "depthwise_conv2d")?;
        let w = cpu_f32(s2, l2, "depthwise_conv2d")?;
        let y = kdw::forward(x, g.n, w, None, &g.kernel(), Isa::active());
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.kh * g.kw);
        let cols = g.col_ranges();
        let need_gx = x.track_op();
        let need_gw = w.track_op();
        let (gx, gw) = with_f32(x, "depthwise backward", |xs| {
            with_f32(w, "depthwise backward", |ws| {
                with_f32(gy, "depthwise backward", |gys| {
                    let mut gx = if need_gx {
                        vec![0f32; g.n * g.c * hw]
                    } else {
                        Vec::new()
                    };
                    // Planes grouped by channel so one task owns a channel's kernel gradient.
                    let mut by_channel: Vec<Vec<PlaneSlot<'_>>> =
                        (0..g.c).map(|_| Vec::with_capacity(g.n)).collect();
                    if need_gx {
                        for (p, plane) in gx.chunks_mut(hw.max(1)).enumerate() {
                            by_channel[p % g.c].push((p, Some(plane)));
                        }
                    } else {
                        for p in 0..g.n * g.c {
                            by_channel[p % g.c].push((p, None));
                        }
                    }
                    let gw: Vec<f32> = by_channel
                        .into_par_iter()
                        .enumerate()
                        .flat_map_iter(|(c, planes)| {
                            let k = &ws[c * kk..(c + 1) * kk];
                            let mut gk = vec![0f64; kk];
                            for (p, gxp) in planes {
                                backward_plane(
                                    &xs[p * hw..(p + 1) * hw],
                                    k,
                                    &gys[p * ohw..(p + 1) * ohw],
                                    &g,
                                    &cols,
                                    gxp,
                                    &mut gk,
                                );
                            }
                            gk.into_iter().map(|v| v as f32)
                        })
                        .collect();
                    Ok((need_gx.then_some(gx), need_gw.then_some(gw)))
                })
            })
        })?;
        Ok((grad_tensor(x, gx)?, grad_tensor(w, gw)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_fallback() -> Result<()> {
        let dev = Device::Cpu;
        for (stride, padding) in [((1, 2), (1, 1)), ((2, 1), (1, 1)), ((2, 2), (0, 1))] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 7, 11), &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 1, 3, 3), &dev)?)?;
            let y = depthwise_conv2d(&x, &w, stride, padding)?;
            let yr = super::super::fallback::depthwise_conv2d(&x, &w, stride, padding)?;
            let d = (&y - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "forward differs by {d}");
            let gy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
            let g1 = (&y * &gy)?.sum_all()?.backward()?;
            let g2 = (&yr * &gy)?.sum_all()?.backward()?;
            for v in [&x, &w] {
                let a = g1.get(v).expect("grad");
                let b = g2.get(v).expect("grad");
                let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-3, "gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_grouped_weight() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let e = depthwise_conv2d(&x, &w, (1, 1), (1, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 2, 3, 3]"), "{e}");
    }
}
