//! `asc synth`: a synthetic DCASE-layout data set (`asc::synth`).

use asc::synth::{self, SynthConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = SynthConfig {
        seed: a.seed,
        ..SynthConfig::default()
    };
    if let Some(n) = a.clips_per_class {
        cfg = cfg.with_clips_per_class(n);
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
