//! The log-mel spectrogram of `docs/frontend.md`: centred framing, periodic Hann window, real FFT,
//! power, sparse mel projection, log. One [`LogMel`] holds the FFT plan, window and filterbank,
//! so a dataset pays for them once; it is `Sync` and is shared across rayon workers.

use super::config::{ClipNorm, FrontendConfig, FrontendError, LogScale, PadMode};
use super::fastlog::ln_in_place;
use super::mel::{filterbank, Band, MelSpec, FRAMES};
use super::spectrum::{PowerSpectrum, SpectrumScratch};

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
    spectrum: PowerSpectrum,
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
    /// A frame overlapping the padding, assembled.
    edge: Vec<f32>,
    spectrum: SpectrumScratch,
    /// [`FRAMES`] power spectra, one after the other.
    power: Vec<f32>,
}

impl LogMel {
    pub fn new(config: FrontendConfig) -> Result<Self, FrontendError> {
        config.validate()?;
        let spectrum = PowerSpectrum::new(config.n_fft);
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
            spectrum,
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
            edge: vec![0.0; self.config.n_fft],
            spectrum: self.spectrum.scratch(),
            power: vec![0.0; FRAMES * (self.config.n_fft / 2 + 1)],
        }
    }

    /// Log-mel of mono `samples` at the configured rate.
    pub fn compute(&self, samples: &[f32]) -> Spectrogram {
        let c = &self.config;
        let frames = c.frames(samples.len());
        let mut data = vec![0.0f32; c.n_mels * frames];
        self.fill_with(crate::kernels::Isa::active(), samples, &mut data);
        Spectrogram {
            n_mels: c.n_mels,
            frames,
            data,
        }
    }

    /// [`Self::fill`] on the widest path `isa` allows. AVX-512 takes the AVX2 build: a build for
    /// 512-bit vectors gave the same bits and was no faster here (40 clips, `perf stat`).
    fn fill_with(&self, isa: crate::kernels::Isa, samples: &[f32], data: &mut [f32]) {
        use crate::kernels::Isa;
        match isa {
            // SAFETY: the caller passes a path this CPU runs (`Isa::active`, or tests that
            // check `available`); both x86 paths include AVX2.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 => unsafe { self.fill_avx2(samples, data) },
            _ => self.fill(samples, data),
        }
    }

    /// [`Self::fill`] compiled for AVX2: the same operations in the same order on wider vectors
    /// (no FMA contraction: Rust never fuses a multiply and an add by itself), so the same bits
    /// as the baseline build, in about half the time for the split step, the mel dot products
    /// and the log.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_avx2(&self, samples: &[f32], data: &mut [f32]) {
        self.fill(samples, data)
    }

    /// The log-mel energies of every frame of `samples` into `data` (`n_mels` × frames).
    #[inline(always)]
    fn fill(&self, samples: &[f32], data: &mut [f32]) {
        let frames = data.len() / self.config.n_mels.max(1);
        let bins = self.config.n_fft / 2 + 1;
        let mut s = self.scratch();
        for t0 in (0..frames).step_by(FRAMES) {
            let group = FRAMES.min(frames - t0);
            for (j, power) in s.power.chunks_exact_mut(bins).take(group).enumerate() {
                let frame = self.frame(samples, t0 + j, &mut s.edge);
                self.spectrum
                    .power(frame, &self.window, &mut s.spectrum, power);
            }
            // A last group of fewer frames sums stale spectra too; only its own are kept.
            for (m, band) in self.bands.iter().enumerate() {
                let e = band.energies(&s.power, bins);
                data[m * frames + t0..][..group].copy_from_slice(&e[..group]);
            }
        }
        self.compress(data);
    }

    /// The samples of frame `t`. Frames that lie inside the signal are borrowed in place; only
    /// those overlapping the centre padding (`docs/frontend.md` step 2) are assembled in `edge`, so
    /// the padded signal is never built.
    fn frame<'a>(&self, samples: &'a [f32], t: usize, edge: &'a mut [f32]) -> &'a [f32] {
        let c = &self.config;
        let shift = if c.center { c.n_fft / 2 } else { 0 };
        let start = (t * c.hop_length) as isize - shift as isize;
        if start >= 0 && start as usize + c.n_fft <= samples.len() {
            return &samples[start as usize..start as usize + c.n_fft];
        }
        for (i, dst) in edge.iter_mut().enumerate() {
            *dst = padded_sample(samples, start + i as isize, c.pad_mode);
        }
        edge
    }

    #[inline(always)]
    fn compress(&self, data: &mut [f32]) {
        match self.config.log {
            LogScale::Ln { offset } => {
                data.iter_mut().for_each(|v| *v += offset);
                ln_in_place(data);
            }
            LogScale::PowerToDb { amin } => {
                data.iter_mut().for_each(|v| *v = v.max(amin));
                ln_in_place(data);
                // 10·log10(x) = ln(x) · 10/ln(10).
                let scale = 10.0 / std::f32::consts::LN_10;
                data.iter_mut().for_each(|v| *v *= scale);
            }
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

/// Sample `i` of the centre-padded signal, `i` counted from the first real sample: zero outside
/// for `constant`; for `reflect`, a mirror that does not repeat the edge sample
/// (`np.pad(mode="reflect")`), reflecting repeatedly when the signal is shorter than the padding.
fn padded_sample(samples: &[f32], i: isize, mode: PadMode) -> f32 {
    let len = samples.len();
    if (0..len as isize).contains(&i) {
        return samples[i as usize];
    }
    match (mode, len) {
        (PadMode::Constant, _) | (PadMode::Reflect, 0) => 0.0,
        (PadMode::Reflect, 1) => samples[0],
        (PadMode::Reflect, _) => {
            let period = 2 * (len - 1);
            let m = i.rem_euclid(period as isize) as usize;
            samples[if m < len { m } else { period - m }]
        }
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

    /// Every path gives the portable build's bits, for each preset (odd FFT lengths included):
    /// the vector builds only widen the same operations.
    #[test]
    fn every_path_gives_the_same_bits() {
        use crate::kernels::Isa;
        let samples: Vec<f32> = (0..40_000)
            .map(|i| ((i * 7919 % 1013) as f32 / 506.0 - 1.0) * 0.3 + (i as f32 * 0.01).sin())
            .collect();
        let mut odd = FrontendConfig::preset("librosa").unwrap();
        odd.n_fft = 1001;
        odd.win_length = 1001;
        let configs = super::super::config::PRESET_NAMES
            .iter()
            .map(|p| FrontendConfig::preset(p).unwrap())
            .chain([odd]);
        for config in configs {
            let lm = LogMel::new(config).unwrap();
            let len = lm.config.n_mels * lm.config.frames(samples.len());
            let mut want = vec![0.0f32; len];
            lm.fill_with(Isa::Portable, &samples, &mut want);
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                let mut got = vec![0.0f32; len];
                lm.fill_with(isa, &samples, &mut got);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{isa:?}, n_fft {}", lm.config.n_fft);
            }
        }
    }

    #[test]
    fn reflect_matches_numpy_rule() {
        // np.pad([1,2,3,4], 3, mode="reflect") = [4,3,2,1,2,3,4,3,2,1]
        let signal = [1.0, 2.0, 3.0, 4.0];
        let out: Vec<f32> = (-3..7)
            .map(|i| padded_sample(&signal, i, PadMode::Reflect))
            .collect();
        assert_eq!(out, vec![4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]);
        // Shorter than the padding: the mirror repeats; one sample repeats itself.
        let out: Vec<f32> = (-4..6)
            .map(|i| padded_sample(&signal[..2], i, PadMode::Reflect))
            .collect();
        assert_eq!(out, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(padded_sample(&[5.0], -3, PadMode::Reflect), 5.0);
        assert_eq!(padded_sample(&signal, -1, PadMode::Constant), 0.0);
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
