//! `asc evaluate`: a run's best model on a list of its data set, written into the run folder
//! (`asc::train::evaluate`).

use asc::dataset::Split;
use asc::train::{evaluate, session};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let split = match a.split.as_str() {
        "test" => Split::Test,
        "evaluate" => Split::Evaluate,
        other => anyhow::bail!("unknown split '{other}' (test or evaluate)"),
    };
    let device = session::device(&a.device)?;
    let m = evaluate::evaluate_run(&a.run, a.data, split, device)?;
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
