//! Strided dense convolutions (CP-Mobile's two 3×3 stride-2 stems) as the direct kernel's 1×1
//! path over C·KH·KW input rows, one per channel and tap, each holding the input value every
//! output reads through that tap (zero where that is padding). Those rows are a column matrix
//! built by strided row copies ([`super::copy`]) or, where the geometry allows (the stems),
//! slices of the input's phase planes, which hold each input value once instead of once per tap
//! that reads it ([`forward_indirect`](super::conv::forward_indirect)).
//!
//! Why: the direct kernel's tile walks a row with stride 1; a strided row would need gathers
//! in the inner loop. The stems are small (K = 9 and 72), so the rows are cheap to lay out, and
//! tract's im2col + matrix product plus a separate ReLU and padding cost more
//! (`docs/benchmarks.md`); building the column matrix was a fifth of the 8→32 stem's time.

use super::conv::{self, Conv};
use super::copy::Rows;
use super::depthwise::Depthwise;
use super::Isa;
use rayon::prelude::*;

/// Geometry of one strided convolution: input C × H × W, weight O × C × KH × KW, stride
/// (SH, SW), zero padding (PH, PW) on both sides of each axis. PyTorch's output size (floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strided {
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
}

impl From<Conv> for Strided {
    fn from(g: Conv) -> Strided {
        Strided {
            c: g.c,
            h: g.h,
            w: g.w,
            o: g.o,
            kh: g.kh,
            kw: g.kw,
            sh: 1,
            sw: 1,
            ph: g.ph,
            pw: g.pw,
        }
    }
}

impl Strided {
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

    /// The same window as a stride-1 convolution, for the direct kernel.
    pub fn stride_one(&self) -> Option<Conv> {
        ((self.sh, self.sw) == (1, 1)).then_some(Conv {
            c: self.c,
            h: self.h,
            w: self.w,
            o: self.o,
            kh: self.kh,
            kw: self.kw,
            ph: self.ph,
            pw: self.pw,
        })
    }

    /// The same window, one filter per channel (O = C), for the depthwise kernel.
    pub fn depthwise(&self) -> Depthwise {
        Depthwise {
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

    /// The 1×1 convolution over the column matrix.
    fn pointwise(&self) -> Conv {
        Conv {
            c: self.c * self.kh * self.kw,
            h: 1,
            w: self.oh() * self.ow(),
            o: self.o,
            kh: 1,
            kw: 1,
            ph: 0,
            pw: 0,
        }
    }
}

/// The weights packed for the 1×1 conv (O × C × KH × KW is already O × C·KH·KW), and where its
/// C·KH·KW input rows come from.
pub struct Packed {
    g: Strided,
    pointwise: conv::Packed,
    source: Source,
}

/// Where the 1×1 conv's rows (one per channel and tap) come from.
enum Source {
    /// A column matrix: per row, in order, the runs that copy the input values it holds.
    Columns(Vec<Rows>),
    /// Phase planes, one per channel and (row, column) phase of the strides, each OW wide: the
    /// padded input's (r·SH + a, t·SW + b) at row r, column t of phase (a, b). Tap (i, j) of a
    /// channel reads its phase (i mod SH, j mod SW) from row i / SH, column j / SW on, so its
    /// row is a slice of the phases (`offsets`) and the matrix need not be built: the phases
    /// are 1 / (KH·KW / (SH·SW)) of its size (4 / 9 for a 3×3 stride-2 stem). `size` floats
    /// per phase plane, `fill` the runs that copy the input into them.
    Phases {
        fill: Vec<Rows>,
        offsets: Vec<usize>,
        size: usize,
    },
}

impl Source {
    /// The phase planes where their width can be OW ([`Depthwise::phases_fit_width`]: the same
    /// window), else the column matrix.
    fn new(g: &Strided, tile: usize) -> Source {
        if g.depthwise().phases_fit_width() {
            Source::phases(g, tile)
        } else {
            Source::columns(g)
        }
    }

    fn columns(g: &Strided) -> Source {
        let ohw = g.oh() * g.ow();
        let gather = (0..g.c)
            .flat_map(|c| (0..g.kh).flat_map(move |i| (0..g.kw).map(move |j| (c, i, j))))
            .enumerate()
            .filter_map(|(row, (c, i, j))| {
                let r = Rows::gather(
                    (g.h, g.w),
                    (g.sh, g.sw),
                    (g.ph, g.pw),
                    (i, j),
                    (g.oh(), g.ow()),
                    (row * ohw, g.ow()),
                )?;
                Some(r.from(c * g.h * g.w))
            })
            .collect();
        Source::Columns(gather)
    }

    /// Phase planes of `tile`-wide output tiles: each holds the rows its taps read
    /// (OH + (KH − 1) / SH) and room for a whole last tile read past them.
    fn phases(g: &Strided, tile: usize) -> Source {
        // Each channel's phases as a depthwise conv of the same window lays out one plane, OW
        // wide, with the columns a tap reads past a row and a whole tile more after them.
        let one = g.depthwise().phases(g.ow(), (g.kw - 1) / g.sw + tile);
        let per = g.sh * g.sw * one.size;
        let fill = (0..g.c)
            .flat_map(|c| {
                one.fill
                    .iter()
                    .map(move |r| r.from(c * g.h * g.w).to(c * per))
            })
            .collect();
        let offsets = (0..g.c)
            .flat_map(|c| one.taps.iter().map(move |t| c * per + t))
            .collect();
        Source::Phases {
            fill,
            offsets,
            size: one.size,
        }
    }

    /// Floats of a task's buffer.
    fn len(&self, g: &Strided) -> usize {
        match self {
            Source::Columns(_) => g.c * g.kh * g.kw * g.oh() * g.ow(),
            Source::Phases { size, .. } => g.c * g.sh * g.sw * size,
        }
    }
}

impl Packed {
    /// `w` is O × C × KH × KW; `bias` has O entries when given.
    pub fn new(g: Strided, w: &[f32], bias: Option<&[f32]>, isa: Isa) -> Packed {
        assert!(
            g.is_valid(),
            "strided conv geometry {g:?} has an empty output"
        );
        let (l, _, v) = conv::blocking(isa);
        Packed {
            g,
            pointwise: conv::Packed::new(g.pointwise(), w, bias, isa),
            source: Source::new(&g, l * v),
        }
    }

    pub fn isa(&self) -> Isa {
        self.pointwise.isa()
    }
}

/// Strided convolution of `n` inputs (N × C × H × W) into `y` (N × O × OH × OW), with the bias
/// given now when `bias` is some and clamped at zero when `relu`, as [`conv::forward_into`].
/// Parallel over samples, and over channel blocks within one.
pub fn forward_into(
    x: &[f32],
    n: usize,
    p: &Packed,
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let g = p.g;
    let (chw, ohw) = (g.c * g.h * g.w, g.oh() * g.ow());
    assert_eq!(x.len(), n * chw, "strided conv input size");
    assert_eq!(y.len(), n * g.o * ohw, "strided conv output size");
    let isa = p.isa();
    y.par_chunks_mut(g.o * ohw)
        .zip(x.par_chunks(chw))
        // Zero once per task: what the copies do not write is padding and stays zero.
        .for_each_init(
            || vec![0.0; p.source.len(&g)],
            |buf, (yi, xi)| match &p.source {
                Source::Columns(gather) => {
                    for rows in gather {
                        rows.copy_slices(isa, xi, buf);
                    }
                    conv::forward_into(buf, 1, &p.pointwise, bias, relu, yi);
                }
                Source::Phases { fill, offsets, .. } => {
                    for rows in fill {
                        rows.copy_slices(isa, xi, buf);
                    }
                    conv::forward_indirect(buf, offsets, &p.pointwise, bias, relu, yi);
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{max_abs_diff, naive_conv as naive, test_values as values};

    /// CP-Mobile's stems (scaled down), asymmetric strides, a stride of 3 (the scalar copy), no
    /// padding, and a padding beyond the stride.
    fn shapes() -> [Strided; 5] {
        let s = |[c, h, w, o]: [usize; 4], [kh, kw, sh, sw, ph, pw]: [usize; 6]| Strided {
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
        };
        [
            s([1, 40, 65, 8], [3, 3, 2, 2, 1, 1]),
            s([8, 20, 33, 32], [3, 3, 2, 2, 1, 1]),
            s([3, 9, 14, 5], [3, 3, 1, 2, 1, 1]),
            s([2, 11, 10, 9], [2, 3, 3, 2, 0, 0]),
            s([4, 7, 6, 3], [3, 2, 2, 1, 2, 1]),
        ]
    }

    /// In a one-thread pool, so that a task's column matrix serves several samples and its
    /// zero padding must survive the copies.
    #[test]
    fn every_path_matches_the_definition() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(every_path_matches_the_definition_here);
    }

    fn every_path_matches_the_definition_here() {
        for g in shapes() {
            let n = 3;
            let x = values(n * g.c * g.h * g.w, 1);
            let w = values(g.o * g.c * g.kh * g.kw, 2);
            let b = values(g.o, 3);
            let want = naive(&x, n, &w, &b, &g);
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let mut got = vec![f32::NAN; want.len()];
                forward_into(
                    &x,
                    n,
                    &Packed::new(g, &w, Some(&b), isa),
                    None,
                    false,
                    &mut got,
                );
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-5, "{isa:?} {g:?}: max error {err:e}");
            }
        }
    }

    /// Taps read from phase planes give the column matrix's bits: the same products
    /// in the same order. In a one-thread pool, so that a task's phases serve several samples.
    #[test]
    fn phases_match_the_column_matrix() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            // Both stems (odd widths) and the one whose right padding equals its kernel's reach;
            // an even width does not fit.
            assert!(!shapes()[2].depthwise().phases_fit_width());
            let fit: Vec<Strided> = shapes()
                .into_iter()
                .filter(|g| g.depthwise().phases_fit_width())
                .collect();
            assert_eq!(fit.len(), 3);
            for g in &fit {
                let n = 3;
                let x = values(n * g.c * g.h * g.w, 4);
                let w = values(g.o * g.c * g.kh * g.kw, 5);
                for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                    let run = |columns: bool| {
                        let mut p = Packed::new(*g, &w, None, isa);
                        assert!(matches!(p.source, Source::Phases { .. }));
                        if columns {
                            p.source = Source::columns(g);
                        }
                        let mut y = vec![f32::NAN; n * g.o * g.oh() * g.ow()];
                        forward_into(&x, n, &p, None, true, &mut y);
                        y
                    };
                    let (phases, columns) = (run(false), run(true));
                    assert!(
                        phases
                            .iter()
                            .zip(&columns)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{isa:?} {g:?}"
                    );
                }
            }
        });
    }
}
