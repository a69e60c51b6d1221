//! ONNX export (`asc export`): a trained run becomes one self-describing `.onnx` file that tract,
//! onnxruntime or any other runtime can run. This module only assembles: it rebuilds the run's
//! [`Session`], and the graph is written with [`crate::onnx`] (opset 17, batch and time axes
//! symbolic): every norm writes its eval-mode decomposition (docs/norms.md), the model its
//! layers, and the front end goes inside too with `--waveform`.

use crate::dataset::{Dataset, LoadOptions};
use crate::error::FileError;
use crate::features::LogMel;
use crate::onnx::frontend;
use crate::onnx::graph::{attr_int, Dim, OnnxGraph};
pub use crate::onnx::metadata::{InputKind, ModelMetadata};
pub use crate::onnx::precision::Converted;
use crate::onnx::precision::{
    quantize_activations, store_weights_as_fp16, store_weights_as_int8, ActivationRange,
};
use crate::train::checkpoint;
use crate::train::session::{read_config, Session};
use candle_core::Device;
use prost::Message;
use std::path::{Path, PathBuf};

/// Name of the graph output: class probabilities (N, n_classes), in `asc.labels` order.
pub const OUTPUT: &str = "probs";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Model(#[from] candle_core::Error),
    #[error("{0}")]
    Frontend(#[from] crate::features::FrontendError),
    /// Static int8 needs the run's training clips to calibrate on.
    #[error("--int8 calibrates on the run's training clips: {0} (--int8-weights stores int8 weights without calibration)")]
    Calibration(String),
    /// The run predates the recorded input length, so the exported model's window is unknown.
    #[error("the run's config.json has no clip_frames (trained by an older asc?)")]
    NoClipFrames,
}

/// Options of `asc export`.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Put the front end in the graph: input (N, samples) instead of (N, 1, n_mels, frames).
    pub waveform: bool,
    /// Weights to export; default `RUN_DIR/best.safetensors`, else the last checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// How the weights are stored (`onnx::precision`); the arithmetic is float32 either way.
    pub storage: WeightStorage,
}

/// The precision an exported file stores its weights in.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum WeightStorage {
    #[default]
    F32,
    /// Every float initializer as float16 (`--fp16`).
    F16,
    /// Conv and Gemm weights as int8 with per-channel scales, activations float32
    /// (`--int8-weights`).
    Int8,
    /// Static post-training int8 (`--int8`): the int8 weights of [`WeightStorage::Int8`], and
    /// every activation a Conv or Gemm reads quantised to uint8 (QDQ) with the calibrated
    /// `ranges` (`infer::calibrate::calibrate_run` measures them on [`calibration_clips`]).
    Int8Static {
        ranges: Vec<ActivationRange>,
        /// How many clips they were measured on (for the summary).
        clips: usize,
    },
}

/// What a compact storage did, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageSummary {
    F16(Converted),
    Int8(Converted),
    /// The weights' conversion, the activations quantised and the clips they were calibrated on.
    Int8Static {
        weights: Converted,
        activations: usize,
        clips: usize,
    },
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub bytes: usize,
    pub nodes: usize,
    pub metadata: ModelMetadata,
    /// With a compact storage: what it converted.
    pub storage: Option<StorageSummary>,
}

/// Exports the run in `run_dir` to `out` (written atomically).
pub fn export_run(
    run_dir: &Path,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportSummary, ExportError> {
    let (bytes, mut summary) = export_bytes(run_dir, opts)?;
    crate::fsutil::write_atomic(out, &bytes)?;
    summary.path = out.to_path_buf();
    Ok(summary)
}

/// The `.onnx` file [`export_run`] writes, as bytes (its summary's `path` left empty).
pub fn export_bytes(
    run_dir: &Path,
    opts: &ExportOptions,
) -> Result<(Vec<u8>, ExportSummary), ExportError> {
    let config = read_config(run_dir)?;
    let weights = match &opts.checkpoint {
        Some(p) => p.clone(),
        None => ["best.safetensors", "checkpoint.safetensors"]
            .iter()
            .map(|f| run_dir.join(f))
            .find(|p| p.exists())
            .ok_or_else(|| {
                FileError::new(
                    run_dir,
                    "no best.safetensors or checkpoint.safetensors (train first)",
                )
            })?,
    };
    let session = Session::build(config, Device::Cpu)?;
    let loaded = session.load_weights(&weights)?;
    let metadata = run_metadata(&session, &loaded, opts.waveform)?;
    let graph = model_graph(&session, &metadata)?;
    let mut model = graph.to_model();
    let storage = match &opts.storage {
        WeightStorage::F32 => None,
        WeightStorage::F16 => Some(StorageSummary::F16(store_weights_as_fp16(&mut model))),
        WeightStorage::Int8 => Some(StorageSummary::Int8(store_weights_as_int8(&mut model))),
        WeightStorage::Int8Static { ranges, clips } => {
            let weights = store_weights_as_int8(&mut model);
            let activations = quantize_activations(&mut model, ranges);
            Some(StorageSummary::Int8Static {
                weights,
                activations,
                clips: *clips,
            })
        }
    };
    let nodes = model.graph.as_ref().map_or(0, |g| g.node.len());
    let bytes = model.encode_to_vec();
    let summary = ExportSummary {
        path: PathBuf::new(),
        bytes: bytes.len(),
        nodes,
        metadata,
        storage,
    };
    Ok((bytes, summary))
}

/// `count` clips spread evenly over the training list of the run in `run_dir` (all of them when
/// it is shorter), in list order: where `--int8` calibrates.
pub fn calibration_clips(run_dir: &Path, count: usize) -> Result<Vec<PathBuf>, ExportError> {
    let c = read_config(run_dir)?;
    let opts = LoadOptions {
        fold: c.fold,
        train_list: c.train_list.clone(),
        ..LoadOptions::default()
    };
    let dataset = Dataset::open(&c.data, &opts)
        .map_err(|e| ExportError::Calibration(format!("{}: {e}", c.data.display())))?;
    let train: Vec<PathBuf> = dataset
        .train
        .iter()
        .map(|&i| dataset.clips[i].path.clone())
        .collect();
    if train.is_empty() || count == 0 {
        return Err(ExportError::Calibration(format!(
            "{}: no training clips to calibrate on",
            c.data.display()
        )));
    }
    Ok(spread(&train, count))
}

/// `count` items spread evenly over `list` (all of them when it is shorter), in list order.
fn spread(list: &[PathBuf], count: usize) -> Vec<PathBuf> {
    if list.len() <= count {
        return list.to_vec();
    }
    (0..count)
        .map(|i| list[i * list.len() / count].clone())
        .collect()
}

/// The metadata of a run's model: labels, front end and a training summary from the
/// checkpoint's state.
pub fn run_metadata(
    session: &Session,
    loaded: &checkpoint::Loaded,
    waveform: bool,
) -> Result<ModelMetadata, ExportError> {
    let c = &session.config;
    let clip_frames = c
        .clip_frames
        .or(c.crop_frames)
        .ok_or(ExportError::NoClipFrames)?;
    let train = &loaded.state["train"];
    let training = serde_json::json!({
        "data": c.data,
        "fold": c.fold,
        "seed": c.seed,
        "epochs": train["epochs_done"],
        "best_epoch": train["best_epoch"],
        "best_val_macro_accuracy": train["best_val_macro_accuracy"],
        "params": session.param_count(),
    });
    Ok(ModelMetadata {
        labels: c.labels.clone(),
        frontend: c.frontend.clone(),
        input: if waveform {
            InputKind::Waveform
        } else {
            InputKind::Logmel
        },
        clip_frames,
        model: c.model.name.clone(),
        norm: c.norm.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        training,
        devices: c.devices.clone().unwrap_or_default(),
    })
}

/// The whole graph: input (per `metadata.input`), optional front end, the network in eval
/// mode, softmax, and the metadata entries.
pub fn model_graph(session: &Session, metadata: &ModelMetadata) -> Result<OnnxGraph, ExportError> {
    let mut g = OnnxGraph::new();
    let n = Dim::Sym("N".into());
    let m = metadata.frontend.n_mels as i64;
    let logmel = match metadata.input {
        InputKind::Logmel => {
            g.add_input(
                "logmel",
                &[
                    n.clone(),
                    Dim::Fixed(1),
                    Dim::Fixed(m),
                    Dim::Sym("T".into()),
                ],
            );
            "logmel".to_string()
        }
        InputKind::Waveform => {
            g.add_input("waveform", &[n.clone(), Dim::Sym("S".into())]);
            let frontend = LogMel::new(metadata.frontend.clone())?;
            frontend::emit_logmel(&mut g, &frontend, "waveform")?
        }
    };
    let logits = session.model.emit_onnx(&mut g, &logmel)?;
    g.add_node_as("Softmax", &[&logits], vec![attr_int("axis", 1)], OUTPUT);
    g.add_output(OUTPUT, &[n, Dim::Fixed(metadata.labels.len() as i64)]);
    for (k, v) in metadata.to_props() {
        g.add_metadata(&k, &v);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_evenly_and_in_order() {
        let list: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}"))).collect();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.display().to_string()).collect()
        };
        assert_eq!(names(spread(&list, 4)), ["0", "2", "5", "7"]);
        assert_eq!(spread(&list, 20).len(), 10);
    }
}
