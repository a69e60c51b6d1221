//! Audio input: the only place that knows file formats.
//!
//! The container is sniffed from a file's first bytes ([`sniff`]), never taken from its name.
//! WAV files are walked chunk by chunk ([`riff`]) so that valid files `hound` mishandles
//! (odd-sized chunks with a pad byte, `LIST` before `fmt `, chunks after `data`, 64-bit float,
//! streaming sizes, G.711) still decode, and malformed ones are refused with a reason before any
//! allocation is sized from the header. FLAC, Ogg Vorbis, MP3, AIFF and CAF go through
//! `symphonia` ([`codec`]). Samples are then downmixed to mono and resampled to the front end's
//! rate.

mod codec;
mod decode;
mod resample;
mod riff;
mod sniff;

pub use codec::MAX_DECODED_SAMPLES;
pub use decode::{
    decode_bytes, decode_bytes_within, decode_file, read_file, AudioInfo, Decoded, MAX_FILE_BYTES,
    MAX_FLOAT_SAMPLE,
};
pub use resample::{resample, ResampleError};
pub use riff::{SampleFormat, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
pub use sniff::{sniff, Container, SUPPORTED};

pub use crate::error::FileError as AudioError;
use std::path::{Path, PathBuf};

/// Mean over channels of interleaved samples (`docs/frontend.md` step 1).
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    let scale = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * scale)
        .collect()
}

/// Decodes an audio file and returns mono samples at `target_rate` (any rate when `None`),
/// with the sample rate they are at.
pub fn load_mono(path: &Path, target_rate: Option<u32>) -> Result<(Vec<f32>, u32), AudioError> {
    decode_mono(path, &read_file(path)?, target_rate)
}

/// [`load_mono`] on the bytes of a whole audio file already in memory; `path` only names it in
/// errors.
pub fn decode_mono(
    path: &Path,
    bytes: &[u8],
    target_rate: Option<u32>,
) -> Result<(Vec<f32>, u32), AudioError> {
    into_mono(decode_bytes(path, bytes)?, target_rate)
        .map_err(|e| AudioError::new(path, e.to_string()))
}

/// Mono samples of a decoded file at `target_rate` (its own rate when `None`), with that rate.
/// Takes the samples by value so that a mono file already at the rate is passed through: each
/// copy of a 10 s clip is megabytes of fresh pages, which showed in the front end's profile.
pub fn into_mono(
    decoded: Decoded,
    target_rate: Option<u32>,
) -> Result<(Vec<f32>, u32), ResampleError> {
    let rate_in = decoded.info.sample_rate;
    let mono = match decoded.info.channels {
        0 | 1 => decoded.samples,
        channels => downmix(&decoded.samples, channels as usize),
    };
    match target_rate {
        Some(rate) if rate != rate_in => Ok((resample(&mono, rate_in, rate)?, rate)),
        _ => Ok((mono, rate_in)),
    }
}

/// File extensions taken as audio when walking folders (a file named explicitly is decoded
/// whatever its name; the format always comes from its bytes).
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "ogg", "oga", "mp3", "aif", "aiff", "aifc", "caf",
];

/// Is this path one we treat as audio when walking folders?
pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| e.eq_ignore_ascii_case(a)))
}

/// Expands files and folders (recursively, sorted) into the audio files they hold. Paths named
/// explicitly are kept whatever their extension, so that a bad file named by the user is
/// reported rather than silently skipped.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, AudioError> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(input)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && is_audio(e.path()))
                .map(|e| e.into_path())
                .collect();
            found.sort();
            files.extend(found);
        } else if input.exists() {
            files.push(input.clone());
        } else {
            return Err(AudioError::new(input, "no such file or folder"));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let x = [1.0, 3.0, -2.0, 2.0];
        assert_eq!(downmix(&x, 2), vec![2.0, 0.0]);
        assert_eq!(downmix(&x, 1), x.to_vec());
    }
}
