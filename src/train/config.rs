//! The experiment as one file (`RUN_DIR/config.json`): everything needed to rebuild the model
//! and its front end, and to replay the run (`docs/style.md`: an experiment is one config).

use super::augment::AugmentConfig;
use super::dir::DirConfig;
use super::optim::OptimizerConfig;
use super::schedule::Schedule;
use super::teacher::DistillConfig;
use crate::error::{FileError, UnknownName};
use crate::features::FrontendConfig;
use crate::nn::models::{InputNorm, ModelConfig};
use crate::nn::norm::NormConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the model a run ends with is chosen.
///
/// A location-disjoint split removes whole recording locations from training; on a small
/// training list that can be half of it (a class with two locations gives one away), which
/// costs more accuracy than choosing the epoch on validation gains. `Auto` splits only where
/// the list is large enough to spare the clips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// `Split` when the training list has at least [`Validation::AUTO_MIN_CLIPS`] clips and the
    /// split keeps close to `validation_fraction`; `None` otherwise, with a warning saying why.
    Auto,
    /// Always hold out `validation_fraction` by location; the best epoch by validation macro
    /// accuracy is the run's model.
    Split,
    /// Train on the whole training list; the last epoch is the run's model.
    None,
}

impl Validation {
    /// The smallest training list `Auto` splits (see `docs/real-audio.md` for the measurements
    /// behind it).
    pub const AUTO_MIN_CLIPS: usize = 1000;
    /// `Auto` gives up a split that holds out more than this multiple of the requested fraction
    /// (whole locations overshoot on lists with few locations per class).
    pub const AUTO_MAX_OVERSHOOT: f64 = 1.5;

    fn legacy() -> Self {
        Validation::Split
    }

    /// The names [`Validation::parse`] takes, in the order `--help` lists them.
    pub const NAMES: [&'static str; 3] = ["auto", "split", "none"];

    pub fn parse(name: &str) -> Result<Self, UnknownName> {
        match name {
            "auto" => Ok(Validation::Auto),
            "split" => Ok(Validation::Split),
            "none" => Ok(Validation::None),
            other => Err(UnknownName::new("validation rule", other, &Self::NAMES)),
        }
    }
}

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
    /// Whether a validation split is held out of the training list (and so how the final model
    /// is chosen). Configs written before the rule existed always split.
    #[serde(default = "Validation::legacy")]
    pub validation: Validation,
    /// Share of the training list held out, by recording location, when a split is made.
    pub validation_fraction: f64,
    /// Draw classes uniformly instead of shuffling every clip once per epoch.
    pub class_balanced: bool,
    /// Data-parallel runs (`mpirun`): batch statistics over every rank's rows (synchronised BN)
    /// instead of each rank's own; nothing changes in one process (`docs/distributed.md`).
    #[serde(default)]
    pub sync_bn: bool,
    /// Feature cache folder.
    pub cache: PathBuf,
    /// Leave out bad list rows (`LoadOptions::skip_bad`) and clips whose audio cannot be decoded,
    /// with a warning for each, instead of stopping at the first (`asc train --skip-bad`).
    #[serde(default)]
    pub skip_bad: bool,
    /// Initial weights: a checkpoint of the same model and norm (another run's
    /// `best.safetensors`, or the reference trainer's start) instead of the seed's draw. The
    /// input standardisation is measured on this run's training list either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Knowledge distillation from a teacher's logits (`train::teacher`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
    /// Device impulse response augmentation (`train::dir`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<DirConfig>,
    /// Train (and validate) only on clips recorded by these devices: a device-specific model,
    /// usually fine-tuned from a general one with `init`. Exported models carry the list, and
    /// `asc classify` picks among them by device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

impl TrainConfig {
    /// The model and norm names against their registries, so that a typo is refused before a
    /// run folder is written or a feature is computed.
    pub fn check_names(&self) -> Result<(), UnknownName> {
        crate::nn::norm::check_name(&self.norm)?;
        crate::nn::models::check_name(&self.model.name)?;
        Ok(())
    }

    /// The defaults used by `asc train` for a model, chosen by measurement on the real-recording
    /// development set (`docs/real-audio.md`): AdamW at 1e-3 with a short warm-up and a cosine
    /// decay over 50 epochs, inputs standardised with the training list's statistics, no
    /// augmentation, a validation split only where the list can spare it; the `cpjku` front end
    /// for `cp-mobile`.
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
            model: ModelConfig::new(model, 0).with_input_norm(InputNorm::Global),
            norm: norm.to_string(),
            norm_config: NormConfig::default(),
            frontend,
            labels: Vec::new(),
            epochs: 50,
            batch_size: 32,
            lr: 1e-3,
            optimizer: OptimizerConfig::adamw(1e-4),
            schedule: Schedule::Cosine {
                warmup_steps: 10,
                min_factor: 0.01,
            },
            seed: 0,
            crop_frames: None,
            clip_frames: None,
            augment: AugmentConfig::default(),
            validation: Validation::Auto,
            validation_fraction: 0.2,
            class_balanced: false,
            sync_bn: false,
            cache,
            skip_bad: false,
            init: None,
            distill: None,
            dir: None,
            devices: None,
        }
    }
}

/// Where a command's run config starts ([`Overrides::build`]): a whole config file, or
/// [`TrainConfig::defaults`] for the model. The data set, the cache and the norm the command
/// names replace the file's either way, so one config file serves other data and other norms
/// (`asc compare` trains every norm from the same base).
#[derive(Debug, Clone)]
pub struct ConfigBase {
    /// Data set root.
    pub data: PathBuf,
    /// Architecture of the defaults (unused with a config file, which names its own).
    pub model: String,
    pub norm: String,
    /// A JSON file with a whole `TrainConfig`.
    pub file: Option<PathBuf>,
    /// Feature cache folder (`None`: `<data>/.asc-cache`).
    pub cache: Option<PathBuf>,
}

impl ConfigBase {
    /// The base config, before any [`Overrides`].
    pub fn load(&self) -> Result<TrainConfig, ConfigError> {
        let cache = self
            .cache
            .clone()
            .unwrap_or_else(|| self.data.join(".asc-cache"));
        let mut base = match &self.file {
            Some(p) => crate::fsutil::read_json(p, "training config")?,
            None => {
                TrainConfig::defaults(&self.model, &self.norm, self.data.clone(), cache.clone())
            }
        };
        base.data = self.data.clone();
        base.cache = cache;
        base.norm = self.norm.clone();
        Ok(base)
    }
}

/// Why the settings given cannot make a run config; each message names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read or is not a `TrainConfig`.
    #[error(transparent)]
    File(#[from] FileError),
    /// A schedule or front-end preset that does not exist.
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    /// A run of no steps.
    #[error("--epochs and --batch-size must be at least 1")]
    NoSteps,
    /// A dropout probability outside [0, 1).
    #[error("--dropout must be at least 0 and below 1, got {0}")]
    Dropout(f32),
    /// Distillation or impulse-response settings out of range, or given without their file
    /// or folder.
    #[error("{0}")]
    Setting(String),
}

/// Settings given on the command line (or by a library caller) over a base config: each
/// `Some` replaces the base's value, each `None` keeps it. The base is `TrainConfig::defaults`,
/// or a config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub epochs: Option<u64>,
    pub batch_size: Option<usize>,
    pub fold: Option<u32>,
    pub train_list: Option<String>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub warmup_steps: Option<u64>,
    /// `constant` or `cosine` (keeping the warm-up).
    pub schedule: Option<String>,
    /// Front-end preset name.
    pub preset: Option<String>,
    pub crop_frames: Option<usize>,
    pub class_balanced: Option<bool>,
    pub sync_bn: Option<bool>,
    pub validation: Option<Validation>,
    pub validation_fraction: Option<f64>,
    pub input_norm: Option<InputNorm>,
    pub mixup_alpha: Option<f32>,
    pub freq_mask: Option<usize>,
    pub time_mask: Option<usize>,
    pub mixstyle_p: Option<f32>,
    /// Turns every augmentation off (before the single ones above apply).
    pub no_augment: bool,
    /// Turn on [`AugmentConfig::dcase`] (before the single augmentation settings apply).
    pub augment: bool,
    pub skip_bad: Option<bool>,
    pub seed: Option<u64>,
    /// Dropout probability of the model's dropout layers (the architecture's default otherwise).
    pub dropout: Option<f32>,
    /// Distil from this teacher logits file (`train::teacher`).
    pub teacher_logits: Option<PathBuf>,
    /// λ and T of the distillation loss (need a teacher, here or in the base config).
    pub kd_lambda: Option<f64>,
    pub kd_temperature: Option<f64>,
    /// Convolve training clips with the impulse responses in this folder (`train::dir`).
    pub dir: Option<PathBuf>,
    /// Probability of that per example (needs a folder, here or in the base config).
    pub dir_probability: Option<f32>,
    /// Only clips of these devices are convolved (needs a folder).
    pub dir_devices: Option<Vec<String>>,
    /// Only clips of these recording devices (`TrainConfig::devices`).
    pub devices: Option<Vec<String>>,
}

impl Overrides {
    /// The config a command describes: `base` loaded, then these settings applied.
    pub fn build(&self, base: &ConfigBase) -> Result<TrainConfig, ConfigError> {
        self.apply(base.load()?)
    }

    /// `base` with these settings applied.
    pub fn apply(&self, mut c: TrainConfig) -> Result<TrainConfig, ConfigError> {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *slot = v.clone();
            }
        }
        set(&mut c.epochs, &self.epochs);
        set(&mut c.batch_size, &self.batch_size);
        set(&mut c.fold, &self.fold);
        if self.train_list.is_some() {
            c.train_list = self.train_list.clone();
        }
        set(&mut c.lr, &self.lr);
        if let (Some(wd), OptimizerConfig::AdamW { weight_decay, .. }) =
            (self.weight_decay, &mut c.optimizer)
        {
            *weight_decay = wd;
        }
        if let Some(kind) = &self.schedule {
            c.schedule = c.schedule.with_kind(kind)?;
        }
        if let Some(w) = self.warmup_steps {
            c.schedule = c.schedule.with_warmup(w);
        }
        if let Some(p) = &self.preset {
            c.frontend = FrontendConfig::preset(p)?;
        }
        if self.crop_frames.is_some() {
            c.crop_frames = self.crop_frames;
        }
        set(&mut c.class_balanced, &self.class_balanced);
        set(&mut c.sync_bn, &self.sync_bn);
        set(&mut c.validation, &self.validation);
        set(&mut c.validation_fraction, &self.validation_fraction);
        set(&mut c.model.input_norm, &self.input_norm);
        if self.augment {
            c.augment = AugmentConfig::dcase();
        }
        if self.no_augment {
            c.augment = AugmentConfig::default();
        }
        set(&mut c.augment.mixup_alpha, &self.mixup_alpha);
        set(&mut c.augment.freq_mask, &self.freq_mask);
        set(&mut c.augment.time_mask, &self.time_mask);
        set(&mut c.augment.mixstyle_p, &self.mixstyle_p);
        set(&mut c.skip_bad, &self.skip_bad);
        set(&mut c.seed, &self.seed);
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(ConfigError::Dropout(p));
            }
            c.model.dropout = p;
        }
        self.apply_distill(&mut c)?;
        self.apply_dir(&mut c)?;
        if let Some(devices) = &self.devices {
            if devices.is_empty() || devices.iter().any(|d| d.trim().is_empty()) {
                return Err(ConfigError::Setting(format!(
                    "--devices needs device names, got {devices:?}"
                )));
            }
            c.devices = Some(devices.clone());
        }
        if !(c.batch_size > 0 && c.epochs > 0) {
            return Err(ConfigError::NoSteps);
        }
        Ok(c)
    }

    fn apply_dir(&self, c: &mut TrainConfig) -> Result<(), ConfigError> {
        if let Some(folder) = &self.dir {
            let dir = c.dir.get_or_insert_with(|| DirConfig {
                folder: folder.clone(),
                probability: DirConfig::default_probability(),
                devices: None,
            });
            dir.folder = folder.clone();
        }
        match &mut c.dir {
            Some(d) => {
                d.probability = self.dir_probability.unwrap_or(d.probability);
                if self.dir_devices.is_some() {
                    d.devices = self.dir_devices.clone();
                }
                d.check().map_err(ConfigError::Setting)
            }
            None if self.dir_probability.is_some() || self.dir_devices.is_some() => Err(
                ConfigError::Setting("--dir-p and --dir-devices need --dir".to_string()),
            ),
            None => Ok(()),
        }
    }

    fn apply_distill(&self, c: &mut TrainConfig) -> Result<(), ConfigError> {
        if let Some(path) = &self.teacher_logits {
            let distill = c
                .distill
                .get_or_insert_with(|| DistillConfig::new(path.clone()));
            distill.teacher_logits = path.clone();
        }
        let tuning = self.kd_lambda.is_some() || self.kd_temperature.is_some();
        match &mut c.distill {
            Some(d) => {
                d.lambda = self.kd_lambda.unwrap_or(d.lambda);
                d.temperature = self.kd_temperature.unwrap_or(d.temperature);
                d.check().map_err(ConfigError::Setting)
            }
            None if tuning => Err(ConfigError::Setting(
                "--kd-lambda and --kd-temperature need --teacher-logits".to_string(),
            )),
            None => Ok(()),
        }
    }
}
