//! The same ops as compositions of stock candle ops, for devices (CUDA) and dtypes (f64) the CPU
//! kernels do not cover. Each has a correct gradient through candle's autograd; they are slower.
//!
//! Only candle ops whose backward was audited against PyTorch (`docs/candle-defects.md`) are used:
//! `conv2d` (single stride, symmetric padding), `pad_with_zeros`, `narrow`, `index_select`, `eq`,
//! arithmetic. Never candle's `max_pool2d`/`avg_pool2d`: their backward is wrong for odd sizes.
//! The tests run these on CPU against the same PyTorch fixtures as the kernels.

use super::planes::{Grouping, PlaneGeom, Standardized};
use super::window::Window2d;
use candle_core::{DType, Result, Tensor};

/// Rows `i + s·k` (k < n) of dimension `dim`: a strided slice built from `narrow` + `index_select`.
fn strided(t: &Tensor, dim: usize, start: usize, n: usize, s: usize) -> Result<Tensor> {
    let span = (n - 1) * s + 1;
    let t = t.narrow(dim, start, span)?;
    if s == 1 {
        return Ok(t);
    }
    let idx = Tensor::arange_step(0u32, span as u32, s as u32, t.device())?;
    t.contiguous()?.index_select(&idx, dim)
}

/// Convolution with per-axis stride and padding via candle's `conv2d` (groups as given).
fn conv_generic(
    x: &Tensor,
    w: &Tensor,
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
    groups: usize,
) -> Result<Tensor> {
    if sh == sw && ph == pw {
        return x.conv2d(w, ph, sh, 1, groups);
    }
    let xp = x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?;
    let y = xp.conv2d(w, 0, 1, 1, groups)?;
    let (_, _, h1, w1) = y.dims4()?;
    let y = strided(&y, 2, 0, (h1 - 1) / sh + 1, sh)?;
    strided(&y, 3, 0, (w1 - 1) / sw + 1, sw)
}

/// [`super::conv2d`] from candle ops.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    conv_generic(x, w, stride, padding, 1)
}

/// [`super::depthwise_conv2d`] from candle ops (one conv per channel inside candle: slow).
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let c = x.dim(1)?;
    conv_generic(x, w, stride, padding, c)
}

/// The `kh·kw` strided taps of the padded input, in row-major window order.
fn taps(xp: &Tensor, g: &Window2d) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(g.kh * g.kw);
    for i in 0..g.kh {
        let rows = strided(xp, 2, i, g.oh, g.sh)?;
        for j in 0..g.kw {
            out.push(strided(&rows, 3, j, g.ow, g.sw)?);
        }
    }
    Ok(out)
}

/// [`super::max_pool2d`] from candle ops: padding with the lowest finite value, the maximum of
/// the taps (detached), then a one-hot mask of the FIRST tap equal to it, so the gradient goes to
/// the first maximum as in PyTorch. Differences from the CPU kernel: NaN inputs give 0, and
/// inputs below `-f32::MAX` (−inf) are treated like padding.
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let (g, _) = Window2d::pool("max_pool2d", x.dims(), kernel, stride, padding)?;
    let dt = x.dtype();
    let xp = if g.ph > 0 || g.pw > 0 {
        let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
        let mut m = vec![f32::MIN; hp * wp];
        for ih in g.ph..g.ph + g.h {
            m[ih * wp + g.pw..ih * wp + g.pw + g.w].fill(0.0);
        }
        let m = Tensor::from_vec(m, (1, 1, hp, wp), x.device())?.to_dtype(dt)?;
        x.pad_with_zeros(2, g.ph, g.ph)?
            .pad_with_zeros(3, g.pw, g.pw)?
            .broadcast_add(&m)?
    } else {
        x.clone()
    };
    let taps = taps(&xp, &g)?;
    let mut best = taps[0].detach();
    for t in &taps[1..] {
        best = best.maximum(&t.detach())?;
    }
    let mut taken = best.zeros_like()?;
    let mut out = best.zeros_like()?;
    for t in &taps {
        let sel = (t.detach().eq(&best)?.to_dtype(dt)? * taken.affine(-1.0, 1.0)?)?;
        taken = (taken + &sel)?;
        out = (out + (t * sel)?)?;
    }
    Ok(out)
}

/// [`super::avg_pool2d`] from candle ops: sum of the zero-padded taps divided by PyTorch's
/// per-window divisor.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<Tensor> {
    let (g, _) = Window2d::pool("avg_pool2d", x.dims(), kernel, stride, padding)?;
    let xp = x
        .pad_with_zeros(2, g.ph, g.ph)?
        .pad_with_zeros(3, g.pw, g.pw)?;
    let mut div = Vec::with_capacity(g.oh * g.ow);
    for oh in 0..g.oh {
        for ow in 0..g.ow {
            let (h0, h1, w0, w1, padded) = g.window(oh, ow);
            let n = if count_include_pad {
                padded
            } else {
                (h1 - h0) * (w1 - w0)
            };
            div.push(1.0 / n as f64);
        }
    }
    let inv = Tensor::from_vec(div, (1, 1, g.oh, g.ow), x.device())?.to_dtype(x.dtype())?;
    let mut sum: Option<Tensor> = None;
    for t in taps(&xp, &g)? {
        sum = Some(match sum {
            None => t,
            Some(s) => (s + t)?,
        });
    }
    let sum = match sum {
        Some(s) => s,
        None => Tensor::zeros((x.dim(0)?, x.dim(1)?, g.oh, g.ow), DType::F32, x.device())?,
    };
    sum.broadcast_mul(&inv)
}

/// A (C) or (N, C) coefficient as a (1, C, 1) or (N, C, 1) tensor that broadcasts over (N, C, L).
fn coef_view(t: &Tensor, g: &PlaneGeom) -> Result<Tensor> {
    if t.elem_count() == g.c {
        t.reshape((1, g.c, 1))
    } else {
        t.reshape((g.n, g.c, 1))
    }
}

/// [`super::standardize`] from candle ops: statistics over a trailing dim after moving the
/// channel first (per-channel) or grouping channels (per sample), then the affine.
pub(crate) fn standardize(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    g: &PlaneGeom,
    eps: f64,
) -> Result<Standardized> {
    let (n, c, l) = (g.n, g.c, g.l);
    let rows = match g.grouping {
        Grouping::Channel => x.transpose(0, 1)?.reshape((c, n * l))?,
        Grouping::SampleGroups(gr) => x.reshape((n * gr, c / gr * l))?,
    };
    let mean = rows.mean_keepdim(1)?;
    let xc = rows.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(1)?;
    let xh = xc.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let xh = match g.grouping {
        Grouping::Channel => xh.reshape((c, n, l))?.transpose(0, 1)?,
        Grouping::SampleGroups(_) => xh.reshape((n, c, l))?,
    };
    let y = xh
        .broadcast_mul(&coef_view(gamma, g)?)?
        .broadcast_add(&coef_view(beta, g)?)?
        .contiguous()?;
    Ok(Standardized {
        y,
        mean: mean.flatten_all()?.detach(),
        var: var.flatten_all()?.detach(),
        count: g.count() as f64,
    })
}

/// [`super::plane_affine`] from candle ops.
pub(crate) fn plane_affine(x: &Tensor, s: &Tensor, t: &Tensor, g: &PlaneGeom) -> Result<Tensor> {
    x.broadcast_mul(&coef_view(s, g)?)?
        .broadcast_add(&coef_view(t, g)?)
}
