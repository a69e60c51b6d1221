//! The error every file-facing function returns: which file, and what was wrong with it.

use std::path::{Path, PathBuf};

/// Why a file could not be used, always naming the file (`docs/architecture.md`: bad input gets a
/// clear error, never a panic).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub reason: String,
}

impl FileError {
    pub fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
