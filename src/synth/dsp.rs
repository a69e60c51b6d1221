//! Signal-processing building blocks of the generator: one FFT size per data set, noise with a
//! prescribed spectrum, magnitude-response filtering, convolution and RBJ biquads.

use std::f32::consts::{PI, TAU};
use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::dataset::rng::SplitMix64;

/// Forward and inverse real FFT plans of one size, shared by all worker threads.
#[derive(Clone)]
pub struct Fft {
    n: usize,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
}

impl Fft {
    pub fn new(n: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        Self {
            n,
            fwd: planner.plan_fft_forward(n),
            inv: planner.plan_fft_inverse(n),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Spectrum of `x` zero-padded (or truncated) to the FFT size.
    pub fn forward(&self, x: &[f32]) -> Vec<Complex32> {
        let mut buf = vec![0.0f32; self.n];
        let m = x.len().min(self.n);
        buf[..m].copy_from_slice(&x[..m]);
        let mut out = self.fwd.make_output_vec();
        // Sizes come from the plan itself, so process cannot fail.
        let _ = self.fwd.process(&mut buf, &mut out);
        out
    }

    /// Inverse of [`Self::forward`], scaled so that `inverse(forward(x)) == x`.
    pub fn inverse(&self, spec: &mut [Complex32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n];
        if let Some(first) = spec.first_mut() {
            first.im = 0.0;
        }
        if self.n.is_multiple_of(2) {
            if let Some(last) = spec.last_mut() {
                last.im = 0.0;
            }
        }
        let _ = self.inv.process(spec, &mut out);
        let scale = 1.0 / self.n as f32;
        out.iter_mut().for_each(|v| *v *= scale);
        out
    }

    /// Centre frequency of bin `k` at sample rate `sr`.
    pub fn bin_hz(&self, k: usize, sr: f32) -> f32 {
        k as f32 * sr / self.n as f32
    }
}

/// A smooth magnitude response: a tilt around 1 kHz, Gaussian bumps on a log-frequency axis,
/// Butterworth-like high- and low-pass edges. Used both for scene backgrounds and for devices.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralShape {
    /// Slope in dB per octave relative to 1 kHz (pink noise: -3).
    pub slope_db_oct: f32,
    /// (centre Hz, width in octaves, gain dB).
    pub bumps: Vec<(f32, f32, f32)>,
    /// Second-order high-pass corner (Hz), 0 for none.
    pub highpass_hz: f32,
    /// Low-pass corner (Hz), 0 for none.
    pub lowpass_hz: f32,
    /// Low-pass order (steepness: 6·order dB per octave).
    pub lowpass_order: f32,
}

impl SpectralShape {
    pub fn flat() -> Self {
        Self {
            slope_db_oct: 0.0,
            bumps: Vec::new(),
            highpass_hz: 0.0,
            lowpass_hz: 0.0,
            lowpass_order: 2.0,
        }
    }

    /// Linear amplitude gain at `f` Hz.
    pub fn gain(&self, f: f32) -> f32 {
        let f = f.max(10.0);
        let oct = (f / 1000.0).log2();
        let mut db = self.slope_db_oct * oct;
        for &(fc, width, g) in &self.bumps {
            let d = (f / fc).log2() / width.max(0.05);
            db += g * (-0.5 * d * d).exp();
        }
        let mut amp = 10f32.powf(db / 20.0);
        if self.highpass_hz > 0.0 {
            amp /= (1.0 + (self.highpass_hz / f).powi(4)).sqrt();
        }
        if self.lowpass_hz > 0.0 {
            amp /= (1.0 + (f / self.lowpass_hz).powf(2.0 * self.lowpass_order)).sqrt();
        }
        amp
    }
}

/// Stationary Gaussian noise of `len` samples whose amplitude spectrum follows `shape`,
/// normalised to unit RMS. Drawn directly in the frequency domain (random complex Gaussian per
/// bin), which is exact and needs a single inverse FFT.
pub fn shaped_noise(
    rng: &mut SplitMix64,
    fft: &Fft,
    sr: f32,
    len: usize,
    shape: &SpectralShape,
) -> Vec<f32> {
    let bins = fft.n() / 2 + 1;
    let mut spec: Vec<Complex32> = (0..bins)
        .map(|k| {
            let g = if k == 0 {
                0.0
            } else {
                shape.gain(fft.bin_hz(k, sr))
            };
            Complex32::new(rng.normal() * g, rng.normal() * g)
        })
        .collect();
    let mut x = fft.inverse(&mut spec);
    x.truncate(len);
    normalise_rms(&mut x);
    x
}

/// Applies a zero-phase magnitude response to `x` (length <= FFT size; circular beyond).
pub fn apply_shape(fft: &Fft, sr: f32, x: &[f32], shape: &SpectralShape) -> Vec<f32> {
    let mut spec = fft.forward(x);
    for (k, c) in spec.iter_mut().enumerate() {
        *c *= shape.gain(fft.bin_hz(k, sr));
    }
    let mut y = fft.inverse(&mut spec);
    y.truncate(x.len());
    y
}

/// Linear convolution of `x` with `h` truncated to `x.len()`; the FFT size must be at least
/// `x.len() + h.len() - 1` for no wrap-around (the generator sizes its FFT that way).
pub fn convolve(fft: &Fft, x: &[f32], h: &[f32]) -> Vec<f32> {
    let mut a = fft.forward(x);
    let b = fft.forward(h);
    for (u, v) in a.iter_mut().zip(&b) {
        *u *= *v;
    }
    let mut y = fft.inverse(&mut a);
    y.truncate(x.len());
    y
}

/// Room impulse response: exponentially decaying Gaussian noise with the given RT60 (the time
/// to decay by 60 dB), length `max_len`, unit energy. The decay is what makes a hall sound like
/// a hall; the noise fine structure is a fair model of a diffuse late reverberation.
pub fn room_ir(rng: &mut SplitMix64, sr: f32, rt60: f32, max_len: usize) -> Vec<f32> {
    let len = ((rt60 * sr) as usize).clamp(1, max_len.max(1));
    let k = 6.907_755 / (rt60.max(1e-3) * sr); // ln(1000)
    let mut h: Vec<f32> = (0..len)
        .map(|i| rng.normal() * (-k * i as f32).exp())
        .collect();
    let e = h.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    h.iter_mut().for_each(|v| *v /= e);
    h
}

pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt() as f32
}

pub fn normalise_rms(x: &mut [f32]) {
    let r = rms(x);
    if r > 1e-12 {
        x.iter_mut().for_each(|v| *v /= r);
    }
}

/// RBJ audio-EQ-cookbook biquad, transposed direct form II.
#[derive(Debug, Clone)]
pub struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Biquad {
    fn from_raw(b0: f32, b1: f32, b2: f32, a0: f32, a1: f32, a2: f32) -> Self {
        Self {
            b: [b0 / a0, b1 / a0, b2 / a0],
            a: [a1 / a0, a2 / a0],
            z: [0.0; 2],
        }
    }

    fn omega(f: f32, sr: f32) -> (f32, f32) {
        let w = TAU * (f / sr).clamp(1e-4, 0.49);
        (w.cos(), w.sin())
    }

    /// Band-pass with 0 dB peak gain.
    pub fn bandpass(f: f32, q: f32, sr: f32) -> Self {
        let (c, s) = Self::omega(f, sr);
        let alpha = s / (2.0 * q);
        Self::from_raw(alpha, 0.0, -alpha, 1.0 + alpha, -2.0 * c, 1.0 - alpha)
    }

    pub fn lowpass(f: f32, q: f32, sr: f32) -> Self {
        let (c, s) = Self::omega(f, sr);
        let alpha = s / (2.0 * q);
        let b1 = 1.0 - c;
        Self::from_raw(b1 / 2.0, b1, b1 / 2.0, 1.0 + alpha, -2.0 * c, 1.0 - alpha)
    }

    pub fn highpass(f: f32, q: f32, sr: f32) -> Self {
        let (c, s) = Self::omega(f, sr);
        let alpha = s / (2.0 * q);
        let b1 = 1.0 + c;
        Self::from_raw(b1 / 2.0, -b1, b1 / 2.0, 1.0 + alpha, -2.0 * c, 1.0 - alpha)
    }

    pub fn process(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }

    pub fn run(&mut self, x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = self.process(*v));
    }
}

/// Raised-cosine fade in/out of `ramp` samples at both ends, so events never click.
pub fn fade(x: &mut [f32], ramp: usize) {
    let n = x.len();
    let ramp = ramp.min(n / 2);
    for i in 0..ramp {
        let g = 0.5 - 0.5 * (PI * i as f32 / ramp as f32).cos();
        x[i] *= g;
        x[n - 1 - i] *= g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_roundtrip_and_convolution() {
        let fft = Fft::new(64);
        let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut s = fft.forward(&x);
        let y = fft.inverse(&mut s);
        for i in 0..40 {
            assert!((x[i] - y[i]).abs() < 1e-5);
        }
        // Convolution with a delayed, scaled impulse is a delay.
        let mut h = vec![0.0; 5];
        h[3] = 0.5;
        let c = convolve(&fft, &x, &h);
        for i in 3..40 {
            assert!((c[i] - 0.5 * x[i - 3]).abs() < 1e-5);
        }
    }

    #[test]
    fn shaped_noise_follows_the_shape() {
        let sr = 16000.0;
        let fft = Fft::new(1 << 14);
        let mut rng = SplitMix64::new(1);
        let mut shape = SpectralShape::flat();
        shape.lowpass_hz = 1000.0;
        shape.lowpass_order = 4.0;
        let x = shaped_noise(&mut rng, &fft, sr, 1 << 14, &shape);
        assert!((rms(&x) - 1.0).abs() < 1e-4);
        let spec = fft.forward(&x);
        let band = |lo: f32, hi: f32| -> f32 {
            spec.iter()
                .enumerate()
                .filter(|(k, _)| (lo..hi).contains(&fft.bin_hz(*k, sr)))
                .map(|(_, c)| c.norm_sqr())
                .sum()
        };
        assert!(band(100.0, 900.0) > 1000.0 * band(3000.0, 3800.0));
    }

    #[test]
    fn biquad_bandpass_passes_centre_rejects_far() {
        let sr = 16000.0;
        let tone = |f: f32| -> f32 {
            let mut bq = Biquad::bandpass(1000.0, 2.0, sr);
            let mut x: Vec<f32> = (0..8000).map(|i| (TAU * f * i as f32 / sr).sin()).collect();
            bq.run(&mut x);
            rms(&x[4000..])
        };
        assert!((tone(1000.0) - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.02);
        assert!(tone(6000.0) < 0.1);
    }

    #[test]
    fn room_ir_decays() {
        let mut rng = SplitMix64::new(2);
        let h = room_ir(&mut rng, 8000.0, 0.5, 8000);
        assert_eq!(h.len(), 4000);
        let e = |a: usize, b: usize| h[a..b].iter().map(|v| v * v).sum::<f32>();
        // 60 dB over 0.5 s: the second 0.25 s holds ~1e-3 of the energy of the first.
        assert!(e(2000, 4000) < 1e-2 * e(0, 2000));
    }
}
