use anyhow::Context;
use asc::dataset::Split;
use asc::synth::{self, SynthConfig};
use asc::train::{self, evaluate, session, RunOptions, TrainConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder for the DCASE-layout data set.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Clips per scene class.
    #[arg(long)]
    clips_per_class: Option<usize>,
    /// Clip length in seconds.
    #[arg(long)]
    seconds: Option<f32>,
    /// Sample rate in Hz.
    #[arg(long)]
    sample_rate: Option<u32>,
}

pub fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = SynthConfig {
        seed: a.seed,
        ..SynthConfig::default()
    };
    if let Some(n) = a.clips_per_class {
        cfg.clips_per_class = n;
    }
    if let Some(s) = a.seconds {
        cfg.clip_seconds = s;
    }
    if let Some(r) = a.sample_rate {
        cfg.sample_rate = r;
    }
    let summary = synth::generate(&a.out, &cfg)?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// The experiment flags `train` and `compare` share.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Data set root (DCASE layout with meta.csv, or ROOT/<label>/*.wav).
    #[arg(long)]
    data: PathBuf,
    /// Architecture: cnn or cp-mobile.
    #[arg(long, default_value = "cnn")]
    model: String,
    #[arg(long)]
    epochs: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    fold: Option<u32>,
    /// Training list in evaluation_setup/ instead of foldK_train.csv (e.g. split25.csv, DCASE 2024).
    #[arg(long)]
    train_list: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// cpu, or cuda (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Front-end preset (default: dcase2020 for cnn, cpjku for cp-mobile).
    #[arg(long)]
    preset: Option<String>,
    /// Random time crop length in frames.
    #[arg(long)]
    crop_frames: Option<usize>,
    /// Draw classes uniformly in each batch.
    #[arg(long)]
    class_balanced: bool,
    /// A JSON file with a whole TrainConfig (flags above override its fields).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Feature cache folder (default: <data>/.asc-cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Leave out bad list rows (malformed, unknown label, missing audio, duplicate, path outside
    /// the data set) and clips whose audio cannot be decoded, with a warning each, instead of
    /// stopping at the first.
    #[arg(long)]
    skip_bad: bool,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Normalization layer: bn, l2bn, gn, gnplus, ubn, iebn, ln, in or none.
    #[arg(long, default_value = "bn")]
    norm: String,
    /// Run folder (config, checkpoints, metrics, plots).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    seed: Option<u64>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs of this invocation (resume later with --resume).
    #[arg(long, hide = true)]
    stop_after: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Comma-separated norm names.
    #[arg(
        long,
        default_value = "bn,l2bn,gn,gnplus,ubn,iebn,ln,in",
        value_delimiter = ','
    )]
    norms: Vec<String>,
    /// Number of seeds (0, 1, ..., N-1); every norm sees the same seeds.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Folder for the runs and results.md / results.csv / results.png.
    #[arg(long)]
    out: PathBuf,
}

pub fn build_config(a: &ExperimentArgs, norm: &str) -> anyhow::Result<TrainConfig> {
    let cache = a.cache.clone().unwrap_or_else(|| a.data.join(".asc-cache"));
    let mut cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => TrainConfig::defaults(&a.model, norm, a.data.clone(), cache.clone()),
    };
    cfg.data = a.data.clone();
    cfg.cache = cache;
    cfg.norm = norm.to_string();
    if let Some(v) = a.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = a.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = a.fold {
        cfg.fold = v;
    }
    if a.train_list.is_some() {
        cfg.train_list = a.train_list.clone();
    }
    if let Some(v) = a.lr {
        cfg.lr = v;
    }
    if let Some(p) = &a.preset {
        cfg.frontend = asc::features::FrontendConfig::preset(p).map_err(anyhow::Error::msg)?;
    }
    if a.crop_frames.is_some() {
        cfg.crop_frames = a.crop_frames;
    }
    cfg.class_balanced |= a.class_balanced;
    cfg.skip_bad |= a.skip_bad;
    Ok(cfg)
}

pub fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    for n in &a.norms {
        asc::nn::norm::check_name(n).map_err(anyhow::Error::msg)?;
    }
    let opts = asc::compare::Options {
        base: build_config(&a.exp, &a.norms[0])?,
        norms: a.norms.clone(),
        seeds: (0..a.seeds.max(1)).collect(),
        out: a.out.clone(),
        device: session::device(&a.exp.device).map_err(anyhow::Error::msg)?,
        quiet: false,
    };
    let rows = asc::compare::run(&opts)?;
    print!("{}", asc::compare::markdown(&opts, &rows));
    println!("\nwrote {}/results.{{md,csv,png}}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = build_config(&a.exp, &a.norm)?;
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    let device = session::device(&a.exp.device).map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        resume: a.resume,
        stop_after_epochs: a.stop_after,
        quiet: false,
    };
    let summary = train::train(cfg, &a.out, device, &opts).map_err(|e| match &e {
        train::TrainError::Dataset(d) if d.is_row_error() => {
            anyhow::anyhow!("{e} (--skip-bad leaves bad rows out)")
        }
        _ => e.into(),
    })?;
    println!(
        "trained {} epochs; best validation macro accuracy {:.3} at epoch {}; {} parameters; {:.1} clips/s; {} bad rows or clips skipped; run in {}",
        summary.epochs_done,
        summary.best_val_macro_accuracy,
        summary.best_epoch.unwrap_or(0),
        summary.params,
        summary.clips_per_second,
        summary.skipped,
        summary.run_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Run folder written by `asc train`.
    #[arg(long)]
    run: PathBuf,
    /// Data set to evaluate on (default: the run's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which list: test or evaluate.
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn evaluate(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let split = match a.split.as_str() {
        "test" => Split::Test,
        "evaluate" => Split::Evaluate,
        other => anyhow::bail!("unknown split '{other}' (test or evaluate)"),
    };
    let device = session::device(&a.device).map_err(anyhow::Error::msg)?;
    let m = evaluate::evaluate(&a.run, a.data, split, device)?;
    println!(
        "{} clips: accuracy {:.4}, macro accuracy {:.4}, log loss {:.4}",
        m.count, m.accuracy, m.macro_accuracy, m.log_loss
    );
    for (device, d) in &m.per_device {
        println!(
            "  device {device:<4} {:>5} clips  accuracy {:.4}  log loss {:.4}",
            d.count, d.accuracy, d.log_loss
        );
    }
    println!("wrote {}", a.run.join("metrics.json").display());
    Ok(ExitCode::SUCCESS)
}
