//! The mel filterbank, computed exactly as `librosa.filters.mel` does (float64 arithmetic, cast to
//! float32 at the end), and stored sparsely: each triangle touches a few dozen FFT bins, so the
//! projection costs O(n_fft) per frame instead of O(n_mels · n_fft).

use super::config::MelNorm;

/// Mel value of `hz` on the HTK or Slaney scale (`librosa.hz_to_mel`).
pub fn hz_to_mel(hz: f64, htk: bool) -> f64 {
    if htk {
        return 2595.0 * (1.0 + hz / 700.0).log10();
    }
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Inverse of [`hz_to_mel`] (`librosa.mel_to_hz`).
pub fn mel_to_hz(mel: f64, htk: bool) -> f64 {
    if htk {
        return 700.0 * (10f64.powf(mel / 2595.0) - 1.0);
    }
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// One triangle: weights for FFT bins `start .. start + weights.len()`.
#[derive(Debug, Clone)]
pub struct Band {
    pub start: usize,
    pub weights: Vec<f32>,
}

/// Power spectra whose mel energies [`Band::energies`] takes at once.
pub const FRAMES: usize = 4;

impl Band {
    /// Mel energies of [`FRAMES`] power spectra, the `j`-th at `power[j * stride..]`: the band's
    /// weights dotted with each one's bins. Eight independent partial sums instead of one serial
    /// chain let each dot product vectorise (the summation order differs from librosa's BLAS
    /// product anyway); four spectra per call share the weight loads and the loop, which per
    /// spectrum had cost more than the multiply-adds over bands of a few bins (the mel sums were
    /// 15 % of `asc features` over 40 clips). Each spectrum's sum is the one a call for it alone
    /// would give, in the same order.
    #[inline(always)]
    pub fn energies(&self, power: &[f32], stride: usize) -> [f32; FRAMES] {
        let n = self.weights.len();
        let bins: [&[f32]; FRAMES] =
            std::array::from_fn(|j| &power[j * stride + self.start..j * stride + self.start + n]);
        let chunks = bins.map(|b| b.chunks_exact(8));
        let w = self.weights.chunks_exact(8);
        let tails: [f32; FRAMES] = std::array::from_fn(|j| {
            chunks[j]
                .remainder()
                .iter()
                .zip(w.remainder())
                .map(|(a, b)| a * b)
                .sum()
        });
        let mut acc = [[0.0f32; 8]; FRAMES];
        let [c0, c1, c2, c3] = chunks;
        for ((((w, p0), p1), p2), p3) in w.zip(c0).zip(c1).zip(c2).zip(c3) {
            for i in 0..8 {
                acc[0][i] += p0[i] * w[i];
                acc[1][i] += p1[i] * w[i];
                acc[2][i] += p2[i] * w[i];
                acc[3][i] += p3[i] * w[i];
            }
        }
        std::array::from_fn(|j| acc[j].iter().sum::<f32>() + tails[j])
    }
}

/// Parameters of [`filterbank`].
pub struct MelSpec {
    pub sr: u32,
    pub n_fft: usize,
    pub n_mels: usize,
    pub fmin: f64,
    pub fmax: f64,
    pub htk: bool,
    pub norm: MelNorm,
}

/// The mel filterbank as sparse bands, one per mel channel, low to high.
pub fn filterbank(spec: &MelSpec) -> Vec<Band> {
    let n_bins = 1 + spec.n_fft / 2;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * spec.sr as f64 / spec.n_fft as f64)
        .collect();
    let (mel_lo, mel_hi) = (
        hz_to_mel(spec.fmin, spec.htk),
        hz_to_mel(spec.fmax, spec.htk),
    );
    let points = spec.n_mels + 2;
    // np.linspace(min_mel, max_mel, n_mels + 2), then back to Hz.
    let mel_f: Vec<f64> = (0..points)
        .map(|i| {
            let m = if i == points - 1 {
                mel_hi
            } else {
                mel_lo + (mel_hi - mel_lo) * i as f64 / (points - 1) as f64
            };
            mel_to_hz(m, spec.htk)
        })
        .collect();
    (0..spec.n_mels)
        .map(|i| {
            let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
            let enorm = match spec.norm {
                MelNorm::Slaney => 2.0 / (hi - lo),
                MelNorm::None => 1.0,
            };
            let dense: Vec<f32> = fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (mid - lo);
                    let upper = (hi - f) / (hi - mid);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect();
            sparse(&dense)
        })
        .collect()
}

fn sparse(dense: &[f32]) -> Band {
    match dense.iter().position(|&w| w != 0.0) {
        None => Band {
            start: 0,
            weights: Vec::new(),
        },
        Some(start) => {
            let end = dense.iter().rposition(|&w| w != 0.0).unwrap_or(start) + 1;
            Band {
                start,
                weights: dense[start..end].to_vec(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scales_invert() {
        for htk in [true, false] {
            for hz in [0.0, 100.0, 999.0, 1000.0, 4000.0, 22050.0] {
                let back = mel_to_hz(hz_to_mel(hz, htk), htk);
                assert!((back - hz).abs() < 1e-6 * hz.max(1.0), "{hz} -> {back}");
            }
        }
    }
}
