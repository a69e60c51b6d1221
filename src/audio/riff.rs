//! A RIFF/WAVE chunk walker: finds `fmt ` and `data` wherever they are, honours pad bytes
//! after odd-sized chunks, and checks every size against the bytes actually present.

use super::sniff::Container;
use super::{AudioError, AudioInfo};
use std::path::Path;

/// Sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// Integer PCM (8-bit is unsigned in WAV, wider widths are signed).
    Int,
    /// IEEE float.
    Float,
    /// G.711 A-law, 8 bits a sample expanding to 13-bit linear.
    #[serde(rename = "a-law")]
    ALaw,
    /// G.711 µ-law, 8 bits a sample expanding to 14-bit linear.
    #[serde(rename = "mu-law")]
    MuLaw,
    /// A lossy codec (Vorbis, MP3): samples come out of the decoder as floats.
    Lossy,
}

impl SampleFormat {
    /// The words `asc info` prints after the width.
    pub fn describe(self) -> &'static str {
        match self {
            SampleFormat::Int => "int",
            SampleFormat::Float => "float",
            SampleFormat::ALaw => "A-law",
            SampleFormat::MuLaw => "µ-law",
            SampleFormat::Lossy => "lossy",
        }
    }
}

/// The located pieces of a WAV file: its parsed header and the `data` body.
pub(super) struct Chunks<'a> {
    pub info: AudioInfo,
    pub data: &'a [u8],
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Lowest accepted sample rate. Nothing records scenes below 1 kHz, and a lower rate (a corrupt
/// header saying 1 Hz) would make resampling to the front end's rate ask for output blocks of
/// tens of millions of samples.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Highest accepted sample rate: 768 kHz, the highest rate audio interfaces record at.
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// Most channels accepted (ambisonics and arrays stay far below).
pub const MAX_CHANNELS: u16 = 256;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn printable(id: &[u8]) -> String {
    id.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Walks the chunks of `bytes` (the whole file) and returns the header and data.
pub(super) fn walk<'a>(path: &Path, bytes: &'a [u8]) -> Result<Chunks<'a>, AudioError> {
    let err = |reason: String| AudioError::new(path, reason);
    // Only bytes that `sniff` found to start with "RIFF" come here; other containers, empty
    // files and known WAV variants (RIFX, RF64) are refused there.
    if bytes.len() < 12 {
        return Err(err(format!(
            "too short to be a WAV file ({} bytes)",
            bytes.len()
        )));
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(err(format!(
            "RIFF file of type '{}', not 'WAVE'",
            printable(&bytes[8..12])
        )));
    }

    let riff_size = u32_at(bytes, 4);
    let mut fmt: Option<&[u8]> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let body_start = at + 8;
        let remaining = bytes.len() - body_start;
        // Streaming writers (pipes, live encoders) cannot seek back to fill in the size; like
        // libsndfile and sox, the data then runs to the end of the file. Any other size beyond
        // the file is truncation, refused below.
        let size = if id == b"data" && data.is_none() && is_streaming_size(size, riff_size) {
            remaining
        } else {
            size
        };
        if size > remaining {
            let what = if id == b"data" {
                format!("truncated: the data chunk claims {size} bytes but only {remaining} follow")
            } else {
                format!(
                    "chunk '{}' at byte {at} claims {size} bytes but only {remaining} follow",
                    printable(id)
                )
            };
            return Err(err(what));
        }
        let body = &bytes[body_start..body_start + size];
        match id {
            b"fmt " if fmt.is_none() => fmt = Some(body),
            b"data" if data.is_none() => data = Some(body),
            _ => {}
        }
        // RIFF chunks are word aligned: an odd-sized chunk is followed by one pad byte.
        at = body_start + size + (size & 1);
    }
    let fmt = fmt.ok_or_else(|| err("no 'fmt ' chunk".into()))?;
    let data = data.ok_or_else(|| err("no 'data' chunk".into()))?;
    let info = parse_fmt(fmt, data.len()).map_err(err)?;
    Ok(Chunks { info, data })
}

/// Is `size` a placeholder that a writer which cannot seek leaves in the `data` header?
/// 0xFFFFFFFF (ffmpeg and most encoders writing to a pipe), 0x7FFFF000 (sox), or 0 when the
/// RIFF size is a placeholder too (0 or 0xFFFFFFFF): a 0 under a real RIFF size is an empty
/// `data` chunk followed by other chunks.
fn is_streaming_size(size: usize, riff_size: u32) -> bool {
    const SOX_PIPE: usize = 0x7FFF_F000;
    size == u32::MAX as usize
        || size == SOX_PIPE
        || (size == 0 && (riff_size == 0 || riff_size == u32::MAX))
}

/// Parses and validates a `fmt ` body; `data_len` gives the frame count.
fn parse_fmt(fmt: &[u8], data_len: usize) -> Result<AudioInfo, String> {
    if fmt.len() < 16 {
        return Err(format!(
            "'fmt ' chunk is {} bytes, at least 16 are needed",
            fmt.len()
        ));
    }
    let mut tag = u16_at(fmt, 0);
    let channels = u16_at(fmt, 2);
    let sample_rate = u32_at(fmt, 4);
    let block_align = u16_at(fmt, 12);
    let container_bits = u16_at(fmt, 14);
    let mut bits = container_bits;
    let extensible = tag == WAVE_FORMAT_EXTENSIBLE;
    if extensible {
        if fmt.len() < 40 {
            return Err(format!(
                "WAVE_FORMAT_EXTENSIBLE header is {} bytes, 40 are needed",
                fmt.len()
            ));
        }
        let valid_bits = u16_at(fmt, 18);
        if valid_bits != 0 {
            bits = valid_bits;
        }
        tag = u16_at(fmt, 24); // first two bytes of the sub-format GUID
    }
    let format = match tag {
        WAVE_FORMAT_PCM => SampleFormat::Int,
        WAVE_FORMAT_IEEE_FLOAT => SampleFormat::Float,
        WAVE_FORMAT_ALAW => SampleFormat::ALaw,
        WAVE_FORMAT_MULAW => SampleFormat::MuLaw,
        0x0002 | 0x0011 => return Err("ADPCM encoding is not supported".into()),
        other => {
            return Err(format!(
                "unsupported WAV encoding (format tag 0x{other:04X})"
            ))
        }
    };
    if channels == 0 {
        return Err("header says 0 channels".into());
    }
    if channels > MAX_CHANNELS {
        return Err(format!(
            "header says {channels} channels (at most {MAX_CHANNELS} are accepted)"
        ));
    }
    if sample_rate == 0 {
        return Err("header says sample rate 0".into());
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(format!(
            "header says sample rate {sample_rate} Hz; accepted rates are \
             {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
        ));
    }
    let supported = match format {
        SampleFormat::Int => matches!(container_bits, 8 | 16 | 24 | 32),
        SampleFormat::Float => matches!(container_bits, 32 | 64),
        SampleFormat::ALaw | SampleFormat::MuLaw => container_bits == 8,
        SampleFormat::Lossy => false,
    };
    if !supported || bits == 0 || bits > container_bits {
        return Err(format!(
            "unsupported sample width: {bits} bits in {container_bits}-bit {} samples",
            match format {
                SampleFormat::Int => "integer",
                other => other.describe(),
            }
        ));
    }
    let container_bytes = container_bits / 8;
    let frame_bytes = container_bytes as usize * channels as usize;
    if block_align as usize != frame_bytes {
        return Err(format!(
            "block alignment {block_align} does not match {channels} channel(s) of {container_bytes} byte(s)"
        ));
    }
    Ok(AudioInfo {
        container: Container::Wav,
        sample_rate,
        channels,
        format,
        bits_per_sample: bits,
        container_bytes,
        extensible,
        // A partial frame at the end (a recorder stopped mid-frame) is dropped.
        frames: (data_len / frame_bytes) as u64,
    })
}
