//! Stride-1 convolution with Winograd's minimal filtering along the width, for inference: the
//! same result as [`super::conv`] to float32 rounding (about 1e-6 of Σ|terms| instead of 1e-8;
//! an output at a padded edge, whose tile mixes its neighbours' inputs, can be off by more
//! relative to its own few terms, never by more than ~1e-5 of the layer's largest Σ|terms|)
//! with fewer multiply-adds.
//!
//! Why: the baseline CNN's 16→16 7×7 conv already runs near the FMA peak as a direct
//! convolution (`docs/benchmarks.md`), so it can only get faster by doing less arithmetic.
//! F(m, r) computes m neighbouring outputs of an r-tap correlation with n = m + r − 1 products,
//! y = Aᵀ[(G g) ⊙ (Bᵀ d)], instead of m · r. Applied to each kernel row along the width only
//! (a 1-D transform), a KH × KW conv costs KH · n / m products per output and channel pair
//! instead of KH · KW: F(6, 7) makes the 7×7 conv's 49 into 14, 3.5× fewer. The input transform
//! Bᵀ d of a row is shared by every output channel and every kernel row that reads it, and the
//! output transform by every input channel, so with 16 channels both stay small; a 2-D transform
//! (F(m×m, r×r)) would save more products but pay n² transforms per tile and input channel.
//!
//! Layout: the products are, for each of the n transform points ξ, a conv with a KH × 1 kernel
//! over the transformed rows, vectorised over tiles: exactly what the direct kernel's register
//! tile computes (`conv::tile_of` with KW = 1). Per task (one sample, one block of tiles, a run
//! of output rows), the transformed input rows live in a ring of 2·KH slots (each row written
//! twice, so any KH consecutive rows are contiguous); a new output row transforms one new input
//! row: its segment is copied out of the input (zeros for padding), prefetched one row ahead
//! (rows of different channels are a plane apart, which the hardware prefetchers do not
//! follow), and each tile's inputs are gathered from it with stride m. The transforms are fused multiply-adds in a fixed order on 16-lane vectors, so the
//! AVX-512 and AVX2 paths give the same bits.
//!
//! The matrices come from `scripts/gen_winograd.py` (exact fractions; points 0, ±1, ±2, ±1/2,
//! ±3/2, ±2/3 keep the float32 error near 5e-7 of Σ|terms| for F(6, 7)).

use super::conv::{self, Conv, SyncPtr, TileShape};
#[cfg(target_arch = "x86_64")]
use super::lanes::x86;
use super::lanes::{Lanes, LANES};
use super::Isa;
use rayon::prelude::*;

#[path = "winograd_tables.rs"]
mod tables;

/// One F(m, r) algorithm, row-major: `at` is m × n, `g` n × r, `bt` n × n (n = m + r − 1).
pub struct Table {
    pub m: usize,
    pub r: usize,
    pub at: &'static [f64],
    pub g: &'static [f64],
    pub bt: &'static [f64],
}

impl Table {
    /// Transform points, n = m + r − 1.
    pub fn n(&self) -> usize {
        self.m + self.r - 1
    }

    /// Every generated table.
    pub fn all() -> &'static [Table] {
        tables::TABLES
    }

    /// The table F(m, r), if generated.
    pub fn get(m: usize, r: usize) -> Option<&'static Table> {
        Table::all().iter().find(|t| t.m == m && t.r == r)
    }

    /// The algorithm for `g` on path `isa`, or `None` where the direct kernel is faster: tables
    /// of its width, the one with the fewest products per output row (n × tiles, tiles rounded
    /// up to whole vectors: F(6, 7) for 431 columns, F(4, 7) for 43). With few input channels
    /// the input transform (n² per tile and channel) is not shared: the 1→16 7×7 conv ran
    /// 1.1 ms direct against 1.4 ms as F(4, 7) on the AVX-512 path, so that path (and the
    /// portable one) takes Winograd from 4 channels; the AVX2 direct kernel is slower (2.3 ms
    /// against 1.5, `cargo bench --bench kernels` on an AMD EPYC), so AVX2 takes it always.
    pub fn for_conv(g: &Conv, isa: Isa) -> Option<&'static Table> {
        if g.c < 4 && isa != Isa::Avx2 {
            return None;
        }
        Table::all()
            .iter()
            .filter(|t| t.r == g.kw)
            .min_by_key(|t| t.n() * g.ow().div_ceil(t.m).div_ceil(LANES) * LANES)
    }
}

/// Output rows per task: each task first transforms KH − 1 rows of warm-up, so longer runs
/// waste less; 32 still leaves a 128-row layer four tasks per block of tiles for the cores.
const ROWS_PER_TASK: usize = 32;

/// Weights transformed and packed for one instruction set: for each block of OB output
/// channels and each point ξ, (G w)[ξ] as [c][kh][OB] (the direct tile's layout with KW = 1).
pub struct Packed {
    isa: Isa,
    g: Conv,
    t: &'static Table,
    data: Vec<f32>,
    bias: Vec<f32>,
    at: Vec<f32>,
    bt: Vec<f32>,
}

impl Packed {
    /// `w` is O × C × KH × KW, `bias` O values; `None` where [`Table::for_conv`] has no
    /// algorithm.
    pub fn new(g: Conv, w: &[f32], bias: Option<&[f32]>, isa: Isa) -> Option<Packed> {
        Table::for_conv(&g, isa).map(|t| Packed::with_table(g, w, bias, isa, t))
    }

    /// As [`Packed::new`] with a chosen table (tests run every one).
    pub fn with_table(
        g: Conv,
        w: &[f32],
        bias: Option<&[f32]>,
        isa: Isa,
        t: &'static Table,
    ) -> Packed {
        assert!(isa.available(), "{isa:?} kernels on a CPU without them");
        assert!(g.is_valid(), "conv geometry {g:?} has an empty output");
        assert_eq!(t.r, g.kw, "F({}, {}) for a kernel {} wide", t.m, t.r, g.kw);
        assert_eq!(w.len(), g.o * g.c * g.kh * g.kw, "conv weight size");
        let (_, ob, _) = conv::blocking(isa);
        let (n, blocks, taps) = (t.n(), g.o.div_ceil(ob), g.c * g.kh);
        let mut data = vec![0.0; blocks * n * taps * ob];
        for o in 0..g.o {
            for tap in 0..taps {
                let row = &w[(o * taps + tap) * g.kw..][..g.kw];
                for xi in 0..n {
                    let v: f64 = (0..g.kw).map(|k| t.g[xi * t.r + k] * row[k] as f64).sum();
                    data[(((o / ob) * n + xi) * taps + tap) * ob + o % ob] = v as f32;
                }
            }
        }
        Packed {
            isa,
            g,
            t,
            data,
            bias: conv::block_bias(bias, g.o, blocks * ob),
            at: t.at.iter().map(|&v| v as f32).collect(),
            bt: t.bt.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The path the weights were packed for, which runs them.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Outputs per tile m and kernel width r of the algorithm.
    pub fn algorithm(&self) -> (usize, usize) {
        (self.t.m, self.t.r)
    }
}

/// Forward convolution of `n` inputs (N × C × H × W) into N × O × OH × OW, as
/// [`conv::forward_into`].
pub fn forward_into(x: &[f32], n: usize, p: &Packed, y: &mut [f32]) {
    let g = p.g;
    let (oh, ow) = (g.oh(), g.ow());
    assert_eq!(x.len(), n * g.c * g.h * g.w, "conv input size");
    assert_eq!(y.len(), n * g.o * oh * ow, "conv output size");
    let (l, _, vmax) = conv::blocking(p.isa);
    // Tiles come in whole 16-lane vectors (the transforms' width); a block of tiles is as many
    // of those as the path's register tile holds (AVX-512 3, AVX2 and portable 1).
    let widest = (vmax * l) / LANES * LANES;
    let tiles = ow.div_ceil(p.t.m).div_ceil(LANES) * LANES;
    let blocks: Vec<(usize, usize)> = (0..tiles)
        .step_by(widest)
        .map(|t0| (t0, widest.min(tiles - t0)))
        .collect();
    let chunks = oh.div_ceil(ROWS_PER_TASK);
    let out = SyncPtr(y.as_mut_ptr());
    (0..n * blocks.len() * chunks)
        .into_par_iter()
        .for_each(|k| {
            let (i, k) = (k / (blocks.len() * chunks), k % (blocks.len() * chunks));
            let (t0, tw) = blocks[k / chunks];
            let r0 = (k % chunks) * ROWS_PER_TASK;
            let rows = r0..(r0 + ROWS_PER_TASK).min(oh);
            let xi = &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w];
            let out = &out;
            // SAFETY (of what `run` does with the pointers): tasks cover distinct (row, tile)
            // ranges of distinct samples, so the written ranges are disjoint.
            Task::new(p, xi, t0, tw).run(rows, |o, r| unsafe {
                out.0.add(((i * g.o + o) * oh + r) * ow)
            });
        });
}

/// One task's buffers: the segment of one padded input row its tiles read, the ring of
/// transformed rows (C × 2KH slots × n points × `tw` tiles), the products of one channel block
/// (n × OB × tw), and one output row of one channel for a block that runs past column OW.
struct Task<'a> {
    p: &'a Packed,
    /// One sample's input, C × H × W.
    x: &'a [f32],
    t0: usize,
    tw: usize,
    segment: Vec<f32>,
    ring: Vec<f32>,
    prod: Vec<f32>,
    cols: Vec<f32>,
}

impl<'a> Task<'a> {
    fn new(p: &'a Packed, x: &'a [f32], t0: usize, tw: usize) -> Task<'a> {
        let (g, n) = (p.g, p.t.n());
        let (_, ob, _) = conv::blocking(p.isa);
        Task {
            p,
            x,
            t0,
            tw,
            segment: vec![0.0; p.t.m * (tw - 1) + n + LANES],
            ring: vec![0.0; g.c * 2 * g.kh * n * tw],
            prod: vec![0.0; n * ob * tw],
            cols: vec![0.0; p.t.m * tw],
        }
    }

    /// Output rows `rows` of this task's tiles into the rows `dst(o, r)` points at (OW floats
    /// each, of which this task writes its tiles' columns).
    fn run(&mut self, rows: std::ops::Range<usize>, dst: impl Fn(usize, usize) -> *mut f32) {
        let (g, n, m, tw) = (self.p.g, self.p.t.n(), self.p.t.m, self.tw);
        let (l, ob, _) = conv::blocking(self.p.isa);
        for h in rows.start..rows.start + g.kh - 1 {
            self.transform(h);
        }
        let shape = TileShape {
            plane: 2 * g.kh * n * tw,
            stride: n * tw,
            c: g.c,
            kh: g.kh,
            kw: 1,
            offsets: &[],
        };
        let zero = [0.0f32; 16];
        let ow = g.ow();
        for r in rows {
            self.transform(r + g.kh - 1);
            let first = r % g.kh;
            for b in 0..g.o.div_ceil(ob) {
                for xi in 0..n {
                    let w = &self.p.data[(b * n + xi) * g.c * g.kh * ob..][..g.c * g.kh * ob];
                    // SAFETY: the ring holds 2KH slots per channel, so rows first..first+KH of
                    // every channel are in it, each n · tw floats with tw = v · L; `w` holds
                    // c · kh · OB floats and `prod` OB · tw from xi · OB · tw.
                    unsafe {
                        conv::tile_of(
                            self.p.isa,
                            tw / l,
                            self.ring.as_ptr().add((first * n + xi) * tw),
                            w.as_ptr(),
                            &zero[..ob],
                            &shape,
                            conv::Store {
                                ptr: self.prod[xi * ob * tw..][..ob * tw].as_mut_ptr(),
                                stride: tw,
                                channels: ob.min(g.o - b * ob),
                                relu: false,
                            },
                        )
                    };
                }
                let col = m * self.t0;
                // Blocks inside the row write their outputs in place; the last one, which may
                // run past column OW, goes through `cols`.
                let inside = col + m * tw <= ow;
                for j in 0..ob.min(g.o - b * ob) {
                    let o = b * ob + j;
                    let prod = &self.prod[j * tw..];
                    // SAFETY: `dst` gives a row of OW floats; columns col..col + m·tw are in it
                    // when `inside`, and col < OW always (a block starts at a tile below OW / m).
                    unsafe {
                        let row = dst(o, r).add(col);
                        if inside {
                            let cols = std::slice::from_raw_parts_mut(row, m * tw);
                            output(self.p, prod, ob * tw, self.p.bias[o], cols);
                        } else {
                            output(self.p, prod, ob * tw, self.p.bias[o], &mut self.cols);
                            std::ptr::copy_nonoverlapping(self.cols.as_ptr(), row, ow - col);
                        }
                    }
                }
            }
        }
    }

    /// Bᵀ applied to padded input row `h` of every channel, for this task's tiles, into both of
    /// its ring slots.
    fn transform(&mut self, h: usize) {
        let (g, n, tw) = (self.p.g, self.p.t.n(), self.tw);
        let slot = h % g.kh;
        let size = n * tw;
        for c in 0..g.c {
            let plane = &mut self.ring[c * 2 * g.kh * size..][..2 * g.kh * size];
            let (lo, hi) = plane.split_at_mut(g.kh * size);
            let dst = (
                &mut lo[slot * size..][..size],
                &mut hi[slot * size..][..size],
            );
            match h.checked_sub(g.ph).filter(|&r| r < g.h) {
                Some(r) => {
                    if r + 1 < g.h {
                        let next = &self.x[(c * g.h + r + 1) * g.w..][..g.w];
                        let from = (self.p.t.m * self.t0).saturating_sub(g.pw).min(g.w);
                        let to = (from + self.segment.len()).min(g.w);
                        prefetch(&next[from..to]);
                    }
                    let row = &self.x[(c * g.h + r) * g.w..][..g.w];
                    segment(row, g.pw, self.p.t.m, self.t0, &mut self.segment);
                    input(self.p, &self.segment, dst);
                }
                None => {
                    dst.0.fill(0.0);
                    dst.1.fill(0.0);
                }
            }
        }
    }
}

/// Asks for `data` in L1 ahead of its use: each output row reads one new input row per channel,
/// rows a plane apart, which the hardware prefetchers do not follow.
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch has no effect beyond the cache; the address is in `data`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
}

/// `out[u]` = padded column m·t0 + u of `row` (left padding `pw`, zeros beyond).
fn segment(row: &[f32], pw: usize, m: usize, t0: usize, out: &mut [f32]) {
    let base = m * t0;
    // Input column base + u − pw is within the row for u in first..end.
    let first = pw.saturating_sub(base).min(out.len());
    let end = (row.len() + pw)
        .saturating_sub(base)
        .clamp(first, out.len());
    out[..first].fill(0.0);
    out[first..end].copy_from_slice(&row[base + first - pw..][..end - first]);
    out[end..].fill(0.0);
}

/// Runs `$f::<$lanes, M, N>(args)` for the table's m and n = m + r − 1: the transforms are
/// instantiated per table so their point loops unroll and their vectors stay in registers.
macro_rules! per_table {
    ($t:expr, $f:ident::<$lanes:ty>($($a:expr),*)) => {
        match ($t.m, $t.n()) {
            (4, 6) => $f::<$lanes, 4, 6>($($a),*),
            (4, 8) => $f::<$lanes, 4, 8>($($a),*),
            (4, 10) => $f::<$lanes, 4, 10>($($a),*),
            (6, 12) => $f::<$lanes, 6, 12>($($a),*),
            (m, n) => unreachable!("no transform instantiated for m = {m}, n = {n}"),
        }
    };
}

/// Runs `$f` on the path's vector type (the path was checked available when the weights were
/// packed).
macro_rules! per_path {
    ($p:expr, $avx512:ident, $avx2:ident, $f:ident($($a:expr),*)) => {
        match $p.isa {
            // SAFETY: the CPU has the path's features (checked in `Packed::with_table`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { $avx512($p, $($a),*) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { $avx2($p, $($a),*) },
            // SAFETY: the array type needs no CPU feature.
            _ => unsafe { per_table!($p.t, $f::<[f32; LANES]>($p, $($a),*)) },
        }
    };
}

/// `dst[ξ][t] = Σ_j Bᵀ[ξ][j] · d[m·t + j]` for one row segment `d` of one channel, into both
/// ring slots of the row.
fn input(p: &Packed, d: &[f32], dst: (&mut [f32], &mut [f32])) {
    let tw = dst.0.len() / p.t.n();
    assert!(d.len() >= p.t.m * (tw - 1) + p.t.n() && dst.1.len() == dst.0.len());
    per_path!(p, input_avx512, input_avx2, input_body(d, dst))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_avx512(p: &Packed, d: &[f32], dst: (&mut [f32], &mut [f32])) {
    per_table!(p.t, input_body::<x86::Avx512>(p, d, dst))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_avx2(p: &Packed, d: &[f32], dst: (&mut [f32], &mut [f32])) {
    per_table!(p.t, input_body::<x86::Avx2>(p, d, dst))
}

/// # Safety
/// The CPU has the features of `V`; `d` holds the inputs of `dst.0.len() / N` tiles, `dst.1`
/// is as long as `dst.0` (checked by [`input`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // bt[ξ][j] by index reads as the formula
unsafe fn input_body<V: Lanes, const M: usize, const N: usize>(
    p: &Packed,
    d: &[f32],
    dst: (&mut [f32], &mut [f32]),
) {
    let bt = &*(p.bt.as_ptr() as *const [[f32; N]; N]);
    let tw = dst.0.len() / N;
    let (d, lo, hi) = (d.as_ptr(), dst.0.as_mut_ptr(), dst.1.as_mut_ptr());
    for k in (0..tw).step_by(LANES) {
        let mut acc = [V::zero(); N];
        for j in 0..N {
            // Input j of tiles k..k + 16.
            let d = V::gather(d.add(M * k + j), M);
            for (xi, acc) in acc.iter_mut().enumerate() {
                *acc = d.mul_add(V::splat(bt[xi][j]), *acc);
            }
        }
        for (xi, acc) in acc.iter().enumerate() {
            acc.store(lo.add(xi * tw + k));
            acc.store(hi.add(xi * tw + k));
        }
    }
}

/// One output channel's row: `bias + Σ_ξ Aᵀ[i][ξ] · prod[ξ][t]` for every tile t and output i
/// of it, written in column order (m·t + i) into `cols`; the products of point ξ start at
/// `prod[ξ · stride]`.
fn output(p: &Packed, prod: &[f32], stride: usize, bias: f32, cols: &mut [f32]) {
    let tw = cols.len() / p.t.m;
    assert!(prod.len() >= (p.t.n() - 1) * stride + tw);
    per_path!(
        p,
        output_avx512,
        output_avx2,
        output_body(prod, stride, bias, cols)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(p: &Packed, prod: &[f32], stride: usize, bias: f32, cols: &mut [f32]) {
    per_table!(p.t, output_body::<x86::Avx512>(p, prod, stride, bias, cols))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_avx2(p: &Packed, prod: &[f32], stride: usize, bias: f32, cols: &mut [f32]) {
    per_table!(p.t, output_body::<x86::Avx2>(p, prod, stride, bias, cols))
}

/// # Safety
/// The CPU has the features of `V`; `prod` holds N points `stride` apart of `cols.len() / M`
/// tiles (checked by [`output`]).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // at[i][ξ] by index reads as the formula
unsafe fn output_body<V: Lanes, const M: usize, const N: usize>(
    p: &Packed,
    prod: &[f32],
    stride: usize,
    bias: f32,
    cols: &mut [f32],
) {
    let at = &*(p.at.as_ptr() as *const [[f32; N]; M]);
    let tw = cols.len() / M;
    let prod = prod.as_ptr();
    for k in (0..tw).step_by(LANES) {
        let mut acc = [V::splat(bias); M];
        for xi in 0..N {
            let v = V::load(prod.add(xi * stride + k));
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = v.mul_add(V::splat(at[i][xi]), *acc);
            }
        }
        let mut rows = [[0.0f32; LANES]; M];
        for (row, acc) in rows.iter_mut().zip(&acc) {
            acc.store(row.as_mut_ptr());
        }
        let out = &mut cols[k * M..][..LANES * M];
        for (t, out) in out.chunks_exact_mut(M).enumerate() {
            for (i, out) in out.iter_mut().enumerate() {
                *out = rows[i][t];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// Every table satisfies Σ_x Aᵀ[i][x] G[x][k] Bᵀ[x][j] = [j = i + k] (in float64), the
    /// identity that makes it compute a correlation; checked here apart from the generator.
    #[test]
    fn tables_compute_a_correlation() {
        for t in Table::all() {
            let n = t.n();
            for i in 0..t.m {
                for k in 0..t.r {
                    for j in 0..n {
                        let s: f64 = (0..n)
                            .map(|x| t.at[i * n + x] * t.g[x * t.r + k] * t.bt[x * n + j])
                            .sum();
                        let want = if j == i + k { 1.0 } else { 0.0 };
                        assert!(
                            (s - want).abs() < 1e-9,
                            "F({}, {}) [{i}][{k}][{j}]: {s}",
                            t.m,
                            t.r
                        );
                    }
                }
            }
        }
    }

    /// Float64 definition, with Σ|terms| of each output (the scale its rounding error has).
    fn naive(x: &[f32], n: usize, w: &[f32], b: &[f32], g: &Conv) -> (Vec<f64>, Vec<f64>) {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0; n * g.o * oh * ow];
        let mut scale = vec![0.0; y.len()];
        for i in 0..n {
            for o in 0..g.o {
                for r in 0..oh {
                    for col in 0..ow {
                        let k = ((i * g.o + o) * oh + r) * ow + col;
                        y[k] = b[o] as f64;
                        scale[k] = (b[o] as f64).abs();
                        for c in 0..g.c {
                            for kr in 0..g.kh {
                                for ks in 0..g.kw {
                                    let ir = (r + kr).wrapping_sub(g.ph);
                                    let ic = (col + ks).wrapping_sub(g.pw);
                                    if ir < g.h && ic < g.w {
                                        let xv = x[((i * g.c + c) * g.h + ir) * g.w + ic] as f64;
                                        let wv = w[((o * g.c + c) * g.kh + kr) * g.kw + ks] as f64;
                                        y[k] += xv * wv;
                                        scale[k] += (xv * wv).abs();
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, scale)
    }

    /// Partial channel blocks, partial tiles and tile blocks, rows beyond one task, widths below
    /// one tile, asymmetric kernels and no padding.
    fn shapes(r: usize) -> Vec<Conv> {
        let conv = |c, h, w, o, kh, ph, pw| Conv {
            c,
            h,
            w,
            o,
            kh,
            kw: r,
            ph,
            pw,
        };
        vec![
            conv(3, 9, 37, 5, 7, 3, r / 2),
            conv(16, 40, 431, 16, r, r / 2, r / 2),
            conv(1, 70, 20, 17, 3, 1, r / 2),
            conv(4, 6, r + 2, 9, 1, 0, 0),
            conv(2, 5, 3, 8, 2, 0, r / 2),
        ]
    }

    fn forward(x: &[f32], n: usize, p: &Packed) -> Vec<f32> {
        let mut y = vec![f32::NAN; n * p.g.o * p.g.oh() * p.g.ow()];
        forward_into(x, n, p, &mut y);
        y
    }

    #[test]
    fn every_table_and_path_matches_the_definition() {
        for t in Table::all() {
            for g in shapes(t.r) {
                let n = 2;
                let x = values(n * g.c * g.h * g.w, 1);
                let w = values(g.o * g.c * g.kh * g.kw, 2);
                let b = values(g.o, 3);
                let (want, scale) = naive(&x, n, &w, &b, &g);
                for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                    let got = forward(&x, n, &Packed::with_table(g, &w, Some(&b), isa, t));
                    let worst = got
                        .iter()
                        .zip(&want)
                        .zip(&scale)
                        .map(|((&y, &e), &s)| (y as f64 - e).abs() / s)
                        .fold(0.0, f64::max);
                    assert!(
                        worst < 2e-5,
                        "F({}, {}) {isa:?} {g:?}: error {worst:e} of Σ|terms|",
                        t.m,
                        t.r
                    );
                }
            }
        }
    }

    /// The vector paths differ only in vector width, so they agree bit for bit.
    #[test]
    fn vector_paths_agree_bitwise() {
        if !(Isa::Avx512.available() && Isa::Avx2.available()) {
            return;
        }
        for t in Table::all() {
            for g in shapes(t.r) {
                let x = values(g.c * g.h * g.w, 4);
                let w = values(g.o * g.c * g.kh * g.kw, 5);
                let a = forward(&x, 1, &Packed::with_table(g, &w, None, Isa::Avx512, t));
                let b = forward(&x, 1, &Packed::with_table(g, &w, None, Isa::Avx2, t));
                assert!(
                    a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "F({}, {}) {g:?}",
                    t.m,
                    t.r
                );
            }
        }
    }

    /// A sweep of small geometries (heights and widths around the tile and task sizes, every
    /// padding up to r − 1, batches of 1 to 3) on the widest path, each against the definition.
    #[test]
    fn a_sweep_of_small_geometries_matches_the_definition() {
        let isa = Isa::best();
        let mut k = 0u64;
        for t in Table::all() {
            for (h, w) in [
                (1, 1),
                (2, t.m),
                (5, t.m + 1),
                (33, 2 * t.m - 1),
                (3, 97),
                (34, 17),
            ] {
                for pw in [0, t.r / 2, t.r - 1] {
                    for (c, o, kh, ph) in [(1, 3, 1, 0), (4, 9, 3, 2), (5, 16, 7, 3)] {
                        k += 1;
                        let g = Conv {
                            c,
                            h,
                            w,
                            o,
                            kh,
                            kw: t.r,
                            ph,
                            pw,
                        };
                        if !g.is_valid() {
                            continue;
                        }
                        let n = 1 + (k % 3) as usize;
                        let x = values(n * c * h * w, k);
                        let wt = values(o * c * kh * t.r, k + 1);
                        let b = values(o, k + 2);
                        let (want, scale) = naive(&x, n, &wt, &b, &g);
                        let got = forward(&x, n, &Packed::with_table(g, &wt, Some(&b), isa, t));
                        // An output at a padded edge has few terms of its own, but its tile
                        // mixes the inputs of its neighbours: the rounding scales with the
                        // layer's outputs, not each output's own terms.
                        let scale = scale.iter().fold(0.0, |a: f64, &b| a.max(b));
                        let worst = got
                            .iter()
                            .zip(&want)
                            .map(|(&y, &e)| (y as f64 - e).abs() / scale)
                            .fold(0.0, f64::max);
                        assert!(worst < 1e-5, "F({}, {}) {g:?} n {n}: {worst:e}", t.m, t.r);
                    }
                }
            }
        }
    }

    #[test]
    fn the_algorithm_follows_width_and_channels() {
        let g = |c, w, kw| Conv {
            c,
            h: 4,
            w,
            o: 16,
            kh: 3,
            kw,
            ph: 1,
            pw: kw / 2,
        };
        let pick = |g: Conv| Table::for_conv(&g, Isa::Avx512).map(|t| (t.m, t.r));
        assert_eq!(pick(g(16, 431, 7)), Some((6, 7)));
        assert_eq!(pick(g(16, 43, 7)), Some((4, 7)));
        assert_eq!(pick(g(16, 86, 7)), Some((6, 7)));
        assert_eq!(pick(g(16, 50, 3)), Some((4, 3)));
        assert_eq!(pick(g(1, 431, 7)), None);
        assert_eq!(pick(g(16, 431, 2)), None);
        assert!(Table::for_conv(&g(1, 431, 7), Isa::Avx2).is_some());
    }
}
