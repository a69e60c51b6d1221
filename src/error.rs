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

/// A name that is none of the ones the library knows (a norm, a front-end preset, a schedule, a
/// device, ...): what kind of name it was, the name given, and the valid ones, so the message
/// alone says how to fix the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}' (known: {})", known.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
    pub known: &'static [&'static str],
}

impl UnknownName {
    pub fn new(what: &'static str, name: &str, known: &'static [&'static str]) -> Self {
        Self {
            what,
            name: name.to_string(),
            known,
        }
    }
}
