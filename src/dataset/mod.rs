//! Data sets on disk: the DCASE layout (docs/datasets.md "Dataset layout") and a plain
//! `ROOT/<label>/**/*.{wav,flac,ogg,mp3,aiff,caf}` layout, the alphabetical [`LabelMap`], the train/evaluate/test lists,
//! a location-disjoint validation split ([`split::validation_split`]) and index samplers
//! ([`sampler`]).
//!
//! Reading a data set only reads list files and checks that audio files exist; decoding audio is
//! the `audio` module's job and features are the `features` module's.

mod dcase;
pub mod error;
pub mod labels;
mod plain;
pub mod rng;
pub mod sampler;
pub mod split;

use std::path::{Component, Path, PathBuf};

pub use error::{DatasetError, LoadReport};
pub use labels::LabelMap;
pub use sampler::{BatchSampler, ClassBalancedSampler, ShuffledSampler};
pub use split::{validation_split, ValidationSplit};

/// One audio clip and what its name and the metadata say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// The name as listed, relative to the root (DCASE: `audio/airport-barcelona-0-0-a.wav`).
    pub filename: String,
    /// `root.join(filename)`.
    pub path: PathBuf,
    /// Index into [`Dataset::labels`]; `None` for unlabelled (evaluation set) clips.
    pub label: Option<usize>,
    /// Recording device: the token after the last `-` of the file stem (docs/datasets.md).
    pub device: Option<String>,
    /// City: the first token of the identifier.
    pub city: Option<String>,
    /// Recording location identifier (`<city>-<location>`); splits are disjoint in it.
    pub location: Option<String>,
}

/// Which layout a data set was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `meta.csv` + `evaluation_setup/fold{K}_*.csv`.
    Dcase,
    /// `ROOT/<label>/**/*.{wav,flac,ogg,mp3,aiff,caf}`; every clip is in the train list.
    Plain,
}

/// The lists of a DCASE fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Evaluate,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Evaluate => "evaluate",
            Split::Test => "test",
        }
    }
}

/// How to read a data set.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// DCASE fold number `K` of `evaluation_setup/fold{K}_*.csv`.
    pub fold: u32,
    /// Turn row errors (bad rows, unknown labels, missing audio, duplicates, escaping paths) into
    /// warnings collected in [`Dataset::report`] instead of failing.
    pub skip_bad: bool,
    /// Check that every listed audio file exists (one `stat` per file).
    pub check_audio: bool,
    /// A list in `evaluation_setup/` to use instead of `fold{K}_train.csv`, e.g. the DCASE 2024
    /// nested subsets `split25.csv` (docs/datasets.md "Sizes").
    pub train_list: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            fold: 1,
            skip_bad: false,
            check_audio: true,
            train_list: None,
        }
    }
}

/// A data set: its clips, labels and split lists (indices into `clips`).
#[derive(Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub labels: LabelMap,
    pub clips: Vec<Clip>,
    pub train: Vec<usize>,
    pub evaluate: Vec<usize>,
    pub test: Vec<usize>,
    /// Rows skipped under [`LoadOptions::skip_bad`].
    pub report: LoadReport,
}

impl Dataset {
    /// Reads `root`: the DCASE layout when `root/meta.csv` exists, the plain layout otherwise.
    pub fn open(root: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self, DatasetError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Err(DatasetError::MissingFile {
                path: root.to_path_buf(),
                what: "data set root directory".into(),
            });
        }
        if root.join("meta.csv").is_file() {
            dcase::open(root, opts)
        } else {
            plain::open(root, opts)
        }
    }

    /// The index list of a split.
    pub fn split(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Evaluate => &self.evaluate,
            Split::Test => &self.test,
        }
    }

    /// A location-disjoint validation split carved from the train list
    /// ([`split::validation_split`]); the evaluate and test lists are never touched.
    pub fn validation_split(
        &self,
        fraction: f64,
        seed: u64,
    ) -> Result<ValidationSplit, DatasetError> {
        split::validation_split(&self.clips, &self.train, fraction, seed)
    }

    /// Class indices of `indices`, for a sampler or a loss; fails naming the first unlabelled
    /// clip (an evaluation set cannot be trained on).
    pub fn classes_of(&self, indices: &[usize]) -> Result<Vec<usize>, DatasetError> {
        indices
            .iter()
            .map(|&i| {
                let clip = self.clips.get(i).ok_or_else(|| {
                    DatasetError::InvalidArgument(format!(
                        "clip index {i} out of range ({} clips)",
                        self.clips.len()
                    ))
                })?;
                clip.label.ok_or_else(|| {
                    DatasetError::InvalidArgument(format!("{} has no label", clip.filename))
                })
            })
            .collect()
    }

    /// Distinct devices, sorted.
    pub fn devices(&self) -> Vec<String> {
        let mut d: Vec<String> = self.clips.iter().filter_map(|c| c.device.clone()).collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Device = the token after the last `-` of the file stem (docs/datasets.md); `None` without a `-`.
pub fn device_from_filename(filename: &str) -> Option<String> {
    let stem = Path::new(filename).file_stem()?.to_str()?;
    let (_, dev) = stem.rsplit_once('-')?;
    (!dev.is_empty()).then(|| dev.to_string())
}

/// City = the first token of a location identifier (`barcelona-0` -> `barcelona`).
pub fn city_from_identifier(identifier: &str) -> Option<String> {
    let city = identifier.split('-').next()?;
    (!city.is_empty()).then(|| city.to_string())
}

/// A listed name must stay inside the root: no absolute paths, no `..`.
pub(crate) fn escapes_root(filename: &str) -> bool {
    Path::new(filename)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_fields() {
        assert_eq!(
            device_from_filename("audio/airport-barcelona-0-0-a.wav").as_deref(),
            Some("a")
        );
        assert_eq!(
            device_from_filename("audio/bus-lyon-1-2-3-s4.wav").as_deref(),
            Some("s4")
        );
        assert_eq!(device_from_filename("audio/0.wav"), None);
        assert_eq!(
            city_from_identifier("lisbon-1021").as_deref(),
            Some("lisbon")
        );
        assert_eq!(city_from_identifier(""), None);
    }

    #[test]
    fn escaping_paths() {
        assert!(escapes_root("../x.wav"));
        assert!(escapes_root("audio/../../x.wav"));
        assert!(escapes_root("/etc/passwd"));
        assert!(!escapes_root("audio/x.wav"));
        assert!(!escapes_root("./audio/x.wav"));
    }
}
