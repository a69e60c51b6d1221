//! Inference with tract (`asc classify` and the embedding API): load an exported `.onnx` once,
//! read what it is from its metadata, and classify files, folders or sample buffers. Long
//! recordings are cut into windows of the training clip length; each window gets scores and the
//! file gets their mean.

pub mod calibrate;
mod conv_op;
pub mod devices;
pub mod fidelity;
mod format;
mod windows;

pub use conv_op::ConvKernel;
pub use format::{render, Format, Outcome, FORMAT_NAMES};
pub use windows::{window_starts, Window};

use crate::error::FileError;
use crate::features::{LogMel, Spectrogram};
use crate::onnx::metadata::{InputKind, ModelMetadata};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// Scores for one window of a recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowScores {
    /// Start and end of the window in seconds.
    pub start: f64,
    pub end: f64,
    pub label: String,
    /// One probability per class, in [`Classifier::labels`] order.
    pub scores: Vec<f32>,
}

/// The result for one recording: the mean of its windows' probabilities and its argmax.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub label: String,
    pub scores: Vec<f32>,
    pub windows: Vec<WindowScores>,
}

impl Prediction {
    /// The `k` best (label, score) pairs, best first.
    pub fn top_k<'a>(&self, labels: &'a [String], k: usize) -> Vec<(&'a str, f32)> {
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        order
            .into_iter()
            .take(k)
            .map(|i| (labels[i].as_str(), self.scores[i]))
            .collect()
    }
}

/// Why a model could not be loaded or an input not classified.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Resample(#[from] crate::audio::ResampleError),
    #[error("no samples to classify")]
    NoSamples,
    #[error("this model takes waveforms; use classify_samples")]
    TakesWaveforms,
    #[error("spectrograms of one batch must have the same size")]
    MixedSizes,
    #[error("the model needs {need} mel bands, got {got}")]
    MelBands { need: usize, got: usize },
    /// tract failed on a step of running the graph (`step` says which).
    #[error("{step}: {reason}")]
    Runtime { step: &'static str, reason: String },
}

type Plan = Arc<TypedRunnableModel>;

/// A loaded model, ready to classify. `Sync`: share one across threads; optimised plans are
/// built once per input shape and cached (concrete shapes run faster in tract,
/// docs/architecture.md).
pub struct Classifier {
    path: PathBuf,
    meta: ModelMetadata,
    frontend: LogMel,
    model: InferenceModel,
    conv: ConvKernel,
    plans: Mutex<HashMap<Vec<usize>, Plan>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Classifier {
    /// Loads an `.onnx` written by `asc export`. A truncated or malformed file, or one whose
    /// metadata lacks what classification needs (labels, front end), is refused with the reason.
    pub fn from_onnx(path: impl AsRef<Path>) -> Result<Self, InferError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| FileError::new(path, e.to_string()))?;
        Self::from_bytes(path, &bytes)
    }

    /// [`Classifier::from_onnx`] on bytes already in memory; `path` names them in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, InferError> {
        let bad = |why: String| InferError::File(FileError::new(path, why));
        let proto = tract_onnx::pb::ModelProto::decode(bytes)
            .map_err(|e| bad(format!("not an ONNX model ({e})")))?;
        if proto.graph.is_none() {
            return Err(bad("not an ONNX model (no graph)".into()));
        }
        let props: Vec<(String, String)> = proto
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let meta = ModelMetadata::from_props(&props).map_err(|e| bad(e.to_string()))?;
        let frontend = LogMel::new(meta.frontend.clone()).map_err(|e| bad(e.to_string()))?;
        let model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(|e| bad(format!("tract cannot load the graph: {e:#}")))?;
        if model.input_outlets().map_or(0, |o| o.len()) != 1 {
            return Err(bad("the graph must have exactly one input".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            meta,
            frontend,
            model,
            conv: ConvKernel::from_env(),
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The same model with its convolutions run by `conv` (`ASC_TRACT_CONV` chose at loading;
    /// `conv_op`'s module doc says which convolutions ours takes).
    pub fn with_conv_kernel(mut self, conv: ConvKernel) -> Self {
        self.conv = conv;
        self.plans = Mutex::new(HashMap::new());
        self
    }

    /// How many convolutions and pools our kernels run in the plan for an input of `shape`: a
    /// check that the swap happened, for tests and benchmarks.
    pub fn own_convs(&self, shape: &[usize]) -> Result<usize, InferError> {
        let plan = self.plan(shape)?;
        Ok(plan
            .model()
            .nodes()
            .iter()
            .filter(|n| n.op_is::<conv_op::OwnConv>())
            .count())
    }

    /// Class names in score order.
    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// Everything the model says about itself.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// The sample rate the model expects; [`Classifier::classify_samples`] resamples to it.
    pub fn sample_rate(&self) -> u32 {
        self.meta.frontend.sr
    }

    /// Classifies a WAV file (decoded, downmixed and resampled as in training).
    pub fn classify_file(&self, path: impl AsRef<Path>) -> Result<Prediction, InferError> {
        let path = path.as_ref();
        let (samples, _) = crate::audio::load_mono(path, Some(self.sample_rate()))?;
        self.classify_at_model_rate(&samples).map_err(|e| match e {
            InferError::File(e) => InferError::File(e),
            other => InferError::File(FileError::new(path, other.to_string())),
        })
    }

    /// Classifies mono samples at `sample_rate` (resampled to the model's rate if needed).
    pub fn classify_samples(
        &self,
        samples: &[f32],
        sample_rate: u32,
    ) -> Result<Prediction, InferError> {
        let samples = crate::audio::resample(samples, sample_rate, self.sample_rate())?;
        self.classify_at_model_rate(&samples)
    }

    fn classify_at_model_rate(&self, samples: &[f32]) -> Result<Prediction, InferError> {
        if samples.is_empty() {
            return Err(InferError::NoSamples);
        }
        let hop = self.meta.frontend.hop_length;
        let (batch, windows) = self.input_batch(samples);
        let probs = self.run(batch)?;
        let k = self.meta.labels.len();
        let sr = self.sample_rate() as f64;
        let windows: Vec<WindowScores> = windows
            .iter()
            .zip(probs.chunks(k))
            .map(|(w, p)| WindowScores {
                start: (w.start * hop) as f64 / sr,
                end: ((w.start + w.len) * hop).min(samples.len()) as f64 / sr,
                label: self.meta.labels[argmax(p)].clone(),
                scores: p.to_vec(),
            })
            .collect();
        let mut scores = vec![0f32; k];
        for w in &windows {
            for (s, p) in scores.iter_mut().zip(&w.scores) {
                *s += p / windows.len() as f32;
            }
        }
        Ok(Prediction {
            label: self.meta.labels[argmax(&scores)].clone(),
            scores,
            windows,
        })
    }

    /// The graph's input for mono samples at the model's rate: one row per window.
    pub(crate) fn input_batch(&self, samples: &[f32]) -> (Tensor, Vec<Window>) {
        // The frame count follows from the length alone; a waveform model computes its own
        // log-mel inside the graph, so only a log-mel model needs the front end here.
        let frames = self.meta.frontend.frames(samples.len());
        let windows = window_starts(frames, self.meta.clip_frames);
        let batch = match self.meta.input {
            InputKind::Logmel => self.logmel_batch(&self.frontend.compute(samples), &windows),
            InputKind::Waveform => self.waveform_batch(samples, &windows),
        };
        (batch, windows)
    }

    /// Every output of the graph for each row of `input`, run one row at a time: (rows ×
    /// outputs) flat float32 values. What calibration reads intermediate values with.
    pub(crate) fn run_all_outputs(&self, input: &Tensor) -> Result<Vec<Vec<Vec<f32>>>, InferError> {
        let n = input.shape().first().copied().unwrap_or(1);
        (0..n)
            .map(|i| {
                let one = input
                    .slice(0, i, i + 1)
                    .map_err(|e| runtime("batch slice", e))?;
                let plan = self.plan(one.shape())?;
                let out = plan
                    .run(tvec!(one.into()))
                    .map_err(|e| runtime("inference failed", e))?;
                out.iter()
                    .map(|t| {
                        let view = t
                            .to_plain_array_view::<f32>()
                            .map_err(|e| runtime("unexpected model output", e))?;
                        Ok(view.iter().copied().collect())
                    })
                    .collect()
            })
            .collect()
    }

    /// Class probabilities of log-mel spectrograms already computed with the model's front end
    /// (`logmel` models only), each classified whole, in one batch: all must have the same
    /// size. One row of probabilities per spectrogram.
    pub fn classify_spectrograms(
        &self,
        specs: &[Spectrogram],
    ) -> Result<Vec<Vec<f32>>, InferError> {
        if self.meta.input != InputKind::Logmel {
            return Err(InferError::TakesWaveforms);
        }
        let Some(first) = specs.first() else {
            return Ok(Vec::new());
        };
        if specs
            .iter()
            .any(|s| (s.n_mels, s.frames) != (first.n_mels, first.frames))
        {
            return Err(InferError::MixedSizes);
        }
        if first.n_mels != self.meta.frontend.n_mels {
            return Err(InferError::MelBands {
                need: self.meta.frontend.n_mels,
                got: first.n_mels,
            });
        }
        let (m, t) = (first.n_mels, first.frames);
        let mut x = Vec::with_capacity(specs.len() * m * t);
        for s in specs {
            x.extend_from_slice(&s.data);
        }
        let input = tract_ndarray::Array4::from_shape_vec((specs.len(), 1, m, t), x)
            .expect("sizes agree")
            .into_tensor();
        let k = self.meta.labels.len();
        Ok(self.run(input)?.chunks(k).map(<[f32]>::to_vec).collect())
    }

    /// (N, 1, M, W) windows of the spectrogram; a recording shorter than its window (only below
    /// [`windows::MIN_FRAMES`]) is tiled, as the trainer tiles short clips.
    fn logmel_batch(&self, spec: &Spectrogram, windows: &[Window]) -> Tensor {
        let (m, w) = (spec.n_mels, windows.first().map_or(0, |w| w.len));
        let mut x = vec![0f32; windows.len() * m * w];
        for (b, win) in windows.iter().enumerate() {
            for f in 0..m {
                let row = &spec.data[f * spec.frames..(f + 1) * spec.frames];
                let dst = &mut x[(b * m + f) * w..(b * m + f + 1) * w];
                for (t, v) in dst.iter_mut().enumerate() {
                    *v = row[(win.start + t) % spec.frames];
                }
            }
        }
        tract_ndarray::Array4::from_shape_vec((windows.len(), 1, m, w), x)
            .expect("sizes agree")
            .into_tensor()
    }

    /// (N, S) sample windows matching the frame windows: `(W − 1) · hop` samples give W frames;
    /// a recording that is one window is passed whole (its frames are exactly the window's).
    fn waveform_batch(&self, samples: &[f32], windows: &[Window]) -> Tensor {
        let hop = self.meta.frontend.hop_length;
        let whole =
            windows.len() == 1 && self.meta.frontend.frames(samples.len()) == windows[0].len;
        let len = if whole {
            samples.len()
        } else {
            windows.first().map_or(1, |w| (w.len - 1) * hop).max(1)
        };
        let mut x = vec![0f32; windows.len() * len];
        for (b, win) in windows.iter().enumerate() {
            let start = win.start * hop;
            for (t, v) in x[b * len..(b + 1) * len].iter_mut().enumerate() {
                *v = samples[(start + t) % samples.len()];
            }
        }
        tract_ndarray::Array2::from_shape_vec((windows.len(), len), x)
            .expect("sizes agree")
            .into_tensor()
    }

    /// Runs the graph on one input tensor and returns the probabilities, row-major.
    /// A batch runs as single examples, in parallel over rayon's threads: tract's convolutions
    /// im2col the whole batch at once, which at batch 32 of a 10 s clip means gigabytes and was
    /// 6× slower per example than batch 1 (`cargo bench --bench infer`).
    fn run(&self, input: Tensor) -> Result<Vec<f32>, InferError> {
        let n = input.shape().first().copied().unwrap_or(1);
        if n <= 1 {
            // Our convolutions hand their rows to rayon. Called from a thread outside rayon's
            // pool, every op would hand them over and wait for a worker to wake (CP-Mobile has
            // 19 such ops: ~0.5 ms of a 1.3 ms clip); on a worker they run in place.
            return rayon::scope(|_| self.run_one(input));
        }
        use rayon::prelude::*;
        let rows: Vec<Vec<f32>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let one = input
                    .slice(0, i, i + 1)
                    .map_err(|e| runtime("batch slice", e))?;
                self.run_one(one)
            })
            .collect::<Result<_, _>>()?;
        Ok(rows.concat())
    }

    fn run_one(&self, input: Tensor) -> Result<Vec<f32>, InferError> {
        let plan = self.plan(input.shape())?;
        let out = plan
            .run(tvec!(input.into()))
            .map_err(|e| runtime("inference failed", e))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| runtime("unexpected model output", e))?;
        Ok(view.iter().copied().collect())
    }

    fn plan(&self, shape: &[usize]) -> Result<Plan, InferError> {
        if let Some(p) = self.plans.lock().expect("plan cache").get(shape) {
            return Ok(p.clone());
        }
        let runtime = |e: TractError| {
            InferError::File(FileError::new(
                &self.path,
                format!("cannot run the graph on input {shape:?}: {e:#}"),
            ))
        };
        let plan = optimized_plan(&self.model, shape, self.conv).map_err(runtime)?;
        self.plans
            .lock()
            .expect("plan cache")
            .insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }
}

/// The runnable plan of `model` for an input of `shape`, its convolutions run by `conv`: swap
/// in ours for 1×1 convs, declutter, swap in ours for the other convs and the pools, optimise.
/// After decluttering a convolution is still one `Conv` node with its padding and BN folded in;
/// optimising would lower it to im2col. Public for `examples/tract_profile.rs`, which must
/// profile the plan `Classifier` runs.
pub fn optimized_plan(
    model: &InferenceModel,
    shape: &[usize],
    conv: ConvKernel,
) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = model
        .clone()
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?;
    if conv != ConvKernel::Tract {
        // Before decluttering, which turns 1×1 convs into einsums (their bias, folded BN, is
        // still being computed then: the op takes it as an input).
        conv_op::swap_pointwise(&mut model, crate::kernels::Isa::active())?;
    }
    let mut model = model.into_decluttered()?;
    if conv != ConvKernel::Tract {
        let winograd = conv == ConvKernel::Own;
        conv_op::swap_convs(&mut model, crate::kernels::Isa::active(), winograd)?;
    }
    model.into_optimized()?.into_runnable()
}

/// A tract failure at `step`, with its whole cause chain.
fn runtime(step: &'static str, e: TractError) -> InferError {
    InferError::Runtime {
        step,
        reason: format!("{e:#}"),
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// Classifies many files in parallel (rayon over files), in input order; `on_done` runs once
/// per finished file (a progress bar). A file that fails does not stop the others.
pub fn classify_all(
    classifier: &Classifier,
    paths: &[PathBuf],
    on_done: &(dyn Fn() + Sync),
) -> Vec<format::Outcome> {
    classify_all_with(paths, &|_| Ok(classifier), on_done)
}

/// [`classify_all`] with the model chosen per file by `pick` (a device's own model, say); a
/// file `pick` refuses fails alone.
pub fn classify_all_with<'a>(
    paths: &[PathBuf],
    pick: &(dyn Fn(&Path) -> Result<&'a Classifier, InferError> + Sync),
    on_done: &(dyn Fn() + Sync),
) -> Vec<format::Outcome> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(|p| {
            let r = pick(p).and_then(|c| c.classify_file(p));
            on_done();
            (p.clone(), r)
        })
        .collect()
}
