//! Device-specific models (DCASE 2025 task 1 gives the recording device at inference): a folder
//! of models exported by `asc export`, each saying in its metadata (`asc.devices`) which devices
//! it was fine-tuned for, and one general model (no devices) for the devices none covers. The
//! folder is the whole format: any ONNX runtime can read each file's `metadata_props` and pick
//! the same way.

use super::{Classifier, InferError};
use crate::error::FileError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A model file and its loaded classifier (shared by the devices it serves).
type Loaded = (PathBuf, Arc<Classifier>);

/// The models of a folder, by device, and the general one.
pub struct DeviceModels {
    general: Option<Loaded>,
    by_device: BTreeMap<String, Loaded>,
}

impl DeviceModels {
    /// Loads every `.onnx` file of `dir`. Two models claiming one device, two general models,
    /// models whose classes differ, or a folder without a model are refused, naming the files.
    pub fn from_folder(dir: &Path) -> Result<Self, InferError> {
        let bad = |why: String| InferError::File(FileError::new(dir, why));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| bad(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
            })
            .collect();
        files.sort();
        let mut models = Self {
            general: None,
            by_device: BTreeMap::new(),
        };
        let mut labels: Option<(PathBuf, Vec<String>)> = None;
        for file in files {
            let classifier = Arc::new(Classifier::from_onnx(&file)?);
            match &labels {
                Some((first, l)) if l != classifier.labels() => {
                    return Err(bad(format!(
                        "{} and {} have different classes",
                        first.display(),
                        file.display()
                    )));
                }
                None => labels = Some((file.clone(), classifier.labels().to_vec())),
                _ => {}
            }
            let devices = classifier.metadata().devices.clone();
            if devices.is_empty() {
                if let Some((first, _)) = &models.general {
                    return Err(bad(format!(
                        "two general models (no devices): {} and {}",
                        first.display(),
                        file.display()
                    )));
                }
                models.general = Some((file, classifier));
                continue;
            }
            for device in devices {
                if let Some((first, _)) = models.by_device.get(&device) {
                    return Err(bad(format!(
                        "device {device} has two models: {} and {}",
                        first.display(),
                        file.display()
                    )));
                }
                models
                    .by_device
                    .insert(device, (file.clone(), Arc::clone(&classifier)));
            }
        }
        if models.general.is_none() && models.by_device.is_empty() {
            return Err(bad("no .onnx models in it".to_string()));
        }
        Ok(models)
    }

    /// The devices with a model of their own.
    pub fn devices(&self) -> Vec<&str> {
        self.by_device.keys().map(String::as_str).collect()
    }

    /// The model for `device` (its own, else the general one) and its file.
    pub fn pick(&self, device: Option<&str>) -> Option<(&Path, &Classifier)> {
        device
            .and_then(|d| self.by_device.get(d))
            .or(self.general.as_ref())
            .map(|(p, c)| (p.as_path(), c.as_ref()))
    }

    /// Any one of the models (they share their classes).
    pub fn any(&self) -> &Classifier {
        let (_, c) = self
            .general
            .as_ref()
            .or_else(|| self.by_device.values().next())
            .expect("from_folder refuses an empty folder");
        c.as_ref()
    }
}
