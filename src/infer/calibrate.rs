//! Post-training calibration for static int8 quantisation (`asc export --int8`): the range of
//! every activation that a convolution or dense layer reads, observed by running the float
//! model on clips, as tract runs it for `asc classify` (same front end, same windows).

use super::{Classifier, InferError};
use crate::error::FileError;
use crate::export::{self, ExportError, ExportOptions, WeightStorage};
use crate::onnx::precision::{activation_inputs, with_outputs, ActivationRange};
use prost::Message;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::Tensor;

/// The min and max of each activation that [`activation_inputs`] names, over every window of
/// `clips` run through `model` (float32, any compact weights already applied or not).
/// `on_done` runs once per clip (a progress bar). A clip that cannot be read fails the
/// calibration, naming it.
pub fn activation_ranges(
    model: &pb::ModelProto,
    clips: &[PathBuf],
    on_done: &(dyn Fn() + Sync),
) -> Result<Vec<ActivationRange>, InferError> {
    let probe = Probe::new(model)?;
    let per_clip = |path: &PathBuf| -> Result<Vec<(f32, f32)>, InferError> {
        let rate = probe.classifier.sample_rate();
        let (samples, _) = crate::audio::load_mono(path, Some(rate))?;
        if samples.is_empty() {
            return Err(FileError::new(path, "no samples").into());
        }
        let (batch, _) = probe.classifier.input_batch(&samples);
        let ranges = probe
            .ranges(&batch)
            .map_err(|e| FileError::new(path, e.to_string()))?;
        on_done();
        Ok(ranges)
    };
    let per_clip: Vec<_> = clips.par_iter().map(per_clip).collect::<Result<_, _>>()?;
    Ok(probe.merged(per_clip))
}

/// [`activation_ranges`] over input batches already made (the graph's input: log-mel windows,
/// or samples for a waveform model), for callers without audio files.
pub fn activation_ranges_of(
    model: &pb::ModelProto,
    batches: &[Tensor],
) -> Result<Vec<ActivationRange>, InferError> {
    let probe = Probe::new(model)?;
    let per_batch: Vec<_> = batches
        .iter()
        .map(|b| probe.ranges(b))
        .collect::<Result<_, _>>()?;
    Ok(probe.merged(per_batch))
}

/// The model with the activations as extra outputs.
struct Probe {
    classifier: Classifier,
    names: Vec<String>,
    /// Index of the first extra output.
    first_extra: usize,
}

impl Probe {
    fn new(model: &pb::ModelProto) -> Result<Self, InferError> {
        let names = activation_inputs(model);
        let probe = with_outputs(model, &names);
        let bytes = probe.encode_to_vec();
        let classifier = Classifier::from_bytes(Path::new("calibration.onnx"), &bytes)?
            .with_conv_kernel(super::ConvKernel::Tract);
        let first_extra = probe.graph.as_ref().map_or(0, |g| g.output.len()) - names.len();
        Ok(Self {
            classifier,
            names,
            first_extra,
        })
    }

    /// (min, max) of each activation over the rows of `batch`.
    fn ranges(&self, batch: &Tensor) -> Result<Vec<(f32, f32)>, InferError> {
        let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); self.names.len()];
        for row in self.classifier.run_all_outputs(batch)? {
            for (r, values) in ranges.iter_mut().zip(&row[self.first_extra..]) {
                for &v in values {
                    *r = (r.0.min(v), r.1.max(v));
                }
            }
        }
        Ok(ranges)
    }

    fn merged(self, parts: Vec<Vec<(f32, f32)>>) -> Vec<ActivationRange> {
        let mut merged = vec![(f32::INFINITY, f32::NEG_INFINITY); self.names.len()];
        for ranges in parts {
            for (m, r) in merged.iter_mut().zip(ranges) {
                *m = (m.0.min(r.0), m.1.max(r.1));
            }
        }
        self.names
            .into_iter()
            .zip(merged)
            .filter(|(_, (lo, hi))| lo.is_finite() && hi.is_finite())
            .map(|(name, (min, max))| ActivationRange { name, min, max })
            .collect()
    }
}

/// The activation ranges of the run in `run_dir` exported in float32 (`opts`' other settings
/// kept), measured on `count` clips of its training list: what `--int8` quantises with.
/// Returns the ranges and the number of clips.
pub fn calibrate_run(
    run_dir: &Path,
    opts: &ExportOptions,
    count: usize,
    on_done: &(dyn Fn() + Sync),
) -> Result<(Vec<ActivationRange>, usize), ExportError> {
    let clips = export::calibration_clips(run_dir, count)?;
    let float = ExportOptions {
        storage: WeightStorage::F32,
        ..opts.clone()
    };
    let (bytes, _) = export::export_bytes(run_dir, &float)?;
    let model = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| ExportError::Calibration(e.to_string()))?;
    let ranges = activation_ranges(&model, &clips, on_done)
        .map_err(|e| ExportError::Calibration(e.to_string()))?;
    Ok((ranges, clips.len()))
}
