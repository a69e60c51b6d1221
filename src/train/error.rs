//! Why training, evaluation or a comparison stopped: the error type of the `train` module.

use std::path::{Path, PathBuf};

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    File(#[from] crate::error::FileError),
    #[error("{0}")]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Settings(#[from] super::config::ConfigError),
    #[error("{0}")]
    Frontend(#[from] crate::features::FrontendError),
    /// A fresh run asked for in a folder that holds one.
    #[error("{} already holds a run; pass --resume to continue it or choose another --out", .run_dir.display())]
    RunExists { run_dir: PathBuf },
    /// Every training clip was left out as bad (`--skip-bad`).
    #[error("{}: no training clips left ({skipped} bad rows or clips skipped)", .data.display())]
    NoTrainingClips { data: PathBuf, skipped: usize },
    /// A run evaluated on a data set with other classes than it was trained on.
    #[error("the data set's classes {data:?} differ from the model's {model:?}")]
    ClassMismatch {
        data: Vec<String>,
        model: Vec<String>,
    },
    /// The list a run is evaluated on holds no clips.
    #[error("the {0} list is empty")]
    EmptyList(&'static str),
    /// A record of the run cannot be written as JSON.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("step {step} (epoch {epoch}): the loss is {loss}; stopped. {}", kept_note(*.last_good, .run_dir))]
    NonFinite {
        step: u64,
        epoch: u64,
        loss: f32,
        /// Epochs in the checkpoint left in `run_dir` (0: none was written).
        last_good: u64,
        run_dir: PathBuf,
    },
}

/// Which checkpoint a stopped run leaves behind.
fn kept_note(last_good: u64, run_dir: &Path) -> String {
    if last_good == 0 {
        format!(
            "No epoch finished, so {} holds no checkpoint",
            run_dir.display()
        )
    } else {
        format!(
            "The last good checkpoint (after epoch {last_good}) is kept in {}",
            run_dir.display()
        )
    }
}
