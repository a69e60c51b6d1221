//! Sample decoding: `hound` for integer and 32-bit float PCM, fed a clean stream rebuilt from
//! the chunks the walker found; 64-bit float, which `hound` refuses, is read directly.

use super::riff::{self, SampleFormat, WavInfo};
use super::AudioError;
use std::io::Cursor;
use std::path::Path;

/// Files above this size are refused rather than read: a 4 GiB WAV is the format's own limit.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// A decoded WAV file: interleaved samples scaled to [-1, 1).
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
    let info = chunks.info.clone();
    let frame_bytes = info.container_bytes as usize * info.channels as usize;
    let data = &chunks.data[..info.frames as usize * frame_bytes];
    let samples = if info.format == SampleFormat::Float && info.container_bytes == 8 {
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks_exact(8)")) as f32)
            .collect()
    } else {
        decode_with_hound(path, &info, chunks.fmt, data)?
    };
    Ok(Decoded { info, samples })
}

/// Hands `hound` a canonical RIFF stream holding only `fmt ` and `data`.
fn decode_with_hound(
    path: &Path,
    info: &WavInfo,
    fmt: &[u8],
    data: &[u8],
) -> Result<Vec<f32>, AudioError> {
    // hound accepts 16-, 18- and 40-byte fmt bodies; trailing extras are dropped.
    let fmt = if info.extensible {
        &fmt[..40]
    } else {
        &fmt[..16]
    };
    let stream = canonical_wav(fmt, data);
    let hound_err = |e: hound::Error| AudioError::new(path, format!("decoder: {e}"));
    let mut reader = hound::WavReader::new(Cursor::new(stream)).map_err(hound_err)?;
    let spec = reader.spec();
    match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(hound_err),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(hound_err)
        }
    }
}

fn canonical_wav(fmt: &[u8], data: &[u8]) -> Vec<u8> {
    let riff_len = 4 + 8 + fmt.len() + 8 + data.len();
    let mut out = Vec::with_capacity(8 + riff_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(riff_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}
