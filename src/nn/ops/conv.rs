//! 2-D convolution (groups = 1) with separate height/width strides and paddings. Stride 1
//! (every 3×3 and 7×7 conv of the baseline CNN) runs the direct kernel of [`crate::kernels::conv`]
//! forward and, as the forward pass of the adjoint convolution, for the input gradient. Strided
//! convs go through im2col + `gemm` forward and gemm + col2im for the input gradient; their
//! weight gradient is im2col + gemm, a stride-1 conv's the direct weight-gradient kernel.
//! Parallel over the batch.
//!
//! Why: candle's conv backward is a naive loop parallel only over input channels and its conv
//! takes a single stride (`docs/architecture.md` § "candle on CPU"); CP-Mobile's stem and blocks
//! need strides (2, 2), (1, 2), (2, 1) (`docs/models.md` § cp-mobile). The 1×1 stride-1 unpadded
//! case (the expand/project convs) skips im2col: the input plane already is the column matrix.

use super::window::{valid_range, Window2d};
use super::{cpu_f32, grad_tensor, use_cpu_kernels, with_f32};
use crate::kernels::{conv as kconv, Isa};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// 2-D convolution of `x` (N, C, H, W) with `w` (O, C, KH, KW), `stride` and `padding` given as
/// (height, width). No bias (add it with `broadcast_add`), no dilation. Both `x` and `w` get
/// gradients; the input gradient is skipped when `x` is not part of a graph (the first layer).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let geom = Window2d::conv(x.dims(), w.dims(), stride, padding)?;
    if !use_cpu_kernels(&[x, w]) {
        return super::fallback::conv2d(x, w, stride, padding);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let op = Conv2dOp { geom };
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, op)
    } else {
        x.apply_op2_no_bwd(&w, &op)
    }
}

/// The convolution's own uses of its geometry.
impl Window2d {
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// Output rows per column tile, so that a tile's (C·KH·KW × rows·OW) column matrix stays in
    /// the L2 cache between im2col and the gemm that reads it (a whole plane's column matrix,
    /// 43 MB for the baseline CNN's second 7×7 conv on 64 × 216, went through DRAM twice).
    fn tile_rows(&self) -> usize {
        (TILE_FLOATS / (self.ckk() * self.ow).max(1)).clamp(1, self.oh.max(1))
    }

    /// The output-row ranges of the column tiles.
    fn tiles(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let t = self.tile_rows();
        (0..self.oh)
            .step_by(t)
            .map(move |r0| (r0, (r0 + t).min(self.oh)))
    }

    /// The direct kernel's geometry when it applies: stride 1 and not 1×1 (a 1×1 conv is a plain
    /// matrix product, which gemm does best).
    fn direct(&self) -> Option<kconv::Conv> {
        self.strided().stride_one().filter(|_| !self.is_pointwise())
    }

    /// 1×1, stride 1, no padding: the input plane is its own column matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// The gemm parallelism for one batch element: none when rayon already spreads the batch over
/// the threads, all threads otherwise (batch 1 at inference or in tests).
fn inner_parallelism(n: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if n >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// Values in one column tile: 1 MiB of f32.
const TILE_FLOATS: usize = 1 << 18;

/// Writes the (C·KH·KW, (r1−r0)·OW) column matrix of output rows `r0..r1` of one input plane
/// stack `x` (C, H, W).
fn im2col(x: &[f32], g: &Window2d, (r0, r1): (usize, usize), col: &mut [f32]) {
    let ohw = (r1 - r0) * g.ow;
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let dst = &mut col[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g.ow, g.w, g.sw, g.pw, j);
                for oh in r0..r1 {
                    let d = &mut dst[(oh - r0) * g.ow..(oh - r0 + 1) * g.ow];
                    let ih = (oh * g.sh + i) as isize - g.ph as isize;
                    if ih < 0 || ih as usize >= g.h || lo == hi {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                    d[..lo].fill(0.0);
                    d[hi..].fill(0.0);
                    let first = lo * g.sw + j - g.pw;
                    if g.sw == 1 {
                        d[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        for (k, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = src[first + k * g.sw];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the (C·KH·KW, (r1−r0)·OW) column-gradient matrix of output rows `r0..r1` back onto the
/// input gradient `gx` (C, H, W): the adjoint of [`im2col`].
fn col2im(col: &[f32], g: &Window2d, (r0, r1): (usize, usize), gx: &mut [f32]) {
    let ohw = (r1 - r0) * g.ow;
    for c in 0..g.c {
        let plane = &mut gx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let src = &col[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g.ow, g.w, g.sw, g.pw, j);
                if lo == hi {
                    continue;
                }
                for oh in r0..r1 {
                    let ih = (oh * g.sh + i) as isize - g.ph as isize;
                    if ih < 0 || ih as usize >= g.h {
                        continue;
                    }
                    let s = &src[(oh - r0) * g.ow..(oh - r0 + 1) * g.ow];
                    let d = &mut plane[ih as usize * g.w..(ih as usize + 1) * g.w];
                    let first = lo * g.sw + j - g.pw;
                    if g.sw == 1 {
                        for (dv, sv) in d[first..first + hi - lo].iter_mut().zip(&s[lo..hi]) {
                            *dv += sv;
                        }
                    } else {
                        for (k, sv) in s[lo..hi].iter().enumerate() {
                            d[first + k * g.sw] += sv;
                        }
                    }
                }
            }
        }
    }
}

/// Matrix product `dst (m×n) = [dst +] a (m×k) · b (k×n)`, `dst` with row stride `dst_rs` and
/// `a`, `b` with explicit (row, column) strides, so transposes and column tiles cost nothing.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (&mut [f32], usize),
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    par: Parallelism,
) {
    debug_assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    debug_assert!(m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    debug_assert!(n == 0 || k == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the slices cover every element addressed by the given sizes and strides (checked
    // by the callers' shape validation and the debug assertions above); dst does not alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn forward(x: &[f32], w: &[f32], g: &Window2d) -> Vec<f32> {
    if let Some(d) = g.direct() {
        return kconv::forward(x, g.n, &kconv::Packed::new(d, w, None, Isa::active()));
    }
    let (ckk, ohw) = (g.ckk(), g.ohw());
    let chw = g.c * g.h * g.w;
    let mut out = vec![0f32; g.n * g.o * ohw];
    let par = inner_parallelism(g.n);
    out.par_chunks_mut(g.o * ohw)
        .zip(x.par_chunks(chw))
        .for_each_init(Vec::new, |col: &mut Vec<f32>, (yn, xn)| {
            if g.is_pointwise() {
                matmul(
                    (g.o, ohw, ckk),
                    (yn, ohw),
                    false,
                    w,
                    (ckk, 1),
                    xn,
                    (ohw, 1),
                    par,
                );
                return;
            }
            for (r0, r1) in g.tiles() {
                let tn = (r1 - r0) * g.ow;
                col.resize(ckk * tn, 0.0);
                im2col(xn, g, (r0, r1), col);
                let dst = (&mut yn[r0 * g.ow..], ohw);
                matmul((g.o, tn, ckk), dst, false, w, (ckk, 1), col, (tn, 1), par);
            }
        });
    out
}

/// Gradients wrt input (if `need_gx`) and weight (if `need_gw`) in one pass over the batch.
fn backward(
    x: &[f32],
    w: &[f32],
    gy: &[f32],
    g: &Window2d,
    need_gx: bool,
    need_gw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (ckk, ohw) = (g.ckk(), g.ohw());
    let chw = g.c * g.h * g.w;
    let par = inner_parallelism(g.n);
    let mut gx = if need_gx {
        vec![0f32; g.n * chw]
    } else {
        Vec::new()
    };
    let gx_planes: Vec<Option<&mut [f32]>> = if need_gx {
        gx.chunks_mut(chw).map(Some).collect()
    } else {
        (0..g.n).map(|_| None).collect()
    };
    // One weight-gradient partial per sample, summed in sample order below: the sum is the same
    // whatever the thread count and however rayon splits the batch (tests/reproducibility.rs).
    let partials: Vec<Vec<f32>> = gx_planes
        .into_par_iter()
        .enumerate()
        .map_init(Vec::new, |col: &mut Vec<f32>, (n, gxn)| {
            let xn = &x[n * chw..(n + 1) * chw];
            let gyn = &gy[n * g.o * ohw..(n + 1) * g.o * ohw];
            // A stride-1 conv's weight gradient comes from the direct kernel; the column
            // matrices below then serve only the input gradient, if that is needed at all.
            let direct_gw = g
                .direct()
                .filter(|_| need_gw)
                .map(|d| kconv::weight_gradient(xn, gyn, &d, Isa::active()));
            let need_gw = need_gw && direct_gw.is_none();
            let mut gw =
                direct_gw.unwrap_or_else(|| vec![0f32; if need_gw { g.o * ckk } else { 0 }]);
            if gxn.is_none() && !need_gw {
                return gw;
            }
            if g.is_pointwise() {
                if need_gw {
                    // gw (O×C) += gy_n (O×HW) · x_n^T (HW×C)
                    let dst = (gw.as_mut_slice(), ckk);
                    matmul((g.o, ckk, ohw), dst, true, gyn, (ohw, 1), xn, (1, ohw), par);
                }
                if let Some(gxn) = gxn {
                    // gx_n (C×HW) = w^T (C×O) · gy_n (O×HW)
                    let dst = (gxn, ohw);
                    matmul((ckk, ohw, g.o), dst, false, w, (1, ckk), gyn, (ohw, 1), par);
                }
                return gw;
            }
            let mut gxn = gxn;
            for (r0, r1) in g.tiles() {
                let tn = (r1 - r0) * g.ow;
                let gy_tile = &gyn[r0 * g.ow..];
                col.resize(ckk * tn, 0.0);
                if need_gw {
                    im2col(xn, g, (r0, r1), col);
                    // gw (O×CKK) += gy_tile (O×tn) · cols^T (tn×CKK)
                    let dst = (gw.as_mut_slice(), ckk);
                    matmul(
                        (g.o, ckk, tn),
                        dst,
                        true,
                        gy_tile,
                        (ohw, 1),
                        col.as_slice(),
                        (1, tn),
                        par,
                    );
                }
                if let Some(gxn) = gxn.as_deref_mut() {
                    // dcol (CKK×tn) = w^T (CKK×O) · gy_tile (O×tn)
                    let dst = (col.as_mut_slice(), tn);
                    matmul(
                        (ckk, tn, g.o),
                        dst,
                        false,
                        w,
                        (1, ckk),
                        gy_tile,
                        (ohw, 1),
                        par,
                    );
                    col2im(col, g, (r0, r1), gxn);
                }
            }
            gw
        })
        .collect();
    let gw = need_gw.then(|| {
        let mut sum = vec![0f32; g.o * ckk];
        for p in &partials {
            for (s, v) in sum.iter_mut().zip(p) {
                *s += v;
            }
        }
        sum
    });
    (need_gx.then_some(gx), gw)
}

struct Conv2dOp {
    geom: Window2d,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "asc-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "conv2d")?;
        let w = cpu_f32(s2, l2, "conv2d")?;
        let y = forward(x, w, g);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = &self.geom;
        let (need_gx, need_gw) = (x.track_op(), w.track_op());
        let adjoint = g.direct().and_then(|d| Some((d, d.adjoint()?)));
        let (gx, gw) = with_f32(x, "conv2d backward", |xs| {
            with_f32(w, "conv2d backward", |ws| {
                with_f32(gy, "conv2d backward", |gys| {
                    let Some((d, a)) = adjoint.filter(|_| need_gx) else {
                        return Ok(backward(xs, ws, gys, g, need_gx, need_gw));
                    };
                    let aw = kconv::adjoint_weights(&d, ws);
                    let gx =
                        kconv::forward(gys, g.n, &kconv::Packed::new(a, &aw, None, Isa::active()));
                    let (_, gw) = backward(xs, ws, gys, g, false, need_gw);
                    Ok((Some(gx), gw))
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

    /// Our CPU kernel against the candle-op fallback at a shape with odd widths, padding and an
    /// asymmetric stride (the PyTorch comparison lives in `tests/ops_torch.rs`).
    #[test]
    fn matches_fallback() -> Result<()> {
        let dev = Device::Cpu;
        for (stride, padding, k) in [
            ((1, 2), (1, 1), 3),
            ((2, 1), (0, 2), 3),
            ((1, 1), (0, 0), 1),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 7, 11), &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3, k, k), &dev)?)?;
            let y = conv2d(&x, &w, stride, padding)?;
            let yr = super::super::fallback::conv2d(&x, &w, stride, padding)?;
            let gy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
            let d = (&y - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "forward differs by {d}");
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

    /// A plane wide enough that its column matrix is cut into one-row tiles (C·49·OW > 2^18),
    /// at an odd height so the last tile is not a full one: forward and both gradients.
    #[test]
    fn tiled_columns_match_fallback() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 16, 5, 401), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (3, 16, 7, 7), &dev)?)?;
        let geom = Window2d::conv(x.dims(), w.dims(), (1, 1), (3, 3))?;
        assert_eq!(geom.tile_rows(), 1, "the test must cover tiling");
        let y = conv2d(&x, &w, (1, 1), (3, 3))?;
        let yr = super::super::fallback::conv2d(&x, &w, (1, 1), (3, 3))?;
        let d = (&y - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "forward differs by {d}");
        let gy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
        let g1 = (&y * &gy)?.sum_all()?.backward()?;
        let g2 = (&yr * &gy)?.sum_all()?.backward()?;
        for v in [&x, &w] {
            let (a, b) = (g1.get(v).expect("grad"), g2.get(v).expect("grad"));
            let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 2e-3, "gradient differs by {d}");
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 4, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let e = conv2d(&x, &w, (1, 1), (0, 0)).unwrap_err().to_string();
        assert!(e.contains("[1, 3, 5, 5]"), "{e}");
        let w = Tensor::zeros((2, 3, 7, 7), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d(&x, &w, (1, 1), (0, 0)).is_err());
    }
}
