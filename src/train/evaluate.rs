//! `asc evaluate`: the best model of a run on a split, written as `metrics.json`,
//! `confusion.csv` and `confusion.png` in the run folder.

use super::error::TrainError;
use super::metrics::Metrics;
use super::predict::score;
use super::rundata::RunData;
use super::session::{read_config, Session};
use crate::dataset::Split;
use crate::features::LogMel;
use crate::fsutil::write_atomic;
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Evaluates `run_dir`'s best checkpoint on `split` of the run's data set (or of `data`).
pub fn evaluate_run(
    run_dir: &Path,
    data: Option<PathBuf>,
    split: Split,
    device: Device,
) -> Result<Metrics, TrainError> {
    let mut config = read_config(run_dir)?;
    if let Some(d) = data {
        config.data = d;
    }
    let frontend = LogMel::new(config.frontend.clone())?;
    let data = RunData::open(&config, &frontend)?;
    if data.dataset.labels.names() != config.labels.as_slice() {
        return Err(TrainError::ClassMismatch {
            data: data.dataset.labels.names().to_vec(),
            model: config.labels,
        });
    }
    let session = Session::build(config.clone(), device)?;
    session.load_weights(&run_dir.join("best.safetensors"))?;
    let clips = data.dataset.split(split).to_vec();
    if clips.is_empty() {
        return Err(TrainError::EmptyList(split.name()));
    }
    let metrics = score(&session, &data, &clips, config.batch_size)?;
    let json = serde_json::to_vec_pretty(&metrics)?;
    write_atomic(&run_dir.join("metrics.json"), &json)?;
    write_atomic(
        &run_dir.join("confusion.csv"),
        confusion_csv(&metrics).as_bytes(),
    )?;
    super::plot::confusion(&run_dir.join("confusion.png"), &metrics)?;
    Ok(metrics)
}

/// Rows: true class; columns: predicted class; counts.
pub fn confusion_csv(m: &Metrics) -> String {
    let mut out = format!("true\\predicted,{}\n", m.labels.join(","));
    for (label, row) in m.labels.iter().zip(&m.confusion) {
        let cells: Vec<String> = row.iter().map(|n| n.to_string()).collect();
        out.push_str(&format!("{label},{}\n", cells.join(",")));
    }
    out
}
