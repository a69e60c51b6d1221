//! Training-time augmentation of log-mel batches (`docs/datasets.md`, the DCASE 2024 baseline
//! recipe and the L2BN paper's): random time crop, mixup, SpecAugment-style masking and
//! frequency-MixStyle. Everything draws from the step's own seeded generator, so a run and its
//! resume agree.

use crate::dataset::rng::SplitMix64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Mixup Beta(α, α); 0 turns it off (the L2BN recipe uses 0.4).
    pub mixup_alpha: f32,
    /// Widest frequency mask in mel bins (0: none); the DCASE 2024 baseline masks up to 48 of 256.
    pub freq_mask: usize,
    /// Widest time mask in frames (0: none).
    pub time_mask: usize,
    /// Probability of frequency-MixStyle per batch, and its Beta(α, α).
    pub mixstyle_p: f32,
    pub mixstyle_alpha: f32,
}

impl AugmentConfig {
    /// The DCASE 2024 baseline's augmentation scaled to small models (`asc train --augment`):
    /// mixup, one frequency and one time mask, frequency-MixStyle. Not the default: on the
    /// real-recording development set it cost accuracy at 50 epochs (`docs/real-audio.md`).
    pub fn dcase() -> Self {
        Self {
            mixup_alpha: 0.3,
            freq_mask: 8,
            time_mask: 8,
            mixstyle_p: 0.4,
            mixstyle_alpha: 0.3,
        }
    }
}

/// No augmentation: the default.
impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            mixup_alpha: 0.0,
            freq_mask: 0,
            time_mask: 0,
            mixstyle_p: 0.0,
            mixstyle_alpha: 0.3,
        }
    }
}

/// A batch on the host: `x` is B × M × T (row-major), `y` is B × K soft targets.
pub struct HostBatch {
    pub b: usize,
    pub m: usize,
    pub t: usize,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// The hard label of each example before mixing (for training accuracy).
    pub labels: Vec<usize>,
    /// The frame each example's crop starts at (0 without random crops).
    pub starts: Vec<usize>,
    /// The teacher's soft targets, one row per example, when the run distils; mixup mixes them
    /// as it mixes `y`.
    pub teacher: Option<Vec<f32>>,
}

/// Gamma(shape, 1) by Marsaglia and Tsang (with the shape < 1 boost).
fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.next_f64().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal() as f64;
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.next_f64();
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// A draw from Beta(α, α).
pub fn beta(rng: &mut SplitMix64, alpha: f32) -> f32 {
    let a = gamma(rng, alpha as f64);
    let b = gamma(rng, alpha as f64);
    (a / (a + b)) as f32
}

fn permutation(rng: &mut SplitMix64, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut p);
    p
}

/// Frames `start .. start + len` of a clip of `frames` frames, tiling the clip when it is
/// shorter than `len`; the start is random when the clip is longer.
pub fn crop_start(rng: &mut SplitMix64, frames: usize, len: usize) -> usize {
    if frames > len {
        rng.below((frames - len + 1) as u64) as usize
    } else {
        0
    }
}

/// Applies the configured augmentations in place, in the order MixStyle → mixup → masks.
pub fn apply(cfg: &AugmentConfig, batch: &mut HostBatch, rng: &mut SplitMix64) {
    if cfg.mixstyle_p > 0.0 && rng.chance(cfg.mixstyle_p) {
        freq_mixstyle(batch, cfg.mixstyle_alpha, rng);
    }
    if cfg.mixup_alpha > 0.0 {
        mixup(batch, cfg.mixup_alpha, rng);
    }
    if cfg.freq_mask > 0 || cfg.time_mask > 0 {
        masks(batch, cfg.freq_mask, cfg.time_mask, rng);
    }
}

/// Mixup (Zhang et al.): one λ per batch, partners from a permutation; targets mix alike.
fn mixup(batch: &mut HostBatch, alpha: f32, rng: &mut SplitMix64) {
    let lam = beta(rng, alpha);
    let perm = permutation(rng, batch.b);
    let plane = batch.m * batch.t;
    let k = batch.y.len() / batch.b;
    mix_rows(&mut batch.x, plane, &perm, lam);
    mix_rows(&mut batch.y, k, &perm, lam);
    if let Some(teacher) = &mut batch.teacher {
        mix_rows(teacher, k, &perm, lam);
    }
}

/// Row i of `rows` (each `width` long) becomes lam·row i + (1 − lam)·row perm[i].
fn mix_rows(rows: &mut [f32], width: usize, perm: &[usize], lam: f32) {
    let original = rows.to_vec();
    for (i, &j) in perm.iter().enumerate() {
        for p in 0..width {
            rows[i * width + p] =
                lam * original[i * width + p] + (1.0 - lam) * original[j * width + p];
        }
    }
}

/// Frequency-MixStyle (the DCASE 2024 baseline): per example and mel bin, statistics over time;
/// each example's bins are re-scaled to a mix of its own and a partner's statistics.
fn freq_mixstyle(batch: &mut HostBatch, alpha: f32, rng: &mut SplitMix64) {
    let (m, t) = (batch.m, batch.t);
    let mut mu = vec![0.0f32; batch.b * m];
    let mut sd = vec![0.0f32; batch.b * m];
    for i in 0..batch.b {
        for f in 0..m {
            let row = &batch.x[(i * m + f) * t..(i * m + f + 1) * t];
            let mean = row.iter().sum::<f32>() / t as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / t as f32;
            mu[i * m + f] = mean;
            sd[i * m + f] = (var + 1e-6).sqrt();
        }
    }
    let perm = permutation(rng, batch.b);
    for (i, &j) in perm.iter().enumerate() {
        let lam = beta(rng, alpha);
        for f in 0..m {
            let (a, b) = (i * m + f, j * m + f);
            let mix_mu = lam * mu[a] + (1.0 - lam) * mu[b];
            let mix_sd = lam * sd[a] + (1.0 - lam) * sd[b];
            for v in &mut batch.x[a * t..(a + 1) * t] {
                *v = (*v - mu[a]) / sd[a] * mix_sd + mix_mu;
            }
        }
    }
}

/// One frequency and one time mask per example, widths uniform in [0, max], filled with the
/// example's mean (SpecAugment masks with the mean). A log-mel is far from zero (ln(x + 1e-8)
/// is about −10 on quiet bands), so a zero fill would paint a loud band, not a missing one.
fn masks(batch: &mut HostBatch, freq: usize, time: usize, rng: &mut SplitMix64) {
    let (m, t) = (batch.m, batch.t);
    for i in 0..batch.b {
        let plane = &mut batch.x[i * m * t..(i + 1) * m * t];
        let fill = (plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64) as f32;
        if freq > 0 {
            let w = (rng.below(freq.min(m) as u64 + 1)) as usize;
            let f0 = rng.below((m - w + 1) as u64) as usize;
            plane[f0 * t..(f0 + w) * t].fill(fill);
        }
        if time > 0 {
            let w = (rng.below(time.min(t) as u64 + 1)) as usize;
            let t0 = rng.below((t - w + 1) as u64) as usize;
            for f in 0..m {
                plane[f * t + t0..f * t + t0 + w].fill(fill);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> HostBatch {
        let (b, m, t) = (4, 3, 5);
        HostBatch {
            b,
            m,
            t,
            x: (0..b * m * t).map(|i| i as f32).collect(),
            y: (0..b)
                .flat_map(|i| (0..2).map(move |c| (i % 2 == c) as u8 as f32))
                .collect(),
            labels: (0..b).map(|i| i % 2).collect(),
            starts: vec![0; b],
            teacher: None,
        }
    }

    #[test]
    fn beta_has_the_right_mean() {
        let mut rng = SplitMix64::new(1);
        let n = 20000;
        let mean: f32 = (0..n).map(|_| beta(&mut rng, 0.4)).sum::<f32>() / n as f32;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn mixup_keeps_targets_distributions() {
        let mut b = batch();
        mixup(&mut b, 0.4, &mut SplitMix64::new(3));
        for row in b.y.chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
        }
    }

    /// The teacher's targets are mixed with the labels' λ and partners: starting equal to the
    /// labels, they end equal to the mixed labels.
    #[test]
    fn mixup_mixes_teacher_targets_like_the_labels() {
        let mut changed = 0;
        for seed in 0..8 {
            let mut b = batch();
            b.teacher = Some(b.y.clone());
            mixup(&mut b, 0.4, &mut SplitMix64::new(seed));
            changed += usize::from(b.y != batch().y);
            assert_eq!(b.teacher.as_deref(), Some(&b.y[..]));
        }
        assert!(changed > 0, "mixup changed no targets");
    }

    #[test]
    fn masks_fill_with_the_example_mean_and_are_deterministic() {
        let mut a = batch();
        let mut b = batch();
        masks(&mut a, 2, 2, &mut SplitMix64::new(9));
        masks(&mut b, 2, 2, &mut SplitMix64::new(9));
        assert_eq!(a.x, b.x);
        let orig = batch();
        let plane = orig.m * orig.t;
        for i in 0..orig.b {
            // Example i holds i*15 .. i*15+14: mean i*15 + 7.
            let mean = (i * plane) as f32 + 7.0;
            for (new, old) in a.x[i * plane..(i + 1) * plane]
                .iter()
                .zip(&orig.x[i * plane..(i + 1) * plane])
            {
                assert!(new == old || *new == mean, "example {i}: {new} (was {old})");
            }
        }
        assert_ne!(a.x, orig.x, "no mask was drawn");
    }
}
