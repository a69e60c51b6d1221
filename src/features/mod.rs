//! The log-mel front end (`docs/frontend.md`): settings and presets, the spectrogram itself, the
//! on-disk cache, and extraction over many files in parallel.

mod cache;
mod config;
mod fastlog;
mod files;
mod logmel;
mod mel;
pub mod npy;
mod spectrum;

pub use cache::FeatureCache;
pub use config::{
    ClipNorm, FrontendConfig, FrontendError, LogScale, MelNorm, PadMode, PRESET_NAMES,
};
pub use files::{write_npy_all, Job};
pub use logmel::{LogMel, Spectrogram};
pub use mel::{hz_to_mel, mel_to_hz};

use crate::audio;
use crate::error::FileError;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Log-mel of one WAV file: decoded, downmixed, resampled to the front end's rate. With a cache,
/// a file whose content was seen before is not decoded at all.
pub fn file_features(
    path: &Path,
    frontend: &LogMel,
    cache: Option<&FeatureCache>,
) -> Result<Spectrogram, FileError> {
    Ok(file_features_keyed(path, frontend, cache)?.1)
}

/// [`file_features`], also returning the file's cache key (when there is a cache), so callers
/// can fetch the entry again later without re-reading the audio.
pub fn file_features_keyed(
    path: &Path,
    frontend: &LogMel,
    cache: Option<&FeatureCache>,
) -> Result<(Option<String>, Spectrogram), FileError> {
    let bytes = audio::read_file(path)?;
    let key = cache.map(|_| FeatureCache::key(&bytes));
    if let (Some(cache), Some(key)) = (cache, key.as_deref()) {
        if let Some(hit) = cache.get(key, frontend.config().n_mels) {
            return Ok((Some(key.to_string()), hit));
        }
    }
    let (samples, _) = audio::decode_mono(path, &bytes, Some(frontend.config().sr))?;
    let spec = frontend.compute(&samples);
    if let (Some(cache), Some(key)) = (cache, key.as_deref()) {
        cache.put(key, &spec)?;
    }
    Ok((key, spec))
}

/// Features of many files, in parallel over files, in input order; `on_done` is called once per
/// finished file (for a progress bar).
pub fn extract_all(
    paths: &[PathBuf],
    frontend: &LogMel,
    cache: Option<&FeatureCache>,
    on_done: &(dyn Fn() + Sync),
) -> Vec<Result<Spectrogram, FileError>> {
    paths
        .par_iter()
        .map(|p| {
            let r = file_features(p, frontend, cache);
            on_done();
            r
        })
        .collect()
}
