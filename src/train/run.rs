//! The training loop: epochs of seeded batches, validation on a location-disjoint split of the
//! training list, the best model by validation macro accuracy, an atomic checkpoint per epoch
//! and exact resumption (batches, augmentation and dropout are pure functions of seed and step).

use super::checkpoint;
use super::config::{ConfigError, TrainConfig};
use super::epoch::{run_epoch, EpochPlan};
use super::error::TrainError;
use super::optim::Optimizer;
use super::parallel::{Parallel, TrafficSummary};
use super::rundata::RunData;
use super::session::Session;
use super::state::{EpochRecord, TrainState};
use crate::dataset::{BatchSampler, ClassBalancedSampler, ShuffledSampler, Split};
use crate::features::LogMel;
use crate::fsutil::write_atomic;
use candle_core::Device;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use super::epoch::soft_cross_entropy;

/// The checkpoint of the last finished epoch, in the run folder; `--resume` continues from it.
const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

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
    /// Record every step's clips and crop starts in `batches.jsonl` (`epoch::TRACE_FILE`), so
    /// that another trainer can replay the run.
    pub trace_batches: bool,
    /// The ranks of a data-parallel run (`super::parallel`): rank 0 writes the run folder and
    /// prints, every rank trains its share of each batch.
    pub parallel: Parallel,
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
    /// Over several ranks: the all-reduces this invocation made, on this rank.
    pub traffic: Option<TrafficSummary>,
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(value)?;
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
        Err(TrainError::RunExists {
            run_dir: run_dir.to_path_buf(),
        })
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

/// Trains `config` into `run_dir` (or resumes the run there). Each step is one concept below:
/// the run folder and its config, the data, where the weights start, the batches, then the
/// epochs, each kept (or chosen as the best) and checkpointed before the next begins.
pub fn train(
    config: TrainConfig,
    run_dir: &Path,
    device: Device,
    opts: &RunOptions,
) -> Result<RunSummary, TrainError> {
    config.check_names().map_err(ConfigError::from)?;
    let root = opts.parallel.is_root();
    let quiet = opts.quiet || !root;
    prepare_run_dir(run_dir)?;
    let checkpoint_path = run_dir.join(CHECKPOINT_FILE);
    let resuming = opts.resume && checkpoint_path.exists();
    let config = resolve_config(config, run_dir, &checkpoint_path, opts)?;
    // Every rank has read the folder as it was before rank 0 writes to it.
    opts.parallel.barrier();
    let warn = |text: &str| {
        if !quiet {
            eprintln!("warning: {text}");
        }
    };
    let (config, data) = open_data(config, &warn)?;
    if root {
        write_json(&run_dir.join("config.json"), &config)?;
        write_split(run_dir, &data)?;
    }

    let session = Session::build(config.clone(), device)?;
    let mut optimizer = Optimizer::new(config.optimizer.clone(), session.named_params())?;
    let mut state = if resuming {
        resume_state(&session, &mut optimizer, &checkpoint_path)?
    } else {
        fresh_state(&session, &data)?
    };
    let batches = Batches::new(&config, &data, &warn)?;
    let macs = announce(&session, &data, quiet);
    if !quiet && opts.parallel.size() > 1 {
        eprintln!(
            "data-parallel over {} ranks: each batch of {} split among them, gradients summed every step",
            opts.parallel.size(),
            config.batch_size
        );
    }
    if root {
        write_complexity(&session, run_dir, quiet)?;
    }
    let test_clips = if opts.watch_test {
        watchable_test(&data, &warn)
    } else {
        Vec::new()
    };
    let plan = EpochPlan {
        session: &session,
        data: &data,
        sampler: batches.sampler.as_ref(),
        label_of: &batches.label_of,
        total_steps: batches.sampler.batches_per_epoch() as u64 * config.epochs,
        test_clips: &test_clips,
        run_dir,
        quiet,
        trace_batches: opts.trace_batches && root,
        parallel: &opts.parallel,
    };
    let last_rate = run_epochs(&plan, &mut optimizer, &mut state, opts.stop_after_epochs)?;
    Ok(RunSummary {
        run_dir: run_dir.to_path_buf(),
        params: session.param_count(),
        macs,
        epochs_done: state.epochs_done,
        best_epoch: state.best_epoch,
        best_val_macro_accuracy: state.best_val_macro_accuracy,
        clips_per_second: last_rate,
        skipped: data.skipped.len(),
        traffic: (opts.parallel.size() > 1).then(|| opts.parallel.traffic()),
    })
}

/// The run folder is this run's alone: it is created if need be, and the half-written files a
/// killed invocation left there go before anything is written.
fn prepare_run_dir(run_dir: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| crate::error::FileError::new(run_dir, e.to_string()))?;
    crate::fsutil::remove_stale_temps(run_dir)?;
    Ok(())
}

/// Opens the run's data set and completes the config from it: the labels and class count come
/// from the data (so `config.json` describes the model that is trained), and the input length
/// is recorded for `classify`. Bad rows left out and the validation rule's choice are warned
/// about here, once, before any work.
fn open_data(
    mut config: TrainConfig,
    warn: &dyn Fn(&str),
) -> Result<(TrainConfig, RunData), TrainError> {
    let frontend = LogMel::new(config.frontend.clone())?;
    let data = RunData::open(&config, &frontend)?;
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
    Ok((config, data))
}

/// A resumed run continues exactly where it stopped: weights, buffers, optimiser moments and
/// the training state all come from the one checkpoint, so they cannot disagree.
fn resume_state(
    session: &Session,
    optimizer: &mut Optimizer,
    checkpoint_path: &Path,
) -> Result<TrainState, TrainError> {
    let loaded = session.load_weights(checkpoint_path)?;
    let state: TrainState = serde_json::from_value(loaded.state["train"].clone())
        .map_err(|e| crate::error::FileError::new(checkpoint_path, format!("bad state: {e}")))?;
    optimizer.load_state(&loaded.group("extra.optim."), state.step)?;
    Ok(state)
}

/// A fresh run starts from the seeded initial weights, or from `config.init`; the input
/// standardisation is measured on the training list alone (validation clips must not leak into
/// the model), also over an `init` checkpoint's own statistics.
fn fresh_state(session: &Session, data: &RunData) -> Result<TrainState, TrainError> {
    if let Some(init) = &session.config.init {
        let loaded = checkpoint::load(init, &session.device)?;
        loaded.restore_except(init, &session.weights(), "buffer.input_norm.")?;
    }
    if let Some(input_norm) = session.model.input_stats() {
        let (mean, std) = data
            .store
            .band_stats(&data.train, session.config.model.input_norm)?;
        input_norm.set_stats(&mean, &std)?;
    }
    Ok(TrainState::default())
}

/// The batches of every epoch and the class of each training clip they draw.
struct Batches {
    sampler: Box<dyn BatchSampler>,
    label_of: HashMap<usize, usize>,
}

impl Batches {
    /// Chooses the sampler the config asks for ([`make_sampler`]) and warns when an epoch is so
    /// short that the optimiser barely moves (a common surprise on small data sets).
    fn new(config: &TrainConfig, data: &RunData, warn: &dyn Fn(&str)) -> Result<Self, TrainError> {
        let classes = data.dataset.classes_of(&data.train)?;
        let sampler = make_sampler(config, &data.train, &classes)?;
        let label_of = data.train.iter().copied().zip(classes).collect();
        let per_epoch = sampler.batches_per_epoch() as u64;
        if per_epoch <= 2 {
            warn(&format!(
                "an epoch is only {per_epoch} step(s) of batch size {} over {} clips: a smaller \
                 --batch-size gives the optimiser more steps",
                config.batch_size,
                data.train.len()
            ));
        }
        Ok(Self { sampler, label_of })
    }
}

/// Says what is about to be trained (model, norm, size, cost, data) so that a wrong setting is
/// seen before the first epoch, not after; returns the MACs per input for the summary.
fn announce(session: &Session, data: &RunData, quiet: bool) -> u64 {
    let config = &session.config;
    let input_frames = config
        .crop_frames
        .unwrap_or_else(|| data.store.frames(data.train[0]));
    let macs = session.complexity((data.store.n_mels(), input_frames)).macs;
    if !quiet {
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
    macs
}

/// `complexity.json` and `complexity.txt` in the run folder: the model's cost per 1 s clip
/// against DCASE's limits (`asc complexity --run` prints the same), and its verdict line on
/// stderr.
fn write_complexity(session: &Session, run_dir: &Path, quiet: bool) -> Result<(), TrainError> {
    let report = session.complexity_for(1.0);
    write_json(&run_dir.join("complexity.json"), &report)?;
    write_atomic(&run_dir.join("complexity.txt"), report.table().as_bytes())?;
    if !quiet {
        eprintln!("per 1 s clip: {}", report.verdict());
    }
    Ok(())
}

/// The epochs still to do, each kept and checkpointed before the next begins, so an interrupted
/// run loses at most the epoch in progress; `stop_after` ends this invocation early the way a
/// kill would (for tests of resumption). Returns the last epoch's throughput (0 if none ran).
fn run_epochs(
    plan: &EpochPlan,
    optimizer: &mut Optimizer,
    state: &mut TrainState,
    stop_after: Option<u64>,
) -> Result<f64, TrainError> {
    let epochs = plan.session.config.epochs;
    let mut epochs_this_run = 0;
    let mut last_rate = 0.0;
    while state.epochs_done < epochs {
        if stop_after.is_some_and(|n| epochs_this_run >= n) {
            break;
        }
        let record = run_epoch(plan, optimizer, state)?;
        last_rate = record.clips_per_second;
        if !plan.quiet {
            eprintln!("{}", epoch_line(&record, epochs));
        }
        keep_epoch(plan, optimizer, state, record)?;
        epochs_this_run += 1;
    }
    Ok(last_rate)
}

/// Adds a finished epoch to the state and saves it: `best.safetensors` when the epoch is the
/// best so far by validation macro accuracy (or always, without validation, so the last epoch
/// is the run's model), then the checkpoint and the history, so that a run killed at any point
/// resumes from a consistent epoch.
fn keep_epoch(
    plan: &EpochPlan,
    optimizer: &Optimizer,
    state: &mut TrainState,
    record: EpochRecord,
) -> Result<(), TrainError> {
    let (session, run_dir) = (plan.session, plan.run_dir);
    state.epochs_done += 1;
    let improved = match (record.val_macro_accuracy, state.best_val_macro_accuracy) {
        (Some(v), Some(best)) => v > best,
        _ => true,
    };
    if improved {
        state.best_epoch = Some(state.epochs_done);
        state.best_val_macro_accuracy = record.val_macro_accuracy;
    }
    state.history.push(record);
    if !plan.parallel.is_root() {
        return Ok(());
    }
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
    let checkpoint_path = run_dir.join(CHECKPOINT_FILE);
    checkpoint::save(&checkpoint_path, &session.weights(), &extra, &blob)?;
    write_history(run_dir, state)
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

/// `metrics.jsonl` (one line per epoch), `state.json` and the learning curves, rewritten from
/// the history each epoch so they always agree with the checkpoint.
fn write_history(run_dir: &Path, state: &TrainState) -> Result<(), TrainError> {
    let mut lines = String::new();
    for r in &state.history {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    write_atomic(&run_dir.join("metrics.jsonl"), lines.as_bytes())?;
    write_json(&run_dir.join("state.json"), state)?;
    super::plot::curves(&run_dir.join("curves.png"), &state.history)?;
    Ok(())
}
