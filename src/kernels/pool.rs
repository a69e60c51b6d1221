//! Max pooling over windows without padding, NCHW: the baseline CNN's 5×5 stride-5 pools in
//! tract's plan (`src/infer/conv_op.rs`).
//!
//! Why our own: tract's max pool walked the CNN's first pool (16 × 128 × 431 in, 5 × 5, stride
//! 5) at about 0.6 ms, 7 % of the model at batch 1, a pass over 3.5 MB that needs a few tenths
//! of that. Here each output row first takes the maximum down its KH input rows (contiguous,
//! vectorised by the compiler), then across each window of KW columns of that one row.
//!
//! Maxima are `f32::max`'s: for inputs without NaN the same values as any other order.

use rayon::prelude::*;

/// Geometry of one pool: input C × H × W, window KH × KW, stride (SH, SW), no padding;
/// PyTorch's output size (floor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
}

impl Pool {
    /// Whether the output is non-empty: window and strides are positive and fit the input.
    pub fn is_valid(&self) -> bool {
        self.oh() > 0 && self.ow() > 0
    }

    pub fn oh(&self) -> usize {
        super::out_len(self.h, self.kh, self.sh, 0).unwrap_or(0)
    }

    pub fn ow(&self) -> usize {
        super::out_len(self.w, self.kw, self.sw, 0).unwrap_or(0)
    }
}

/// Max pool of `n` inputs (N × C × H × W) into `y` (N × C × OH × OW). Parallel over planes.
pub fn max_into(x: &[f32], n: usize, g: &Pool, y: &mut [f32]) {
    assert!(g.is_valid(), "pool geometry {g:?} has an empty output");
    let (hw, ow) = (g.h * g.w, g.ow());
    assert_eq!(x.len(), n * g.c * hw, "pool input size");
    assert_eq!(y.len(), n * g.c * g.oh() * ow, "pool output size");
    y.par_chunks_mut(g.oh() * ow)
        .zip(x.par_chunks(hw))
        .for_each_init(
            || vec![0.0f32; g.w],
            |down, (yp, xp)| {
                for (r, yr) in yp.chunks_exact_mut(ow).enumerate() {
                    let rows = &xp[r * g.sh * g.w..][..g.kh * g.w];
                    down.copy_from_slice(&rows[..g.w]);
                    for row in rows.chunks_exact(g.w).skip(1) {
                        for (m, &v) in down.iter_mut().zip(row) {
                            *m = m.max(v);
                        }
                    }
                    for (t, o) in yr.iter_mut().enumerate() {
                        *o = down[t * g.sw..][..g.kw]
                            .iter()
                            .copied()
                            .fold(f32::MIN, f32::max);
                    }
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn matches_the_definition() {
        let pools = [
            Pool {
                c: 3,
                h: 128,
                w: 43,
                kh: 5,
                kw: 5,
                sh: 5,
                sw: 5,
            },
            Pool {
                c: 2,
                h: 9,
                w: 11,
                kh: 3,
                kw: 2,
                sh: 2,
                sw: 3,
            },
            Pool {
                c: 1,
                h: 4,
                w: 7,
                kh: 4,
                kw: 1,
                sh: 1,
                sw: 1,
            },
        ];
        for g in pools {
            let n = 2;
            let x = values(n * g.c * g.h * g.w, 9);
            let mut got = vec![f32::NAN; n * g.c * g.oh() * g.ow()];
            max_into(&x, n, &g, &mut got);
            let mut want = Vec::new();
            for p in 0..n * g.c {
                for r in 0..g.oh() {
                    for t in 0..g.ow() {
                        let window = (0..g.kh).flat_map(|i| (0..g.kw).map(move |j| (i, j)));
                        let v = window
                            .map(|(i, j)| x[(p * g.h + r * g.sh + i) * g.w + t * g.sw + j])
                            .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
                        want.push(v);
                    }
                }
            }
            assert_eq!(got, want, "{g:?}");
        }
    }
}
