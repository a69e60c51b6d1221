//! A model's predictions on whole clips, and their metrics against the labels: what validation,
//! `asc evaluate` and `asc compare` score with.

use super::augment::HostBatch;
use super::data::FeatureStore;
use super::data::Targets;
use super::error::TrainError;
use super::metrics::{self, Metrics, Scored};
use super::rundata::RunData;
use super::session::Session;
use candle_core::{DType, Device, Tensor, D};

/// A host batch as tensors on `device`: input (B, 1, mels, frames) and targets (B, classes).
pub(super) fn to_tensor(
    batch: &HostBatch,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice(&batch.x, (batch.b, 1, batch.m, batch.t), device)?;
    let k = batch.y.len() / batch.b;
    let y = Tensor::from_slice(&batch.y, (batch.b, k), device)?;
    Ok((x, y))
}

/// Class probabilities of `clips` (whole clips, batched by equal length), in order.
pub fn predict(
    session: &Session,
    store: &FeatureStore,
    clips: &[usize],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let k = session.config.labels.len();
    let mut out = vec![Vec::new(); clips.len()];
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (pos, &c) in clips.iter().enumerate() {
        by_len.entry(store.frames(c)).or_default().push(pos);
    }
    for (frames, positions) in by_len {
        for chunk in positions.chunks(batch_size.max(1)) {
            let ids: Vec<usize> = chunk.iter().map(|&p| clips[p]).collect();
            let batch = store.batch(
                &ids,
                Targets {
                    labels: &vec![0; ids.len()],
                    n_classes: k,
                    teacher: None,
                },
                frames,
                None,
                None,
                None,
            )?;
            let (x, _) = to_tensor(&batch, &session.device)?;
            let logits = session.model.forward_t(&x, false)?.detach();
            let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_dtype(DType::F32)?;
            for (row, &p) in probs.to_vec2::<f32>()?.into_iter().zip(chunk) {
                out[p] = row;
            }
        }
    }
    Ok(out)
}

/// Metrics of `clips` against their labels.
pub fn score(
    session: &Session,
    data: &RunData,
    clips: &[usize],
    batch_size: usize,
) -> Result<Metrics, TrainError> {
    let probs = predict(session, &data.store, clips, batch_size)?;
    let targets = data.dataset.classes_of(clips)?;
    let items: Vec<Scored> = clips
        .iter()
        .zip(&probs)
        .zip(&targets)
        .map(|((&c, p), &t)| Scored {
            target: t,
            probs: p,
            device: data.dataset.clips[c].device.as_deref(),
        })
        .collect();
    Ok(metrics::score_items(&items, &session.config.labels))
}
