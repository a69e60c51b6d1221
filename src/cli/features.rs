use anyhow::bail;
use asc::features::{self, FeatureCache, FrontendConfig, LogMel};
use asc::{audio, progress};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which front end to run: a preset, or a JSON file of `FrontendConfig`.
#[derive(clap::Args, Debug)]
pub struct FrontendArgs {
    /// Front-end preset: dcase2020, cpjku or librosa.
    #[arg(long, default_value = "dcase2020")]
    preset: String,
    /// A JSON file with librosa-named front-end settings (overrides --preset).
    #[arg(long)]
    frontend: Option<PathBuf>,
    /// Feature cache folder: files seen before are not decoded again.
    #[arg(long)]
    cache: Option<PathBuf>,
}

impl FrontendArgs {
    fn config(&self) -> anyhow::Result<FrontendConfig> {
        match &self.frontend {
            Some(p) => Ok(asc::fsutil::read_json(p, "front-end config")?),
            None => Ok(FrontendConfig::preset(&self.preset)?),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Audio files or folders (walked recursively): WAV, FLAC, Ogg Vorbis, MP3, AIFF, CAF.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder; folder inputs keep their subfolder structure below it.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    frontend: FrontendArgs,
}

/// Output path of each input: `<out>/<stem>.npy`, below the input folder's structure for files
/// found by walking a folder. Two inputs mapping to one output is an error, not an overwrite.
fn output_paths(inputs: &[PathBuf], out: &Path) -> anyhow::Result<Vec<features::Job>> {
    let mut pairs = Vec::new();
    for input in inputs {
        for file in audio::collect_inputs(std::slice::from_ref(input))? {
            let rel = if input.is_dir() {
                file.strip_prefix(input).unwrap_or(&file).to_path_buf()
            } else {
                PathBuf::from(file.file_name().unwrap_or_default())
            };
            pairs.push((file, out.join(rel.with_extension("npy"))));
        }
    }
    let mut seen: HashMap<&Path, &Path> = HashMap::new();
    for (src, dst) in &pairs {
        if let Some(first) = seen.insert(dst, src) {
            bail!(
                "{} and {} would both be written to {}",
                first.display(),
                src.display(),
                dst.display()
            );
        }
    }
    Ok(pairs)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let config = a.frontend.config()?;
    let frontend = LogMel::new(config.clone())?;
    let cache = match &a.frontend.cache {
        Some(dir) => Some(FeatureCache::open(dir, &config)?),
        None => None,
    };
    let jobs = output_paths(&a.inputs, &a.out)?;
    let bar = progress::bar(jobs.len() as u64, "log-mel");
    let failed = features::write_npy_all(&jobs, &frontend, cache.as_ref(), |(src, dst), r| {
        // suspend, not println: a hidden bar (stderr not a terminal) prints nothing itself.
        bar.suspend(|| match r {
            Ok(spec) => eprintln!(
                "{} -> {} [{} x {}]",
                src.display(),
                dst.display(),
                spec.n_mels,
                spec.frames
            ),
            Err(e) => eprintln!("error: {e}"),
        });
        bar.inc(1);
    });
    bar.finish_and_clear();
    eprintln!(
        "{} of {} files written to {}",
        jobs.len() - failed,
        jobs.len(),
        a.out.display()
    );
    Ok(super::batch_status(failed))
}
