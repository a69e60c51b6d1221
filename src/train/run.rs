//! The training loop: epochs of seeded batches, validation on a location-disjoint split of the
//! training list, the best model by validation macro accuracy, an atomic checkpoint per epoch
//! and exact resumption (batches, augmentation and dropout are pure functions of seed and step).

use super::checkpoint;
use super::config::TrainConfig;
use super::error::TrainError;
use super::metrics::Metrics;
use super::optim::Optimizer;
use super::predict::{score, to_tensor};
use super::rundata::RunData;
use super::session::Session;
use super::state::{EpochRecord, TrainState};
use crate::dataset::rng::{mix64, SplitMix64};
use crate::dataset::{BatchSampler, ClassBalancedSampler, ShuffledSampler, Split};
use crate::features::LogMel;
use crate::fsutil::write_atomic;
use candle_core::{Device, Tensor, D};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of one invocation (not part of the experiment's config).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub resume: bool,
    /// Stop after this many epochs in this invocation (for tests of interruption).
    pub stop_after_epochs: Option<u64>,
    pub quiet: bool,
    /// Score the test list after every epoch and record it in `metrics.jsonl` (learning curves
    /// for diagnosis, e.g. the recipe-parity check). It never chooses an epoch.
    pub watch_test: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub params: usize,
    pub macs: u64,
    pub epochs_done: u64,
    pub best_epoch: Option<u64>,
    /// None when the run had no validation split (its model is the last epoch's).
    pub best_val_macro_accuracy: Option<f64>,
    pub clips_per_second: f64,
    /// Bad rows and clips left out under `skip_bad`.
    pub skipped: usize,
}

/// Cross-entropy against soft targets (mixup), averaged over the batch.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (targets * logp)?.sum(D::Minus1)?.mean_all()?.neg()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| TrainError::Config(e.to_string()))?;
    Ok(write_atomic(path, &text)?)
}

/// The config a run continues with: on `--resume` the saved one (with the epoch count asked for
/// now, so a finished run can be extended); a fresh run may not overwrite another.
fn resolve_config(
    config: TrainConfig,
    run_dir: &Path,
    checkpoint_path: &Path,
    opts: &RunOptions,
) -> Result<TrainConfig, TrainError> {
    if opts.resume && checkpoint_path.exists() {
        let saved = super::session::read_config(run_dir)?;
        Ok(TrainConfig {
            epochs: config.epochs,
            ..saved
        })
    } else if checkpoint_path.exists() {
        Err(TrainError::Config(format!(
            "{} already holds a run; pass --resume to continue it or choose another --out",
            run_dir.display()
        )))
    } else {
        Ok(config)
    }
}

/// The batches of each epoch. A last partial batch is kept (on a small training list dropping
/// it loses a large share of the clips every epoch), unless it would hold a single clip, whose
/// batch statistics a batch norm cannot form.
fn make_sampler(
    config: &TrainConfig,
    train: &[usize],
    classes: &[usize],
) -> Result<Box<dyn BatchSampler>, TrainError> {
    let drop_last = train.len() % config.batch_size == 1;
    Ok(if config.class_balanced {
        Box::new(ClassBalancedSampler::new(
            train,
            classes,
            config.batch_size,
            drop_last,
            config.seed,
        )?)
    } else {
        Box::new(ShuffledSampler::new(
            train.to_vec(),
            config.batch_size,
            drop_last,
            config.seed,
        )?)
    })
}

/// `split.json`: which clips trained and which validated, by file name, and why there is no
/// validation split when there is none.
fn write_split(run_dir: &Path, data: &RunData) -> Result<(), TrainError> {
    let names = |list: &[usize]| -> Vec<&str> {
        list.iter()
            .map(|&i| data.dataset.clips[i].filename.as_str())
            .collect()
    };
    write_json(
        &run_dir.join("split.json"),
        &serde_json::json!({
            "train": names(&data.train),
            "validation": names(&data.validation),
            "note": data.validation_note,
        }),
    )
}

/// Figures of one pass over the training batches.
#[derive(Default)]
struct EpochTotals {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    lr: f64,
}

/// Trains `config` into `run_dir` (or resumes the run there).
pub fn train(
    config: TrainConfig,
    run_dir: &Path,
    device: Device,
    opts: &RunOptions,
) -> Result<RunSummary, TrainError> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| crate::error::FileError::new(run_dir, e.to_string()))?;
    // The run folder is this run's alone: a killed invocation's half-written files go.
    crate::fsutil::remove_stale_temps(run_dir)?;
    let checkpoint_path = run_dir.join("checkpoint.safetensors");
    let resuming = opts.resume && checkpoint_path.exists();
    let mut config = resolve_config(config, run_dir, &checkpoint_path, opts)?;
    let frontend = LogMel::new(config.frontend.clone()).map_err(TrainError::Config)?;
    let data = RunData::open(&config, &frontend)?;
    let warn = |text: &str| {
        if !opts.quiet {
            eprintln!("warning: {text}");
        }
    };
    for skipped in &data.skipped {
        warn(&format!("skipped {skipped}"));
    }
    if !data.skipped.is_empty() {
        warn(&format!(
            "skipped {} bad rows or clips (--skip-bad)",
            data.skipped.len()
        ));
    }
    if let Some(note) = &data.validation_note {
        warn(note);
    }
    config.labels = data.dataset.labels.names().to_vec();
    config.model.n_classes = config.labels.len();
    if let Some(&first) = data.train.first() {
        config.clip_frames = Some(config.crop_frames.unwrap_or(data.store.frames(first)));
    }
    write_json(&run_dir.join("config.json"), &config)?;
    write_split(run_dir, &data)?;

    let session = Session::build(config.clone(), device)?;
    let mut optimizer = Optimizer::new(config.optimizer.clone(), session.named_params())?;
    let mut state = TrainState::default();
    if resuming {
        let loaded = session.load_weights(&checkpoint_path)?;
        state = serde_json::from_value(loaded.state["train"].clone()).map_err(|e| {
            TrainError::Config(format!("{}: bad state: {e}", checkpoint_path.display()))
        })?;
        optimizer.load_state(&loaded.group("extra.optim."), state.step)?;
    } else if let Some(input_norm) = session.model.input_stats() {
        let (mean, std) = data
            .store
            .band_stats(&data.train, config.model.input_norm)?;
        input_norm.set_stats(&mean, &std)?;
    }

    let classes = data.dataset.classes_of(&data.train)?;
    let sampler = make_sampler(&config, &data.train, &classes)?;
    let label_of: std::collections::HashMap<usize, usize> = data
        .train
        .iter()
        .copied()
        .zip(classes.iter().copied())
        .collect();
    let per_epoch = sampler.batches_per_epoch() as u64;
    if per_epoch <= 2 {
        warn(&format!(
            "an epoch is only {per_epoch} step(s) of batch size {} over {} clips: a smaller \
             --batch-size gives the optimiser more steps",
            config.batch_size,
            data.train.len()
        ));
    }
    let input_frames = config
        .crop_frames
        .unwrap_or_else(|| data.store.frames(data.train[0]));
    let macs = session.model.macs((data.store.n_mels(), input_frames));
    if !opts.quiet {
        eprintln!(
            "model {} with norm {}: {} parameters, {:.2} M MACs per {}x{} input; {} train / {} validation clips, {} classes",
            config.model.name,
            config.norm,
            session.param_count(),
            macs as f64 / 1e6,
            data.store.n_mels(),
            input_frames,
            data.train.len(),
            data.validation.len(),
            config.labels.len()
        );
    }
    let test_clips = if opts.watch_test {
        watchable_test(&data, &warn)
    } else {
        Vec::new()
    };
    let total_steps = per_epoch * config.epochs;
    let mut epochs_this_run = 0;
    let mut last_rate = 0.0;
    while state.epochs_done < config.epochs {
        if opts.stop_after_epochs.is_some_and(|n| epochs_this_run >= n) {
            break;
        }
        let epoch = state.epochs_done;
        let started = Instant::now();
        let bar = if opts.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            crate::progress::bar(per_epoch, &format!("epoch {}/{}", epoch + 1, config.epochs))
        };
        let mut totals = EpochTotals::default();
        for batch_ids in sampler.batches(epoch) {
            let step = state.step;
            let labels: Vec<usize> = batch_ids.iter().map(|i| label_of[i]).collect();
            totals.lr = config.schedule.lr(config.lr, step, total_steps);
            let step_in = StepInput {
                batch_ids: &batch_ids,
                labels: &labels,
                step,
                lr: totals.lr,
            };
            let (loss_value, correct) = train_step(&session, &data, &mut optimizer, &step_in)
                .and_then(|r| finite(r, step, epoch, &state, run_dir))
                .inspect_err(|_| bar.abandon())?;
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
        let train_seconds = started.elapsed().as_secs_f64();
        last_rate = totals.seen as f64 / train_seconds;
        let val = scored(&session, &data, &data.validation, config.batch_size)?;
        let test = scored(&session, &data, &test_clips, config.batch_size)?;
        let record = EpochRecord {
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
            clips_per_second: last_rate,
        };
        if !opts.quiet {
            eprintln!("{}", epoch_line(&record, config.epochs));
        }
        state.epochs_done += 1;
        // Without validation the last epoch is the run's model.
        let improved = match (record.val_macro_accuracy, state.best_val_macro_accuracy) {
            (Some(v), Some(best)) => v > best,
            _ => true,
        };
        if improved {
            state.best_epoch = Some(state.epochs_done);
            state.best_val_macro_accuracy = record.val_macro_accuracy;
        }
        state.history.push(record);
        let blob = serde_json::json!({ "train": state });
        if improved {
            let best = run_dir.join("best.safetensors");
            checkpoint::save(&best, &session.weights(), &Default::default(), &blob)?;
        }
        let (optim_state, _) = optimizer.state();
        let extra = optim_state
            .into_iter()
            .map(|(k, t)| (format!("optim.{k}"), t))
            .collect();
        checkpoint::save(&checkpoint_path, &session.weights(), &extra, &blob)?;
        write_history(run_dir, &state)?;
        epochs_this_run += 1;
    }
    Ok(RunSummary {
        run_dir: run_dir.to_path_buf(),
        params: session.param_count(),
        macs,
        epochs_done: state.epochs_done,
        best_epoch: state.best_epoch,
        best_val_macro_accuracy: state.best_val_macro_accuracy,
        clips_per_second: last_rate,
        skipped: data.skipped.len(),
    })
}

/// The test clips that can be watched: all of the test list when every clip has a label (an
/// evaluation set's has none, and is then not watched).
fn watchable_test(data: &RunData, warn: &dyn Fn(&str)) -> Vec<usize> {
    let test = data.dataset.split(Split::Test);
    if test.is_empty() || data.dataset.classes_of(test).is_err() {
        warn("--watch-test: the test list is empty or has unlabelled clips; not watched");
        return Vec::new();
    }
    test.to_vec()
}

/// Metrics of `clips`, or none for an empty list.
fn scored(
    session: &Session,
    data: &RunData,
    clips: &[usize],
    batch_size: usize,
) -> Result<Option<Metrics>, TrainError> {
    if clips.is_empty() {
        return Ok(None);
    }
    score(session, data, clips, batch_size).map(Some)
}

/// The progress line of a finished epoch.
fn epoch_line(r: &EpochRecord, epochs: u64) -> String {
    let mut line = format!(
        "epoch {:>3}/{epochs}: train loss {:.4} acc {:.3}",
        r.epoch, r.train_loss, r.train_accuracy
    );
    if let (Some(loss), Some(acc), Some(macro_acc)) =
        (r.val_loss, r.val_accuracy, r.val_macro_accuracy)
    {
        line += &format!(" | val loss {loss:.4} acc {acc:.3} macro {macro_acc:.3}");
    }
    if let (Some(acc), Some(macro_acc)) = (r.test_accuracy, r.test_macro_accuracy) {
        line += &format!(" | test acc {acc:.3} macro {macro_acc:.3}");
    }
    line + &format!(" | {:.1} clips/s", r.clips_per_second)
}

/// What one optimiser step works on.
struct StepInput<'a> {
    batch_ids: &'a [usize],
    labels: &'a [usize],
    step: u64,
    lr: f64,
}

/// One optimiser step on a batch: returns the loss and the number of correct predictions. A
/// non-finite loss updates nothing (the caller stops the run).
fn train_step(
    session: &Session,
    data: &RunData,
    optimizer: &mut Optimizer,
    input: &StepInput,
) -> Result<(f32, usize), TrainError> {
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
    let batch = data.store.batch(
        batch_ids,
        labels,
        config.labels.len(),
        frames,
        Some(&mut rng),
        Some(&config.augment),
    )?;
    let (x, y) = to_tensor(&batch, &session.device)?;
    session.model.reseed(mix64(config.seed ^ mix64(step)));
    let logits = session.model.forward_t(&x, true)?;
    let loss = soft_cross_entropy(&logits, &y)?;
    let loss_value = loss.to_scalar::<f32>()?;
    if !loss_value.is_finite() {
        return Ok((loss_value, 0));
    }
    optimizer.backward_step(&loss, lr)?;
    let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let correct = predicted
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p as usize == **l)
        .count();
    Ok((loss_value, correct))
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

/// `metrics.jsonl` (one line per epoch), `state.json` and the learning curves, rewritten from
/// the history each epoch so they always agree with the checkpoint.
fn write_history(run_dir: &Path, state: &TrainState) -> Result<(), TrainError> {
    let mut lines = String::new();
    for r in &state.history {
        lines.push_str(&serde_json::to_string(r).map_err(|e| TrainError::Config(e.to_string()))?);
        lines.push('\n');
    }
    write_atomic(&run_dir.join("metrics.jsonl"), lines.as_bytes())?;
    write_json(&run_dir.join("state.json"), state)?;
    super::plot::curves(&run_dir.join("curves.png"), &state.history)?;
    Ok(())
}
