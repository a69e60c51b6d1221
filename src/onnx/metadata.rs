//! What an exported model says about itself (`metadata_props`), so `asc classify`, the
//! embedding API and any other ONNX consumer can use it without the run folder: the labels in
//! output order, the front end to reproduce, what the input is, and where the model came from.

use crate::features::{FrontendConfig, FrontendError};
use serde::{Deserialize, Serialize};

/// Key prefix of every entry we write.
pub const PREFIX: &str = "asc.";

/// What the graph's single input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// `logmel`: (N, 1, n_mels, frames) log-mel spectrograms from the front end in `frontend`.
    Logmel,
    /// `waveform`: (N, samples) mono samples at `frontend.sr`; the front end is in the graph.
    Waveform,
}

impl InputKind {
    /// The graph input's name.
    pub fn input_name(self) -> &'static str {
        match self {
            InputKind::Logmel => "logmel",
            InputKind::Waveform => "waveform",
        }
    }
}

/// The model's self-description, one `metadata_props` entry per field (`asc.<field>`, JSON
/// values for the structured ones).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    pub labels: Vec<String>,
    pub frontend: FrontendConfig,
    pub input: InputKind,
    /// Frames of one training clip: the window length `classify` cuts long recordings into.
    pub clip_frames: usize,
    pub model: String,
    pub norm: String,
    /// The crate version that wrote the file.
    pub version: String,
    /// Free-form training summary (data, epochs, validation figures).
    pub training: serde_json::Value,
    /// The recording devices a device-specific model was trained for; empty for a general
    /// model (`asc classify` with a folder of models picks by device).
    pub devices: Vec<String>,
}

impl ModelMetadata {
    /// The `metadata_props` entries.
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![
            key_value("labels", json(&self.labels)),
            key_value("frontend", json(&self.frontend)),
            key_value("input", self.input.input_name().to_string()),
            key_value("clip_frames", self.clip_frames.to_string()),
            key_value("model", self.model.clone()),
            key_value("norm", self.norm.clone()),
            key_value("version", self.version.clone()),
            key_value("training", self.training.to_string()),
            key_value("devices", json(&self.devices)),
        ]
    }

    /// Reads the entries back; a model without labels or front end cannot be used for
    /// classification, and the error says which entry is missing or malformed.
    pub fn from_props(props: &[(String, String)]) -> Result<Self, MetadataError> {
        let get = |field: &str| -> Result<&str, MetadataError> {
            let key = format!("{PREFIX}{field}");
            props
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .ok_or(MetadataError::Missing { key })
        };
        let parse = |field: &str, text: &str, e: serde_json::Error| MetadataError::Malformed {
            key: format!("{PREFIX}{field}"),
            error: e.to_string(),
            excerpt: format!("{text:.80}"),
        };
        let labels_text = get("labels")?;
        let labels: Vec<String> =
            serde_json::from_str(labels_text).map_err(|e| parse("labels", labels_text, e))?;
        if labels.is_empty() {
            return Err(MetadataError::NoLabels);
        }
        let fe_text = get("frontend")?;
        let frontend: FrontendConfig =
            serde_json::from_str(fe_text).map_err(|e| parse("frontend", fe_text, e))?;
        frontend.validate()?;
        let input = match get("input")? {
            "logmel" => InputKind::Logmel,
            "waveform" => InputKind::Waveform,
            other => return Err(MetadataError::Input(other.to_string())),
        };
        let frames_text = get("clip_frames")?;
        let clip_frames: usize = frames_text
            .parse()
            .ok()
            .filter(|&f| f > 0)
            .ok_or_else(|| MetadataError::ClipFrames(frames_text.to_string()))?;
        let optional = |field: &str| get(field).map(str::to_string).unwrap_or_default();
        Ok(Self {
            labels,
            frontend,
            input,
            clip_frames,
            model: optional("model"),
            norm: optional("norm"),
            version: optional("version"),
            training: get("training")
                .ok()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null),
            devices: match get("devices") {
                Ok(text) => serde_json::from_str(text).map_err(|e| parse("devices", text, e))?,
                Err(_) => Vec::new(),
            },
        })
    }
}

/// Why a model's metadata cannot be used for classification: which entry is missing or what is
/// wrong with it (a model not exported by asc lacks them all).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("model metadata lacks '{key}' (not exported by asc?)")]
    Missing { key: String },
    /// The entry is not the JSON it should be; `excerpt` is its first 80 characters.
    #[error("model metadata '{key}' is malformed ({error}): {excerpt}")]
    Malformed {
        key: String,
        error: String,
        excerpt: String,
    },
    #[error("model metadata '{PREFIX}labels' is empty")]
    NoLabels,
    #[error("model metadata '{PREFIX}frontend' is invalid: {0}")]
    Frontend(#[from] FrontendError),
    #[error("model metadata '{PREFIX}input' is '{0}'")]
    Input(String),
    #[error("model metadata '{PREFIX}clip_frames' is '{0}'")]
    ClipFrames(String),
}

fn key_value(field: &str, value: String) -> (String, String) {
    (format!("{PREFIX}{field}"), value)
}

/// Compact JSON of plain data (strings, numbers, enums): cannot fail.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelMetadata {
        ModelMetadata {
            labels: vec!["park".into(), "bus".into()],
            frontend: FrontendConfig::cpjku(),
            input: InputKind::Waveform,
            clip_frames: 65,
            model: "cp-mobile".into(),
            norm: "l2bn".into(),
            version: "0.1.0".into(),
            training: serde_json::json!({"epochs": 3}),
            devices: vec!["a".into(), "s4".into()],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(ModelMetadata::from_props(&m.to_props()).unwrap(), m);
    }

    #[test]
    fn missing_and_malformed_entries_are_named() {
        let mut props = sample().to_props();
        props.retain(|(k, _)| k != "asc.labels");
        let err = ModelMetadata::from_props(&props).unwrap_err().to_string();
        assert!(err.contains("asc.labels"), "{err}");
        let mut props = sample().to_props();
        props[3].1 = "zero".into();
        let err = ModelMetadata::from_props(&props).unwrap_err().to_string();
        assert!(err.contains("asc.clip_frames"), "{err}");
    }
}
