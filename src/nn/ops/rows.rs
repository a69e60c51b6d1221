//! The sum of the rows of a batch, each scaled to unit length: the statistic of UBN's
//! feature-condensation gate (docs/norms.md §5.2), from which the mean pairwise cosine follows
//! without the Gram matrix. Forward only (the gate takes no gradient).
//!
//! Why: as candle ops (a squared copy of the rows, a row sum, a 1 × N by N × D product, a cast to
//! f64) it was four passes and a copy of up to 16 rows; here it is one pass for the row norms and
//! one for the weighted sum, both parallel.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::{use_cpu_kernels, with_f32};
use crate::kernels::{reduce, Isa};

/// Columns per rayon task of the weighted sum.
const COLUMNS: usize = 4096;

/// Σᵢ xᵢ / max(|xᵢ|, `eps`) over the rows xᵢ of `x` (N, ...) flattened, in f64, detached.
pub fn unit_row_sum(x: &Tensor, eps: f64) -> Result<Vec<f64>> {
    let xs = x.detach().flatten_from(1)?;
    if !use_cpu_kernels(&[&xs]) {
        let inv = xs.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(eps)?.recip()?;
        return inv
            .t()?
            .matmul(&xs)?
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>();
    }
    let (_, d) = xs.dims2()?;
    let xs = xs.contiguous()?;
    with_f32(&xs, "unit_row_sum", |v| {
        let isa = Isa::active();
        let inv: Vec<f64> = v
            .par_chunks(d.max(1))
            .map(|row| 1.0 / reduce::centred_squares(row, 0.0, isa).sqrt().max(eps))
            .collect();
        let mut sum = vec![0f64; d];
        sum.par_chunks_mut(COLUMNS)
            .enumerate()
            .for_each(|(b, out)| {
                for (row, &s) in v.chunks(d.max(1)).zip(&inv) {
                    for (o, &x) in out.iter_mut().zip(&row[b * COLUMNS..]) {
                        *o += s * x as f64;
                    }
                }
            });
        Ok(sum)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against the definition in f64, a zero row (the ε floor) included.
    #[test]
    fn matches_the_definition() -> Result<()> {
        let dev = Device::Cpu;
        let (n, d) = (5, 9001);
        let mut rows = Tensor::randn(0f32, 2.0, (n, d), &dev)?.to_vec2::<f32>()?;
        rows[3].fill(0.0);
        let got = unit_row_sum(&Tensor::new(rows.clone(), &dev)?.reshape((n, 1, d))?, 1e-8)?;
        for j in [0, 1, 4095, 4096, 9000] {
            let want: f64 = rows
                .iter()
                .map(|r| {
                    let norm = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
                    r[j] as f64 / norm.max(1e-8)
                })
                .sum();
            assert!(
                (got[j] - want).abs() < 1e-9,
                "column {j}: {} vs {want}",
                got[j]
            );
        }
        assert_eq!(got.len(), d);
        Ok(())
    }
}
