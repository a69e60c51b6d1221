//! Knowledge distillation from a teacher's logits (issue 19; the DCASE 2025 winners distil a
//! transformer ensemble into their small models): the logits file, read once into per-clip
//! soft targets, and the loss `λ·CE(y, s) + (1 − λ)·T²·KL(softmax(t/T) ‖ softmax(s/T))`.
//!
//! Two layouts are read (`docs/datasets.md`, "Teacher logits"):
//! - **Delimited text** (`.csv`, `.tsv`, anything else): a header row whose first column names
//!   the files and whose other columns are the class names, in any order (each class exactly
//!   once); then one row per clip, its file name as in `meta.csv` (`audio/x.wav`) or its base
//!   name, and one logit per class. Tab-separated when the header holds a tab, comma otherwise.
//! - **`.npy`**: a float32 or float64 matrix, one row per `meta.csv` row in file order and one
//!   column per class in alphabetical order: how the public DCASE ensembles' logits are indexed
//!   (their `.pt` tensors convert with `scripts/teacher_logits.py`).
//!
//! Every training clip needs a row; rows of other clips are ignored (a logits file covers the
//! whole development set).

use crate::dataset::Dataset;
use crate::error::FileError;
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The distillation settings of a run (`config.json`'s `distill`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The teacher's logits file.
    pub teacher_logits: PathBuf,
    /// Weight λ of the label loss; the distillation term gets 1 − λ. 0.02 is the value of
    /// CP-JKU's DCASE 2023 training script, whose KL term is averaged over classes as well as
    /// examples (`.mean()`), i.e. 1/C of this one: `--kd-lambda 0.17` gives their balance at 10
    /// classes (`docs/datasets.md`, "Teacher logits").
    #[serde(default = "DistillConfig::default_lambda")]
    pub lambda: f64,
    /// Temperature T of both softmaxes; the term is scaled by T² so its gradients keep their
    /// size as T changes (Hinton et al.). CP-JKU's recipes use 2.
    #[serde(default = "DistillConfig::default_temperature")]
    pub temperature: f64,
}

impl DistillConfig {
    pub fn default_lambda() -> f64 {
        0.02
    }

    pub fn default_temperature() -> f64 {
        2.0
    }

    pub fn new(teacher_logits: PathBuf) -> Self {
        Self {
            teacher_logits,
            lambda: Self::default_lambda(),
            temperature: Self::default_temperature(),
        }
    }

    /// λ in [0, 1] and T > 0, or what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(format!(
                "distill.lambda must be in [0, 1], got {}",
                self.lambda
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "distill.temperature must be positive, got {}",
                self.temperature
            ));
        }
        Ok(())
    }
}

/// The teacher's soft targets softmax(logits / T) of the training clips, in the run's class
/// order.
#[derive(Debug)]
pub struct Teacher {
    probs: HashMap<usize, Vec<f32>>,
}

impl Teacher {
    /// Reads `config.teacher_logits` for the clips `train` of `dataset`, with the run's classes
    /// `labels` (alphabetical). Fails naming the file, and the line or clip, on anything that does
    /// not fit.
    pub fn load(
        config: &DistillConfig,
        dataset: &Dataset,
        train: &[usize],
        labels: &[String],
    ) -> Result<Self, FileError> {
        let path = &config.teacher_logits;
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let logits = if is_npy {
            read_npy(path, dataset, labels.len())?
        } else {
            read_table(path, dataset, labels)?
        };
        let mut probs = HashMap::new();
        let mut missing = Vec::new();
        for &clip in train {
            match logits.get(&clip) {
                Some(row) => {
                    probs.insert(clip, softmax(row, config.temperature));
                }
                None => missing.push(dataset.clips[clip].filename.as_str()),
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(3).copied().collect();
            return Err(FileError::new(
                path,
                format!(
                    "no teacher logits for {} of the {} training clips (e.g. {})",
                    missing.len(),
                    train.len(),
                    shown.join(", ")
                ),
            ));
        }
        Ok(Self { probs })
    }

    /// The soft targets of `clips`, one row each, concatenated.
    pub fn targets(&self, clips: &[usize]) -> Vec<f32> {
        clips
            .iter()
            .flat_map(|c| self.probs[c].iter().copied())
            .collect()
    }
}

/// softmax(z / T) in f64.
fn softmax(z: &[f32], t: f64) -> Vec<f32> {
    let max = z
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 / t - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| (v / sum) as f32).collect()
}

/// Logits of every clip of `dataset` found in a delimited table, by clip index.
fn read_table(
    path: &Path,
    dataset: &Dataset,
    labels: &[String],
) -> Result<HashMap<usize, Vec<f32>>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e.to_string()))?;
    let at = |line: usize, what: String| FileError::new(path, format!("line {line}: {what}"));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(FileError::new(
            path,
            "empty: expected a header row".to_string(),
        ));
    };
    let sep = if header.contains('\t') { '\t' } else { ',' };
    let columns: Vec<&str> = header.split(sep).map(str::trim).skip(1).collect();
    let column_of_class = class_columns(&columns, labels).map_err(|e| at(1, e))?;
    let by_name = clip_names(dataset);
    let mut logits = HashMap::new();
    for (n, line) in lines {
        let line_no = n + 1;
        let fields: Vec<&str> = line.split(sep).map(str::trim).collect();
        if fields.len() != columns.len() + 1 {
            return Err(at(
                line_no,
                format!(
                    "{} fields, the header has {}",
                    fields.len(),
                    columns.len() + 1
                ),
            ));
        }
        let values = fields[1..]
            .iter()
            .map(|f| match f.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(at(line_no, format!("{f:?} is not a finite number"))),
            })
            .collect::<Result<Vec<f32>, _>>()?;
        if let Some(clip) = by_name.lookup(fields[0]) {
            let row = column_of_class.iter().map(|&c| values[c]).collect();
            if logits.insert(clip, row).is_some() {
                return Err(at(line_no, format!("a second row for {}", fields[0])));
            }
        }
    }
    Ok(logits)
}

/// For each class of `labels`, its column among `columns`; every class exactly once.
fn class_columns(columns: &[&str], labels: &[String]) -> Result<Vec<usize>, String> {
    if columns.len() != labels.len() {
        return Err(format!(
            "{} class columns, the data set has {} classes ({})",
            columns.len(),
            labels.len(),
            labels.join(", ")
        ));
    }
    labels
        .iter()
        .map(|l| {
            columns.iter().position(|c| c == l).ok_or_else(|| {
                format!(
                    "no column for class {l:?} (columns: {})",
                    columns.join(", ")
                )
            })
        })
        .collect()
}

/// Clip indices by listed file name and by base name (a base name shared by two clips is
/// matched by the full name only).
struct ClipNames {
    full: HashMap<String, usize>,
    base: HashMap<String, Option<usize>>,
}

impl ClipNames {
    fn lookup(&self, name: &str) -> Option<usize> {
        self.full
            .get(name)
            .copied()
            .or_else(|| self.base.get(base_name(name)).copied().flatten())
    }
}

fn clip_names(dataset: &Dataset) -> ClipNames {
    let mut full = HashMap::new();
    let mut base: HashMap<String, Option<usize>> = HashMap::new();
    for (i, clip) in dataset.clips.iter().enumerate() {
        full.insert(clip.filename.clone(), i);
        base.entry(base_name(&clip.filename).to_string())
            .and_modify(|e| *e = None)
            .or_insert(Some(i));
    }
    ClipNames { full, base }
}

fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Logits from an `.npy` matrix whose rows are the data set's clips in list order.
fn read_npy(
    path: &Path,
    dataset: &Dataset,
    n_classes: usize,
) -> Result<HashMap<usize, Vec<f32>>, FileError> {
    use ndarray::Array2;
    use ndarray_npy::ReadNpyExt;
    let open = || std::fs::File::open(path).map_err(|e| FileError::new(path, e.to_string()));
    let matrix: Array2<f32> = match Array2::<f32>::read_npy(open()?) {
        Ok(m) => m,
        Err(_) => Array2::<f64>::read_npy(open()?)
            .map_err(|e| FileError::new(path, format!("not a float 2-D .npy matrix: {e}")))?
            .mapv(|v| v as f32),
    };
    let (rows, cols) = matrix.dim();
    if rows != dataset.clips.len() || cols != n_classes {
        return Err(FileError::new(
            path,
            format!(
                "a {rows} x {cols} matrix; expected one row per meta.csv row and one column per \
                 class: {} x {n_classes}",
                dataset.clips.len()
            ),
        ));
    }
    if let Some(bad) = matrix.iter().position(|v| !v.is_finite()) {
        return Err(FileError::new(
            path,
            format!("row {}: a value that is not finite", bad / cols),
        ));
    }
    Ok(matrix
        .outer_iter()
        .enumerate()
        .map(|(i, row)| (i, row.to_vec()))
        .collect())
}

/// `λ·CE(targets, s) + (1 − λ)·T²·KL(teacher ‖ softmax(s/T))`, each term averaged over the
/// batch (PyTorch's `kl_div(..., reduction="batchmean")`); `targets` and `teacher` are
/// distributions (mixup mixes both alike).
pub fn distillation_loss(
    logits: &Tensor,
    targets: &Tensor,
    teacher: &Tensor,
    config: &DistillConfig,
) -> candle_core::Result<Tensor> {
    let (lambda, t) = (config.lambda, config.temperature);
    let ce = super::epoch::soft_cross_entropy(logits, targets)?;
    let log_p = candle_nn::ops::log_softmax(&(logits / t)?, D::Minus1)?;
    // q·ln q with 0·ln 0 = 0: a constant of the teacher, so that the term is the KL divergence
    // (≥ 0, 0 when the student matches) and not just a cross-entropy.
    let log_q = teacher.clamp(f32::MIN_POSITIVE, 1.0)?.log()?;
    let kl = (teacher * (log_q - log_p)?)?.sum(D::Minus1)?.mean_all()?;
    (ce * lambda)? + (kl * ((1.0 - lambda) * t * t))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_at_a_temperature() {
        let p = softmax(&[1.0, 2.0, 3.0], 2.0);
        let e: Vec<f64> = [0.5f64, 1.0, 1.5].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        for (a, b) in p.iter().zip(&e) {
            assert!((*a as f64 - b / s).abs() < 1e-7);
        }
    }

    /// Teacher targets, loss and its gradient with respect to the student's logits against
    /// PyTorch in float64 (tests/fixtures/gen_distill.py), for λ from 0 to 1 and T from 1 to 4.
    #[test]
    fn loss_and_gradient_match_pytorch() {
        use candle_core::{Device, Var};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/distill/loss.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vec = |v: &serde_json::Value| -> Vec<f32> {
            serde_json::from_value::<Vec<f64>>(v.clone())
                .unwrap()
                .iter()
                .map(|&x| x as f32)
                .collect()
        };
        for case in fixture["cases"].as_array().unwrap() {
            let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).unwrap();
            let config = DistillConfig {
                teacher_logits: PathBuf::new(),
                lambda: case["lambda"].as_f64().unwrap(),
                temperature: case["temperature"].as_f64().unwrap(),
            };
            let k = shape[1];
            let teacher = vec(&case["teacher_logits"]);
            let q: Vec<f32> = teacher
                .chunks(k)
                .flat_map(|row| softmax(row, config.temperature))
                .collect();
            for (a, b) in q.iter().zip(vec(&case["teacher_probs"])) {
                assert!((a - b).abs() < 1e-6, "teacher probability {a} vs {b}");
            }
            let dev = Device::Cpu;
            let s = Var::from_vec(vec(&case["student"]), shape.clone(), &dev).unwrap();
            let y = Tensor::from_vec(vec(&case["targets"]), shape.clone(), &dev).unwrap();
            let q = Tensor::from_vec(q, shape.clone(), &dev).unwrap();
            let loss = distillation_loss(s.as_tensor(), &y, &q, &config).unwrap();
            let want = case["loss"].as_f64().unwrap();
            let got = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
            let grads = loss.backward().unwrap();
            let grad = grads
                .get(&s)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (a, b) in grad.iter().zip(vec(&case["grad"])) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "gradient {a} vs {b} (λ {})",
                    config.lambda
                );
            }
        }
    }

    #[test]
    fn columns_are_matched_by_class_name() {
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(class_columns(&["c", "a", "b"], &labels).unwrap(), [1, 2, 0]);
        assert!(class_columns(&["a", "b"], &labels)
            .unwrap_err()
            .contains("3 classes"));
        let err = class_columns(&["a", "b", "d"], &labels).unwrap_err();
        assert!(err.contains("\"c\""), "{err}");
    }
}
