//! Errors of the dataset layer. Every row-level error names the file, the 1-based line and what
//! was wrong, so a user can open the CSV at that line (docs/datasets.md "Dataset layout").

use std::path::PathBuf;

/// Everything that can go wrong while reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: required file is missing ({what})")]
    MissingFile { path: PathBuf, what: String },
    #[error("{path}:{line}: bad header: {message}")]
    BadHeader {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}:{line}: malformed row: expected {expected} tab-separated columns, found {found}"
    )]
    Malformed {
        path: PathBuf,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{path}:{line}: empty {column} field")]
    EmptyField {
        path: PathBuf,
        line: usize,
        column: String,
    },
    #[error("{path}:{line}: unknown label {label:?} (not among the labels of meta.csv)")]
    UnknownLabel {
        path: PathBuf,
        line: usize,
        label: String,
    },
    #[error("{path}:{line}: {filename}: label {label:?} contradicts meta.csv, which says {meta_label:?}")]
    LabelMismatch {
        path: PathBuf,
        line: usize,
        filename: String,
        label: String,
        meta_label: String,
    },
    #[error("{path}:{line}: {filename} is not listed in meta.csv")]
    UnknownFile {
        path: PathBuf,
        line: usize,
        filename: String,
    },
    #[error("{path}:{line}: audio file {audio} does not exist")]
    MissingAudio {
        path: PathBuf,
        line: usize,
        audio: PathBuf,
    },
    #[error("{path}:{line}: duplicate entry {filename} (first seen on line {first_line})")]
    Duplicate {
        path: PathBuf,
        line: usize,
        filename: String,
        first_line: usize,
    },
    #[error("{path}:{line}: {filename} escapes the data set root (absolute path or `..`)")]
    PathEscapes {
        path: PathBuf,
        line: usize,
        filename: String,
    },
    #[error("{path}:{line}: {filename} is in both the train and the evaluate list (leak)")]
    SplitOverlap {
        path: PathBuf,
        line: usize,
        filename: String,
    },
    #[error("{root}: no usable clips found ({hint})")]
    Empty { root: PathBuf, hint: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DatasetError {
    /// Row errors concern one line of a list file and can be skipped with
    /// [`LoadOptions::skip_bad`](super::LoadOptions::skip_bad); the others concern the data set
    /// as a whole and always fail.
    pub fn is_row_error(&self) -> bool {
        matches!(
            self,
            DatasetError::Malformed { .. }
                | DatasetError::EmptyField { .. }
                | DatasetError::UnknownLabel { .. }
                | DatasetError::LabelMismatch { .. }
                | DatasetError::UnknownFile { .. }
                | DatasetError::MissingAudio { .. }
                | DatasetError::Duplicate { .. }
                | DatasetError::PathEscapes { .. }
                | DatasetError::SplitOverlap { .. }
        )
    }
}

/// What loading skipped when [`LoadOptions::skip_bad`](super::LoadOptions::skip_bad) was set.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// One entry per skipped row, in file order.
    pub warnings: Vec<DatasetError>,
}

impl LoadReport {
    pub fn skipped(&self) -> usize {
        self.warnings.len()
    }

    /// Fails with `err` unless `skip_bad`, in which case `err` is recorded. Non-row errors always
    /// fail.
    pub(crate) fn handle(&mut self, err: DatasetError, skip_bad: bool) -> Result<(), DatasetError> {
        if skip_bad && err.is_row_error() {
            self.warnings.push(err);
            Ok(())
        } else {
            Err(err)
        }
    }
}
