//! What several benchmarks share: deterministic test clips on disk.

use std::path::{Path, PathBuf};

/// Writes `n` mono 16-bit WAVs of `seconds` at `sr` into `dir`: `sample(index, noise)` gives
/// each sample (full scale ±1) from its index and a xorshift noise value in [−0.5, 0.5) drawn
/// from `seed`, so every run times the same audio.
pub fn write_clips(
    dir: &Path,
    n: usize,
    sr: u32,
    seconds: usize,
    seed: u64,
    sample: impl Fn(usize, f32) -> f32,
) -> Vec<PathBuf> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut state = seed;
    (0..n)
        .map(|i| {
            let path = dir.join(format!("clip{i:02}.wav"));
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for k in 0..sr as usize * seconds {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                w.write_sample((sample(k, noise) * 20000.0) as i16).unwrap();
            }
            w.finalize().unwrap();
            path
        })
        .collect()
}
