//! One epoch of training: the optimiser steps over the sampler's batches, then the validation
//! (and, when watched, test) figures that make the epoch's record. Kept apart from the run
//! (`run.rs`), which decides what happens between epochs: selection, checkpoints, resumption.

use super::data::{Responses, Targets};
use super::error::TrainError;
use super::metrics::Metrics;
use super::optim::Optimizer;
use super::parallel::Parallel;
use super::predict::{score, to_tensor};
use super::rundata::RunData;
use super::session::Session;
use super::state::{EpochRecord, TrainState};
use super::teacher::distillation_loss;
use crate::dataset::rng::{mix64, SplitMix64};
use crate::dataset::BatchSampler;
use crate::nn::ops::{synchronised, BatchRows, SumAcross};
use candle_core::{Tensor, D};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Cross-entropy against soft targets (mixup), averaged over the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// What every epoch of one invocation works on; built once by the run so that an epoch is a
/// function of this, the optimiser and the state alone (which is what makes resumption exact).
pub(super) struct EpochPlan<'a> {
    pub session: &'a Session,
    pub data: &'a RunData,
    pub sampler: &'a dyn BatchSampler,
    /// The class of every training clip, by clip index.
    pub label_of: &'a HashMap<usize, usize>,
    /// Steps of the whole run, for the learning-rate schedule.
    pub total_steps: u64,
    /// Test clips scored after each epoch (empty: not watched).
    pub test_clips: &'a [usize],
    /// Named in the error of a non-finite loss.
    pub run_dir: &'a Path,
    pub quiet: bool,
    /// Append every step's clips and crop starts to [`TRACE_FILE`].
    pub trace_batches: bool,
    /// The ranks the batches are split over (one process by default).
    pub parallel: &'a Parallel,
}

/// Figures of one pass over the training batches.
#[derive(Default)]
struct EpochTotals {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    lr: f64,
}

/// Trains epoch `state.epochs_done` (advancing `state.step` only) and scores it. The record is
/// not yet in the state: keeping it is the run's decision ([`super::run`]).
pub(super) fn run_epoch(
    plan: &EpochPlan,
    optimizer: &mut Optimizer,
    state: &mut TrainState,
) -> Result<EpochRecord, TrainError> {
    let config = &plan.session.config;
    let epoch = state.epochs_done;
    let started = Instant::now();
    let per_epoch = plan.sampler.batches_per_epoch() as u64;
    let bar = if plan.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        crate::progress::bar(per_epoch, &format!("epoch {}/{}", epoch + 1, config.epochs))
    };
    let mut totals = EpochTotals::default();
    let mut trace = Vec::new();
    for batch_ids in plan.sampler.batches(epoch) {
        let step = state.step;
        let labels: Vec<usize> = batch_ids.iter().map(|i| plan.label_of[i]).collect();
        totals.lr = config.schedule.lr(config.lr, step, plan.total_steps);
        let step_in = StepInput {
            batch_ids: &batch_ids,
            labels: &labels,
            step,
            lr: totals.lr,
        };
        let (loss_value, correct, starts) =
            train_step(plan.session, plan.data, optimizer, plan.parallel, &step_in)
                .and_then(|(loss, correct, starts)| {
                    finite((loss, correct), step, epoch, state, plan.run_dir)
                        .map(|(l, c)| (l, c, starts))
                })
                .inspect_err(|_| bar.abandon())?;
        if plan.trace_batches {
            trace.push(traced(plan, epoch, step, &batch_ids, &starts));
        }
        totals.correct += correct;
        totals.seen += labels.len();
        totals.loss_sum += loss_value as f64 * labels.len() as f64;
        state.step += 1;
        bar.set_message(format!(
            "epoch {}/{} loss {:.3} acc {:.3}",
            epoch + 1,
            config.epochs,
            totals.loss_sum / totals.seen as f64,
            totals.correct as f64 / totals.seen as f64
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if plan.trace_batches {
        append_trace(plan.run_dir, &trace)?;
    }
    let clips_per_second = totals.seen as f64 / started.elapsed().as_secs_f64();
    let val = scored(plan, &plan.data.validation)?;
    let test = scored(plan, plan.test_clips)?;
    Ok(EpochRecord {
        epoch: epoch + 1,
        lr: totals.lr,
        train_loss: totals.loss_sum / totals.seen.max(1) as f64,
        train_accuracy: totals.correct as f64 / totals.seen.max(1) as f64,
        val_loss: val.as_ref().map(|m| m.log_loss),
        val_accuracy: val.as_ref().map(|m| m.accuracy),
        val_macro_accuracy: val.as_ref().map(|m| m.macro_accuracy),
        test_loss: test.as_ref().map(|m| m.log_loss),
        test_accuracy: test.as_ref().map(|m| m.accuracy),
        test_macro_accuracy: test.as_ref().map(|m| m.macro_accuracy),
        seconds: started.elapsed().as_secs_f64(),
        clips_per_second,
        build: Some(build_line()),
    })
}

/// [`crate::BUILD`] with the kernel path and thread count that computed an epoch.
fn build_line() -> String {
    format!(
        "asc {}, {} kernels, {} threads",
        crate::BUILD,
        crate::kernels::Isa::active().name(),
        rayon::current_num_threads()
    )
}

/// File of `--trace-batches`: one JSON line per step, its clips (by file name) in batch order
/// and where each crop starts, so that another trainer can replay the run batch by batch
/// (tests/fixtures/ref_train.py --lockstep).
pub const TRACE_FILE: &str = "batches.jsonl";

fn traced(
    plan: &EpochPlan,
    epoch: u64,
    step: u64,
    batch_ids: &[usize],
    starts: &[usize],
) -> String {
    let clips: Vec<&str> = batch_ids
        .iter()
        .map(|&i| plan.data.dataset.clips[i].filename.as_str())
        .collect();
    serde_json::json!({"epoch": epoch + 1, "step": step, "clips": clips, "starts": starts})
        .to_string()
}

/// Appends an epoch's trace lines. Written after the epoch, so a resumed run (which restarts
/// the epoch that was interrupted) does not repeat lines of the steps it trains again.
fn append_trace(run_dir: &Path, lines: &[String]) -> Result<(), TrainError> {
    use std::io::Write;
    let path = run_dir.join(TRACE_FILE);
    let io =
        |e: std::io::Error| TrainError::from(crate::error::FileError::new(&path, e.to_string()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    for line in lines {
        writeln!(f, "{line}").map_err(io)?;
    }
    Ok(())
}

/// Metrics of `clips`, or none for an empty list.
fn scored(plan: &EpochPlan, clips: &[usize]) -> Result<Option<Metrics>, TrainError> {
    if clips.is_empty() {
        return Ok(None);
    }
    let batch_size = plan.session.config.batch_size;
    score(plan.session, plan.data, clips, batch_size).map(Some)
}

/// What one optimiser step works on.
struct StepInput<'a> {
    batch_ids: &'a [usize],
    labels: &'a [usize],
    step: u64,
    lr: f64,
}

/// One optimiser step on a batch: returns the loss, the number of correct predictions and where
/// each example's crop started. A non-finite loss updates nothing (the caller stops the run).
/// Over several ranks ([`Parallel`]), each runs its rows of the same batch, the gradients and the
/// figures are summed over the ranks, and every rank takes the same step.
fn train_step(
    session: &Session,
    data: &RunData,
    optimizer: &mut Optimizer,
    parallel: &Parallel,
    input: &StepInput,
) -> Result<(f32, usize, Vec<usize>), TrainError> {
    let StepInput {
        batch_ids,
        labels,
        step,
        lr,
    } = *input;
    let config = &session.config;
    let mut rng = SplitMix64::derive(config.seed, mix64(step ^ 0xA5A5));
    let frames = config
        .crop_frames
        .unwrap_or_else(|| data.store.frames(batch_ids[0]));
    let targets = Targets {
        labels,
        n_classes: config.labels.len(),
        teacher: data.teacher.as_ref(),
    };
    let batch = data.store.batch(
        batch_ids,
        targets,
        frames,
        Some(&mut rng),
        Some(&config.augment),
        data.responses.as_ref().map(|responses| Responses {
            responses,
            dataset: &data.dataset,
        }),
    )?;
    let (x, y) = to_tensor(&batch, &session.device)?;
    let rows = parallel.shard(labels.len());
    let narrow = |t: &Tensor| t.narrow(0, rows.start, rows.len());
    let (x, y) = (narrow(&x)?, narrow(&y)?);
    session
        .model
        .reseed(mix64(config.seed ^ mix64(step)), rows.start);
    let logits = if config.sync_bn && parallel.size() > 1 {
        let ranks: std::sync::Arc<dyn SumAcross> = std::sync::Arc::new(parallel.clone());
        let rows = BatchRows {
            first: rows.start,
            total: labels.len(),
        };
        synchronised(ranks, rows, || session.model.forward_t(&x, true))?
    } else {
        session.model.forward_t(&x, true)?
    };
    let loss = match (&batch.teacher, &config.distill) {
        (Some(q), Some(distill)) => {
            let q = Tensor::from_slice(q, (labels.len(), config.labels.len()), &session.device)?;
            distillation_loss(&logits, &y, &narrow(&q)?, distill)?
        }
        _ => soft_cross_entropy(&logits, &y)?,
    };
    // This rank's share of the batch mean: summed over the ranks, the whole batch's mean.
    let loss = loss.affine(rows.len() as f64 / labels.len() as f64, 0.0)?;
    let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let correct = predicted
        .iter()
        .zip(&labels[rows.clone()])
        .filter(|(p, l)| **p as usize == **l)
        .count();
    let totals = parallel.sum(&[loss.to_scalar::<f32>()?, correct as f32]);
    let loss_value = totals[0];
    if !loss_value.is_finite() {
        return Ok((loss_value, 0, batch.starts));
    }
    let mut grads = loss.backward()?;
    parallel.all_reduce_grads(&mut grads, optimizer.params())?;
    optimizer.apply(&grads, lr)?;
    if parallel.size() > 1 && !config.sync_bn {
        // Listing the buffers locks and sorts the store: not on one process's every step.
        // Synchronised statistics leave every rank the same buffers already.
        parallel.average_vars(&session.buffer_vars())?;
    }
    Ok((loss_value, totals[1] as usize, batch.starts))
}

/// Stops the run on a non-finite loss, naming the step and the checkpoint it leaves.
fn finite(
    (loss, correct): (f32, usize),
    step: u64,
    epoch: u64,
    state: &TrainState,
    run_dir: &Path,
) -> Result<(f32, usize), TrainError> {
    if loss.is_finite() {
        Ok((loss, correct))
    } else {
        Err(TrainError::NonFinite {
            step,
            epoch: epoch + 1,
            loss,
            last_good: state.epochs_done,
            run_dir: run_dir.to_path_buf(),
        })
    }
}
