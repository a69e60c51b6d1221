//! Input standardisation: the log-mel input shifted and scaled by the mean and standard
//! deviation of the training set, over all bands together or per mel band, in front of any
//! model.
//!
//! Raw `ln(x + 1e-8)` values sit around −10 with a spread that differs from band to band; the
//! first convolution then sees inputs far from the unit scale its initialisation assumes, which
//! matters most for models whose first norm does not re-centre per channel over the batch (no
//! norm, LN, IN). The statistics are buffers of the model, saved in every checkpoint and written
//! into the exported ONNX graph as `Sub` and `Div`, so every runtime applies exactly what
//! training applied and the graph input stays the plain log-mel of `asc.frontend`.

use super::{LayerShape, Model};
use crate::onnx::graph::OnnxGraph;
use candle_core::{bail, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// Which statistics standardise the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// The raw log-mel.
    #[default]
    None,
    /// One mean and one standard deviation over every band and frame: the scale becomes unit,
    /// the spectral shape stays as it is.
    Global,
    /// A mean and a standard deviation per mel band: every band becomes unit-scale.
    PerBand,
}

impl InputNorm {
    pub const NAMES: [&'static str; 3] = ["none", "global", "per-band"];

    pub fn parse(name: &str) -> std::result::Result<Self, crate::error::UnknownName> {
        match name {
            "none" => Ok(InputNorm::None),
            "global" => Ok(InputNorm::Global),
            "per-band" => Ok(InputNorm::PerBand),
            other => Err(crate::error::UnknownName::new(
                "input normalisation",
                other,
                &Self::NAMES,
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputNorm::None => "none",
            InputNorm::Global => "global",
            InputNorm::PerBand => "per-band",
        }
    }
}

/// Below this a band's standard deviation is taken as this: a band that is constant over the
/// whole training set (silence above a resampled recording's Nyquist frequency, say) would
/// otherwise turn the slightest energy at test time into a huge input.
pub const MIN_STD: f32 = 1e-2;

/// A model with per-band input standardisation in front.
pub struct Standardized {
    inner: Box<dyn Model>,
    mean: Var,
    std: Var,
}

impl Standardized {
    /// Wraps `inner`; the buffers `mean` (0) and `std` (1) of `n_mels` values come from
    /// `buffers` (a VarMap-backed builder, so checkpoints carry them).
    pub fn new(inner: Box<dyn Model>, buffers: VarBuilder, n_mels: usize) -> Result<Self> {
        let var = |name: &str, init: f64| -> Result<Var> {
            let t = buffers.get_with_hints(n_mels, name, Init::Const(init))?;
            if !t.is_variable() {
                bail!("input_norm.{name}: the buffer VarBuilder must be backed by a VarMap");
            }
            Var::from_tensor(&t)
        };
        Ok(Self {
            inner,
            mean: var("mean", 0.0)?,
            std: var("std", 1.0)?,
        })
    }

    fn band_view(v: &Var) -> Result<Tensor> {
        let m = v.elem_count();
        v.as_tensor().detach().reshape((1, 1, m, 1))
    }
}

/// Per-band mean and standard deviation (population, floored at [`MIN_STD`]) over every frame
/// of the clips added. Sums run in f64, so a data set of any size gives the same figures up to
/// the rounding of the result.
#[derive(Debug, Clone)]
pub struct BandStats {
    sum: Vec<f64>,
    sq: Vec<f64>,
    frames: f64,
}

impl BandStats {
    pub fn new(n_mels: usize) -> Self {
        Self {
            sum: vec![0.0; n_mels],
            sq: vec![0.0; n_mels],
            frames: 0.0,
        }
    }

    /// Adds one `n_mels × frames` row-major spectrogram.
    pub fn add(&mut self, data: &[f32], frames: usize) {
        if frames == 0 {
            return;
        }
        for ((row, s), q) in data
            .chunks_exact(frames)
            .zip(&mut self.sum)
            .zip(&mut self.sq)
        {
            *s += row.iter().map(|&v| v as f64).sum::<f64>();
            *q += row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
        }
        self.frames += frames as f64;
    }

    /// (mean, std) per band; with [`InputNorm::Global`] every band gets the statistics of all
    /// bands together.
    pub fn finish(&self, kind: InputNorm) -> (Vec<f32>, Vec<f32>) {
        let bands = self.sum.len();
        let (sum, sq, n) = match kind {
            InputNorm::Global => (
                vec![self.sum.iter().sum::<f64>(); bands],
                vec![self.sq.iter().sum::<f64>(); bands],
                self.frames * bands as f64,
            ),
            _ => (self.sum.clone(), self.sq.clone(), self.frames),
        };
        let n = n.max(1.0);
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(0.0).sqrt() as f32).max(MIN_STD))
            .collect();
        (mean.into_iter().map(|m| m as f32).collect(), std)
    }
}

impl Standardized {
    /// Sets the statistics (from [`BandStats`] over the training list).
    pub fn set_stats(&self, mean: &[f32], std: &[f32]) -> Result<()> {
        let m = self.mean.elem_count();
        if mean.len() != m || std.len() != m {
            bail!(
                "input statistics for {} / {} bands, the model reads {m}",
                mean.len(),
                std.len()
            );
        }
        let dev = self.mean.device();
        self.mean.set(&Tensor::from_slice(mean, m, dev)?)?;
        self.std.set(&Tensor::from_slice(std, m, dev)?)
    }
}

impl Model for Standardized {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x
            .broadcast_sub(&Self::band_view(&self.mean)?)?
            .broadcast_div(&Self::band_view(&self.std)?)?;
        self.inner.forward_t(&x, train)
    }

    fn reseed(&self, seed: u64, first_row: usize) {
        self.inner.reseed(seed, first_row)
    }

    /// The inner network's: the standardisation holds statistics, not parameters (torchinfo
    /// counts nothing for it either).
    fn layers(&self, input_hw: (usize, usize)) -> Vec<LayerShape> {
        self.inner.layers(input_hw)
    }

    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String> {
        let m = self.mean.elem_count() as i64;
        let mean = g.add_tensor("input_mean", self.mean.as_tensor(), &[1, 1, m, 1])?;
        let std = g.add_tensor("input_std", self.std.as_tensor(), &[1, 1, m, 1])?;
        let centred = g.add_node("Sub", &[input, &mean], vec![]);
        let scaled = g.add_node("Div", &[&centred, &std], vec![]);
        self.inner.emit_onnx(g, &scaled)
    }

    fn input_stats(&self) -> Option<&Standardized> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_stats_are_per_band_and_floored() {
        // Two clips of 2 bands: band 0 varies, band 1 is constant.
        let a = [1.0f32, 3.0, 5.0, 5.0, 5.0, 5.0];
        let b = [7.0f32, 5.0, 5.0];
        let mut stats = BandStats::new(2);
        stats.add(&a, 3);
        stats.add(&b[..2], 1);
        let (mean, std) = stats.finish(InputNorm::PerBand);
        // band 0: 1, 3, 5, 7 -> mean 4, population std sqrt(5)
        assert!((mean[0] - 4.0).abs() < 1e-6, "{mean:?}");
        assert!((std[0] - 5f32.sqrt()).abs() < 1e-6, "{std:?}");
        assert_eq!(mean[1], 5.0);
        assert_eq!(std[1], MIN_STD);
        // all 8 values: 1, 3, 5, 7, 5, 5, 5, 5 -> mean 4.5, variance (12.25 + 2.25 + 4 * 0.25
        // + 6.25) / 8 = 2.75
        let (mean, std) = stats.finish(InputNorm::Global);
        assert_eq!(mean, vec![4.5; 2]);
        assert!(
            std.iter().all(|s| (s - 2.75f32.sqrt()).abs() < 1e-6),
            "{std:?}"
        );
    }
}
