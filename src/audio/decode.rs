//! Decoding a whole file: the container is sniffed from the first bytes; WAV goes through our
//! chunk walker and the sample readers below, every other container through [`super::codec`].
//!
//! WAV samples are read directly from the `data` bytes the walker located and validated:
//! `hound` reads 24-bit samples in 32-bit containers from the wrong end of the word, refuses
//! valid widths such as 12 bits in 16, and has no 64-bit float or G.711.

use super::riff::{self, SampleFormat};
use super::sniff::{self, Container};
use super::{codec, AudioError};
use std::path::Path;

/// What the decoder learnt about a file: its container, stream layout and length.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioInfo {
    pub container: Container,
    pub sample_rate: u32,
    pub channels: u16,
    pub format: SampleFormat,
    /// Significant bits per sample (0 for lossy codecs, which have none).
    pub bits_per_sample: u16,
    /// Bytes per sample in the stream (the container width; 4 for lossy codecs).
    pub container_bytes: u16,
    /// `true` for WAV `WAVE_FORMAT_EXTENSIBLE` headers.
    pub extensible: bool,
    /// Sample frames (one sample per channel).
    pub frames: u64,
}

impl AudioInfo {
    pub fn duration_secs(&self) -> f64 {
        self.frames as f64 / self.sample_rate as f64
    }

    /// The encoding in words, as `asc info` prints it: "16-bit int", "FLAC, 24-bit int",
    /// "MP3, lossy".
    pub fn encoding(&self) -> String {
        let width = match self.format {
            SampleFormat::Lossy => String::new(),
            _ => format!("{}-bit ", self.bits_per_sample),
        };
        let what = format!("{width}{}", self.format.describe());
        match self.container {
            Container::Wav => what,
            other => format!("{}, {what}", other.name()),
        }
    }
}

/// Files above this size are refused rather than read: a 4 GiB WAV is the format's own limit.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// Largest float sample magnitude accepted: 60 dB above full scale. Mixers leave headroom above
/// 1.0, but nothing records this loud; such values mean the bytes are not float audio (integer
/// data under a float header, or corruption), and far larger ones overflow the power spectrum to
/// infinity (a 1024-point frame of 1e18 already does).
pub const MAX_FLOAT_SAMPLE: f64 = 1000.0;

/// A decoded file: interleaved samples scaled to [-1, 1) (float files as stored).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub info: AudioInfo,
    pub samples: Vec<f32>,
}

/// Reads and decodes an audio file.
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

/// Decodes the bytes of a whole audio file; `path` only names it in errors.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<Decoded, AudioError> {
    decode_bytes_within(path, bytes, codec::MAX_DECODED_SAMPLES)
}

/// [`decode_bytes`], refusing compressed files that decode to more than `max_samples` samples
/// (a WAV file's length is its size, checked before anything is allocated). Fuzzing uses a
/// small cap so that a decompression bomb ends as an error, not as an out-of-memory kill.
pub fn decode_bytes_within(
    path: &Path,
    bytes: &[u8],
    max_samples: usize,
) -> Result<Decoded, AudioError> {
    match sniff::sniff(bytes).map_err(|reason| AudioError::new(path, reason))? {
        Container::Wav => decode_wav(path, bytes),
        other => {
            codec::decode(bytes, other, max_samples).map_err(|reason| AudioError::new(path, reason))
        }
    }
}

fn decode_wav(path: &Path, bytes: &[u8]) -> Result<Decoded, AudioError> {
    let chunks = riff::walk(path, bytes)?;
    let info = chunks.info;
    let width = info.container_bytes as usize;
    let data = &chunks.data[..info.frames as usize * width * info.channels as usize];
    let samples = match info.format {
        SampleFormat::Int => decode_int(data, width),
        SampleFormat::Float => decode_float(data, width, info.channels as usize)
            .map_err(|reason| AudioError::new(path, reason))?,
        SampleFormat::ALaw => data.iter().map(|&b| ALAW[b as usize]).collect(),
        SampleFormat::MuLaw => data.iter().map(|&b| MULAW[b as usize]).collect(),
        SampleFormat::Lossy => unreachable!("the WAV walker accepts no lossy encoding"),
    };
    Ok(Decoded { info, samples })
}

/// G.711 A-law byte → sample, the 13-bit linear value scaled like 16-bit PCM (ITU-T G.711
/// table 1a; sox and libsndfile give the same 16-bit values).
static ALAW: [f32; 256] = g711_table(false);
/// G.711 µ-law byte → sample, the 14-bit linear value scaled like 16-bit PCM (table 2a).
static MULAW: [f32; 256] = g711_table(true);

const fn g711_table(mu: bool) -> [f32; 256] {
    let mut table = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        let v = if mu { mulaw(i as u8) } else { alaw(i as u8) };
        table[i] = v as f32 / 32768.0;
        i += 1;
    }
    table
}

const fn alaw(byte: u8) -> i32 {
    let a = byte ^ 0x55;
    let exponent = ((a >> 4) & 7) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // In A-law the sign bit set means positive.
    if a & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

const fn mulaw(byte: u8) -> i32 {
    let u = !byte;
    let exponent = ((u >> 4) & 7) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
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
        if let Some(reason) = not_audio(i, channels, v, &shown) {
            return Err(reason);
        }
        out.push(v as f32);
    }
    Ok(out)
}

/// Why sample `i` with value `v` (written `shown` in its stored type) cannot be audio: NaN,
/// infinite, or beyond [`MAX_FLOAT_SAMPLE`]; `None` for a usable value. Shared by every decoder
/// that yields floats, so a float AIFF or CAF is held to the same rule as a float WAV.
pub(super) fn not_audio(i: usize, channels: usize, v: f64, shown: &str) -> Option<String> {
    if !(v.is_nan() || v.abs() > MAX_FLOAT_SAMPLE) {
        return None;
    }
    let at = format!(
        "sample {i} (frame {}, channel {}) is {shown}",
        i / channels.max(1),
        i % channels.max(1)
    );
    Some(if v.is_finite() {
        format!("{at}, beyond ±{MAX_FLOAT_SAMPLE}: not float audio")
    } else {
        format!("{at}: not audio")
    })
}
