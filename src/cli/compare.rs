//! `asc compare`: one model, several norms, several seeds, one table (`asc::compare`).

use super::experiment::{build_config, ExperimentArgs};
use asc::train::session;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Comma-separated norm names, of the registry's (`asc::nn::norm::NORM_NAMES`).
    #[arg(long, value_delimiter = ',', help = format!(
        "Comma-separated norm names, each one of {} [default: every registered norm]",
        asc::nn::norm::names_in_words()
    ))]
    norms: Vec<String>,
    /// Number of seeds (0, 1, ..., N-1); every norm sees the same seeds.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Folder for the runs and results.md / results.csv / results.png.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(mut a: Args) -> anyhow::Result<ExitCode> {
    if a.norms.is_empty() {
        a.norms = asc::nn::norm::NORM_NAMES.map(String::from).to_vec();
    }
    for n in &a.norms {
        asc::nn::norm::check_name(n)?;
    }
    let opts = asc::compare::Options {
        base: build_config(&a.exp, &a.norms[0], None)?,
        norms: a.norms.clone(),
        seeds: (0..a.seeds.max(1)).collect(),
        out: a.out.clone(),
        device: session::device(&a.exp.device)?,
        quiet: false,
    };
    let rows = asc::compare::run(&opts)?;
    print!("{}", asc::compare::markdown(&opts, &rows));
    println!("\nwrote {}/results.{{md,csv,png}}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
