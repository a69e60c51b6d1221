//! The geometry of a sliding-window op over NCHW input: convolution, depthwise convolution and
//! pooling share one description of their windows (sizes, strides, paddings, output size), built
//! by each op's own shape check, and the index arithmetic their kernels and fallbacks use.
//! PyTorch's conventions: `ceil_mode=False`, no dilation, symmetric padding per axis.

use candle_core::{bail, Result};

/// Sizes of one window op, `(height, width)` pairs split into fields: input (N, C, H, W), kernel
/// (KH, KW), stride (SH, SW), padding (PH, PW), output (N, O, OH, OW). O is the convolution's
/// output channels; C for depthwise convolution and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window2d {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window2d {
    /// One sample's window as the kernels describe it (converted from there to the direct,
    /// depthwise and strided kernels' geometries).
    pub(crate) fn strided(&self) -> crate::kernels::im2col::Strided {
        crate::kernels::im2col::Strided {
            c: self.c,
            h: self.h,
            w: self.w,
            o: self.o,
            kh: self.kh,
            kw: self.kw,
            sh: self.sh,
            sw: self.sw,
            ph: self.ph,
            pw: self.pw,
        }
    }

    /// The window of `op` over input (n, c, h, w) with `o` output channels; fails naming `op`
    /// when the padded input is shorter than the kernel.
    fn new(
        op: &str,
        [n, c, h, w]: [usize; 4],
        o: usize,
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Result<Self> {
        let oh = out_len(op, h, kh, sh, ph)?;
        let ow = out_len(op, w, kw, sw, pw)?;
        Ok(Self {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            oh,
            ow,
        })
    }

    /// A 2-D convolution (groups = 1) of input `xd` (N, C, H, W) with weight `wd` (O, C, KH, KW).
    pub(crate) fn conv(
        xd: &[usize],
        wd: &[usize],
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        let (&[n, c, h, w], &[o, wc, kh, kw]) = (xd, wd) else {
            bail!("conv2d: expected input (N,C,H,W) and weight (O,C,KH,KW), got {xd:?} and {wd:?}");
        };
        if wc != c {
            bail!("conv2d: input {xd:?} has {c} channels but weight {wd:?} expects {wc}");
        }
        Self::new("conv2d", [n, c, h, w], o, (kh, kw), stride, padding)
    }

    /// A depthwise convolution of input `xd` (N, C, H, W) with weight `wd` (C, 1, KH, KW).
    pub(crate) fn depthwise(
        xd: &[usize],
        wd: &[usize],
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        let (&[n, c, h, w], &[wc, one, kh, kw]) = (xd, wd) else {
            bail!("depthwise_conv2d: expected input (N,C,H,W) and weight (C,1,KH,KW), got {xd:?} and {wd:?}");
        };
        if wc != c || one != 1 {
            bail!("depthwise_conv2d: input {xd:?} needs weight ({c}, 1, KH, KW), got {wd:?}");
        }
        Self::new(
            "depthwise_conv2d",
            [n, c, h, w],
            c,
            (kh, kw),
            stride,
            padding,
        )
    }

    /// A pooling op `op` over input `xd` (N, C, H, W), with the output dims (N, C, OH, OW).
    pub(crate) fn pool(
        op: &str,
        xd: &[usize],
        (kh, kw): (usize, usize),
        stride: (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Result<(Self, [usize; 4])> {
        let &[n, c, h, w] = xd else {
            bail!("{op}: expected input (N,C,H,W), got {xd:?}");
        };
        // PyTorch's rule: a window must keep at least one real element.
        if 2 * ph > kh || 2 * pw > kw {
            bail!("{op}: padding ({ph}, {pw}) must be at most half the kernel ({kh}, {kw})");
        }
        let g = Self::new(op, [n, c, h, w], c, (kh, kw), stride, (ph, pw))?;
        Ok((g, [n, c, g.oh, g.ow]))
    }

    /// Clipped window `(h0, h1, w0, w1)` of output `(oh, ow)` and PyTorch's padded window size.
    #[inline]
    pub(crate) fn window(&self, oh: usize, ow: usize) -> (usize, usize, usize, usize, usize) {
        let hs = (oh * self.sh) as isize - self.ph as isize;
        let ws = (ow * self.sw) as isize - self.pw as isize;
        let he = (hs + self.kh as isize).min((self.h + self.ph) as isize);
        let we = (ws + self.kw as isize).min((self.w + self.pw) as isize);
        let padded = ((he - hs) * (we - ws)) as usize;
        let (h0, w0) = (hs.max(0) as usize, ws.max(0) as usize);
        let (h1, w1) = ((he as usize).min(self.h), (we as usize).min(self.w));
        (h0, h1, w0, w1, padded)
    }
}

/// Output length of a window op along one axis (PyTorch `ceil_mode=False`), or an error naming
/// the op and sizes when the (padded) input is shorter than the window.
fn out_len(op: &str, input: usize, k: usize, s: usize, p: usize) -> Result<usize> {
    if k == 0 || s == 0 {
        bail!("{op}: kernel {k} and stride {s} must be positive");
    }
    if input + 2 * p < k {
        bail!("{op}: input length {input} with padding {p} is shorter than the kernel {k}");
    }
    Ok((input + 2 * p - k) / s + 1)
}

/// Range `lo..hi` of output positions `o` for which the input index `o * s + off - p` lies in
/// `0..input` (`off` is the kernel tap). Lets inner loops run without bounds checks.
#[inline]
pub(crate) fn valid_range(
    out: usize,
    input: usize,
    s: usize,
    p: usize,
    off: usize,
) -> (usize, usize) {
    let lo = if off >= p { 0 } else { (p - off).div_ceil(s) };
    let hi = if input + p > off {
        ((input - 1 + p - off) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for input in 1..9 {
            for s in 1..4 {
                for p in 0..3 {
                    for off in 0..5 {
                        let out = 12;
                        let (lo, hi) = valid_range(out, input, s, p, off);
                        let brute: Vec<usize> = (0..out)
                            .filter(|&o| {
                                let i = (o * s + off) as isize - p as isize;
                                i >= 0 && (i as usize) < input
                            })
                            .collect();
                        let got: Vec<usize> = (lo..hi).collect();
                        assert_eq!(got, brute, "input {input} s {s} p {p} off {off}");
                    }
                }
            }
        }
    }
}
