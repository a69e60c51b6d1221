//! Depthwise 2-D convolution (groups = channels, one KH × KW filter per channel, channel
//! multiplier 1), NCHW, with separate height/width strides and zero paddings: the forward pass of
//! training's `nn::ops::depthwise` and of the depthwise convs swapped into tract's plan
//! (`src/infer/conv_op.rs`).
//!
//! Why our own: tract's depthwise op runs CP-Mobile's 3×3 layers at about 2 GMAC/s
//! (`docs/benchmarks.md`), and CP-Mobile's blocks carry strides (1, 1), (2, 2), (1, 2) and
//! (2, 1) on planes only 9 or 17 columns wide, where vectors over one output row would leave
//! most lanes idle.
//!
//! How: each input plane is first copied into SH × SW zero-padded *phase* planes, phase (a, b)
//! holding padded rows `a, a + SH, …` and columns `b, b + SW, …`, every row `P = OW + (KW−1)/SW`
//! wide. Tap (i, j) of output (r, t) then reads phase (i mod SH, j mod SW) at row r + i/SH,
//! column t + j/SW: for the flat index f = r·P + t that is `f + (i/SH)·P + j/SW`, one contiguous
//! run for every tap whatever the strides. The output plane is computed flat, OH × P values in
//! tiles of `V` vectors of `L` lanes (bias first, then the taps in row-major order, each a
//! multiply then an add), and the first OW of each row of P are kept. Where every read past a
//! phase row's OW-th column is padding, and padding again where the flat index wraps onto the
//! next row (odd widths with stride 2 across them: [`Depthwise::phases_fit_width`]), the rows
//! are OW wide instead and the flat output is the plane, written where it lies. The zero
//! borders of the phases are written once per buffer and stay zero from one plane to the next.
//!
//! A stride-1 plane whose padding keeps its size (OH × OW = H × W: most of CP-Mobile's layers,
//! UBN's BNET conv, and every such layer's input gradient) skips the phases on the AVX-512 and
//! AVX2 paths ([`InPlace`]): the flat trick runs on the input's own pitch with the taps that
//! would wrap into a neighbouring row masked off, and writes the output where it belongs. Its
//! weight gradient likewise reads both planes where they lie, on every path.
//!
//! Why not fused multiply-adds: with a separate multiply and add every path (AVX-512, AVX2,
//! portable) gives the same bits, and the same bits as the scalar training kernel this replaced
//! (a zero tap adds ±0, which changes nothing). That matters: `tests/model_grad_parity.rs`'s
//! cp-mobile + GN+ case moves by up to 2 % in its gradients (73 mismatches at its 1e-3
//! tolerance) when the depthwise forward rounds as FMA does, though its loss agrees to 6e-8. The
//! kernel is bound by loads and by copying planes, not by the arithmetic.

use super::copy::Rows;
use super::{reduce, Isa};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Geometry of one depthwise convolution: input C × H × W, weight C × 1 × KH × KW, stride
/// (SH, SW), zero padding (PH, PW) on both sides of each axis. PyTorch's output size (floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Depthwise {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Depthwise {
    /// Whether the output is non-empty: strides and kernel are positive and the padded input is
    /// at least the kernel's size.
    pub fn is_valid(&self) -> bool {
        self.oh() > 0 && self.ow() > 0
    }

    pub fn oh(&self) -> usize {
        super::out_len(self.h, self.kh, self.sh, self.ph).unwrap_or(0)
    }

    pub fn ow(&self) -> usize {
        super::out_len(self.w, self.kw, self.sw, self.pw).unwrap_or(0)
    }

    /// Row length of a phase plane and of the flat output.
    fn pitch(&self) -> usize {
        self.ow() + (self.kw - 1) / self.sw
    }

    /// Whether phase planes OW wide (instead of [`Depthwise::pitch`]) hold every value a tap
    /// reads: a tap whose column runs past OW − 1 of its phase must read padding there, and
    /// padding again where the flat index wraps onto the next row's first columns. True for
    /// odd widths with a 3×3 kernel, stride 2 and padding 1 (CP-Mobile's stems and its (1, 2)
    /// depthwise convs), whose flat outputs then are the output plane, with no cropping.
    pub(super) fn phases_fit_width(&self) -> bool {
        let ow = self.ow();
        (0..self.kw).all(|j| {
            let (q, b) = (j / self.sw, j % self.sw);
            (ow..ow + q)
                .all(|t| t * self.sw + b >= self.pw + self.w && (t - ow) * self.sw + b < self.pw)
        })
    }

    /// Rows of a phase plane.
    fn phase_rows(&self) -> usize {
        self.oh() + (self.kh - 1) / self.sh
    }

    /// One plane's SH × SW phase planes of pitch `p`, each [`Depthwise::phase_rows`] rows and
    /// `slack` floats more (what a tile reads past the last row): the layout of the module doc,
    /// shared with the strided dense convs (`im2col`), which lay out each channel so.
    pub(super) fn phases(&self, p: usize, slack: usize) -> Phases {
        let size = self.phase_rows() * p + slack;
        let taps = (0..self.kh)
            .flat_map(|i| (0..self.kw).map(move |j| (i, j)))
            .map(|(i, j)| {
                ((i % self.sh) * self.sw + j % self.sw) * size + (i / self.sh) * p + j / self.sw
            })
            .collect();
        let fill = (0..self.sh)
            .flat_map(|a| (0..self.sw).map(move |b| (a, b)))
            .filter_map(|(a, b)| {
                Rows::gather(
                    (self.h, self.w),
                    (self.sh, self.sw),
                    (self.ph, self.pw),
                    (a, b),
                    (self.phase_rows(), p),
                    ((a * self.sw + b) * size, p),
                )
            })
            .collect();
        Phases { size, fill, taps }
    }
}

/// A plane's phase layout ([`Depthwise::phases`]).
pub(super) struct Phases {
    /// Floats per phase plane (SH · SW of them).
    pub size: usize,
    /// The copies that fill the phases' interiors from an input plane, one per phase.
    pub fill: Vec<Rows>,
    /// Per tap, row-major, its offset into the phases for flat output 0.
    pub taps: Vec<usize>,
}

/// (lanes per vector, vectors per tile) of each path.
fn blocking(isa: Isa) -> (usize, usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (avx512::L, avx512::V),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (avx2::L, avx2::V),
        _ => (portable::L, portable::V),
    }
}

/// The index arithmetic of one geometry on one path, done once: per op in inference
/// ([`forward_planned`]), per call in training.
pub struct Plan {
    g: Depthwise,
    isa: Isa,
    /// Per tap, row-major, its offset into the phases for flat output 0.
    taps: Vec<usize>,
    /// Flat outputs computed, OH · P rounded up to whole tiles.
    n: usize,
    /// P: the row length of the phases and the flat output (OW where that fits).
    pitch: usize,
    /// Floats of all phase planes together.
    phases: usize,
    /// The copies that fill the phases' interiors from an input plane, one per phase.
    fill: Vec<Rows>,
    /// Set where the forward pass computes a plane where it lies instead.
    in_place: Option<InPlace>,
}

/// One task's buffers: the phase planes (zero borders written once) and the flat output.
struct Scratch {
    phases: Vec<f32>,
    flat: Vec<f32>,
}

/// A stride-1 plane whose padding keeps its size (OH × OW = H × W, CP-Mobile's 3×3 layers
/// and their input gradients) on the AVX-512 and AVX2 paths, computed without phase planes:
/// output f of the plane (row-major) reads input `f + offsets[t]` for tap t, the same flat
/// trick with the input's own pitch, and the taps that would wrap into a neighbouring row or
/// past the plane are masked off (loaded as zero, which is what the padding holds). Copying
/// each plane into and out of the phase planes had cost more than the arithmetic
/// (`docs/benchmarks.md`).
struct InPlace {
    /// Per tap, row-major: (i − PH)·W + (j − PW).
    offsets: Vec<isize>,
    masks: Masks,
}

/// Which lanes of each tap's load hold input rather than padding, in the form each path
/// applies them.
enum Masks {
    /// AVX-512: per tile of V vectors of L outputs (the plane padded to whole tiles), per tap,
    /// per vector, the lanes whose input lies inside the plane, as a mask register's bits.
    Lanes(Vec<u16>),
    /// AVX2, which has no mask registers and whose masked loads cost more than a plain load
    /// and an AND: per vector of L outputs (padded to whole tiles), per kernel column j, the
    /// lanes whose column t + j − PW lies inside the row (all bits set, else zero). Rows above
    /// and below the plane are masked at run time, on the vectors whose tap reaches outside it.
    Columns(Vec<[i32; 8]>),
}

impl InPlace {
    fn new(g: &Depthwise, isa: Isa) -> Option<InPlace> {
        if !keeps_size(g) {
            return None;
        }
        let (l, v) = blocking(isa);
        let n = g.h * g.w;
        let taps = tap_shifts(g);
        let masks = match isa {
            Isa::Avx512 => {
                let mut masks = vec![0u16; n.div_ceil(l * v) * v * taps.len()];
                for f in 0..n {
                    let (tile, vec) = (f / (l * v), f / l % v);
                    let m = &mut masks[tile * v * taps.len()..][..v * taps.len()];
                    for (m, &t) in m.iter_mut().skip(vec).step_by(v).zip(&taps) {
                        if reads_inside(g, f, t) {
                            *m |= 1 << (f % l);
                        }
                    }
                }
                Masks::Lanes(masks)
            }
            Isa::Avx2 => {
                let vectors = n.div_ceil(l * v) * v;
                let columns = (0..vectors * g.kw).map(|e| {
                    let (vec, j) = (e / g.kw, (e % g.kw) as isize - g.pw as isize);
                    std::array::from_fn(|lane| {
                        let t = ((vec * l + lane) % g.w) as isize + j;
                        if (0..g.w as isize).contains(&t) {
                            -1
                        } else {
                            0
                        }
                    })
                });
                Masks::Columns(columns.collect())
            }
            Isa::Portable => return None,
        };
        let w = g.w as isize;
        Some(InPlace {
            offsets: taps.iter().map(|&(di, dj)| di * w + dj).collect(),
            masks,
        })
    }
}

impl Plan {
    /// The forward pass's plan.
    pub fn new(g: &Depthwise, isa: Isa) -> Plan {
        assert!(isa.available(), "{isa:?} kernels on a CPU without them");
        assert!(g.is_valid(), "depthwise geometry {g:?} has an empty output");
        let pitch = if g.phases_fit_width() {
            g.ow()
        } else {
            g.pitch()
        };
        Plan {
            in_place: InPlace::new(g, isa),
            ..Plan::phased(g, isa, pitch)
        }
    }

    /// The path that runs it.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// A plan that lays every plane out in phases of pitch `p` (the weight gradient's, with
    /// [`Depthwise::pitch`]).
    fn phased(g: &Depthwise, isa: Isa, p: usize) -> Plan {
        let (l, v) = blocking(isa);
        let tile = l * v;
        let n = (g.oh() * p).div_ceil(tile) * tile;
        // A tile past the last row reads up to (kh−1)/sh rows and (kw−1)/sw columns further,
        // which the extra `tile + pitch` floats cover.
        let Phases { size, fill, taps } = g.phases(p, tile + g.pitch());
        Plan {
            g: *g,
            isa,
            taps,
            n,
            pitch: p,
            phases: g.sh * g.sw * size,
            fill,
            in_place: None,
        }
    }

    /// A task's buffers; none for a plane computed in place.
    fn scratch(&self) -> Scratch {
        let len = |n| if self.in_place.is_some() { 0 } else { n };
        Scratch {
            phases: vec![0.0; len(self.phases)],
            flat: vec![0.0; len(self.n)],
        }
    }
}

impl Scratch {
    /// Copies one input plane (H × W) into the phase planes' interiors.
    fn fill(&mut self, x: &[f32], plan: &Plan) {
        for rows in &plan.fill {
            rows.copy_slices(plan.isa, x, &mut self.phases);
        }
    }
}

/// Depthwise convolution of `n` inputs (N × C × H × W) with `w` (C × KH × KW) and an optional
/// bias (C), into N × C × OH × OW. Parallel over (sample, channel) planes.
pub fn forward(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Depthwise,
    isa: Isa,
) -> Vec<f32> {
    // Not zeroed first: every output is written (zeroing was a full extra pass over the output,
    // 3.6 % of a cp-mobile + UBN training epoch).
    let len = n * g.c * g.oh() * g.ow();
    let mut y = Vec::with_capacity(len);
    forward_uninit(
        x,
        n,
        w,
        bias,
        &Plan::new(g, isa),
        false,
        &mut y.spare_capacity_mut()[..len],
    );
    // SAFETY: the capacity is `len` and `forward_uninit` wrote every one of its values.
    unsafe { y.set_len(len) };
    y
}

/// [`forward`] into a caller's buffer of N × C × OH × OW floats.
pub fn forward_into(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Depthwise,
    isa: Isa,
    y: &mut [f32],
) {
    forward_planned(x, n, w, bias, &Plan::new(g, isa), false, y);
}

/// [`forward_into`] with the plan made beforehand (tract's op makes it once), each output
/// clamped at zero when `relu` (a following ReLU folded in: each plane while it is in L1,
/// instead of another pass over the whole output).
pub fn forward_planned(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    plan: &Plan,
    relu: bool,
    y: &mut [f32],
) {
    // SAFETY: the same memory seen as possibly uninitialised; only initialised values are
    // written through it.
    let y = unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) };
    forward_uninit(x, n, w, bias, plan, relu, y);
}

/// [`forward`] into a buffer it writes whole, clamped at zero when `relu`.
fn forward_uninit(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    plan: &Plan,
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    let g = &plan.g;
    let (hw, ohw, kk) = (g.h * g.w, g.oh() * g.ow(), g.kh * g.kw);
    assert_eq!(x.len(), n * g.c * hw, "depthwise input size");
    assert_eq!(w.len(), g.c * kk, "depthwise weight size");
    assert_eq!(y.len(), n * g.c * ohw, "depthwise output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.c, "depthwise bias size");
    }
    // Planes of a few thousand multiply-adds: several to a task.
    y.par_chunks_mut(ohw)
        .enumerate()
        .with_min_len(4)
        .for_each_init(
            || plan.scratch(),
            |s, (p, yp)| {
                let c = p % g.c;
                let b = bias.map_or(0.0, |b| b[c]);
                plane(&x[p * hw..][..hw], &w[c * kk..][..kk], b, plan, s, yp);
                if relu {
                    // SAFETY: `plane` wrote every value of `yp`.
                    let yp = unsafe { &mut *(yp as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    yp.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            },
        );
}

/// The kernel gradient (C × KH × KW) of [`forward`] for `n` inputs `x` and output gradients
/// `gy` (N × C × OH × OW), summed over the batch in f64. Parallel over channels.
///
/// How: with the input plane in its phase planes (as the forward pass lays it out) and `gy` laid
/// out flat at the same pitch, zeros in the P − OW columns no output owns, tap t's gradient is
/// one contiguous dot product, `gy_flat · phases[taps[t]..][..n]`, whatever the strides.
pub fn weight_gradient(x: &[f32], gy: &[f32], n: usize, g: &Depthwise, isa: Isa) -> Vec<f32> {
    assert!(g.is_valid(), "depthwise geometry {g:?} has an empty output");
    let (hw, ow, kk) = (g.h * g.w, g.ow(), g.kh * g.kw);
    let ohw = g.oh() * ow;
    assert_eq!(x.len(), n * g.c * hw, "depthwise input size");
    assert_eq!(gy.len(), n * g.c * ohw, "depthwise output gradient size");
    if keeps_size(g) {
        return weight_gradient_in_place(x, gy, n, g, isa);
    }
    let plan = Plan::phased(g, isa, g.pitch());
    let per_channel: Vec<Vec<f32>> = (0..g.c)
        .into_par_iter()
        .map_init(
            || plan.scratch(),
            |s, c| {
                let mut acc = vec![0f64; kk];
                for b in 0..n {
                    let plane = b * g.c + c;
                    s.fill(&x[plane * hw..][..hw], &plan);
                    let rows = Rows::crop(g.oh(), g.pitch(), ow).transposed();
                    rows.copy_slices(isa, &gy[plane * ohw..][..ohw], &mut s.flat);
                    for (a, &t) in acc.iter_mut().zip(&plan.taps) {
                        *a += reduce::dot(&s.flat, &s.phases[t..][..plan.n], isa);
                    }
                }
                acc.into_iter().map(|v| v as f32).collect()
            },
        )
        .collect();
    per_channel.concat()
}

/// [`weight_gradient`] of a stride-1 plane that keeps its size, with each tap's dot product
/// read where the planes lie ([`reduce::shifted_dots`], masked where the tap falls on padding)
/// instead of through phase planes: for UBN's BNET conv at every norm layer, filling the
/// phases and copying the output gradient had cost more than the dot products (`perf`,
/// `docs/benchmarks.md`). Same bits on every path; they differ from the phased sum's only by the
/// order of the (zero) padding terms and the lanes the values fall in.
fn weight_gradient_in_place(x: &[f32], gy: &[f32], n: usize, g: &Depthwise, isa: Isa) -> Vec<f32> {
    let (hw, kk, w) = (g.h * g.w, g.kh * g.kw, g.w as isize);
    let lanes = 16;
    let taps = tap_shifts(g);
    let masks: Vec<Vec<u16>> = taps
        .iter()
        .map(|&t| {
            let mut m = vec![0u16; hw.div_ceil(lanes)];
            for f in (0..hw).filter(|&f| reads_inside(g, f, t)) {
                m[f / lanes] |= 1 << (f % lanes);
            }
            m
        })
        .collect();
    let per_channel: Vec<Vec<f32>> = (0..g.c)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f64; kk];
            let plane = |b: usize| {
                let p = (b * g.c + c) * hw;
                (&x[p..][..hw], &gy[p..][..hw])
            };
            // Samples in pairs (an odd last one beside itself, its twin's sums dropped); each
            // sample's sums are still added in sample order.
            for b in (0..n).step_by(2) {
                let ((x0, g0), (x1, g1)) = (plane(b), plane((b + 1).min(n - 1)));
                for ((a, &(di, dj)), m) in acc.iter_mut().zip(&taps).zip(&masks) {
                    let [s0, s1] = reduce::shifted_dots([g0, g1], [x0, x1], di * w + dj, m, isa);
                    *a += s0;
                    if b + 1 < n {
                        *a += s1;
                    }
                }
            }
            acc.into_iter().map(|v| v as f32).collect()
        })
        .collect();
    per_channel.concat()
}

/// Per tap, row-major: the (row, column) shift from an output to the input it reads in a
/// plane that keeps its size, (i − PH, j − PW).
fn tap_shifts(g: &Depthwise) -> Vec<(isize, isize)> {
    let (ph, pw) = (g.ph as isize, g.pw as isize);
    (0..g.kh as isize)
        .flat_map(|i| (0..g.kw as isize).map(move |j| (i - ph, j - pw)))
        .collect()
}

/// Whether output `f` (row-major) of a plane that keeps its size reads, at shift `(di, dj)`, an
/// input inside the plane rather than padding.
fn reads_inside(g: &Depthwise, f: usize, (di, dj): (isize, isize)) -> bool {
    let (r, c) = ((f / g.w) as isize + di, (f % g.w) as isize + dj);
    (0..g.h as isize).contains(&r) && (0..g.w as isize).contains(&c)
}

/// Whether a stride-1 geometry's padding keeps the plane's size (OH × OW = H × W).
fn keeps_size(g: &Depthwise) -> bool {
    (g.sh, g.sw, g.oh(), g.ow()) == (1, 1, g.h, g.w)
}

/// The input gradient (N × C × H × W) of [`forward`] for output gradients `gy`
/// (N × C × OH × OW) and weights `w` (C × KH × KW).
///
/// How: the adjoint of a strided depthwise correlation is a stride-1 correlation of the
/// output gradient, dilated by the strides (zeros between its rows and columns), with each
/// kernel turned by 180°; so it runs on the forward kernel. Per axis the adjoint pads by
/// K − 1 − P, or, where the forward padding exceeds that, drops the dilated gradient's first
/// P − (K − 1) entries instead.
pub fn input_gradient(gy: &[f32], n: usize, w: &[f32], g: &Depthwise, isa: Isa) -> Vec<f32> {
    assert!(g.is_valid(), "depthwise geometry {g:?} has an empty output");
    let (oh, ow, kk) = (g.oh(), g.ow(), g.kh * g.kw);
    assert_eq!(
        gy.len(),
        n * g.c * oh * ow,
        "depthwise output gradient size"
    );
    assert_eq!(w.len(), g.c * kk, "depthwise weight size");
    let (ph, drop_h) = adjoint_padding(g.kh, g.ph);
    let (pw, drop_w) = adjoint_padding(g.kw, g.pw);
    let adj = Depthwise {
        h: g.h + g.kh - 1 - 2 * ph,
        w: g.w + g.kw - 1 - 2 * pw,
        sh: 1,
        sw: 1,
        ph,
        pw,
        ..*g
    };
    let turned: Vec<f32> = w
        .chunks_exact(kk)
        .flat_map(|k| k.iter().rev().copied())
        .collect();
    if (g.sh, g.sw, drop_h, drop_w) == (1, 1, 0, 0) {
        // Nothing to dilate or drop: the adjoint's input is `gy` itself (OH × OW = its H × W).
        return forward(gy, n, &turned, None, &adj, isa);
    }
    // Output (r, t) of the forward pass lands at dilated (r·SH − drop_h, t·SW − drop_w).
    let place = |r: usize, stride: usize, drop: usize, len: usize| {
        (r * stride).checked_sub(drop).filter(|&v| v < len)
    };
    let mut dilated = vec![0f32; n * g.c * adj.h * adj.w];
    dilated
        .par_chunks_mut(adj.h * adj.w)
        .zip(gy.par_chunks(oh * ow))
        .for_each(|(d, gp)| {
            for (r, gr) in gp.chunks_exact(ow).enumerate() {
                let Some(v) = place(r, g.sh, drop_h, adj.h) else {
                    continue;
                };
                for (t, &gv) in gr.iter().enumerate() {
                    if let Some(u) = place(t, g.sw, drop_w, adj.w) {
                        d[v * adj.w + u] = gv;
                    }
                }
            }
        });
    forward(&dilated, n, &turned, None, &adj, isa)
}

/// (padding, dropped leading entries) of the adjoint along an axis with kernel `k` and forward
/// padding `p`.
fn adjoint_padding(k: usize, p: usize) -> (usize, usize) {
    ((k - 1).saturating_sub(p), p.saturating_sub(k - 1))
}

/// One output plane (OH × OW) from one input plane (H × W) and its kernel (KH × KW).
fn plane(
    x: &[f32],
    k: &[f32],
    bias: f32,
    plan: &Plan,
    s: &mut Scratch,
    y: &mut [MaybeUninit<f32>],
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = &plan.in_place {
        let (xp, n, yp) = (x.as_ptr(), x.len(), y.as_mut_ptr() as *mut f32);
        assert_eq!(n, y.len());
        match &p.masks {
            Masks::Lanes(m) => {
                assert!(m.len() >= n.div_ceil(avx512::L) * k.len());
                // SAFETY: InPlace::new made the path AVX-512 and the plane OH × OW = H × W; its
                // masks cover every output and tap, and a lane is loaded only where its input is
                // inside `x`.
                let size = (plan.g.kh, plan.g.kw, plan.g.ph, plan.g.pw);
                unsafe { avx512::in_place((xp, &p.offsets, m, k, bias, n, yp), size) };
            }
            Masks::Columns(c) => {
                assert!(c.len() >= n.div_ceil(avx2::L) * plan.g.kw);
                // SAFETY: as above for the AVX2 path; the kernel checks the rows' bounds itself.
                let size = (plan.g.kh, plan.g.kw, plan.g.pw);
                unsafe { avx2::in_place((xp, &p.offsets, c, k, bias, n, yp), size) };
            }
        }
        return;
    }
    s.fill(x, plan);
    let (g, phases, flat) = (&plan.g, &s.phases, &mut s.flat);
    let yp = y.as_mut_ptr() as *mut f32;
    if plan.pitch == g.ow() {
        // The flat outputs are the plane: whole tiles go straight into `y`, the last, partial
        // one through `flat`.
        let (l, v) = blocking(plan.isa);
        let whole = y.len() / (l * v) * (l * v);
        // SAFETY: `phases` holds every tap's offset plus `plan.n` floats (Plan::phased sizes
        // it), `plan.n` ≥ `whole` + one tile; `y` holds `whole` floats and the rest, `flat`
        // one tile.
        unsafe {
            flat_on(plan, phases, 0, k, bias, (whole, yp));
            if whole < y.len() {
                flat_on(plan, phases, whole, k, bias, (l * v, flat.as_mut_ptr()));
                std::ptr::copy_nonoverlapping(flat.as_ptr(), yp.add(whole), y.len() - whole);
            }
        }
        return;
    }
    // SAFETY: as above, into `flat`'s `plan.n` floats.
    unsafe { flat_on(plan, phases, 0, k, bias, (plan.n, flat.as_mut_ptr())) };
    let rows = Rows::crop(g.oh(), plan.pitch, g.ow());
    assert!(rows.extents().1 <= y.len());
    // SAFETY: `flat` holds OH · P floats (rounded up), `y` OH · OW; they are different buffers.
    unsafe { rows.copy(plan.isa, flat.as_ptr(), yp, y.len()) };
}

/// Flat outputs `from` to `from + n` of the phases into `out` (`n` floats, whole tiles) on the
/// plan's path.
///
/// # Safety
/// `phases` holds every tap's offset plus `from + n` floats; `out` has `n` writable floats that
/// do not overlap `phases`; `k` has a value per tap.
unsafe fn flat_on(
    plan: &Plan,
    phases: &[f32],
    from: usize,
    k: &[f32],
    bias: f32,
    (n, out): (usize, *mut f32),
) {
    let (x, taps) = (&phases[from..], &plan.taps);
    match plan.isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::flat(x.as_ptr(), taps, k, bias, n, out),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::flat(x.as_ptr(), taps, k, bias, n, out),
        _ => portable::flat(x, taps, k, bias, std::slice::from_raw_parts_mut(out, n)),
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    pub const L: usize = 16;
    pub const V: usize = 4;

    /// [`super::InPlace`]'s plane: `out[f] = bias + Σ_t k[t] · x[f + offsets[t]]` over the
    /// lanes `masks` lets in (zero elsewhere), for f in 0..n, V vectors at a time, the taps in
    /// order, each product rounded before it is added (as `flat`). A tile whose every load
    /// lies inside `x` (all but a plane's first and last rows) takes each tap's lanes from the
    /// middle kernel row's masks (only the columns can fall on padding there) and loads the
    /// middle column unmasked: a mask register loaded per tap and vector had cost a quarter of
    /// the kernel's instructions (`perf`).
    ///
    /// # Safety
    /// The CPU has AVX-512F; every lane a mask lets in reads inside `x`; `offsets` and `k` run
    /// row-major over a KH × KW kernel (`size` = (KH, KW, PH, PW), the plane keeping its size);
    /// `masks` has `offsets.len()` entries per vector for n rounded up to whole tiles; `out`
    /// has `n` floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn in_place(a: Args, size: (usize, usize, usize, usize)) {
        // 3 × 3 (CP-Mobile's, UBN's default) with the taps unrolled.
        if size == (3, 3, 1, 1) {
            in_place_sized::<3, 3, 1, 1>(a, size)
        } else {
            in_place_sized::<0, 0, 0, 0>(a, size)
        }
    }

    /// Arguments of [`in_place`] besides the kernel's size: `x`, `offsets`, `masks`, `k`,
    /// `bias`, `n`, `out`.
    pub type Args<'a> = (
        *const f32,
        &'a [isize],
        &'a [u16],
        &'a [f32],
        f32,
        usize,
        *mut f32,
    );

    /// [`in_place`] for a kernel of KH × KW with padding (PH, PW) known at compile time
    /// (KH > 0) or given at run time (KH = 0).
    #[inline(always)]
    unsafe fn in_place_sized<const KH: usize, const KW: usize, const PH: usize, const PW: usize>(
        (x, offsets, masks, k, bias, n, out): Args,
        size: (usize, usize, usize, usize),
    ) {
        let (kh, kw, ph, pw) = if KH > 0 { (KH, KW, PH, PW) } else { size };
        let taps = kh * kw;
        debug_assert_eq!(offsets.len(), taps);
        let lo = offsets.iter().copied().min().unwrap_or(0);
        let hi = offsets.iter().copied().max().unwrap_or(0);
        for f in (0..n).step_by(V * L) {
            let mut acc = [_mm512_set1_ps(bias); V];
            let m = masks.as_ptr().add(f / L * taps);
            let xf = x.wrapping_add(f);
            let inside = f as isize + lo >= 0 && (f + V * L) as isize + hi <= n as isize;
            for i in 0..kh {
                for j in 0..kw {
                    let t = i * kw + j;
                    let wv = _mm512_set1_ps(*k.get_unchecked(t));
                    let xt = xf.wrapping_offset(*offsets.get_unchecked(t));
                    let mt = m.add(if inside { ph * kw + j } else { t } * V);
                    for (v, a) in acc.iter_mut().enumerate() {
                        let xv = if inside && j == pw {
                            _mm512_loadu_ps(xt.add(v * L))
                        } else {
                            _mm512_maskz_loadu_ps(*mt.add(v), xt.wrapping_add(v * L))
                        };
                        *a = _mm512_add_ps(*a, _mm512_mul_ps(xv, wv));
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                let at = f + v * L;
                if at + L <= n {
                    _mm512_storeu_ps(out.add(at), *a);
                } else if at < n {
                    _mm512_mask_storeu_ps(out.add(at), ((1u32 << (n - at)) - 1) as __mmask16, *a);
                }
            }
        }
    }

    /// `out[f] = bias + Σ_t k[t] · x[taps[t] + f]` for f in 0..n, tile by tile, the taps in
    /// order, each product rounded before it is added.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` has `taps[t] + n` readable floats for every t, `out` has `n`,
    /// `n` is a multiple of `V · L`, `k` has `taps.len()` entries.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn flat(
        x: *const f32,
        taps: &[usize],
        k: &[f32],
        bias: f32,
        n: usize,
        out: *mut f32,
    ) {
        for f in (0..n).step_by(V * L) {
            let mut acc = [_mm512_set1_ps(bias); V];
            for (&t, &kv) in taps.iter().zip(k) {
                let (xp, wv) = (x.add(t + f), _mm512_set1_ps(kv));
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(_mm512_loadu_ps(xp.add(v * L)), wv));
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(f + v * L), *a);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    pub const L: usize = 8;
    pub const V: usize = 4;

    /// `avx512::in_place` on AVX2: `out[f] = bias + Σ_t k[t] · x[f + offsets[t]]`, V vectors at
    /// a time, the taps in order, each product rounded before it is added. Tap t's lanes are
    /// cut to those `columns` lets in for its kernel column (t mod KW): a plain load and an AND
    /// (a masked load costs more), and a masked load that also checks the rows' bounds for the
    /// few vectors whose tap reaches outside `x`. Masked-off lanes are +0, as padding.
    ///
    /// # Safety
    /// The CPU has AVX2; `x` and `out` have `n` floats; `offsets` and `k` run row-major over a
    /// KH × KW kernel; `columns` holds KW masks per vector for n rounded up to whole tiles.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn in_place(a: Args, size: (usize, usize, usize)) {
        // 3 × 3 (CP-Mobile's, UBN's default) with the taps unrolled: the loop over taps had cost
        // more instructions than its arithmetic.
        if size == (3, 3, 1) {
            in_place_sized::<3, 3, 1>(a, size)
        } else {
            in_place_sized::<0, 0, 0>(a, size)
        }
    }

    /// Arguments of [`in_place`] besides the kernel's size (KH, KW, PW): `x`, `offsets`,
    /// `columns`, `k`, `bias`, `n`, `out`.
    pub type Args<'a> = (
        *const f32,
        &'a [isize],
        &'a [[i32; 8]],
        &'a [f32],
        f32,
        usize,
        *mut f32,
    );

    /// [`in_place`] for a kernel of KH × KW with padding PW known at compile time (KH > 0) or
    /// given at run time (KH = 0).
    #[inline(always)]
    unsafe fn in_place_sized<const KH: usize, const KW: usize, const PW: usize>(
        (x, offsets, columns, k, bias, n, out): Args,
        size: (usize, usize, usize),
    ) {
        let (kh, kw, pw) = if KH > 0 { (KH, KW, PW) } else { size };
        debug_assert_eq!(offsets.len(), kh * kw);
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let (before, end) = (_mm256_set1_epi32(-1), _mm256_set1_epi32(n as i32));
        let lo = offsets.iter().copied().min().unwrap_or(0);
        let hi = offsets.iter().copied().max().unwrap_or(0);
        for f in (0..n).step_by(V * L) {
            let mut acc = [_mm256_set1_ps(bias); V];
            let cols = columns.as_ptr().add(f / L * kw) as *const __m256i;
            let xf = x.wrapping_add(f);
            // Whether every load of the tile lies inside `x` (all but the first and last few
            // tiles of a plane), so that no vector needs its bounds checked.
            let inside = f as isize + lo >= 0 && (f + V * L) as isize + hi <= n as isize;
            for i in 0..kh {
                for j in 0..kw {
                    let t = i * kw + j;
                    let off = *offsets.get_unchecked(t);
                    let wv = _mm256_set1_ps(*k.get_unchecked(t));
                    let xt = xf.wrapping_offset(off);
                    for (v, a) in acc.iter_mut().enumerate() {
                        let at = (f + v * L) as isize + off;
                        let m = _mm256_loadu_si256(cols.add(v * kw + j));
                        let xv = if inside || (at >= 0 && at + L as isize <= n as isize) {
                            let xv = _mm256_loadu_ps(xt.add(v * L));
                            // The centre column never leaves the row.
                            if j == pw {
                                xv
                            } else {
                                _mm256_and_ps(xv, _mm256_castsi256_ps(m))
                            }
                        } else {
                            let idx = _mm256_add_epi32(_mm256_set1_epi32(at as i32), lane);
                            let rows = _mm256_and_si256(
                                _mm256_cmpgt_epi32(idx, before),
                                _mm256_cmpgt_epi32(end, idx),
                            );
                            _mm256_maskload_ps(xt.wrapping_add(v * L), _mm256_and_si256(m, rows))
                        };
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(xv, wv));
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                let at = f + v * L;
                if at + L <= n {
                    _mm256_storeu_ps(out.add(at), *a);
                } else if at < n {
                    // A partial vector through the stack: AMD's masked stores are slow.
                    let mut last = [0f32; L];
                    _mm256_storeu_ps(last.as_mut_ptr(), *a);
                    std::ptr::copy_nonoverlapping(last.as_ptr(), out.add(at), n - at);
                }
            }
        }
    }

    /// # Safety
    /// As `avx512::flat`, for a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn flat(
        x: *const f32,
        taps: &[usize],
        k: &[f32],
        bias: f32,
        n: usize,
        out: *mut f32,
    ) {
        for f in (0..n).step_by(V * L) {
            let mut acc = [_mm256_set1_ps(bias); V];
            for (&t, &kv) in taps.iter().zip(k) {
                let (xp, wv) = (x.add(t + f), _mm256_set1_ps(kv));
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_loadu_ps(xp.add(v * L)), wv));
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(f + v * L), *a);
            }
        }
    }
}

mod portable {
    pub const L: usize = 8;
    pub const V: usize = 2;
    const T: usize = L * V;

    /// As `avx512::flat`, in plain Rust over fixed-size arrays (Rust never fuses `a += x * k`).
    pub fn flat(x: &[f32], taps: &[usize], k: &[f32], bias: f32, out: &mut [f32]) {
        for (f, o) in out.chunks_exact_mut(T).enumerate() {
            let mut acc = [bias; T];
            for (&t, &kv) in taps.iter().zip(k) {
                let xv: &[f32; T] = x[t + f * T..][..T].try_into().unwrap();
                for (a, xv) in acc.iter_mut().zip(xv) {
                    *a += xv * kv;
                }
            }
            o.copy_from_slice(&acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{max_abs_diff, test_values as values};

    /// Float64 loop over the definition, padding by bounds checks.
    fn naive(x: &[f32], n: usize, w: &[f32], b: &[f32], g: &Depthwise) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0f32; n * g.c * oh * ow];
        for p in 0..n * g.c {
            let c = p % g.c;
            for r in 0..oh {
                for t in 0..ow {
                    let mut s = b[c] as f64;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let ih = (r * g.sh + i).wrapping_sub(g.ph);
                            let iw = (t * g.sw + j).wrapping_sub(g.pw);
                            if ih < g.h && iw < g.w {
                                s += x[(p * g.h + ih) * g.w + iw] as f64
                                    * w[(c * g.kh + i) * g.kw + j] as f64;
                            }
                        }
                    }
                    y[(p * oh + r) * ow + t] = s as f32;
                }
            }
        }
        y
    }

    fn dw(
        [c, h, w]: [usize; 3],
        [kh, kw]: [usize; 2],
        [sh, sw]: [usize; 2],
        [ph, pw]: [usize; 2],
    ) -> Depthwise {
        Depthwise {
            c,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
        }
    }

    /// CP-Mobile's four strides at its plane sizes, strides 3 and odd sizes, no padding,
    /// padding beyond half the kernel, asymmetric kernels, one-column and one-row outputs.
    fn shapes() -> Vec<Depthwise> {
        vec![
            dw([5, 64, 17], [3, 3], [1, 1], [1, 1]),
            dw([3, 64, 17], [3, 3], [2, 2], [1, 1]),
            dw([4, 64, 17], [3, 3], [1, 2], [1, 1]),
            dw([2, 64, 9], [3, 3], [2, 1], [1, 1]),
            dw([3, 11, 13], [5, 3], [3, 2], [2, 0]),
            dw([2, 7, 8], [3, 3], [1, 1], [0, 0]),
            dw([2, 6, 5], [2, 4], [2, 3], [2, 3]),
            dw([3, 5, 1], [3, 1], [1, 1], [1, 0]),
            dw([1, 1, 40], [1, 7], [1, 2], [0, 3]),
            // Phases OW wide (an odd width, stride 2 across it): the plane written where it
            // lies, with a partial last tile (7 × 7 outputs).
            dw([2, 7, 13], [3, 3], [1, 2], [1, 1]),
            // Stride 1 keeping the size, computed in place on AVX-512 and AVX2: a partial
            // vector in one tile, and whole tiles then a partial one (5 × 5 takes AVX2's
            // general kernel, 3 × 3 its unrolled one).
            dw([2, 9, 7], [5, 5], [1, 1], [2, 2]),
            dw([3, 20, 9], [3, 3], [1, 1], [1, 1]),
            // The same with tiles whose every load lies inside the plane (unmasked middle
            // column), on the general kernels: 5 × 5 and 3 × 5.
            dw([2, 30, 11], [5, 5], [1, 1], [2, 2]),
            dw([2, 24, 13], [3, 5], [1, 1], [1, 2]),
            // Stride 1 with padding beyond K − 1: the input gradient drops leading entries.
            dw([2, 6, 5], [2, 2], [1, 1], [2, 1]),
        ]
    }

    /// Phases OW wide only where every read past a row is padding: odd widths with stride 2
    /// across them (CP-Mobile's (1, 2) convs), not stride 1 or an even width.
    #[test]
    fn phases_fit_the_width_only_over_padding() {
        let fit = |g: Depthwise| g.phases_fit_width();
        assert!(fit(dw([4, 64, 17], [3, 3], [1, 2], [1, 1])));
        assert!(fit(dw([2, 7, 13], [3, 3], [1, 2], [1, 1])));
        assert!(!fit(dw([2, 64, 9], [3, 3], [2, 1], [1, 1])));
        assert!(!fit(dw([2, 64, 16], [3, 3], [1, 2], [1, 1])));
    }

    #[test]
    fn every_path_matches_the_definition() {
        for g in shapes() {
            let n = 2;
            let x = values(n * g.c * g.h * g.w, 1);
            let w = values(g.c * g.kh * g.kw, 2);
            let b = values(g.c, 3);
            let zero = vec![0.0; g.c];
            for (bias, want) in [
                (Some(&b[..]), naive(&x, n, &w, &b, &g)),
                (None, naive(&x, n, &w, &zero, &g)),
            ] {
                for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                    let got = forward(&x, n, &w, bias, &g, isa);
                    let err = max_abs_diff(&got, &want);
                    assert!(err < 1e-5, "{isa:?} {g:?}: max error {err:e}");
                }
            }
        }
    }

    /// The scalar loop training ran before this kernel: from zero, the in-range taps in
    /// row-major order, multiply then add in f32.
    fn scalar(x: &[f32], w: &[f32], g: &Depthwise) -> Vec<f32> {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0f32; g.c * oh * ow];
        for c in 0..g.c {
            for r in 0..oh {
                for t in 0..ow {
                    let mut s = 0.0f32;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let ih = (r * g.sh + i).wrapping_sub(g.ph);
                            let iw = (t * g.sw + j).wrapping_sub(g.pw);
                            if ih < g.h && iw < g.w {
                                s += w[(c * g.kh + i) * g.kw + j] * x[(c * g.h + ih) * g.w + iw];
                            }
                        }
                    }
                    y[(c * oh + r) * ow + t] = s;
                }
            }
        }
        y
    }

    /// Every path adds the same products in the same order, so all agree bit for bit with each
    /// other and with the scalar kernel training used before (module doc).
    #[test]
    fn every_path_gives_the_scalar_kernels_bits() {
        for g in shapes() {
            let x = values(g.c * g.h * g.w, 4);
            let w = values(g.c * g.kh * g.kw, 5);
            let want = scalar(&x, &w, &g);
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let got = forward(&x, 1, &w, None, &g, isa);
                assert!(got == want, "{isa:?} {g:?}");
            }
        }
    }

    /// Float64 input and kernel gradients from the definition: every (output, tap) pair that
    /// reads an input value inside the plane adds its product to both.
    fn naive_grads(
        x: &[f32],
        gy: &[f32],
        n: usize,
        w: &[f32],
        g: &Depthwise,
    ) -> (Vec<f32>, Vec<f32>) {
        let (oh, ow) = (g.oh(), g.ow());
        let mut gx = vec![0f64; x.len()];
        let mut gw = vec![0f64; w.len()];
        for p in 0..n * g.c {
            let c = p % g.c;
            for r in 0..oh {
                for t in 0..ow {
                    let d = gy[(p * oh + r) * ow + t] as f64;
                    for i in 0..g.kh {
                        for j in 0..g.kw {
                            let ih = (r * g.sh + i).wrapping_sub(g.ph);
                            let iw = (t * g.sw + j).wrapping_sub(g.pw);
                            if ih < g.h && iw < g.w {
                                let xi = (p * g.h + ih) * g.w + iw;
                                let wi = (c * g.kh + i) * g.kw + j;
                                gx[xi] += w[wi] as f64 * d;
                                gw[wi] += x[xi] as f64 * d;
                            }
                        }
                    }
                }
            }
        }
        let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        (f(gx), f(gw))
    }

    /// Both gradients on every path and shape (padding beyond K − 1 included), and the paths
    /// agree bit for bit.
    #[test]
    fn gradients_match_the_definition_on_every_path() {
        for g in shapes() {
            let n = 3;
            let x = values(n * g.c * g.h * g.w, 11);
            let w = values(g.c * g.kh * g.kw, 12);
            let gy = values(n * g.c * g.oh() * g.ow(), 13);
            let (want_gx, want_gw) = naive_grads(&x, &gy, n, &w, &g);
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let gx = input_gradient(&gy, n, &w, &g, isa);
                let gw = weight_gradient(&x, &gy, n, &g, isa);
                let (ex, ew) = (max_abs_diff(&gx, &want_gx), max_abs_diff(&gw, &want_gw));
                assert!(ex < 1e-5, "{isa:?} {g:?}: input gradient error {ex:e}");
                assert!(ew < 1e-5, "{isa:?} {g:?}: weight gradient error {ew:e}");
                match &first {
                    None => first = Some((gx, gw)),
                    Some(f) => assert!(f.0 == gx && f.1 == gw, "{isa:?} {g:?}: bits differ"),
                }
            }
        }
    }

    /// A buffer reused across planes (its zero borders written once) gives what a fresh one
    /// does: many planes in one task.
    #[test]
    fn reused_buffers_keep_their_zero_borders() {
        let g = dw([7, 10, 12], [3, 3], [2, 1], [1, 1]);
        let x = values(3 * g.c * g.h * g.w, 7);
        let w = values(g.c * g.kh * g.kw, 8);
        let want = naive(&x, 3, &w, &vec![0.0; g.c], &g);
        let got = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| forward(&x, 3, &w, None, &g, Isa::best()));
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-5, "max error {err:e}");
    }
}
