//! `asc quickstart`: the main job on the bundled default data (`asc::quickstart`).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the data set, runs, model and report.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Epochs per norm.
    #[arg(long)]
    epochs: Option<u64>,
    /// Clips per class of the synthetic data set.
    #[arg(long)]
    clips_per_class: Option<usize>,
    /// Clips to classify at the end (default: audio/ in the current folder, the bundled clips
    /// when run from the repository).
    inputs: Vec<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut opts = asc::quickstart::Options {
        out: a.out,
        ..Default::default()
    };
    if let Some(e) = a.epochs {
        opts.epochs = e;
    }
    if let Some(n) = a.clips_per_class {
        opts.clips_per_class = n;
    }
    if !a.inputs.is_empty() {
        opts.inputs = a.inputs;
    }
    let report = asc::quickstart::run(&opts)?;
    println!("{report}");
    let failed = report.classified.iter().filter(|(_, r)| r.is_err()).count();
    Ok(super::batch_status(failed))
}
