//! On-disk feature cache, keyed by file content and front-end settings, so a second pass over a
//! dataset decodes nothing and runs no FFTs. Entries are written to a temporary file and renamed
//! into place, so readers — other `asc` processes included — never see half an entry; they are
//! not fsynced (a damaged entry counts as absent).

use super::config::FrontendConfig;
use super::logmel::Spectrogram;
use super::npy;
use crate::error::FileError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A cache folder; entries of different front-end settings live in separate subfolders.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FeatureCache {
    /// A cache for `config` under `root`, created if missing.
    pub fn open(root: &Path, config: &FrontendConfig) -> Result<Self, FileError> {
        let settings = serde_json::to_vec(config).expect("config serialises");
        let tag = hex(&Sha256::digest(&settings)[..8]);
        let dir = root.join(format!("frontend-{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e.to_string()))?;
        let settings_file = dir.join("frontend.json");
        if !settings_file.exists() {
            let pretty = serde_json::to_vec_pretty(config).expect("config serialises");
            crate::fsutil::write_atomic(&settings_file, &pretty)?;
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a file's content.
    pub fn key(content: &[u8]) -> String {
        hex(&Sha256::digest(content)[..16])
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.npy"))
    }

    /// The cached spectrogram for `key`, if present and readable with `n_mels` rows. A damaged
    /// entry counts as absent (it is recomputed and replaced).
    pub fn get(&self, key: &str, n_mels: usize) -> Option<Spectrogram> {
        let spec = npy::read(&self.entry(key)).ok()?;
        (spec.n_mels == n_mels).then_some(spec)
    }

    pub fn put(&self, key: &str, spec: &Spectrogram) -> Result<(), FileError> {
        let path = self.entry(key);
        let parent = path.parent().expect("entry has a parent");
        std::fs::create_dir_all(parent).map_err(|e| FileError::new(parent, e.to_string()))?;
        // Renamed into place without fsync: a power cut can at worst damage an entry, which
        // `get` reads as absent and the next pass recomputes.
        crate::fsutil::write_renamed(&path, &npy::encode(&path, spec)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries are not fsynced, so a power cut can leave one cut short: it must read as absent.
    #[test]
    fn a_damaged_entry_reads_as_absent() {
        let root = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(root.path(), &FrontendConfig::dcase2020()).unwrap();
        let spec = Spectrogram {
            n_mels: 4,
            frames: 3,
            data: (0..12).map(|v| v as f32).collect(),
        };
        let key = FeatureCache::key(b"clip");
        cache.put(&key, &spec).unwrap();
        assert_eq!(cache.get(&key, 4).expect("entry").data, spec.data);
        let path = cache.entry(&key);
        let bytes = std::fs::read(&path).unwrap();
        for len in [0, 10, bytes.len() - 4] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert!(cache.get(&key, 4).is_none(), "entry cut to {len} bytes");
        }
    }
}
