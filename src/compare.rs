//! The seeds' experiment (`asc compare`): the same model trained with each norm over several
//! seeds, with identical data order, augmentation and shared-layer initial weights per seed
//! (all drawn from the seed), selected on validation only and scored on the test list. The
//! table reports mean ± sample standard deviation, so a gap can be read against the noise.

use crate::dataset::Split;
use crate::fsutil::write_atomic;
use crate::train::{self, evaluate, metrics::Metrics, RunOptions, TrainConfig};
use candle_core::Device;
use std::fmt::Write;
use std::path::PathBuf;

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// The base experiment; `norm` and `seed` are replaced per run.
    pub base: TrainConfig,
    pub norms: Vec<String>,
    pub seeds: Vec<u64>,
    pub out: PathBuf,
    pub device: Device,
    pub quiet: bool,
}

/// One trained run.
#[derive(Debug, Clone)]
pub struct Cell {
    pub seed: u64,
    pub best_epoch: u64,
    pub val_macro_accuracy: f64,
    pub test: Metrics,
    pub clips_per_second: f64,
}

/// All runs of one norm.
#[derive(Debug, Clone)]
pub struct Row {
    pub norm: String,
    pub params: usize,
    pub cells: Vec<Cell>,
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Trains and tests every (norm, seed); runs already finished in `out` are reused, so an
/// interrupted comparison continues where it stopped. Writes `results.md`, `results.csv`
/// (one line per run) and `results.png`.
pub fn run(opts: &Options) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for norm in &opts.norms {
        let mut row = Row {
            norm: norm.clone(),
            params: 0,
            cells: Vec::new(),
        };
        for &seed in &opts.seeds {
            if !opts.quiet {
                eprintln!("compare: {norm}, seed {seed}");
            }
            let run_dir = opts.out.join(format!("{norm}-seed{seed}"));
            let cfg = TrainConfig {
                norm: norm.clone(),
                seed,
                ..opts.base.clone()
            };
            let run_opts = RunOptions {
                resume: true,
                stop_after_epochs: None,
                quiet: opts.quiet,
            };
            let s = train::train(cfg, &run_dir, opts.device.clone(), &run_opts)?;
            let test = evaluate::evaluate(&run_dir, None, Split::Test, opts.device.clone())?;
            row.params = s.params;
            row.cells.push(Cell {
                seed,
                best_epoch: s.best_epoch.unwrap_or(0),
                val_macro_accuracy: s.best_val_macro_accuracy,
                test,
                clips_per_second: s.clips_per_second,
            });
        }
        rows.push(row);
        write_results(opts, &rows)?;
    }
    Ok(rows)
}

fn stat(row: &Row, f: impl Fn(&Cell) -> f64) -> (f64, f64) {
    mean_std(&row.cells.iter().map(f).collect::<Vec<_>>())
}

/// The Markdown table: one line per norm, mean ± std over seeds.
pub fn markdown(opts: &Options, rows: &[Row]) -> String {
    let mut s = format!(
        "# Norm comparison: {} on {}, {} seed(s) ({}), {} epochs\n\n\
         Model selection on the validation split; figures on the test list.\n\n\
         | norm | params | test accuracy | test macro accuracy | test log loss | val macro accuracy | clips/s |\n\
         |---|---|---|---|---|---|---|\n",
        opts.base.model.name,
        opts.base.data.display(),
        opts.seeds.len(),
        opts.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        opts.base.epochs
    );
    let pm = |(m, sd): (f64, f64)| format!("{m:.3} ± {sd:.3}");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.norm,
            r.params,
            pm(stat(r, |c| c.test.accuracy)),
            pm(stat(r, |c| c.test.macro_accuracy)),
            pm(stat(r, |c| c.test.log_loss)),
            pm(stat(r, |c| c.val_macro_accuracy)),
            stat(r, |c| c.clips_per_second).0
        );
    }
    s
}

/// One CSV line per run, for the reader's own statistics.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "norm,seed,params,best_epoch,val_macro_accuracy,test_accuracy,test_macro_accuracy,test_log_loss,clips_per_second\n",
    );
    for r in rows {
        for c in &r.cells {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.2}",
                r.norm,
                c.seed,
                r.params,
                c.best_epoch,
                c.val_macro_accuracy,
                c.test.accuracy,
                c.test.macro_accuracy,
                c.test.log_loss,
                c.clips_per_second
            );
        }
    }
    s
}

fn write_results(opts: &Options, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.out)?;
    write_atomic(
        &opts.out.join("results.md"),
        markdown(opts, rows).as_bytes(),
    )?;
    write_atomic(&opts.out.join("results.csv"), csv(rows).as_bytes())?;
    let bars: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| {
            let (m, s) = stat(r, |c| c.test.macro_accuracy);
            (r.norm.clone(), m, s)
        })
        .collect();
    train::plot::bars(
        &opts.out.join("results.png"),
        "test macro accuracy (mean +- std over seeds)",
        &bars,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mean_std;

    #[test]
    fn sample_standard_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.290_994_448_7).abs() < 1e-9);
        assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
    }
}
