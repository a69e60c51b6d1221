//! Checkpoints: parameters, buffers (running statistics and other state outside the gradients),
//! optimiser moments and the training state, in ONE safetensors file whose header metadata
//! holds the state as JSON. One file, written atomically, means a crash can never leave weights
//! and state from different steps (`docs/architecture.md`: run directory; issue: faults lose
//! nothing).

use crate::error::FileError;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::Path;

const STATE_KEY: &str = "asc.state";

/// The named tensors of a model: trainable parameters and buffers.
pub struct Weights<'a> {
    pub params: &'a VarMap,
    pub buffers: &'a VarMap,
}

fn collect(prefix: &str, map: &VarMap, out: &mut Vec<(String, Tensor)>) {
    let data = map.data().lock().expect("varmap lock");
    for (name, var) in data.iter() {
        out.push((format!("{prefix}{name}"), var.as_tensor().clone()));
    }
}

/// Writes weights, extra tensors (optimiser state) and a JSON state to `path`, atomically.
pub fn save(
    path: &Path,
    weights: &Weights,
    extra: &HashMap<String, Tensor>,
    state: &serde_json::Value,
) -> Result<(), FileError> {
    let mut tensors = Vec::new();
    collect("param.", weights.params, &mut tensors);
    collect("buffer.", weights.buffers, &mut tensors);
    for (k, t) in extra {
        tensors.push((format!("extra.{k}"), t.clone()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = HashMap::from([(STATE_KEY.to_string(), state.to_string())]);
    let bytes =
        safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata))
            .map_err(|e| FileError::new(path, format!("serialising checkpoint: {e}")))?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// A loaded checkpoint.
pub struct Loaded {
    pub tensors: HashMap<String, Tensor>,
    pub state: serde_json::Value,
}

impl Loaded {
    /// Tensors whose names start with `prefix`, with the prefix removed.
    pub fn group(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
            .collect()
    }

    /// Copies the checkpoint's parameters and buffers into `weights`; every variable must be
    /// present with its shape, so a checkpoint of another model is refused, not half-loaded.
    pub fn restore(&self, path: &Path, weights: &Weights) -> Result<(), FileError> {
        self.restore_except(path, weights, "")
    }

    /// [`Loaded::restore`], except that variables whose key starts with `optional` (non-empty)
    /// keep their value when the checkpoint lacks them: initial weights written by another
    /// trainer carry no input statistics, which a run measures itself.
    pub fn restore_except(
        &self,
        path: &Path,
        weights: &Weights,
        optional: &str,
    ) -> Result<(), FileError> {
        for (prefix, map) in [("param.", weights.params), ("buffer.", weights.buffers)] {
            let data = map.data().lock().expect("varmap lock");
            for (name, var) in data.iter() {
                let key = format!("{prefix}{name}");
                let Some(t) = self.tensors.get(&key) else {
                    if !optional.is_empty() && key.starts_with(optional) {
                        continue;
                    }
                    return Err(FileError::new(path, format!("checkpoint lacks '{key}'")));
                };
                if t.dims() != var.dims() {
                    return Err(FileError::new(
                        path,
                        format!(
                            "'{key}' has shape {:?}, the model needs {:?}",
                            t.dims(),
                            var.dims()
                        ),
                    ));
                }
                let t = t
                    .to_dtype(var.dtype())
                    .map_err(|e| FileError::new(path, e.to_string()))?;
                var.set(&t)
                    .map_err(|e| FileError::new(path, e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path, device: &Device) -> Result<Loaded, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::new(path, e.to_string()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| FileError::new(path, format!("not a checkpoint: {e}")))?;
    let state = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .map(|s| serde_json::from_str(s))
        .transpose()
        .map_err(|e| FileError::new(path, format!("bad state in checkpoint: {e}")))?
        .unwrap_or(serde_json::Value::Null);
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| FileError::new(path, format!("not a checkpoint: {e}")))?;
    Ok(Loaded { tensors, state })
}
