//! `asc train`: one run of an experiment into its run folder (`asc::train`).

use super::experiment::{build_config, ExperimentArgs};
use asc::nn::norm;
use asc::train::{self, session, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Normalization layer (the registry's names, `asc::nn::norm::NORM_NAMES`).
    #[arg(long, default_value = "bn", help = format!("Normalization layer: {}", norm::names_in_words()))]
    norm: String,
    /// Run folder (config, checkpoints, metrics, plots).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the initial weights, the batch order, augmentation and dropout [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs of this invocation (resume later with --resume).
    #[arg(long, hide = true)]
    stop_after: Option<u64>,
    /// Score the test list after every epoch into metrics.jsonl and curves.png (diagnosis only:
    /// it never chooses the model).
    #[arg(long)]
    watch_test: bool,
    /// Start from these weights (a checkpoint of the same model and norm, e.g. another run's
    /// best.safetensors) instead of drawing them from the seed: fine-tuning, or the same start
    /// as another trainer. The input standardisation is measured on this run's training list.
    #[arg(long, value_name = "FILE.safetensors")]
    init: Option<PathBuf>,
    /// Write every step's clips and crop starts to batches.jsonl in the run folder, so that
    /// another trainer can replay the run batch by batch (scripts/recipe_parity.py --lockstep).
    #[arg(long)]
    trace_batches: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = build_config(&a.exp, &a.norm, a.seed)?;
    if a.init.is_some() {
        cfg.init = a.init.clone();
    }
    let device = session::device(&a.exp.device)?;
    // Kept to the end: with MPI, dropping it finalises the job.
    let ranks = train::parallel::from_launcher()?;
    let opts = RunOptions {
        resume: a.resume,
        stop_after_epochs: a.stop_after,
        quiet: false,
        watch_test: a.watch_test,
        trace_batches: a.trace_batches,
        parallel: ranks.parallel.clone(),
    };
    let summary = train::train(cfg, &a.out, device, &opts).map_err(|e| match &e {
        train::TrainError::Dataset(d) if d.is_row_error() => {
            anyhow::anyhow!("{e} (--skip-bad leaves bad rows out)")
        }
        _ => e.into(),
    })?;
    let chosen = match summary.best_val_macro_accuracy {
        Some(v) => format!(
            "best validation macro accuracy {v:.3} at epoch {}",
            summary.best_epoch.unwrap_or(0)
        ),
        None => format!(
            "no validation split, model of the last epoch ({})",
            summary.best_epoch.unwrap_or(0)
        ),
    };
    // Rank 0 reports the run; every rank its communication.
    if ranks.parallel.is_root() {
        println!(
            "trained {} epochs; {chosen}; {} parameters; {:.1} clips/s; {} bad rows or clips skipped; run in {}",
            summary.epochs_done,
            summary.params,
            summary.clips_per_second,
            summary.skipped,
            summary.run_dir.display()
        );
    }
    if let Some(t) = summary.traffic {
        println!(
            "rank {} of {}: {} all-reduces, {:.1} MB sent, {:.2} s in them ({:.2} ms each)",
            ranks.parallel.rank(),
            ranks.parallel.size(),
            t.all_reduces,
            t.values as f64 * 4.0 / 1e6,
            t.seconds,
            1e3 * t.seconds / t.all_reduces.max(1) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}
