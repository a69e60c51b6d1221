//! The `asc` command line: parse, call the library, print. No logic a library user would need
//! lives here (`docs/style.md`). Exit status: 0 all done, 1 some input failed, 2 usage error.

mod compare;
mod complexity;
mod deploy;
mod evaluate;
mod experiment;
mod features;
mod info;
mod quickstart;
mod sweep;
mod synth;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "asc",
    version = asc::BUILD,
    about = "Acoustic scene classification: features, training, export, inference"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what the decoder sees in audio files (rate, channels, format, duration), or why it refuses them.
    Info(info::Args),
    /// Write one log-mel spectrogram per input file as DIR/<stem>.npy (float32, [n_mels, frames]).
    Features(features::Args),
    /// Generate a synthetic DCASE-layout data set.
    Synth(synth::Args),
    /// Train a model with a normalization layer on a data set.
    Train(train::Args),
    /// Evaluate a run's best model: RUN/metrics.json, confusion.csv, confusion.png.
    Evaluate(evaluate::Args),
    /// Train one model with several norms over several seeds and tabulate test metrics.
    Compare(compare::Args),
    /// Run or gather the tasks of a comparison written for a cluster (`compare --slurm`).
    Sweep(sweep::Args),
    /// Parameters, bytes per precision and MACs per layer of a model, against DCASE's limits.
    Complexity(complexity::Args),
    /// Export a run's best model to a self-describing ONNX file.
    Export(deploy::ExportArgs),
    /// Label WAV files and folders with an exported model.
    Classify(deploy::ClassifyArgs),
    /// The main job on the bundled default data: synth, train L2BN and BN, evaluate, export, classify audio/.
    Quickstart(quickstart::Args),
}

/// The command line with the help texts that are computed from the library's defaults.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
        .mut_subcommand("train", experiment::with_defaults)
        .mut_subcommand("compare", experiment::with_defaults)
}

/// Parses the process arguments (exits with clap's usage message and status 2 on a bad one).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Info(a) => info::run(a),
        Command::Features(a) => features::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Complexity(a) => complexity::run(a),
        Command::Export(a) => deploy::export(a),
        Command::Classify(a) => deploy::classify(a),
        Command::Quickstart(a) => quickstart::run(a),
    }
}

/// Exit status for a batch where `failed` inputs could not be processed.
pub fn batch_status(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
