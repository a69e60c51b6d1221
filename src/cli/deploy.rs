//! `asc export` and `asc classify`: the deployment half, thin over `asc::export` and
//! `asc::infer`.

use anyhow::Context;
use asc::export::{self, ExportOptions};
use asc::infer::{self, Classifier, Format};
use asc::{audio, progress};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Run folder written by `asc train`.
    #[arg(long)]
    run: PathBuf,
    /// Output `.onnx` file.
    #[arg(long)]
    out: PathBuf,
    /// Put the log-mel front end inside the graph: input (N, samples) at the model's rate.
    #[arg(long)]
    waveform: bool,
    /// Weights to export (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

pub fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let opts = ExportOptions {
        waveform: a.waveform,
        checkpoint: a.checkpoint,
    };
    let s = export::export_run(&a.run, &a.out, &opts)?;
    println!(
        "wrote {} ({} nodes, {:.1} kB): {} with {}, input '{}', {} classes",
        s.path.display(),
        s.nodes,
        s.bytes as f64 / 1e3,
        s.metadata.model,
        s.metadata.norm,
        s.metadata.input.input_name(),
        s.metadata.labels.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Model written by `asc export`.
    #[arg(long)]
    model: PathBuf,
    /// Audio files or folders (walked recursively): WAV, FLAC, Ogg Vorbis, MP3, AIFF, CAF.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output on stdout: table, json, csv or dcase.
    #[arg(long, default_value = "table")]
    format: Format,
    /// Classes shown per file in the table.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
}

pub fn classify(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let classifier = Classifier::from_onnx(&a.model)?;
    let mut paths = Vec::new();
    let mut results = Vec::new();
    for input in &a.inputs {
        match audio::collect_inputs(std::slice::from_ref(input)) {
            Ok(found) => paths.extend(found),
            Err(e) => results.push((input.clone(), Err(e.into()))),
        }
    }
    let bar = progress::bar(paths.len() as u64, "classify");
    results.extend(infer::classify_all(&classifier, &paths, &|| bar.inc(1)));
    bar.finish_and_clear();
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if !matches!(a.format, Format::Table | Format::Json) {
        for (_, r) in &results {
            if let Err(e) = r {
                eprintln!("error: {e}");
            }
        }
    }
    let text = infer::render(a.format, classifier.labels(), &results, a.top_k);
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing results")?;
    if failed > 0 {
        eprintln!("{failed} of {} inputs failed", results.len());
    }
    Ok(super::batch_status(failed))
}
