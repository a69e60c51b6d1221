//! A model with its variables: built from a run's config, shared by training, evaluation and
//! export, so all three rebuild exactly the same network.

use super::checkpoint::{self, Weights};
use super::config::TrainConfig;
use crate::complexity::{self, Complexity};
use crate::error::{FileError, UnknownName};
use crate::fsutil::read_json;
use crate::nn::init::seeded_builder;
use crate::nn::models::{self, InputNorm, Model, Standardized};
use crate::nn::norm;
use candle_core::{DType, Device, Result, Var};
use candle_nn::VarMap;
use std::path::Path;

pub struct Session {
    pub config: TrainConfig,
    pub device: Device,
    pub model: Box<dyn Model>,
    /// Trainable parameters: the only variables the optimiser sees.
    pub params: VarMap,
    /// Running statistics and other state outside the gradients.
    pub buffers: VarMap,
}

impl Session {
    pub fn build(config: TrainConfig, device: Device) -> Result<Self> {
        let params = VarMap::new();
        let buffers = VarMap::new();
        // Initial weights are a function of the config's seed (`nn::init`).
        let pvb = seeded_builder(&params, config.seed, DType::F32, &device);
        let bvb = seeded_builder(&buffers, config.seed, DType::F32, &device);
        let builder = norm::NormBuilder::new(pvb.clone(), bvb.clone());
        let mut model = {
            let factory = norm::NormFactory {
                name: &config.norm,
                config: &config.norm_config,
                builder,
            };
            models::build(&config.model, pvb.clone(), &factory)?
        };
        if config.model.input_norm != InputNorm::None {
            let n_mels = config.frontend.n_mels;
            model = Box::new(Standardized::new(model, bvb.pp("input_norm"), n_mels)?);
        }
        Ok(Self {
            config,
            device,
            model,
            params,
            buffers,
        })
    }

    pub fn weights(&self) -> Weights<'_> {
        Weights {
            params: &self.params,
            buffers: &self.buffers,
        }
    }

    /// Trainable variables with their names, sorted.
    pub fn named_params(&self) -> Vec<(String, Var)> {
        let data = self.params.data().lock().expect("varmap lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The buffers (running statistics), sorted by name: the same order in every process.
    pub fn buffer_vars(&self) -> Vec<Var> {
        let data = self.buffers.data().lock().expect("varmap lock");
        let mut v: Vec<(&String, &Var)> = data.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, var)| var.clone()).collect()
    }

    pub fn param_count(&self) -> usize {
        self.named_params()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// The model's cost for a 1 × C × H × W input of `input_hw` ([`crate::complexity`]).
    pub fn complexity(&self, input_hw: (usize, usize)) -> Complexity {
        let shapes: Vec<(String, Vec<usize>)> = self
            .named_params()
            .iter()
            .map(|(name, v)| (name.clone(), v.dims().to_vec()))
            .collect();
        complexity::measure(self.model.as_ref(), &shapes, input_hw)
    }

    /// [`Self::complexity`] for `seconds` of audio through the run's front end; DCASE states its
    /// limits for one second.
    pub fn complexity_for(&self, seconds: f64) -> Complexity {
        let f = &self.config.frontend;
        let samples = (seconds * f.sr as f64).round() as usize;
        self.complexity((f.n_mels, f.frames(samples)))
    }

    /// Loads the weights of a checkpoint file (e.g. `best.safetensors`).
    pub fn load_weights(&self, path: &Path) -> std::result::Result<checkpoint::Loaded, FileError> {
        let loaded = checkpoint::load(path, &self.device)?;
        loaded.restore(path, &self.weights())?;
        Ok(loaded)
    }
}

/// Reads `RUN_DIR/config.json`.
pub fn read_config(run_dir: &Path) -> std::result::Result<TrainConfig, FileError> {
    read_json(&run_dir.join("config.json"), "run config")
}

/// The device named on the command line: `cpu`, or `cuda` when built with the `cuda` feature.
pub fn device(name: &str) -> std::result::Result<Device, DeviceError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| DeviceError::Cuda {
            reason: e.to_string(),
            hint: if cfg!(feature = "cuda") {
                "needs an NVIDIA GPU, driver >= 580 and the CUDA 13 libraries, see docs/gpu.md"
            } else {
                "this build has no CUDA: build with scripts/build-cuda.sh, see docs/gpu.md"
            },
        }),
        other => Err(DeviceError::Unknown(UnknownName::new(
            "device",
            other,
            &["cpu", "cuda"],
        ))),
    }
}

/// Why the device asked for cannot be used ([`device`]).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    /// CUDA was asked for but cannot start; `hint` says what this build or machine needs.
    #[error("cannot use CUDA: {reason} ({hint})")]
    Cuda { reason: String, hint: &'static str },
}

#[cfg(test)]
mod tests {
    use super::{device, read_config};
    use crate::train::TrainConfig;

    /// A run folder written before each norm owned its settings (flat `norm_config` fields,
    /// docs/norms.md §9) still loads, with the settings it trained with.
    #[test]
    fn old_run_folder_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let d = TrainConfig::defaults("cnn", "ubn", "data".into(), "cache".into());
        let mut v = serde_json::to_value(&d).unwrap();
        v["norm_config"] = serde_json::json!({
            "eps": 1e-5, "momentum": 0.1, "l2bn_mode": "rms", "gn_max_groups": 32,
            "gnplus_variant": "deployable", "ubn_tau": 0.25, "ubn_momentum_cos": 0.1,
            "ubn_cos_samples": 16, "ubn_fct_mode": "batch_when_below",
            "ubn_bnet_init": "reference", "ubn_kernel": 5
        });
        std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
        let cfg = read_config(dir.path()).unwrap();
        let ubn: crate::nn::norm::UbnOptions = cfg.norm_config.options();
        assert_eq!(ubn.tau, 0.25);
        assert_eq!(ubn.kernel, 5);
        assert_eq!(ubn.fct_mode, crate::nn::norm::FctMode::BatchWhenBelow);
        let mut want = d.clone();
        want.norm_config = cfg.norm_config.clone();
        assert_eq!(cfg, want, "only norm_config differs from the defaults");
    }

    #[test]
    fn device_names() {
        assert!(device("cpu").unwrap().is_cpu());
        let e = device("tpu").unwrap_err().to_string();
        assert!(e.contains("cpu, cuda"), "{e}");
    }

    /// Without the feature, `--device cuda` says how to get a CUDA build (docs/gpu.md).
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_points_to_the_build_script() {
        let e = device("cuda").unwrap_err().to_string();
        assert!(e.contains("scripts/build-cuda.sh"), "{e}");
    }
}
