//! The log-mel spectrogram of `frontend.md`: centred framing, periodic Hann window, real FFT,
//! power, sparse mel projection, log. One [`LogMel`] holds the FFT plan, window and filterbank,
//! so a dataset pays for them once; it is `Sync` and is shared across rayon workers.

use super::config::{ClipNorm, FrontendConfig, LogScale, PadMode};
use super::mel::{filterbank, Band, MelSpec};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// A log-mel spectrogram, `n_mels` rows of `frames` values (row-major, librosa's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

/// A ready-to-run front end.
pub struct LogMel {
    config: FrontendConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    bands: Vec<Band>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("config", &self.config)
            .finish()
    }
}

/// Reusable buffers for one thread.
struct Scratch {
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl LogMel {
    pub fn new(config: FrontendConfig) -> Result<Self, String> {
        config.validate()?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(config.n_fft);
        let bands = filterbank(&MelSpec {
            sr: config.sr,
            n_fft: config.n_fft,
            n_mels: config.n_mels,
            fmin: config.fmin,
            fmax: config.fmax,
            htk: config.htk,
            norm: config.norm,
        });
        let window = hann_padded(config.win_length, config.n_fft);
        Ok(Self {
            config,
            fft,
            window,
            bands,
        })
    }

    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// The analysis window, `n_fft` long (for writing the front end into an ONNX graph).
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    /// The mel filterbank as a dense row-major (`n_fft/2 + 1`) × `n_mels` matrix: the layout a
    /// `MatMul` from power spectra (…, bins) to mel energies (…, mels) needs.
    pub fn filterbank_bins_by_mels(&self) -> Vec<f32> {
        let (bins, mels) = (self.config.n_fft / 2 + 1, self.config.n_mels);
        let mut dense = vec![0.0f32; bins * mels];
        for (m, band) in self.bands.iter().enumerate() {
            for (i, &w) in band.weights.iter().enumerate() {
                dense[(band.start + i) * mels + m] = w;
            }
        }
        dense
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            frame: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            fft_scratch: self.fft.make_scratch_vec(),
            power: vec![0.0; self.config.n_fft / 2 + 1],
        }
    }

    /// Log-mel of mono `samples` at the configured rate.
    pub fn compute(&self, samples: &[f32]) -> Spectrogram {
        let c = &self.config;
        let padded = self.pad(samples);
        let frames = c.frames(samples.len());
        let mut data = vec![0.0f32; c.n_mels * frames];
        let mut s = self.scratch();
        for t in 0..frames {
            let start = t * c.hop_length;
            for ((dst, &x), &w) in s
                .frame
                .iter_mut()
                .zip(&padded[start..start + c.n_fft])
                .zip(&self.window)
            {
                *dst = x * w;
            }
            self.fft
                .process_with_scratch(&mut s.frame, &mut s.spectrum, &mut s.fft_scratch)
                .expect("buffer sizes come from the plan");
            for (p, z) in s.power.iter_mut().zip(&s.spectrum) {
                *p = z.re * z.re + z.im * z.im;
            }
            for (m, band) in self.bands.iter().enumerate() {
                let bins = &s.power[band.start..band.start + band.weights.len()];
                let energy: f32 = bins.iter().zip(&band.weights).map(|(p, w)| p * w).sum();
                data[m * frames + t] = energy;
            }
        }
        self.compress(&mut data);
        Spectrogram {
            n_mels: c.n_mels,
            frames,
            data,
        }
    }

    /// Centre padding (`frontend.md` step 2); the result always holds at least one frame.
    fn pad(&self, samples: &[f32]) -> Vec<f32> {
        let c = &self.config;
        if !c.center {
            return samples.to_vec();
        }
        let half = c.n_fft / 2;
        let mut out = vec![0.0f32; samples.len() + 2 * half];
        out[half..half + samples.len()].copy_from_slice(samples);
        if c.pad_mode == PadMode::Reflect && samples.len() == 1 {
            out.fill(samples[0]);
        } else if c.pad_mode == PadMode::Reflect && samples.len() > 1 {
            reflect_edges(&mut out, half, samples.len());
        }
        out
    }

    fn compress(&self, data: &mut [f32]) {
        match self.config.log {
            LogScale::Ln { offset } => data.iter_mut().for_each(|v| *v = (*v + offset).ln()),
            LogScale::PowerToDb { amin } => data
                .iter_mut()
                .for_each(|v| *v = 10.0 * v.max(amin).log10()),
        }
        if self.config.clip_norm == ClipNorm::Minmax && !data.is_empty() {
            let (lo, hi) = data
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let range = (hi - lo).max(f32::MIN_POSITIVE);
            data.iter_mut().for_each(|v| *v = (*v - lo) / range);
        }
    }
}

/// Mirrors the signal into `half` samples on each side without repeating the edge sample
/// (`np.pad(mode="reflect")`), reflecting repeatedly when the signal is shorter than `half`.
fn reflect_edges(out: &mut [f32], half: usize, len: usize) {
    let period = 2 * (len - 1);
    let source = |i: isize| -> usize {
        let m = i.rem_euclid(period as isize) as usize;
        if m < len {
            m
        } else {
            period - m
        }
    };
    for j in 0..half {
        let left = source(j as isize - half as isize);
        out[j] = out[half + left];
        let right = source((len + j) as isize);
        out[half + len + j] = out[half + right];
    }
}

/// Periodic Hann of `win_length`, zero-padded centred to `n_fft` (`librosa.filters.get_window`
/// with `fftbins=True`, then `util.pad_center`).
fn hann_padded(win_length: usize, n_fft: usize) -> Vec<f32> {
    let mut window = vec![0.0f32; n_fft];
    let offset = (n_fft - win_length) / 2;
    for n in 0..win_length {
        let phase = 2.0 * std::f64::consts::PI * n as f64 / win_length as f64;
        window[offset + n] = (0.5 - 0.5 * phase.cos()) as f32;
    }
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy_rule() {
        // np.pad([1,2,3,4], 3, mode="reflect") = [4,3,2,1,2,3,4,3,2,1]
        let mut out = vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0];
        reflect_edges(&mut out, 3, 4);
        assert_eq!(out, vec![4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]);
    }

    #[test]
    fn hann_is_periodic_and_centred() {
        let w = hann_padded(4, 8);
        assert_eq!(w[..2], [0.0, 0.0]);
        assert!((w[2 + 2] - 1.0).abs() < 1e-7);
        assert_eq!(w[6..], [0.0, 0.0]);
    }

    #[test]
    fn empty_and_tiny_inputs_give_a_frame() {
        let lm = LogMel::new(FrontendConfig::cpjku()).unwrap();
        for len in [0, 1, 2, 5] {
            let s = lm.compute(&vec![0.1; len]);
            assert_eq!(s.frames, 1 + len / 500);
            assert!(s.data.iter().all(|v| v.is_finite()));
        }
    }
}
