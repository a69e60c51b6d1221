//! The architectures of `docs/models.md`, each built from a [`ModelConfig`] and a norm factory, so
//! every model takes every normalization layer by name. Like the norms, each architecture is one
//! file with its registry entry ([`ModelEntry`]) and its settings, plus its name in the
//! `registry!` list.

pub mod input_norm;

pub use crate::nn::layers::LayerShape;
pub use cnn::{Cnn, CnnOptions};
pub use cp_mobile::{CpMobile, CpMobileOptions};
pub use fcnn::{Fcnn, FcnnOptions};
pub use fsfcnn::FsfcnnOptions;
pub use input_norm::{InputNorm, Standardized};

pub use super::norm::NormFactory;
use crate::nn::options::{Options, OptionsEntry, OptionsMap};
use crate::onnx::graph::OnnxGraph;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Builds a model from its config, its parameters' store and its norm factory.
pub type ModelCtor = fn(&ModelConfig, VarBuilder, &NormFactory) -> Result<Box<dyn Model>>;

/// An architecture as the registry knows it.
#[derive(Clone, Copy)]
pub struct ModelEntry {
    /// The registry name (`--model`, `config.json`'s `model.name`).
    pub name: &'static str,
    pub build: ModelCtor,
    /// Its default dropout probability.
    pub dropout: f32,
    /// Its settings (stored as `model.<name>`).
    pub options: OptionsEntry,
}

impl ModelEntry {
    /// The entry of a model with settings `O`, whose key is the model's name.
    pub const fn new<O: Options>(name: &'static str, build: ModelCtor, dropout: f32) -> Self {
        Self {
            name,
            build,
            dropout,
            options: OptionsEntry::of::<O>(),
        }
    }
}

super::registry!(ModelEntry; cnn, cp_mobile, fcnn, fsfcnn);

/// Names accepted for `--model`, in registry order.
pub const MODEL_NAMES: [&str; REGISTRY.len()] = super::names_of!(REGISTRY);

/// The registry entry of `name`.
pub fn entry(name: &str) -> std::result::Result<&'static ModelEntry, crate::error::UnknownName> {
    super::lookup(REGISTRY, "model", name, &MODEL_NAMES)
}

impl super::Registered for ModelEntry {
    fn registry_name(&self) -> &'static str {
        self.name
    }
}

/// `name` against the registry, as `nn::norm::check_name` does for norms.
pub fn check_name(name: &str) -> std::result::Result<(), crate::error::UnknownName> {
    entry(name).map(|_| ())
}

/// Everything needed to rebuild a model (saved in the run's `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelConfigFile")]
pub struct ModelConfig {
    /// A registry name: `cnn`, `cp-mobile`, `fcnn` or `fsfcnn`.
    pub name: String,
    pub n_classes: usize,
    /// Input channels (1 for a log-mel).
    pub in_channels: usize,
    /// Dropout probability (the `cnn` baseline uses 0.3; `cp-mobile` none).
    pub dropout: f32,
    /// Input standardisation with the training set's statistics ([`input_norm`]); configs
    /// written before it existed have none (or per-band, where they said `standardize_input`).
    pub input_norm: InputNorm,
    /// The architecture's own settings (widths, blocks, strides), under its name; configs
    /// written before they existed get the defaults, which are the architecture they trained.
    #[serde(flatten)]
    options: OptionsMap,
}

/// `model` as read: the shared fields, then the architecture's settings object.
#[derive(Deserialize)]
struct ModelConfigFile {
    name: String,
    n_classes: usize,
    #[serde(default = "one")]
    in_channels: usize,
    #[serde(default)]
    dropout: f32,
    input_norm: Option<InputNorm>,
    /// The flag that `input_norm` replaced (per-band standardisation when true); read so that
    /// run folders of that time load with the standardisation their checkpoints were trained with.
    standardize_input: Option<bool>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

fn one() -> usize {
    1
}

impl TryFrom<ModelConfigFile> for ModelConfig {
    type Error = String;

    /// The settings of every registered model are read (and checked); only the named one's are
    /// kept. An unknown model name keeps none and fails where the model is built.
    fn try_from(f: ModelConfigFile) -> std::result::Result<Self, String> {
        let entries = REGISTRY.iter().map(|e| &e.options);
        let mut options = OptionsMap::read("model", f.rest, entries)?;
        options.retain_only(&f.name);
        Ok(Self {
            name: f.name,
            n_classes: f.n_classes,
            in_channels: f.in_channels,
            dropout: f.dropout,
            input_norm: f.input_norm.unwrap_or(match f.standardize_input {
                Some(true) => InputNorm::PerBand,
                _ => InputNorm::None,
            }),
            options,
        })
    }
}

impl ModelConfig {
    /// The registry defaults of model `name` (an unknown name gets no settings and dropout 0,
    /// and fails where the model is built).
    pub fn new(name: &str, n_classes: usize) -> Self {
        let e = entry(name).ok();
        Self {
            name: name.to_string(),
            n_classes,
            in_channels: 1,
            dropout: e.map_or(0.0, |e| e.dropout),
            input_norm: InputNorm::None,
            options: OptionsMap::defaults(e.map(|e| &e.options)),
        }
    }

    /// The architecture's settings, e.g. `config.options::<CpMobileOptions>().strides`.
    pub fn options<O: Options>(&self) -> O {
        self.options.get()
    }

    /// The config with input standardisation `input_norm`.
    pub fn with_input_norm(mut self, input_norm: InputNorm) -> Self {
        self.input_norm = input_norm;
        self
    }

    /// The config with the architecture's settings replaced.
    pub fn with_options<O: Options>(mut self, o: O) -> Self {
        self.options.set(o);
        self
    }
}

/// A classifier: NCHW log-mel in, logits (N, n_classes) out.
pub trait Model: Send + Sync {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
    /// Seeds the dropout masks of the next training step (reproducible runs and resumes).
    /// `first_row`: where the rows of the next batches start in the whole batch (0 but in a
    /// data-parallel rank, `train::parallel`), so that their masks are the one-process masks.
    fn reseed(&self, seed: u64, first_row: usize);
    /// The layers that hold parameters, in forward order, with their output shapes for a
    /// 1 × C × H × W input: what [`crate::complexity`] counts parameters and MACs over.
    fn layers(&self, input_hw: (usize, usize)) -> Vec<LayerShape>;
    /// Appends the eval-mode network to `g`, reading the NCHW value `input`; returns the name
    /// of the logits value (N, n_classes). Dropout is the identity at inference and emits nothing.
    fn emit_onnx(&self, g: &mut OnnxGraph, input: &str) -> Result<String>;
    /// The input standardisation in front of the network, if the model has one.
    fn input_stats(&self) -> Option<&Standardized> {
        None
    }
}

/// Builds the model named in `config`; parameters come from `vb` (the optimiser's VarMap),
/// norm layers from `norm`.
pub fn build(config: &ModelConfig, vb: VarBuilder, norm: &NormFactory) -> Result<Box<dyn Model>> {
    match entry(&config.name) {
        Ok(e) => (e.build)(config, vb, norm),
        Err(e) => candle_core::bail!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run folders written while the flag was `standardize_input` (before `input_norm`) load with
    /// the per-band standardisation their checkpoints hold; before this was read, the flag was
    /// ignored and such a run exported and evaluated without it.
    #[test]
    fn the_old_standardisation_flag_is_read() {
        let read = |json: &str| {
            serde_json::from_str::<ModelConfig>(json)
                .unwrap()
                .input_norm
        };
        let old =
            |flag: bool| format!(r#"{{"name":"cnn","n_classes":3,"standardize_input":{flag}}}"#);
        assert_eq!(read(&old(true)), InputNorm::PerBand);
        assert_eq!(read(&old(false)), InputNorm::None);
        assert_eq!(read(r#"{"name":"cnn","n_classes":3}"#), InputNorm::None);
        let both = r#"{"name":"cnn","n_classes":3,"input_norm":"global","standardize_input":true}"#;
        assert_eq!(read(both), InputNorm::Global);
        // Written back, it is the current form.
        let cfg: ModelConfig = serde_json::from_str(&old(true)).unwrap();
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(
            text.contains(r#""input_norm":"per_band""#) && !text.contains("standardize"),
            "{text}"
        );
    }
}
