//! `asc complexity`: a model's parameters, their bytes per storage precision and its MACs per
//! layer, against DCASE task 1's limits (`asc::complexity`).

use anyhow::bail;
use asc::nn::norm;
use asc::train::session::{read_config, Session};
use asc::train::TrainConfig;
use candle_core::Device;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run folder: its model, norm, classes and front end (no weights are read).
    #[arg(long, conflicts_with_all = ["model", "norm"])]
    run: Option<PathBuf>,
    /// Or a model by name, with --norm, --classes and --preset (before any training).
    #[arg(long)]
    model: Option<String>,
    #[arg(long, default_value = "bn", help = format!("Normalization layer: {}", norm::names_in_words()))]
    norm: String,
    /// Number of classes of a model given by name.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Front-end preset of a model given by name [default: dcase2020 for cnn, cpjku for cp-mobile].
    #[arg(long)]
    preset: Option<String>,
    /// Clip length the MACs are counted for (DCASE's limit is per 1 s clip).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// The report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if !(a.seconds > 0.0 && a.seconds.is_finite()) {
        bail!("--seconds must be a positive number, got {}", a.seconds);
    }
    let config = match (&a.run, &a.model) {
        (Some(run), _) => read_config(run)?,
        (None, Some(model)) => by_name(model, &a)?,
        (None, None) => bail!("give a run folder (--run RUN) or a model (--model NAME)"),
    };
    let session = Session::build(config, Device::Cpu)?;
    let report = session.complexity_for(a.seconds);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let c = &session.config;
        println!(
            "{} with norm {}, {} classes, front end {} Hz / hop {} / {} mels, {} s clip:",
            c.model.name,
            c.norm,
            c.labels.len(),
            c.frontend.sr,
            c.frontend.hop_length,
            c.frontend.n_mels,
            a.seconds
        );
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// The config `asc train` would start from for this model, with placeholder class names.
fn by_name(model: &str, a: &Args) -> anyhow::Result<TrainConfig> {
    if a.classes < 2 {
        bail!("--classes must be at least 2, got {}", a.classes);
    }
    let mut c = TrainConfig::defaults(model, &a.norm, PathBuf::new(), PathBuf::new());
    c.check_names()?;
    if let Some(p) = &a.preset {
        c.frontend = asc::features::FrontendConfig::preset(p)?;
    }
    c.labels = (0..a.classes).map(|i| format!("class{i}")).collect();
    c.model.n_classes = a.classes;
    Ok(c)
}
