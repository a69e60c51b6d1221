//! The power spectrum |X_k|² of one windowed frame (`docs/frontend.md` step 4), k = 0..=n_fft/2.
//!
//! An even-length real FFT is a complex FFT of half the length on the frame's sample pairs,
//! followed by a split step that separates the even and odd halves. `realfft` does that step
//! in scalar code that took longer than the FFT itself (a third of the front end in a profile);
//! here it is a plain loop over k and N − k that vectorises, and it produces |X_k|² directly, so
//! the complex spectrum is never stored. Odd lengths (no preset uses one) take a full complex
//! FFT of the zero-imaginary frame.

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// A planned power spectrum for frames of one length; `Sync`, shared by all threads.
pub struct PowerSpectrum {
    n_fft: usize,
    fft: Arc<dyn Fft<f32>>,
    /// exp(−2πik/n_fft) for k = 0..n_fft/2 (even lengths only), split into parts.
    twiddle_re: Vec<f32>,
    twiddle_im: Vec<f32>,
}

/// Per-thread buffers for [`PowerSpectrum::power`].
pub struct SpectrumScratch {
    buffer: Vec<Complex<f32>>,
    fft: Vec<Complex<f32>>,
}

impl PowerSpectrum {
    pub fn new(n_fft: usize) -> Self {
        let even = n_fft.is_multiple_of(2);
        let len = if even { n_fft / 2 } else { n_fft };
        let fft = FftPlanner::new().plan_fft_forward(len);
        let twiddles = if even { 0..n_fft / 2 } else { 0..0 };
        let angle = |k: usize| -2.0 * std::f64::consts::PI * k as f64 / n_fft as f64;
        Self {
            n_fft,
            fft,
            twiddle_re: twiddles.clone().map(|k| angle(k).cos() as f32).collect(),
            twiddle_im: twiddles.map(|k| angle(k).sin() as f32).collect(),
        }
    }

    pub fn scratch(&self) -> SpectrumScratch {
        SpectrumScratch {
            buffer: vec![Complex::default(); self.fft.len()],
            fft: vec![Complex::default(); self.fft.get_inplace_scratch_len()],
        }
    }

    /// |X_k|² of `frame` times `window` (both `n_fft` long) into `power` (`n_fft/2 + 1`). The
    /// window is applied while the frame is packed into the FFT buffer, in the same pass.
    #[inline(always)]
    pub fn power(&self, frame: &[f32], window: &[f32], s: &mut SpectrumScratch, power: &mut [f32]) {
        debug_assert_eq!(frame.len(), self.n_fft);
        debug_assert_eq!(window.len(), self.n_fft);
        debug_assert_eq!(power.len(), self.n_fft / 2 + 1);
        if !self.n_fft.is_multiple_of(2) {
            for ((z, &x), &w) in s.buffer.iter_mut().zip(frame).zip(window) {
                *z = Complex::new(x * w, 0.0);
            }
            self.fft.process_with_scratch(&mut s.buffer, &mut s.fft);
            for (p, z) in power.iter_mut().zip(&s.buffer) {
                *p = z.norm_sqr();
            }
            return;
        }
        for ((z, x), w) in s
            .buffer
            .iter_mut()
            .zip(frame.chunks_exact(2))
            .zip(window.chunks_exact(2))
        {
            *z = Complex::new(x[0] * w[0], x[1] * w[1]);
        }
        self.fft.process_with_scratch(&mut s.buffer, &mut s.fft);
        self.split(&s.buffer, power);
    }

    /// From Z = FFT(x₀ + i·x₁, x₂ + i·x₃, …) of length N = n_fft/2 to |X_k|²:
    /// X_k = E_k + W^k·O_k with E_k = (Z_k + Z̄_{N−k})/2, O_k = −i(Z_k − Z̄_{N−k})/2,
    /// W = exp(−2πi/n_fft), indices mod N (so X_0 = Re Z_0 + Im Z_0, X_N = Re Z_0 − Im Z_0).
    #[inline(always)]
    fn split(&self, z: &[Complex<f32>], power: &mut [f32]) {
        let half = z.len();
        let z0 = z[0];
        power[0] = (z0.re + z0.im) * (z0.re + z0.im);
        power[half] = (z0.re - z0.im) * (z0.re - z0.im);
        let rest = &z[1..];
        for ((((p, a), b), &wr), &wi) in power[1..half]
            .iter_mut()
            .zip(rest)
            .zip(rest.iter().rev())
            .zip(&self.twiddle_re[1..])
            .zip(&self.twiddle_im[1..])
        {
            // 2E = (sr, si), 2O = (di, −dr); the halves are folded into the final 1/4.
            let (sr, si) = (a.re + b.re, a.im - b.im);
            let (dr, di) = (a.re - b.re, a.im + b.im);
            let xr = sr + wr * di + wi * dr;
            let xi = si - wr * dr + wi * di;
            *p = 0.25 * (xr * xr + xi * xi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |X_k|² by the defining sum, in f64.
    fn naive(frame: &[f32]) -> Vec<f64> {
        let n = frame.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (t, &x) in frame.iter().enumerate() {
                    let a = -2.0 * std::f64::consts::PI * (k * t % n) as f64 / n as f64;
                    re += x as f64 * a.cos();
                    im += x as f64 * a.sin();
                }
                re * re + im * im
            })
            .collect()
    }

    #[test]
    fn matches_the_dft_for_even_and_odd_lengths() {
        for n in [2usize, 3, 8, 15, 64, 250, 2048] {
            let frame: Vec<f32> = (0..n)
                .map(|t| ((t * 7919 % 101) as f32 / 50.0 - 1.0) + (t as f32 * 0.3).sin())
                .collect();
            let ps = PowerSpectrum::new(n);
            let mut power = vec![0.0; n / 2 + 1];
            // A non-trivial window, checked against the DFT of the product.
            let window: Vec<f32> = (0..n).map(|t| 1.0 - t as f32 / (2 * n) as f32).collect();
            ps.power(&frame, &window, &mut ps.scratch(), &mut power);
            let product: Vec<f32> = frame.iter().zip(&window).map(|(x, w)| x * w).collect();
            let want = naive(&product);
            let peak = want.iter().cloned().fold(0.0, f64::max);
            for (k, (&got, &want)) in power.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * peak,
                    "n {n} bin {k}: {got} vs {want}"
                );
            }
        }
    }
}
