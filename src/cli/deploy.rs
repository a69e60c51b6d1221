//! `asc export` and `asc classify`: the deployment half, thin over `asc::export` and
//! `asc::infer`.

use anyhow::Context;
use asc::export::{self, ExportOptions, StorageSummary, WeightStorage};
use asc::infer::devices::DeviceModels;
use asc::infer::{self, fidelity, Classifier, Format};
use asc::{audio, progress};
use std::path::{Path, PathBuf};
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
    /// Store the weights as float16 (half the bytes; computed in float32) and report what it
    /// costs against the float32 model on the run's evaluation list.
    #[arg(long, conflicts_with = "int8")]
    fp16: bool,
    /// Static post-training int8 (QDQ): conv and dense weights as int8 with a scale per output
    /// channel (about a quarter of the bytes), and the activations they read quantised to uint8
    /// with ranges calibrated on clips of the run's training list; reports what it costs, as
    /// --fp16 does.
    #[arg(long, conflicts_with_all = ["fp16", "int8_weights"])]
    int8: bool,
    /// Training clips --int8 calibrates the activation ranges on (spread over the list).
    #[arg(long, default_value_t = 100, requires = "int8")]
    calibration_clips: usize,
    /// Only the weights as int8 (per output channel), activations computed in float32: no
    /// calibration, no data needed.
    #[arg(long, conflicts_with = "fp16")]
    int8_weights: bool,
}

pub fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ExportOptions {
        waveform: a.waveform,
        checkpoint: a.checkpoint,
        storage: if a.fp16 {
            WeightStorage::F16
        } else if a.int8 {
            // Filled in below, once the ranges are measured.
            WeightStorage::Int8Static {
                ranges: Vec::new(),
                clips: 0,
            }
        } else if a.int8_weights {
            WeightStorage::Int8
        } else {
            WeightStorage::F32
        },
    };
    if let WeightStorage::Int8Static { .. } = opts.storage {
        let bar = progress::bar(a.calibration_clips as u64, "calibrating");
        let (ranges, clips) =
            infer::calibrate::calibrate_run(&a.run, &opts, a.calibration_clips, &|| bar.inc(1))?;
        bar.finish_and_clear();
        opts.storage = WeightStorage::Int8Static { ranges, clips };
    }
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
    let name = match &s.storage {
        Some(StorageSummary::F16(f)) => {
            println!(
                "float16 weights: {} tensors, {} values ({} kB); {} kept as float32 (beyond float16's range)",
                f.tensors,
                f.elements,
                f.elements * 2 / 1000,
                f.kept_f32
            );
            "float16"
        }
        Some(StorageSummary::Int8(q)) => {
            print_int8_weights(q);
            "int8 weights"
        }
        Some(StorageSummary::Int8Static {
            weights,
            activations,
            clips,
        }) => {
            print_int8_weights(weights);
            println!(
                "uint8 activations: {activations} inputs of conv and dense layers quantised (QDQ), ranges calibrated on {clips} training clips"
            );
            "int8"
        }
        None => return Ok(ExitCode::SUCCESS),
    };
    report_storage_cost(&a.run, &a.out, &opts, name);
    Ok(ExitCode::SUCCESS)
}

fn print_int8_weights(q: &asc::export::Converted) {
    println!(
        "int8 weights: {} tensors, {} values ({} kB) with {} float32 scales; vectors (biases, norm parameters) kept as float32",
        q.tensors,
        q.elements,
        q.elements / 1000,
        q.scales
    );
}

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Model written by `asc export`, or a folder of them: device-specific models (trained with
    /// --devices) and one general model, picked per file by its device.
    #[arg(long)]
    model: PathBuf,
    /// The recording device of every input (with a folder of models); by default each file's
    /// device is read from its DCASE name (`...-a.wav`: device a). Devices without a model of
    /// their own get the general one.
    #[arg(long)]
    device_id: Option<String>,
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
    if a.model.is_dir() {
        let models = DeviceModels::from_folder(&a.model)?;
        eprintln!(
            "models for devices: {}; general model: {}",
            models.devices().join(", "),
            if models.pick(None).is_some() {
                "yes"
            } else {
                "no"
            }
        );
        let pick = |path: &Path| {
            let device = a
                .device_id
                .clone()
                .or_else(|| asc::dataset::device_from_filename(&path.to_string_lossy()));
            models
                .pick(device.as_deref())
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    asc::infer::InferError::File(asc::FileError::new(
                        path,
                        format!(
                            "no model for device {} and no general model in {}",
                            device.as_deref().unwrap_or("(none in the file name)"),
                            a.model.display()
                        ),
                    ))
                })
        };
        return classify_with(&a, models.any(), &pick);
    }
    if a.device_id.is_some() {
        eprintln!("warning: --device-id needs a folder of models as --model; ignored");
    }
    let classifier = Classifier::from_onnx(&a.model)?;
    classify_with(&a, &classifier, &|_| Ok(&classifier))
}

/// Classifies the inputs with the model `pick` chooses per file; `any` gives the classes.
fn classify_with<'a>(
    a: &ClassifyArgs,
    any: &Classifier,
    pick: &(dyn Fn(&Path) -> Result<&'a Classifier, asc::infer::InferError> + Sync),
) -> anyhow::Result<ExitCode> {
    let mut paths = Vec::new();
    let mut results = Vec::new();
    for input in &a.inputs {
        match audio::collect_inputs(std::slice::from_ref(input)) {
            Ok(found) => paths.extend(found),
            Err(e) => results.push((input.clone(), Err(e.into()))),
        }
    }
    let bar = progress::bar(paths.len() as u64, "classify");
    results.extend(infer::classify_all_with(&paths, pick, &|| bar.inc(1)));
    bar.finish_and_clear();
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if !matches!(a.format, Format::Table | Format::Json) {
        for (_, r) in &results {
            if let Err(e) = r {
                eprintln!("error: {e}");
            }
        }
    }
    let text = infer::render(a.format, any.labels(), &results, a.top_k);
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing results")?;
    if failed > 0 {
        eprintln!("{failed} of {} inputs failed", results.len());
    }
    Ok(super::batch_status(failed))
}

/// What compact weights (`name`) cost on the run's evaluation list, against the same export in
/// float32; a data set that cannot be read now is reported, not an error (the export is written).
fn report_storage_cost(run: &Path, compact_file: &Path, opts: &ExportOptions, name: &str) {
    let measured = (|| -> anyhow::Result<fidelity::Fidelity> {
        let config = asc::train::session::read_config(run)?;
        let clips = fidelity::evaluation_list(&config.data, config.fold)?;
        if clips.is_empty() {
            anyhow::bail!("{} has no labelled evaluation list", config.data.display());
        }
        let reference_opts = ExportOptions {
            storage: WeightStorage::F32,
            ..opts.clone()
        };
        let (bytes, _) = export::export_bytes(run, &reference_opts)?;
        let reference = Classifier::from_bytes(Path::new("float32 export"), &bytes)?;
        let candidate = Classifier::from_onnx(compact_file)?;
        Ok(fidelity::compare(&reference, &candidate, &clips)?)
    })();
    match measured {
        Ok(f) => println!(
            "{name} vs float32 on the evaluation list ({} clips): accuracy {:.4} -> {:.4} ({:+.4}), same label for {:.2} %, largest probability change {:.2e}",
            f.clips,
            f.reference_accuracy,
            f.candidate_accuracy,
            f.candidate_accuracy - f.reference_accuracy,
            100.0 * f.agreement,
            f.max_prob_diff
        ),
        Err(e) => eprintln!("warning: the cost of the {name} export was not measured: {e}"),
    }
}
