//! Sample-rate conversion with `rubato`'s FFT resampler (band-limited, fixed ratio), trimmed
//! so that output sample k sits at input time k / rate_out, like librosa/soxr.

use super::riff::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use rubato::{FftFixedIn, Resampler};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// This thread's resamplers by (input rate, output rate), reset before each use. Building
    /// one computes its windowed-sinc filter (a `cos`/`sin` per tap) and its FFT plans: in
    /// `asc classify` over 1 s clips at 44.1 kHz for a 32 kHz model that was a quarter of the
    /// whole process (`perf`), repeated for every file. After `reset()` a resampler gives the
    /// same output as a new one (rubato's own test; ours in this module's tests).
    static RESAMPLERS: RefCell<HashMap<(u32, u32), FftFixedIn<f32>>> = RefCell::new(HashMap::new());
}

/// Smallest FFT block (input samples) worth setting up; larger blocks cost fewer FFTs.
const MIN_BLOCK: usize = 2048;

/// Most output samples one FFT block may produce (8 MiB of f32, a few times that inside rubato).
/// Two units of the coarsest ratio the accepted rates allow (768 kHz against a coprime rate)
/// give 1 536 000, so every pair of accepted rates fits.
pub const MAX_OUTPUT_BLOCK: usize = 1 << 21;

/// Input block length for the FFT resampler. rubato's filter is centred on sample `block / 2`
/// (integer division) and it reports `fft_size_out / 2` as its delay: both are exact only when
/// the block holds an even number of the ratio's smallest units, otherwise the output is shifted
/// by a fraction of a sample (0.36 samples at 44.1 → 32 kHz, measured). The block is made
/// smaller (down to two units) when its output would exceed [`MAX_OUTPUT_BLOCK`].
fn block_len(rate_in: u32, rate_out: u32) -> Result<usize, ResampleError> {
    let g = gcd(rate_in, rate_out);
    let (unit_in, unit_out) = ((rate_in / g) as usize, (rate_out / g) as usize);
    let mut units = MIN_BLOCK.div_ceil(unit_in).max(2);
    units += units % 2;
    let fitting = (MAX_OUTPUT_BLOCK / unit_out) & !1;
    if fitting < 2 {
        return Err(ResampleError::BlockTooLarge {
            rate_in,
            rate_out,
            samples: 2 * unit_out,
        });
    }
    Ok(units.min(fitting) * unit_in)
}

/// Both rates must be ones the decoder accepts; the resampler sizes its buffers from them.
fn check_rate(what: &'static str, rate: u32) -> Result<(), ResampleError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(ResampleError::Rate { what, rate })
    }
}

/// Why samples could not be resampled: a rate outside what the decoder accepts, a ratio too
/// fine for the output block limit, or the resampler's own failure, with the rates involved.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// `what` is `input` or `output`.
    #[error("{what} sample rate {rate} Hz is outside {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")]
    Rate { what: &'static str, rate: u32 },
    #[error(
        "resampling {rate_in} -> {rate_out} Hz needs output blocks of {samples} samples \
         (at most {MAX_OUTPUT_BLOCK})"
    )]
    BlockTooLarge {
        rate_in: u32,
        rate_out: u32,
        samples: usize,
    },
    #[error("resampler {rate_in} -> {rate_out} Hz: {source}")]
    Setup {
        rate_in: u32,
        rate_out: u32,
        source: rubato::ResamplerConstructionError,
    },
    #[error("resampling: {0}")]
    Process(#[from] rubato::ResampleError),
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples mono `input` from `rate_in` to `rate_out` Hz. The output has
/// `ceil(len · rate_out / rate_in)` samples, the length librosa gives.
pub fn resample(input: &[f32], rate_in: u32, rate_out: u32) -> Result<Vec<f32>, ResampleError> {
    if rate_in == rate_out || input.is_empty() {
        return Ok(input.to_vec());
    }
    check_rate("input", rate_in)?;
    check_rate("output", rate_out)?;
    RESAMPLERS.with_borrow_mut(|cache| {
        let resampler = match cache.entry((rate_in, rate_out)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let r = e.into_mut();
                r.reset();
                r
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let block = block_len(rate_in, rate_out)?;
                let r = FftFixedIn::<f32>::new(rate_in as usize, rate_out as usize, block, 1, 1)
                    .map_err(|source| ResampleError::Setup {
                        rate_in,
                        rate_out,
                        source,
                    })?;
                e.insert(r)
            }
        };
        run(resampler, input, rate_in, rate_out)
    })
}

/// Streams `input` through a fresh (or freshly reset) resampler and trims its delay.
fn run(
    resampler: &mut FftFixedIn<f32>,
    input: &[f32],
    rate_in: u32,
    rate_out: u32,
) -> Result<Vec<f32>, ResampleError> {
    let expected = (input.len() as u64 * rate_out as u64).div_ceil(rate_in as u64) as usize;
    let block = resampler.input_frames_max();
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + 2 * block);
    let mut pos = 0;
    while out.len() < expected + delay {
        let need = resampler.input_frames_next();
        let chunk = if pos + need <= input.len() {
            let block = resampler.process(&[&input[pos..pos + need]], None)?;
            pos += need;
            block
        } else if pos < input.len() {
            let block = resampler.process_partial(Some(&[&input[pos..]]), None)?;
            pos = input.len();
            block
        } else {
            resampler.process_partial::<&[f32]>(None, None)?
        };
        out.extend_from_slice(&chunk[0]);
    }
    Ok(out[delay..delay + expected].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_matches_librosa_rule() {
        let x = vec![0.0f32; 44100 + 7];
        let y = resample(&x, 44100, 32000).unwrap();
        assert_eq!(y.len(), ((44107u64 * 32000).div_ceil(44100)) as usize);
    }

    #[test]
    fn output_blocks_are_capped_for_every_accepted_rate_pair() {
        // The coarsest ratios the limits allow: coprime rates at both ends of the range.
        for (rin, rout) in [
            (MIN_SAMPLE_RATE, 767_999),
            (1_009, MAX_SAMPLE_RATE),
            (767_993, 1_000),
            (MAX_SAMPLE_RATE, 32_000),
            (44_100, 32_000),
        ] {
            let block = block_len(rin, rout).unwrap();
            let out = block as u64 * rout as u64 / rin as u64;
            assert!(out as usize <= MAX_OUTPUT_BLOCK, "{rin} -> {rout}: {out}");
            assert_eq!(block % 2, 0);
        }
        assert!(resample(&[0.5; 10], 1, 32_000)
            .unwrap_err()
            .to_string()
            .contains("input sample rate 1 Hz"));
        assert!(resample(&[0.5; 10], 32_000, 4_000_000)
            .unwrap_err()
            .to_string()
            .contains("output sample rate"));
        // The extreme accepted ratio still resamples, with librosa's length.
        let y = resample(&[0.25; 30], MIN_SAMPLE_RATE, 767_999).unwrap();
        assert_eq!(y.len(), (30u64 * 767_999).div_ceil(1000) as usize);
    }

    #[test]
    fn sine_survives_resampling() {
        for (rin, rout) in [
            (44100u32, 32000u32),
            (48000, 44100),
            (32000, 44100),
            (8000, 22050),
        ] {
            sine_case(rin, rout);
        }
    }

    /// The per-thread cache changes nothing: a reused resampler gives, bit for bit, what a new
    /// one gives, whatever it resampled before (a longer input, a shorter one).
    #[test]
    fn reused_resampler_matches_a_new_one() {
        let clip = |n: usize, seed: f32| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 0.013 + seed).sin() * 0.5)
                .collect()
        };
        let (a, b) = (clip(70_001, 0.3), clip(12_345, 1.7));
        let fresh = |x: &[f32]| {
            let block = block_len(44_100, 32_000).unwrap();
            let mut r = FftFixedIn::<f32>::new(44_100, 32_000, block, 1, 1).unwrap();
            run(&mut r, x, 44_100, 32_000).unwrap()
        };
        let first = resample(&a, 44_100, 32_000).unwrap();
        let other = resample(&b, 44_100, 32_000).unwrap();
        let again = resample(&a, 44_100, 32_000).unwrap();
        assert!(
            first == fresh(&a) && again == first,
            "reuse after a longer input"
        );
        assert!(
            other == fresh(&b),
            "reuse after a longer input, shorter one"
        );
    }

    fn sine_case(rin: u32, rout: u32) {
        let f = 440.0f64;
        let x: Vec<f32> = (0..rin)
            .map(|n| (2.0 * std::f64::consts::PI * f * n as f64 / rin as f64).sin() as f32)
            .collect();
        let y = resample(&x, rin, rout).unwrap();
        // Away from the edges the output is the same sine sampled at the new rate.
        let mut worst = 0.0f64;
        for (k, &v) in y.iter().enumerate().take(y.len() - 2000).skip(2000) {
            let t = k as f64 / rout as f64;
            let want = (2.0 * std::f64::consts::PI * f * t).sin();
            worst = worst.max((v as f64 - want).abs());
        }
        assert!(worst < 1e-3, "{rin} -> {rout} Hz: max deviation {worst}");
    }
}
