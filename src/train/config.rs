//! The experiment as one file (`RUN_DIR/config.json`): everything needed to rebuild the model
//! and its front end, and to replay the run (`style.md`: an experiment is one config).

use super::augment::AugmentConfig;
use super::optim::OptimizerConfig;
use super::schedule::Schedule;
use crate::features::FrontendConfig;
use crate::nn::models::ModelConfig;
use crate::nn::norm::NormConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Data set root (DCASE or plain layout).
    pub data: PathBuf,
    pub fold: u32,
    /// A list in `evaluation_setup/` replacing `fold{K}_train.csv` (DCASE 2024 `split25.csv`).
    #[serde(default)]
    pub train_list: Option<String>,
    pub model: ModelConfig,
    /// Normalization layer name (`nn::norm` registry).
    pub norm: String,
    #[serde(default)]
    pub norm_config: NormConfig,
    pub frontend: FrontendConfig,
    /// Class names in output order (alphabetical, from the data set).
    pub labels: Vec<String>,
    pub epochs: u64,
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub seed: u64,
    /// Random time crop length in frames for training (`None`: whole clips).
    pub crop_frames: Option<usize>,
    /// Frames of one training input, recorded by `train` (the window `classify` uses).
    #[serde(default)]
    pub clip_frames: Option<usize>,
    pub augment: AugmentConfig,
    /// Share of the training list held out, by recording location, for model selection.
    pub validation_fraction: f64,
    /// Draw classes uniformly instead of shuffling every clip once per epoch.
    pub class_balanced: bool,
    /// Feature cache folder.
    pub cache: PathBuf,
    /// Leave out bad list rows (`LoadOptions::skip_bad`) and clips whose audio cannot be decoded,
    /// with a warning for each, instead of stopping at the first (`asc train --skip-bad`).
    #[serde(default)]
    pub skip_bad: bool,
}

impl TrainConfig {
    /// The defaults used by `asc train` for a model: the DCASE 2024 recipe (AdamW, cosine with
    /// warm-up) scaled to small data sets, with the `cpjku` front end for `cp-mobile`.
    pub fn defaults(model: &str, norm: &str, data: PathBuf, cache: PathBuf) -> Self {
        let frontend = if model == "cp-mobile" {
            FrontendConfig::cpjku()
        } else {
            FrontendConfig::dcase2020()
        };
        Self {
            data,
            fold: 1,
            train_list: None,
            model: ModelConfig::new(model, 0),
            norm: norm.to_string(),
            norm_config: NormConfig::default(),
            frontend,
            labels: Vec::new(),
            epochs: 20,
            batch_size: 32,
            lr: 5e-3,
            optimizer: OptimizerConfig::adamw(1e-4),
            schedule: Schedule::Cosine {
                warmup_steps: 10,
                min_factor: 0.01,
            },
            seed: 0,
            crop_frames: None,
            clip_frames: None,
            augment: AugmentConfig {
                mixup_alpha: 0.3,
                freq_mask: 8,
                time_mask: 8,
                mixstyle_p: 0.4,
                mixstyle_alpha: 0.3,
            },
            validation_fraction: 0.2,
            class_balanced: false,
            cache,
            skip_bad: false,
        }
    }
}
