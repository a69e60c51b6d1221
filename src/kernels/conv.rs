//! Direct 2-D convolution for stride 1, groups 1, NCHW: the shapes where im2col + GEMM wastes
//! its time on the column matrix (a 7×7 kernel makes it 49× the input) and on a GEMM with only
//! 16 rows.
//!
//! The output is computed in tiles of one output row × `V` vectors of `L` positions × `OB`
//! output channels, held in registers while the loop runs over input channels and kernel taps:
//! per tap, `V` input loads and `OB` weight broadcasts feed `OB · V` fused multiply-adds. The
//! input is first copied into a zero-padded plane (padding plus the tail of the last tile), so
//! the inner loop has no bounds checks and no branches; an unpadded 1×1 conv reads its input
//! where it lies instead, all but a partial last tile. Whole tiles store straight into the
//! output (with a given bias and a folded ReLU); the weights are packed per channel block as
//! [ic][kh][kw][OB].

use super::Isa;
use rayon::prelude::*;

/// Geometry of one stride-1 convolution: input C × H × W, weight O × C × KH × KW, zero padding
/// (PH, PW) on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Conv {
    /// Whether the output is non-empty: the padded input is at least the kernel's size.
    pub fn is_valid(&self) -> bool {
        self.h + 2 * self.ph >= self.kh && self.w + 2 * self.pw >= self.kw && self.kh * self.kw > 0
    }

    pub fn oh(&self) -> usize {
        self.h + 2 * self.ph + 1 - self.kh
    }

    pub fn ow(&self) -> usize {
        self.w + 2 * self.pw + 1 - self.kw
    }

    /// The convolution whose forward pass is this one's input gradient: the output gradient
    /// (O × OH × OW) convolved with the flipped, transposed kernel ([`adjoint_weights`]) and
    /// padding K − 1 − P gives C × H × W. `None` when P > K − 1 (the adjoint would need a
    /// negative padding, a crop).
    pub fn adjoint(&self) -> Option<Conv> {
        (self.ph < self.kh && self.pw < self.kw).then(|| Conv {
            c: self.o,
            h: self.oh(),
            w: self.ow(),
            o: self.c,
            kh: self.kh,
            kw: self.kw,
            ph: self.kh - 1 - self.ph,
            pw: self.kw - 1 - self.pw,
        })
    }
}

/// The kernel of [`Conv::adjoint`]: `w'[c][o][r][s] = w[o][c][KH−1−r][KW−1−s]`.
pub fn adjoint_weights(g: &Conv, w: &[f32]) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    let mut out = vec![0.0; w.len()];
    for o in 0..g.o {
        for c in 0..g.c {
            for r in 0..kh {
                for s in 0..kw {
                    out[((c * g.o + o) * kh + r) * kw + s] =
                        w[((o * g.c + c) * kh + (kh - 1 - r)) * kw + (kw - 1 - s)];
                }
            }
        }
    }
    out
}

/// (lanes per vector, output channels per block, vectors per tile) of each path.
pub(super) fn blocking(isa: Isa) -> (usize, usize, usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (avx512::L, avx512::OB, avx512::V),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (avx2::L, avx2::OB, avx2::V),
        _ => (portable::L, portable::OB, portable::V),
    }
}

/// Weights packed for one instruction set: blocks of `ob` output channels (the last padded with
/// zero channels), each [ic][kh][kw][ob].
pub struct Packed {
    isa: Isa,
    g: Conv,
    data: Vec<f32>,
    bias: Vec<f32>,
}

impl Packed {
    /// `w` is O × C × KH × KW; `bias` has O entries when given. An unpadded 1×1 conv runs as
    /// one row of H·W columns (the same memory layout): the tiles run along a row, and
    /// CP-Mobile's rows are only 5 to 17 wide.
    pub fn new(g: Conv, w: &[f32], bias: Option<&[f32]>, isa: Isa) -> Packed {
        let g = if (g.kh, g.kw, g.ph, g.pw) == (1, 1, 0, 0) {
            Conv {
                h: 1,
                w: g.h * g.w,
                ..g
            }
        } else {
            g
        };
        assert!(isa.available(), "{isa:?} kernels on a CPU without them");
        assert!(g.is_valid(), "conv geometry {g:?} has an empty output");
        assert_eq!(w.len(), g.o * g.c * g.kh * g.kw, "conv weight size");
        let (_, ob, _) = blocking(isa);
        let blocks = g.o.div_ceil(ob);
        let taps = g.c * g.kh * g.kw;
        let mut data = vec![0.0; blocks * taps * ob];
        for o in 0..g.o {
            let (b, j) = (o / ob, o % ob);
            for t in 0..taps {
                data[(b * taps + t) * ob + j] = w[o * taps + t];
            }
        }
        Packed {
            isa,
            g,
            data,
            bias: block_bias(bias, g.o, blocks * ob),
        }
    }

    /// The path the weights were packed for, which runs them.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// `bias` (or zeros) for `o` channels, padded with zeros to `len` (whole channel blocks).
pub(super) fn block_bias(bias: Option<&[f32]>, o: usize, len: usize) -> Vec<f32> {
    let mut b = vec![0.0; len];
    if let Some(bias) = bias {
        b[..o].copy_from_slice(bias);
    }
    b
}

/// Planes copied into a zero buffer: `planes` planes of `rows` rows of `stride` floats, each
/// source plane (h × w) placed at row `top`, column `left`. Extra planes up to `alloc` stay zero.
struct Padded {
    data: Vec<f32>,
    rows: usize,
    stride: usize,
}

impl Padded {
    fn new(
        x: &[f32],
        (planes, alloc): (usize, usize),
        (h, w): (usize, usize),
        (top, left): (usize, usize),
        (rows, stride): (usize, usize),
    ) -> Padded {
        debug_assert!(top + h <= rows && left + w <= stride && planes <= alloc);
        let mut data = vec![0.0; alloc * rows * stride];
        for p in 0..planes {
            for r in 0..h {
                let dst = (p * rows + r + top) * stride + left;
                data[dst..dst + w].copy_from_slice(&x[(p * h + r) * w..][..w]);
            }
        }
        Padded { data, rows, stride }
    }

    /// A convolution's input with its padding, wide enough for whole tiles of `tile` outputs
    /// plus `extra` columns read past the last tap.
    fn input(x: &[f32], g: &Conv, tile: usize, extra: usize) -> Padded {
        let stride = g.ow().div_ceil(tile) * tile + g.kw - 1 + extra;
        let rows = g.h + 2 * g.ph;
        Padded::new(x, (g.c, g.c), (g.h, g.w), (g.ph, g.pw), (rows, stride))
    }
}

/// A convolution's input as the tiles read it.
enum Input<'a> {
    /// Copied with its padding, wide enough for whole tiles plus the `kw − 1` columns read past
    /// the last one: the general case.
    Padded(Padded),
    /// An unpadded 1×1 conv's input (C rows of H·W, [`Packed::new`]) read where it lies: its
    /// full tiles need no padding, so only the last, partial tile's columns (`tail` from column
    /// `tail_col`, zero-filled to a whole tile) are copied. Copying the whole input was ~5 % of
    /// CP-Mobile's batch-1 plan, whose convs are mostly 1×1.
    InPlace {
        x: &'a [f32],
        tail: Padded,
        tail_col: usize,
    },
    /// A 1×1 conv's channels at `offsets` into `x`, each readable for whole tiles
    /// ([`forward_indirect`]).
    Indirect { x: &'a [f32], offsets: &'a [usize] },
}

impl<'a> Input<'a> {
    fn new(x: &'a [f32], g: &Conv, tile: usize) -> Input<'a> {
        if (g.kh, g.kw, g.ph, g.pw, g.h) == (1, 1, 0, 0, 1) {
            let tail_col = g.w / tile * tile;
            let tails: Vec<f32> = x
                .chunks_exact(g.w)
                .flat_map(|row| &row[tail_col..])
                .copied()
                .collect();
            let tail = Padded::new(&tails, (g.c, g.c), (1, g.w - tail_col), (0, 0), (1, tile));
            return Input::InPlace { x, tail, tail_col };
        }
        Input::Padded(Padded::input(x, g, tile, 0))
    }

    /// The first input a tile at output row `r`, column `col` reads, and the strides it walks.
    fn at(&self, r: usize, col: usize, g: &Conv) -> (*const f32, TileShape<'_>) {
        let shape = |plane, stride| TileShape {
            plane,
            stride,
            c: g.c,
            kh: g.kh,
            kw: g.kw,
            offsets: &[],
        };
        match self {
            Input::Padded(p) => (
                p.data[r * p.stride + col..].as_ptr(),
                shape(p.rows * p.stride, p.stride),
            ),
            Input::InPlace { tail, tail_col, .. } if col >= *tail_col => (
                tail.data[col - tail_col..].as_ptr(),
                shape(tail.stride, tail.stride),
            ),
            Input::InPlace { x, .. } => (x[col..].as_ptr(), shape(g.w, g.w)),
            Input::Indirect { x, offsets } => (
                x[col..].as_ptr(),
                TileShape {
                    offsets,
                    ..shape(0, g.w)
                },
            ),
        }
    }
}

/// Forward convolution of `n` inputs (N × C × H × W) into N × O × OH × OW.
pub fn forward(x: &[f32], n: usize, p: &Packed) -> Vec<f32> {
    let mut y = vec![0.0f32; n * p.g.o * p.g.oh() * p.g.ow()];
    forward_into(x, n, p, None, false, &mut y);
    y
}

/// [`forward`] into a caller's buffer of N × O × OH × OW floats (tract's output tensor), with
/// the bias (O values) given now instead of packed when `bias` is some (a graph whose bias is
/// computed: tract before constant folding), and clamped at zero when `relu` (a following ReLU
/// folded in, stored with the outputs instead of another pass over them).
pub fn forward_into(
    x: &[f32],
    n: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    forward_then(x, n, p, bias, After::clamp(relu), y);
}

/// [`forward_into`] followed by a residual add and a ReLU, `y = max(conv(x) + residual, 0)`
/// (`residual` shaped as `y`): CP-Mobile's projection convs and their blocks' skip
/// connections, applied to each channel block's output row right after it is computed, while
/// it is in cache, instead of as another pass over memory.
pub fn forward_add_relu_into(
    x: &[f32],
    n: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    residual: &[f32],
    y: &mut [f32],
) {
    assert_eq!(residual.len(), y.len(), "conv residual size");
    forward_then(x, n, p, bias, After::AddRelu(residual), y);
}

/// What a forward pass does to its outputs after the bias.
#[derive(Clone, Copy)]
enum After<'a> {
    Nothing,
    Relu,
    /// Adds the values at the same place in this buffer (shaped as the output), then clamps.
    AddRelu(&'a [f32]),
}

impl<'a> After<'a> {
    fn clamp(relu: bool) -> After<'a> {
        if relu {
            After::Relu
        } else {
            After::Nothing
        }
    }

    /// The same for the outputs from `at` on (a sample's, a row's): the residual read from
    /// there.
    fn from(self, at: usize) -> After<'a> {
        match self {
            After::AddRelu(r) => After::AddRelu(&r[at..]),
            a => a,
        }
    }
}

fn forward_then(
    x: &[f32],
    n: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    after: After,
    y: &mut [f32],
) {
    let g = p.g;
    let out = g.o * g.oh() * g.ow();
    assert_eq!(x.len(), n * g.c * g.h * g.w, "conv input size");
    assert_eq!(y.len(), n * out, "conv output size");
    let bias = &given_bias(p, bias);
    let (l, _, v) = blocking(p.isa);
    y.par_chunks_mut(out).enumerate().for_each(|(i, yi)| {
        let xi = Input::new(&x[i * g.c * g.h * g.w..][..g.c * g.h * g.w], &g, l * v);
        sample(&xi, p, bias, after.from(i * out), yi);
    });
}

/// [`forward_into`] for one sample of an unpadded 1×1 conv whose input channels lie at
/// `offsets` into `x` (channel t's W values from `offsets[t]` on) instead of W apart: the taps of
/// a strided conv read where they lie in its phase planes (`im2col`), without a column matrix.
/// `x` must hold whole tiles from every offset: values past a channel's W feed only outputs
/// that are dropped.
pub fn forward_indirect(
    x: &[f32],
    offsets: &[usize],
    p: &Packed,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let g = p.g;
    let (l, _, v) = blocking(p.isa);
    assert_eq!(
        (g.h, g.kh, g.kw, g.ph, g.pw),
        (1, 1, 1, 0, 0),
        "indirect conv not 1×1"
    );
    assert_eq!(offsets.len(), g.c, "indirect conv offsets");
    let whole = g.w.div_ceil(l * v) * l * v;
    assert!(
        offsets.iter().all(|&o| o + whole <= x.len()),
        "indirect conv input size"
    );
    assert_eq!(y.len(), g.o * g.w, "conv output size");
    let bias = &given_bias(p, bias);
    sample(
        &Input::Indirect { x, offsets },
        p,
        bias,
        After::clamp(relu),
        y,
    );
}

/// The bias a forward pass adds: `bias` (O values) padded to whole channel blocks when given,
/// else the packed one.
fn given_bias<'a>(p: &'a Packed, bias: Option<&[f32]>) -> std::borrow::Cow<'a, [f32]> {
    match bias {
        Some(b) => {
            assert_eq!(b.len(), p.g.o, "conv bias size");
            block_bias(Some(b), p.g.o, p.bias.len()).into()
        }
        None => p.bias.as_slice().into(),
    }
}

/// One sample's O × OH × OW outputs into `y` (and `after`'s residual of the same shape).
fn sample(x: &Input, p: &Packed, bias: &[f32], after: After, y: &mut [f32]) {
    let g = p.g;
    let (oh, ow) = (g.oh(), g.ow());
    let (_, ob, _) = blocking(p.isa);
    // Each output row of each channel block is an independent task; rows of one block share
    // their packed weights (25 KB for 16 × 7 × 7 × 8), which stay in L1.
    let rows: Vec<(usize, usize)> = (0..g.o.div_ceil(ob))
        .flat_map(|b| (0..oh).map(move |r| (b, r)))
        .collect();
    let out = SyncPtr(y.as_mut_ptr());
    rows.par_iter().with_min_len(8).for_each(|&(b, r)| {
        let out = &out;
        let at = b * ob * oh * ow + r * ow;
        // SAFETY: (b, r) pairs are distinct, so the rows written are disjoint, and each lies
        // inside `y` (O × OH × OW).
        unsafe { row(x, p, bias, b, r, after.from(at), out.0.add(at)) }
    });
}

/// An output pointer shared by tasks that write disjoint ranges of it.
pub(super) struct SyncPtr(pub(super) *mut f32);
unsafe impl Sync for SyncPtr {}
unsafe impl Send for SyncPtr {}

/// Where a tile's OB × v·L outputs go: channel j's run at `ptr + j · stride`, for the first
/// `channels` channels (the rest of the block is zero padding), each value clamped at zero first
/// when `relu`.
pub(super) struct Store {
    pub ptr: *mut f32,
    pub stride: usize,
    pub channels: usize,
    pub relu: bool,
}

/// The largest OB · V · L of any path: a partial tile's outputs, on the stack.
const MAX_TILE: usize = 8 * 48;

/// Output row `r` of channel block `b`, tile by tile, into `y` (the row of the block's first
/// channel; the others follow one output plane apart). Full tiles store in place, the last,
/// partial one through a buffer.
///
/// # Safety
/// `y` has the block's valid channels' rows, OH · OW floats apart, OW floats each.
unsafe fn row(x: &Input, p: &Packed, bias: &[f32], b: usize, r: usize, after: After, y: *mut f32) {
    let g = p.g;
    let (l, ob, v) = blocking(p.isa);
    let tile = l * v;
    let (ow, plane) = (g.ow(), g.oh() * g.ow());
    let taps = g.c * g.kh * g.kw;
    let w = &p.data[b * taps * ob..][..taps * ob];
    let bias = &bias[b * ob..][..ob];
    let oc = ob.min(g.o - b * ob);
    let mut part = [0.0f32; MAX_TILE];
    for col in (0..ow).step_by(tile) {
        let (src, shape) = x.at(r, col, &g);
        let n = tile.min(ow - col);
        let (ptr, stride) = if n == tile {
            (y.add(col), plane)
        } else {
            (part.as_mut_ptr(), tile)
        };
        let out = Store {
            ptr,
            stride,
            channels: oc,
            relu: matches!(after, After::Relu),
        };
        // SAFETY: the input holds rows r..r+kh and columns col..col+tile+kw-1 of every channel
        // from `src` (Input::new sizes it for whole tiles); `w` holds taps × ob weights; `out`
        // has room for its channels' runs of `tile` floats.
        tile_of(p.isa, v, src, w.as_ptr(), bias, &shape, out);
        if n < tile {
            for o in 0..oc {
                std::ptr::copy_nonoverlapping(part[o * tile..].as_ptr(), y.add(o * plane + col), n);
            }
        }
    }
    if let After::AddRelu(res) = after {
        // Over the block's whole row at once, still in cache: runs of OW vectorise.
        for o in 0..oc {
            let ys = std::slice::from_raw_parts_mut(y.add(o * plane), ow);
            for (y, &r) in ys.iter_mut().zip(&res[o * plane..][..ow]) {
                *y = (*y + r).max(0.0);
            }
        }
    }
}

/// Output rows per pass of the weight gradient: the rows of the output gradient and input a pass
/// reads (O × 8 × OW and C × (8 + KH − 1) × W floats) stay in L2 while every (channel, tap row)
/// pair walks them.
const GW_ROWS: usize = 8;

/// (lanes, output channels per block, kernel columns per block) of each path's weight-gradient
/// kernel: OB · SB accumulators plus OB output-gradient vectors and one input vector in registers.
fn gw_blocking(isa: Isa) -> (usize, usize, usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (avx512::L, avx512::GW_OB, avx512::GW_SB),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (avx2::L, avx2::GW_OB, avx2::GW_SB),
        _ => (portable::L, portable::GW_OB, portable::GW_SB),
    }
}

/// The weight gradient of one sample, O × C × KH × KW: `dW[o,c,r,s] = Σ_ij gy[o,i,j] ·
/// x_padded[c, i+r, j+s]`, from its input `x` (C × H × W) and output gradient `gy` (O × OH × OW).
///
/// Why direct: as im2col + GEMM this needs the 49×-the-input column matrix again. Here each
/// (output-channel block, input channel, tap row, tap-column block) keeps OB × SB vector
/// partial sums over output positions in registers; lanes are summed once at the end, so the
/// order of additions is fixed whatever the thread count.
pub fn weight_gradient(x: &[f32], gy: &[f32], g: &Conv, isa: Isa) -> Vec<f32> {
    assert!(isa.available(), "{isa:?} kernels on a CPU without them");
    let (oh, ow) = (g.oh(), g.ow());
    assert_eq!(x.len(), g.c * g.h * g.w, "conv input size");
    assert_eq!(gy.len(), g.o * oh * ow, "conv output-gradient size");
    let (l, ob, sb) = gw_blocking(isa);
    let owp = ow.div_ceil(l) * l;
    let (oblocks, sblocks) = (g.o.div_ceil(ob), g.kw.div_ceil(sb));
    let xp = Padded::input(x, g, l, sblocks * sb - g.kw);
    let gp = Padded::new(gy, (g.o, oblocks * ob), (oh, ow), (0, 0), (oh, owp));
    let unit = ob * sb * l;
    let mut acc = vec![0.0f32; oblocks * g.c * g.kh * sblocks * unit];
    for i0 in (0..oh).step_by(GW_ROWS) {
        let rows = GW_ROWS.min(oh - i0);
        for (k, acc) in acc.chunks_exact_mut(unit).enumerate() {
            let (sbk, rest) = (k % sblocks, k / sblocks);
            let (r, rest) = (rest % g.kh, rest / g.kh);
            let (c, obk) = (rest % g.c, rest / g.c);
            let shape = GwShape {
                rows,
                vecs: owp / l,
                gy_plane: oh * owp,
                gy_stride: owp,
                x_stride: xp.stride,
            };
            let gy0 = (obk * ob * oh + i0) * owp;
            let x0 = (c * xp.rows + i0 + r) * xp.stride + sbk * sb;
            // SAFETY: `gp` has oblocks · ob planes of oh × owp, so OB planes from gy0 hold
            // `rows` rows of `vecs` vectors; `xp` is wide enough for owp + sblocks · sb − 1
            // columns from row i0 + r (Padded::input's `extra`) and has rows up to h + 2ph.
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => avx512::gw_tile(
                        gp.data.as_ptr().add(gy0),
                        xp.data.as_ptr().add(x0),
                        &shape,
                        acc,
                    ),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => avx2::gw_tile(
                        gp.data.as_ptr().add(gy0),
                        xp.data.as_ptr().add(x0),
                        &shape,
                        acc,
                    ),
                    _ => portable::gw_tile(&gp.data[gy0..], &xp.data[x0..], &shape, acc),
                }
            }
        }
    }
    let mut dw = vec![0.0f32; g.o * g.c * g.kh * g.kw];
    for o in 0..g.o {
        for c in 0..g.c {
            for r in 0..g.kh {
                for s in 0..g.kw {
                    let k = ((o / ob * g.c + c) * g.kh + r) * sblocks + s / sb;
                    let lanes = &acc[k * unit + ((o % ob) * sb + s % sb) * l..][..l];
                    dw[((o * g.c + c) * g.kh + r) * g.kw + s] = lanes.iter().sum();
                }
            }
        }
    }
    dw
}

/// Strides and extents a weight-gradient tile walks.
struct GwShape {
    rows: usize,
    vecs: usize,
    gy_plane: usize,
    gy_stride: usize,
    x_stride: usize,
}

/// Strides and extents the tile kernels walk.
pub(super) struct TileShape<'a> {
    pub plane: usize,
    pub stride: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    /// Where each channel starts when the channels are not `plane` apart (a strided conv's
    /// taps in phase planes, [`forward_indirect`]); empty otherwise.
    pub offsets: &'a [usize],
}

impl TileShape<'_> {
    /// Where channel `ic` starts, from the tile's first input of channel 0.
    #[inline(always)]
    pub fn channel(&self, ic: usize) -> usize {
        if self.offsets.is_empty() {
            ic * self.plane
        } else {
            self.offsets[ic]
        }
    }
}

/// One tile of `v` vectors on path `isa` (1 to the path's `V`; the portable path takes only its
/// `V`) into `out`: the direct convolution's rows, and the Winograd products over transformed
/// inputs (KW = 1).
///
/// # Safety
/// `isa` runs on this CPU; from `x`, `s.c` planes of `s.kh` rows of `v·L + s.kw − 1` floats
/// are readable; `w` holds `c·kh·kw·OB` floats; `out.ptr` has `out.channels` runs of v · L
/// floats, `out.stride` apart.
pub(super) unsafe fn tile_of(
    isa: Isa,
    v: usize,
    x: *const f32,
    w: *const f32,
    bias: &[f32],
    s: &TileShape,
    out: Store,
) {
    match (isa, v) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 1) => avx512::tile_of::<1>(x, w, bias, s, out),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 2) => avx512::tile_of::<2>(x, w, bias, s, out),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) => avx512::tile_of::<3>(x, w, bias, s, out),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 1) => avx2::tile_of::<1>(x, w, bias, s, out),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 2) => avx2::tile_of::<2>(x, w, bias, s, out),
        (Isa::Portable, portable::V) => {
            let last = (0..s.c).map(|ic| s.channel(ic)).max().unwrap_or(0);
            let len = last + (s.kh - 1) * s.stride + s.kw - 1 + portable::L * v;
            let taps = s.c * s.kh * s.kw * portable::OB;
            let acc = portable::tile(
                std::slice::from_raw_parts(x, len),
                std::slice::from_raw_parts(w, taps),
                bias,
                s,
            );
            for (o, a) in acc.iter().enumerate().take(out.channels) {
                let dst = std::slice::from_raw_parts_mut(out.ptr.add(o * out.stride), a.len());
                for (d, &v) in dst.iter_mut().zip(a) {
                    *d = if out.relu { v.max(0.0) } else { v };
                }
            }
        }
        _ => unreachable!("{isa:?} tile of {v} vectors"),
    }
}

/// The tiles of both x86 paths, written once over a [`Register`]: each path instantiates them
/// with its register type and blocking inside its own `target_feature` function.
#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{GwShape, Store, TileShape};
    use crate::kernels::lanes::Register;

    /// Adds one pass of weight-gradient partial sums to `acc` (OB × SB registers).
    ///
    /// # Safety
    /// The CPU has `R`'s features; `gy` has OB planes of `s.rows` rows of `s.vecs · L` floats,
    /// `x` has `s.rows` rows of `s.vecs · L + SB − 1` floats.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // a[o][k] by index reads as the formula
    pub unsafe fn gw_tile<R: Register, const OB: usize, const SB: usize>(
        gy: *const f32,
        x: *const f32,
        s: &GwShape,
        acc: &mut [f32],
    ) {
        let l = R::L;
        let mut a = [[R::zero(); SB]; OB];
        for (o, a) in a.iter_mut().enumerate() {
            for (k, a) in a.iter_mut().enumerate() {
                *a = R::load(acc.as_ptr().add((o * SB + k) * l));
            }
        }
        for i in 0..s.rows {
            let (gr, xr) = (gy.add(i * s.gy_stride), x.add(i * s.x_stride));
            for v in 0..s.vecs {
                let mut g = [R::zero(); OB];
                for (o, g) in g.iter_mut().enumerate() {
                    *g = R::load(gr.add(o * s.gy_plane + v * l));
                }
                for k in 0..SB {
                    let xv = R::load(xr.add(v * l + k));
                    for o in 0..OB {
                        a[o][k] = g[o].mul_add(xv, a[o][k]);
                    }
                }
            }
        }
        for (o, a) in a.iter().enumerate() {
            for (k, a) in a.iter().enumerate() {
                a.store(acc.as_mut_ptr().add((o * SB + k) * l));
            }
        }
    }

    /// The first K channels of a block of OB (weights packed OB to a tap), V registers wide.
    ///
    /// # Safety
    /// The CPU has `R`'s features; `x` points at a tile's first input of channel 0 with `s.c`
    /// channels (at [`TileShape::channel`]), `s.kh` rows and `V·L + s.kw − 1` columns
    /// readable; `w` holds `c·kh·kw·OB` floats; K ≤ OB and `out.channels` ≤ K.
    #[inline(always)]
    pub unsafe fn tile<R: Register, const OB: usize, const K: usize, const V: usize>(
        x: *const f32,
        w: *const f32,
        bias: &[f32],
        s: &TileShape,
        out: Store,
    ) {
        let l = R::L;
        let mut acc = [[R::zero(); V]; K];
        for (o, acc) in acc.iter_mut().enumerate() {
            *acc = [R::splat(bias[o]); V];
        }
        if (s.kh, s.kw) == (1, 1) {
            // One tap per channel: a flat loop without the row and column loops' branches.
            if s.offsets.is_empty() {
                for ic in 0..s.c {
                    tap(&mut acc, x.add(ic * s.plane), w.add(ic * OB));
                }
            } else {
                for (ic, &at) in s.offsets.iter().enumerate() {
                    tap(&mut acc, x.add(at), w.add(ic * OB));
                }
            }
        } else {
            let mut wp = w;
            for ic in 0..s.c {
                let xc = x.add(s.channel(ic));
                for kr in 0..s.kh {
                    let xr = xc.add(kr * s.stride);
                    for ks in 0..s.kw {
                        tap(&mut acc, xr.add(ks), wp);
                        wp = wp.add(OB);
                    }
                }
            }
        }
        for (o, acc) in acc.iter().enumerate().take(out.channels) {
            for (j, &a) in acc.iter().enumerate() {
                let a = if out.relu { a.relu() } else { a };
                a.store(out.ptr.add(o * out.stride + j * l));
            }
        }
    }

    /// One tap: V input registers from `xt`, times the block's K weights from `wt`. A function
    /// rather than a closure: a closure is compiled outside the path's `target_feature`
    /// function, with calls to its intrinsics (the baseline `cnn` ran 50× slower on AVX2).
    ///
    /// # Safety
    /// As [`tile`]: `xt` has V·L readable floats, `wt` K.
    #[inline(always)]
    unsafe fn tap<R: Register, const K: usize, const V: usize>(
        acc: &mut [[R; V]; K],
        xt: *const f32,
        wt: *const f32,
    ) {
        let mut xv = [R::zero(); V];
        for (j, xv) in xv.iter_mut().enumerate() {
            *xv = R::load(xt.add(j * R::L));
        }
        for (o, acc) in acc.iter_mut().enumerate() {
            let wv = R::splat(*wt.add(o));
            for (a, &xv) in acc.iter_mut().zip(&xv) {
                *a = xv.mul_add(wv, *a);
            }
        }
    }
}

/// Writes an x86 path's module: its blocking, and its tiles as [`tiles`] instantiated with its
/// register type inside functions that enable its features. A block's last channels run in a
/// tile of the fewest of 2, 4 or all OB that holds them: a layer whose channels are not a
/// multiple of OB (32 = 5 · 6 + 2 on AVX2, the baseline's 16, CP-Mobile's 10 classes) computes
/// no padding channels but those of one pair.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_path {
    ($(#[$doc:meta])* mod $name:ident: $reg:ident, $feature:literal,
     L = $l:expr, OB = $ob:expr, V = $v:expr, GW_OB = $gob:expr, GW_SB = $gsb:expr;) => {
        $(#[$doc])*
        mod $name {
            use super::{tiles, GwShape, Store, TileShape};
            use crate::kernels::lanes::x86::$reg;

            pub const L: usize = $l;
            pub const OB: usize = $ob;
            pub const V: usize = $v;
            pub const GW_OB: usize = $gob;
            pub const GW_SB: usize = $gsb;

            /// # Safety
            /// As `tiles::gw_tile` on this path.
            #[target_feature(enable = $feature)]
            pub unsafe fn gw_tile(gy: *const f32, x: *const f32, s: &GwShape, acc: &mut [f32]) {
                tiles::gw_tile::<$reg, GW_OB, GW_SB>(gy, x, s, acc)
            }

            /// # Safety
            /// As `tiles::tile` on this path, `out.channels` ≤ OB.
            pub unsafe fn tile_of<const V: usize>(
                x: *const f32,
                w: *const f32,
                bias: &[f32],
                s: &TileShape,
                out: Store,
            ) {
                match out.channels {
                    0..=2 => tile::<2, V>(x, w, bias, s, out),
                    3..=4 => tile::<4, V>(x, w, bias, s, out),
                    _ => tile::<OB, V>(x, w, bias, s, out),
                }
            }

            #[target_feature(enable = $feature)]
            unsafe fn tile<const K: usize, const V: usize>(
                x: *const f32,
                w: *const f32,
                bias: &[f32],
                s: &TileShape,
                out: Store,
            ) {
                tiles::tile::<$reg, OB, K, V>(x, w, bias, s, out)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
x86_path! {
    /// 24 accumulators (8 channels × 3 registers) of the 32 registers.
    mod avx512: Zmm, "avx512f", L = 16, OB = 8, V = 3, GW_OB = 3, GW_SB = 7;
}

#[cfg(target_arch = "x86_64")]
x86_path! {
    /// Twelve accumulators (6 × 2 registers), two input registers and a broadcast weight fill
    /// the 16 registers: with eight (4 × 2) an FMA's 4-cycle latency left the two FMA ports idle
    /// whenever a load came late (CP-Mobile's 1×1 convs ran at 25–31 GMAC/s; 11 % faster plan
    /// at 6, docs/benchmarks.md).
    mod avx2: Ymm, "avx2,fma", L = 8, OB = 6, V = 2, GW_OB = 3, GW_SB = 4;
}

mod portable {
    use super::{GwShape, TileShape};

    pub const L: usize = 8;
    pub const OB: usize = 4;
    pub const V: usize = 2;

    pub const GW_OB: usize = 2;
    pub const GW_SB: usize = 4;

    /// As `tiles::gw_tile`, in plain Rust over fixed-size arrays.
    pub fn gw_tile(gy: &[f32], x: &[f32], s: &GwShape, acc: &mut [f32]) {
        let mut a = [[[0.0f32; L]; GW_SB]; GW_OB];
        for (o, a) in a.iter_mut().enumerate() {
            for (k, a) in a.iter_mut().enumerate() {
                a.copy_from_slice(&acc[(o * GW_SB + k) * L..][..L]);
            }
        }
        for i in 0..s.rows {
            for v in 0..s.vecs {
                let mut g = [[0.0f32; L]; GW_OB];
                for (o, g) in g.iter_mut().enumerate() {
                    g.copy_from_slice(&gy[o * s.gy_plane + i * s.gy_stride + v * L..][..L]);
                }
                for k in 0..GW_SB {
                    let xv: &[f32; L] = x[i * s.x_stride + v * L + k..][..L].try_into().unwrap();
                    for o in 0..GW_OB {
                        for j in 0..L {
                            a[o][k][j] += g[o][j] * xv[j];
                        }
                    }
                }
            }
        }
        for (o, a) in a.iter().enumerate() {
            for (k, a) in a.iter().enumerate() {
                acc[(o * GW_SB + k) * L..][..L].copy_from_slice(a);
            }
        }
    }

    const T: usize = L * V;

    /// Plain Rust over fixed-size arrays, which the compiler vectorises for the baseline target.
    pub fn tile(x: &[f32], w: &[f32], bias: &[f32], s: &TileShape) -> [[f32; T]; OB] {
        let mut acc = [[0.0f32; T]; OB];
        for (o, a) in acc.iter_mut().enumerate() {
            *a = [bias[o]; T];
        }
        let mut wi = 0;
        for ic in 0..s.c {
            for kr in 0..s.kh {
                let xr = &x[s.channel(ic) + kr * s.stride..];
                for ks in 0..s.kw {
                    let xv: &[f32; T] = xr[ks..ks + T].try_into().unwrap();
                    for (o, a) in acc.iter_mut().enumerate() {
                        let wv = w[wi + o];
                        for j in 0..T {
                            a[j] += xv[j] * wv;
                        }
                    }
                    wi += OB;
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{max_abs_diff, naive_conv, test_values as values};

    fn naive(x: &[f32], n: usize, w: &[f32], b: &[f32], g: &Conv) -> Vec<f32> {
        naive_conv(x, n, w, b, &(*g).into())
    }

    /// Shapes that exercise partial channel blocks, partial tiles, one-column outputs,
    /// asymmetric kernels and paddings, no padding, and 1×1 convs read in place (77 columns: a
    /// partial last tile on every path; 48: whole tiles on every path).
    const SHAPES: [Conv; 7] = [
        Conv {
            c: 3,
            h: 9,
            w: 37,
            o: 5,
            kh: 7,
            kw: 7,
            ph: 3,
            pw: 3,
        },
        Conv {
            c: 16,
            h: 20,
            w: 50,
            o: 16,
            kh: 3,
            kw: 3,
            ph: 1,
            pw: 1,
        },
        Conv {
            c: 2,
            h: 5,
            w: 70,
            o: 33,
            kh: 1,
            kw: 5,
            ph: 0,
            pw: 2,
        },
        Conv {
            c: 4,
            h: 6,
            w: 6,
            o: 9,
            kh: 3,
            kw: 3,
            ph: 0,
            pw: 0,
        },
        Conv {
            c: 1,
            h: 8,
            w: 3,
            o: 17,
            kh: 2,
            kw: 3,
            ph: 1,
            pw: 0,
        },
        Conv {
            c: 5,
            h: 7,
            w: 11,
            o: 10,
            kh: 1,
            kw: 1,
            ph: 0,
            pw: 0,
        },
        Conv {
            c: 3,
            h: 4,
            w: 12,
            o: 8,
            kh: 1,
            kw: 1,
            ph: 0,
            pw: 0,
        },
    ];

    /// A bias given at run time and a folded ReLU give, bit for bit, the packed bias and a
    /// separate `max(·, 0)` pass.
    #[test]
    fn given_bias_and_folded_relu_match_separate_steps() {
        for g in SHAPES {
            let n = 2;
            let x = values(n * g.c * g.h * g.w, 4);
            let w = values(g.o * g.c * g.kh * g.kw, 5);
            let b = values(g.o, 6);
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let want: Vec<f32> = forward(&x, n, &Packed::new(g, &w, Some(&b), isa))
                    .into_iter()
                    .map(|v| v.max(0.0))
                    .collect();
                assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
                let mut got = vec![f32::NAN; want.len()];
                forward_into(
                    &x,
                    n,
                    &Packed::new(g, &w, None, isa),
                    Some(&b),
                    true,
                    &mut got,
                );
                assert_eq!(got, want, "{isa:?} {g:?}");
            }
        }
    }

    #[test]
    fn every_path_matches_the_definition() {
        for g in SHAPES {
            let n = 2;
            let x = values(n * g.c * g.h * g.w, 1);
            let w = values(g.o * g.c * g.kh * g.kw, 2);
            let b = values(g.o, 3);
            let want = naive(&x, n, &w, &b, &g);
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let got = forward(&x, n, &Packed::new(g, &w, Some(&b), isa));
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-5, "{isa:?} {g:?}: max error {err:e}");
            }
        }
    }

    /// Both vector paths add the taps in the same order with FMA, so they agree bit for bit:
    /// a model gives the same numbers on machines with and without AVX-512.
    #[test]
    fn vector_paths_agree_bitwise() {
        if !(Isa::Avx512.available() && Isa::Avx2.available()) {
            return;
        }
        for g in SHAPES {
            let x = values(g.c * g.h * g.w, 4);
            let w = values(g.o * g.c * g.kh * g.kw, 5);
            let a = forward(&x, 1, &Packed::new(g, &w, None, Isa::Avx512));
            let b = forward(&x, 1, &Packed::new(g, &w, None, Isa::Avx2));
            assert!(a == b, "{g:?}");
        }
    }

    /// The adjoint is the transpose: <conv(x), y> = <x, adjoint(y)> for every x, y.
    #[test]
    fn adjoint_is_the_transpose() {
        for g in SHAPES {
            let a = g.adjoint().unwrap();
            assert_eq!((a.oh(), a.ow()), (g.h, g.w));
            let x = values(g.c * g.h * g.w, 6);
            let w = values(g.o * g.c * g.kh * g.kw, 7);
            let y = values(g.o * g.oh() * g.ow(), 8);
            let zero = vec![0.0; g.o];
            let cx = naive(&x, 1, &w, &zero, &g);
            let aw = adjoint_weights(&g, &w);
            let ay = forward(&y, 1, &Packed::new(a, &aw, None, Isa::best()));
            let dot = |p: &[f32], q: &[f32]| {
                p.iter()
                    .zip(q)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let (l, r) = (dot(&cx, &y), dot(&x, &ay));
            assert!((l - r).abs() < 1e-4 * (1.0 + l.abs()), "{g:?}: {l} vs {r}");
        }
    }

    /// dW[o,c,r,s] = Σ gy[o,i,j] · x[c, i+r−ph, j+s−pw] in float64, padding by bounds checks.
    fn naive_weight_gradient(x: &[f32], gy: &[f32], g: &Conv) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut dw = vec![0.0f32; g.o * g.c * g.kh * g.kw];
        for o in 0..g.o {
            for c in 0..g.c {
                for r in 0..g.kh {
                    for s in 0..g.kw {
                        let mut sum = 0.0f64;
                        for i in 0..oh {
                            for j in 0..ow {
                                let (ir, ic) =
                                    ((i + r).wrapping_sub(g.ph), (j + s).wrapping_sub(g.pw));
                                if ir < g.h && ic < g.w {
                                    sum += gy[(o * oh + i) * ow + j] as f64
                                        * x[(c * g.h + ir) * g.w + ic] as f64;
                                }
                            }
                        }
                        dw[((o * g.c + c) * g.kh + r) * g.kw + s] = sum as f32;
                    }
                }
            }
        }
        dw
    }

    #[test]
    fn weight_gradient_matches_the_definition_on_every_path() {
        let tall = Conv {
            c: 2,
            h: 21,
            w: 19,
            o: 4,
            kh: 7,
            kw: 7,
            ph: 3,
            pw: 3,
        };
        for g in SHAPES.into_iter().chain([tall]) {
            let x = values(g.c * g.h * g.w, 9);
            let gy = values(g.o * g.oh() * g.ow(), 10);
            let want = naive_weight_gradient(&x, &gy, &g);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let got = weight_gradient(&x, &gy, &g, isa);
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-5 * scale, "{isa:?} {g:?}: max error {err:e}");
            }
        }
    }

    #[test]
    fn no_adjoint_for_padding_beyond_the_kernel() {
        let g = Conv {
            c: 1,
            h: 4,
            w: 4,
            o: 1,
            kh: 3,
            kw: 3,
            ph: 3,
            pw: 1,
        };
        assert!(g.adjoint().is_none());
    }
}
