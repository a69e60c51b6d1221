//! Sample decoding from the `data` bytes the chunk walker located and validated. Every encoding
//! the walker accepts is read directly: `hound` reads 24-bit samples in 32-bit containers from the
//! wrong end of the word, refuses valid widths such as 12 bits in 16, and has no 64-bit float.

use super::riff::{self, SampleFormat, WavInfo};
use super::AudioError;
use std::path::Path;

/// Files above this size are refused rather than read: a 4 GiB WAV is the format's own limit.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Largest float sample magnitude accepted: 60 dB above full scale. Mixers leave headroom above
/// 1.0, but nothing records this loud; such values mean the bytes are not float audio (integer
/// data under a float header, or corruption), and far larger ones overflow the power spectrum to
/// infinity (a 1024-point frame of 1e18 already does).
pub const MAX_FLOAT_SAMPLE: f64 = 1000.0;

/// A decoded WAV file: interleaved samples scaled to [-1, 1) (float files as stored).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub info: WavInfo,
    pub samples: Vec<f32>,
}

/// Reads and decodes a WAV file.
pub fn decode_file(path: &Path) -> Result<Decoded, AudioError> {
    decode_bytes(path, &read_file(path)?)
}

/// Reads a whole file, refusing folders and files above [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, AudioError> {
    let meta = std::fs::metadata(path).map_err(|e| AudioError::new(path, e.to_string()))?;
    if meta.is_dir() {
        return Err(AudioError::new(path, "is a folder, not a file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(AudioError::new(
            path,
            format!("file is {} bytes, above the 4 GiB WAV limit", meta.len()),
        ));
    }
    std::fs::read(path).map_err(|e| AudioError::new(path, e.to_string()))
}

/// Decodes the bytes of a whole WAV file; `path` only names it in errors.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<Decoded, AudioError> {
    let chunks = riff::walk(path, bytes)?;
    let info = chunks.info;
    let width = info.container_bytes as usize;
    let data = &chunks.data[..info.frames as usize * width * info.channels as usize];
    let samples = match info.format {
        SampleFormat::Int => decode_int(data, width),
        SampleFormat::Float => decode_float(data, width, info.channels as usize)
            .map_err(|reason| AudioError::new(path, reason))?,
    };
    Ok(Decoded { info, samples })
}

/// Integer PCM of `width` bytes per sample: 8-bit is unsigned, wider is signed little-endian.
/// Each sample is placed at the top of an `i32` and scaled by 2⁻³¹: that is the container-width
/// scale, right for every valid-bit count because WAVE_FORMAT_EXTENSIBLE samples narrower than
/// their container are left-justified (padding in the low bits).
fn decode_int(data: &[u8], width: usize) -> Vec<f32> {
    // A width known at compile time turns the per-sample copy into a load: with the width as a
    // variable every sample was a `memcpy` call, and decoding took longer than the log-mel.
    match width {
        1 => data.iter().map(|&b| (b as f32 - 128.0) / 128.0).collect(),
        2 => decode_words::<2>(data),
        3 => decode_words::<3>(data),
        _ => decode_words::<4>(data),
    }
}

/// Signed little-endian samples of `W` bytes (2 to 4), see [`decode_int`].
fn decode_words<const W: usize>(data: &[u8]) -> Vec<f32> {
    const SCALE: f32 = 1.0 / 2_147_483_648.0;
    data.chunks_exact(W)
        .map(|b| {
            let mut word = [0u8; 4];
            word[4 - W..].copy_from_slice(b);
            i32::from_le_bytes(word) as f32 * SCALE
        })
        .collect()
}

/// IEEE float of `width` (4 or 8) bytes, refusing values that are not audio: NaN, infinities and
/// magnitudes above [`MAX_FLOAT_SAMPLE`] (they would turn features and losses into NaN later,
/// far from the file that caused it).
fn decode_float(data: &[u8], width: usize, channels: usize) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(data.len() / width);
    for (i, b) in data.chunks_exact(width).enumerate() {
        // The value in its stored type, as shown in an error.
        let (v, shown) = match width {
            4 => {
                let x = f32::from_le_bytes(b.try_into().expect("chunks_exact(4)"));
                (x as f64, format!("{x:e}"))
            }
            _ => {
                let x = f64::from_le_bytes(b.try_into().expect("chunks_exact(8)"));
                (x, format!("{x:e}"))
            }
        };
        if v.is_nan() || v.abs() > MAX_FLOAT_SAMPLE {
            let at = format!(
                "sample {i} (frame {}, channel {}) is {shown}",
                i / channels,
                i % channels
            );
            return Err(if v.is_finite() {
                format!("{at}, beyond ±{MAX_FLOAT_SAMPLE}: not float audio")
            } else {
                format!("{at}: not audio")
            });
        }
        out.push(v as f32);
    }
    Ok(out)
}
