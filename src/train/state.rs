//! The state of a run that survives it: one record per finished epoch (`metrics.jsonl`) and the
//! training state stored in every checkpoint (`asc.state`) and in `state.json`, from which a run
//! resumes.

use serde::{Deserialize, Serialize};

/// One epoch's figures (a line of `metrics.jsonl`). Validation figures are absent when the run
/// holds out no validation split; test figures are present only when the test list is watched
/// (`RunOptions::watch_test`), and never choose anything.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: u64,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    #[serde(default)]
    pub val_loss: Option<f64>,
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    #[serde(default)]
    pub val_macro_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_macro_accuracy: Option<f64>,
    pub seconds: f64,
    pub clips_per_second: f64,
    /// What computed the epoch: [`crate::BUILD`], the kernel path and the threads (a resumed
    /// run may mix builds; absent in runs from before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// Training state stored inside the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: u64,
    pub step: u64,
    /// The epoch saved as `best.safetensors`: the best by validation macro accuracy, or the
    /// last one when the run has no validation split.
    pub best_epoch: Option<u64>,
    /// Its validation macro accuracy (none without a validation split).
    #[serde(default)]
    pub best_val_macro_accuracy: Option<f64>,
    pub history: Vec<EpochRecord>,
}
