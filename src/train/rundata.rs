//! The data of a run: the data set read with the run's options, the validation rule that
//! decides which clips train and which validate, and the features of every clip, computed or
//! taken from the cache.

use super::config::{TrainConfig, Validation};
use super::data::FeatureStore;
use super::dir::DeviceResponses;
use super::error::TrainError;
use super::teacher::Teacher;
use crate::dataset::{Dataset, LoadOptions, ValidationSplit};
use crate::features::{FeatureCache, LogMel};

/// The data of a run: the data set, its splits and their features.
pub struct RunData {
    pub dataset: Dataset,
    pub train: Vec<usize>,
    /// Empty when the run holds out no validation split.
    pub validation: Vec<usize>,
    /// Why there is no validation split although one could have been made (`Validation::Auto`).
    pub validation_note: Option<String>,
    pub store: FeatureStore,
    /// The teacher's soft targets of the training clips, when the run distils.
    pub teacher: Option<Teacher>,
    /// The device impulse responses training clips are convolved with, when the run uses them.
    pub responses: Option<DeviceResponses>,
    /// What `config.skip_bad` left out, one message per list row or clip, in file order.
    pub skipped: Vec<String>,
}

/// The validation split `config.validation` asks for, and why none was made under `Auto`.
fn choose_validation(
    config: &TrainConfig,
    dataset: &Dataset,
) -> Result<(ValidationSplit, Option<String>), TrainError> {
    let everything = || ValidationSplit {
        train: dataset.train.clone(),
        validation: Vec::new(),
    };
    let n = dataset.train.len();
    match config.validation {
        Validation::None => Ok((everything(), None)),
        Validation::Split => Ok((
            dataset.validation_split(config.validation_fraction, config.seed)?,
            None,
        )),
        Validation::Auto if n < Validation::AUTO_MIN_CLIPS => Ok((
            everything(),
            Some(format!(
                "the training list has {n} clips (fewer than {}): training on all of them and \
                 keeping the last epoch (--validation split holds some out)",
                Validation::AUTO_MIN_CLIPS
            )),
        )),
        Validation::Auto => {
            let split = dataset.validation_split(config.validation_fraction, config.seed)?;
            let share = split.validation.len() as f64 / n as f64;
            let cap = Validation::AUTO_MAX_OVERSHOOT * config.validation_fraction;
            if split.validation.is_empty() || share > cap {
                let note = format!(
                    "a location-disjoint split would hold out {:.0} % of the training list \
                     (asked: {:.0} %): too few locations per class; training on all clips and \
                     keeping the last epoch (--validation split forces it)",
                    100.0 * share,
                    100.0 * config.validation_fraction
                );
                Ok((everything(), Some(note)))
            } else {
                Ok((split, None))
            }
        }
    }
}

/// Leaves the clips of `devices` in both lists; none left to train on is an error that names
/// the devices the training list has.
fn keep_devices(
    dataset: &Dataset,
    devices: &[String],
    split: &mut ValidationSplit,
    data: &std::path::Path,
) -> Result<(), TrainError> {
    let device_of = |c: usize| dataset.clips[c].device.as_deref();
    let listed: std::collections::BTreeSet<&str> =
        split.train.iter().filter_map(|&c| device_of(c)).collect();
    let keep = |c: &usize| device_of(*c).is_some_and(|d| devices.iter().any(|k| k == d));
    split.train.retain(keep);
    split.validation.retain(keep);
    if split.train.is_empty() {
        return Err(crate::error::FileError::new(
            data,
            format!(
                "no training clips of device(s) {} (the training list has {})",
                devices.join(", "),
                listed.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

impl RunData {
    /// Reads the data set and makes sure every clip of its lists has features. With
    /// `config.skip_bad`, bad rows and undecodable clips are left out of every list and
    /// reported in [`RunData::skipped`]; otherwise the first one fails.
    pub fn open(config: &TrainConfig, frontend: &LogMel) -> Result<Self, TrainError> {
        let opts = LoadOptions {
            fold: config.fold,
            train_list: config.train_list.clone(),
            skip_bad: config.skip_bad,
            ..LoadOptions::default()
        };
        let mut dataset = Dataset::open(&config.data, &opts)?;
        let mut skipped: Vec<String> = dataset
            .report
            .warnings
            .iter()
            .map(|w| w.to_string())
            .collect();
        let (mut split, validation_note) = choose_validation(config, &dataset)?;
        if let Some(devices) = &config.devices {
            keep_devices(&dataset, devices, &mut split, &config.data)?;
        }
        // Before any feature is computed: a logits file that does not fit fails at once.
        let teacher = match &config.distill {
            Some(d) => Some(Teacher::load(
                d,
                &dataset,
                &split.train,
                dataset.labels.names(),
            )?),
            None => None,
        };
        let responses = match &config.dir {
            Some(d) => Some(DeviceResponses::load(d, frontend.config())?),
            None => None,
        };
        let cache = FeatureCache::open(&config.cache, frontend.config())?;
        let mut all: Vec<usize> = split.train.clone();
        all.extend(&split.validation);
        all.extend(&dataset.evaluate);
        all.extend(&dataset.test);
        all.sort_unstable();
        all.dedup();
        let (mut train, mut validation) = (split.train, split.validation);
        let store = if config.skip_bad {
            let (store, failed) = FeatureStore::prepare_skipping(&dataset, &all, frontend, cache);
            for list in [
                &mut train,
                &mut validation,
                &mut dataset.evaluate,
                &mut dataset.test,
            ] {
                list.retain(|&c| store.contains(c));
            }
            skipped.extend(failed.iter().map(|(_, e)| e.to_string()));
            store
        } else {
            FeatureStore::prepare(&dataset, &all, frontend, cache)?
        };
        if train.is_empty() {
            return Err(TrainError::NoTrainingClips {
                data: config.data.clone(),
                skipped: skipped.len(),
            });
        }
        Ok(Self {
            train,
            validation,
            validation_note,
            dataset,
            store,
            teacher,
            responses,
            skipped,
        })
    }
}
