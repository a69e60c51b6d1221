//! The main job on the bundled default (`asc quickstart`): a synthetic DCASE-layout data set,
//! the baseline CNN trained with L2BN and with BN, both evaluated on the test list, the better
//! one exported to ONNX, and the clips in `audio/` classified with tract. Every step reuses what
//! an earlier invocation finished, so a rerun (or a run after an interruption) is cheap.

use crate::dataset::Split;
use crate::error::FileError;
use crate::export::{self, ExportError, ExportOptions};
use crate::features::FrontendConfig;
use crate::infer::{self, Classifier, InferError, Outcome};
use crate::synth::{self, SynthConfig, SynthError};
use crate::train::config::Validation;
use crate::train::{self, metrics::Metrics, RunOptions, RunSummary, TrainConfig, TrainError};
use candle_core::Device;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to run; [`Options::default`] is the README's quickstart.
#[derive(Debug, Clone)]
pub struct Options {
    /// Folder for the data set, runs, model and report.
    pub out: PathBuf,
    /// Clips to classify at the end (files or folders). The default, `audio`, is relative to the
    /// current folder (the bundled clips when run from a checkout of the repository): an
    /// installed binary does not depend on where it was built.
    pub inputs: Vec<PathBuf>,
    pub epochs: u64,
    /// Clips per class of the synthetic set.
    pub clips_per_class: usize,
    /// The norms to compare; the better one by validation macro accuracy is exported (the test
    /// list only reports: choosing on it would make its figures optimistic).
    pub norms: Vec<String>,
    pub batch_size: usize,
    pub quiet: bool,
}

/// The quickstart's front end: the synthetic clips' own rate (no resampling), a 64 ms window
/// and 64 mels, so that two trainings fit in minutes on two cores. Real DCASE recipes use the
/// presets (`dcase2020`, `cpjku`).
pub fn frontend() -> FrontendConfig {
    FrontendConfig {
        sr: 32_000,
        n_fft: 2048,
        win_length: 2048,
        hop_length: 1024,
        n_mels: 64,
        fmax: 16_000.0,
        ..FrontendConfig::dcase2020()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/quickstart"),
            inputs: vec![PathBuf::from("audio")],
            epochs: 12,
            clips_per_class: SynthConfig::default().clips_per_class,
            norms: vec!["l2bn".into(), "bn".into()],
            batch_size: 16,
            quiet: false,
        }
    }
}

/// One trained norm.
#[derive(Debug, Clone)]
pub struct NormResult {
    pub norm: String,
    pub run_dir: PathBuf,
    pub summary: RunSummary,
    pub test: Metrics,
}

/// What the quickstart did and where it put it.
#[derive(Debug)]
pub struct Report {
    pub data: PathBuf,
    pub results: Vec<NormResult>,
    /// Index into `results` of the exported run.
    pub best: usize,
    pub onnx: PathBuf,
    pub labels: Vec<String>,
    pub classified: Vec<Outcome>,
    pub seconds: f64,
}

/// Which step of the job stopped it; each step's own error names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The clips to classify cannot be listed.
    #[error(transparent)]
    File(#[from] FileError),
    #[error("no norms to train")]
    NoNorms,
}

/// Runs the whole job.
pub fn run(opts: &Options) -> Result<Report, QuickstartError> {
    let started = Instant::now();
    let data = opts.out.join("data");
    let say = |s: String| {
        if !opts.quiet {
            eprintln!("{s}");
        }
    };
    say(format!("[1/4] synthetic data set in {}", data.display()));
    let synth_cfg = SynthConfig::default().with_clips_per_class(opts.clips_per_class);
    say(format!("      {}", synth::generate(&data, &synth_cfg)?));
    let mut results = Vec::new();
    for (i, norm) in opts.norms.iter().enumerate() {
        say(format!(
            "[2/4] training cnn with {norm} ({}/{}), {} epochs",
            i + 1,
            opts.norms.len(),
            opts.epochs
        ));
        results.push(train_and_test(opts, &data, norm)?);
    }
    let best = choose_by_validation(&results).ok_or(QuickstartError::NoNorms)?;
    let onnx = opts.out.join("model.onnx");
    say(format!(
        "[3/4] exporting the {} model to {}",
        results[best].norm,
        onnx.display()
    ));
    export::export_run(&results[best].run_dir, &onnx, &ExportOptions::default())?;
    say("[4/4] classifying the example clips with tract".to_string());
    let classifier = Classifier::from_onnx(&onnx)?;
    let paths = crate::audio::collect_inputs(&opts.inputs)?;
    let classified = infer::classify_all(&classifier, &paths, &|| {});
    Ok(Report {
        data,
        results,
        best,
        onnx,
        labels: classifier.labels().to_vec(),
        classified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The run with the best validation macro accuracy (the first on a tie); never the test list.
fn choose_by_validation(results: &[NormResult]) -> Option<usize> {
    let val = |r: &NormResult| {
        r.summary
            .best_val_macro_accuracy
            .unwrap_or(f64::NEG_INFINITY)
    };
    (0..results.len()).reduce(|best, i| {
        if val(&results[i]) > val(&results[best]) {
            i
        } else {
            best
        }
    })
}

/// Trains (or finishes, or reuses) the run of one norm and evaluates it on the test list.
fn train_and_test(opts: &Options, data: &Path, norm: &str) -> Result<NormResult, TrainError> {
    let run_dir = opts.out.join(format!("cnn-{norm}"));
    let mut cfg = TrainConfig::defaults("cnn", norm, data.to_path_buf(), data.join(".asc-cache"));
    cfg.epochs = opts.epochs;
    cfg.batch_size = opts.batch_size;
    cfg.frontend = frontend();
    // The two norms are compared on validation, so the quickstart always holds a split out.
    cfg.validation = Validation::Split;
    let run_opts = RunOptions {
        resume: true,
        quiet: opts.quiet,
        ..RunOptions::default()
    };
    let summary = train::train(cfg, &run_dir, Device::Cpu, &run_opts)?;
    let test = train::evaluate::evaluate_run(&run_dir, None, Split::Test, Device::Cpu)?;
    Ok(NormResult {
        norm: norm.to_string(),
        run_dir,
        summary,
        test,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "quickstart finished in {:.0} s", self.seconds)?;
        writeln!(f, "data set: {}", self.data.display())?;
        writeln!(
            f,
            "\n{:<6} {:>6} {:>9} {:>9} {:>8} {:>9}  run folder",
            "norm", "epochs", "val macro", "test acc", "macro", "log loss"
        )?;
        for (i, r) in self.results.iter().enumerate() {
            writeln!(
                f,
                "{:<6} {:>6} {:>9.3} {:>9.3} {:>8.3} {:>9.3}  {}{}",
                r.norm,
                r.summary.epochs_done,
                r.summary.best_val_macro_accuracy.unwrap_or(f64::NAN),
                r.test.accuracy,
                r.test.macro_accuracy,
                r.test.log_loss,
                r.run_dir.display(),
                if i == self.best { "  <- exported" } else { "" }
            )?;
        }
        let best = &self.results[self.best].run_dir;
        writeln!(f, "\nwritten:")?;
        for (what, p) in [
            ("metrics", best.join("metrics.json")),
            ("confusion matrix", best.join("confusion.png")),
            ("learning curves", best.join("curves.png")),
            ("ONNX model", self.onnx.clone()),
        ] {
            writeln!(f, "  {what:<17} {}", p.display())?;
        }
        writeln!(f, "\nexample clips (tract):")?;
        for (path, r) in &self.classified {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            match r {
                Ok(p) => {
                    let top: Vec<String> = p
                        .top_k(&self.labels, 2)
                        .iter()
                        .map(|(l, s)| format!("{l} {s:.2}"))
                        .collect();
                    writeln!(f, "  {name:<24} {}", top.join(", "))?
                }
                Err(e) => writeln!(f, "  {name:<24} error: {e}")?,
            }
        }
        write!(
            f,
            "\nnext: asc classify --model {} YOUR.wav",
            self.onnx.display()
        )
    }
}
