//! The seeds' experiment (`asc compare`): the same model trained with each norm over several
//! seeds, with identical data order, augmentation and shared-layer initial weights per seed
//! (all drawn from the seed), selected on validation only and scored on the test list. The
//! table reports mean ± sample standard deviation, so a gap can be read against the noise.

use crate::dataset::Split;
use crate::error::FileError;
use crate::fsutil::write_atomic;
use crate::train::{self, evaluate, metrics::Metrics, RunOptions, TrainConfig, TrainError};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub mod cluster;

/// The file a finished run of a comparison keeps its scored cell in (`cluster::collect` reads
/// it back).
pub const CELL_FILE: &str = "compare-cell.json";

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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub seed: u64,
    pub best_epoch: u64,
    /// None when the run had no validation split.
    pub val_macro_accuracy: Option<f64>,
    pub test: Metrics,
    pub clips_per_second: f64,
    /// The model's parameter count.
    #[serde(default)]
    pub params: usize,
}

/// All runs of one norm.
#[derive(Debug, Clone)]
pub struct Row {
    pub norm: String,
    pub params: usize,
    pub cells: Vec<Cell>,
}

/// One row without runs per norm, in order.
pub fn empty_rows(norms: &[String]) -> Vec<Row> {
    norms
        .iter()
        .map(|norm| Row {
            norm: norm.clone(),
            params: 0,
            cells: Vec::new(),
        })
        .collect()
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
/// interrupted comparison continues where it stopped. Seed by seed, every norm in turn: a
/// comparison stopped early (a long one on a CPU is run in pieces) has the same seeds for every
/// norm, which the paired table needs. Writes `results.md`, `results.csv` (one line per run)
/// and `results.png` after each round of seeds.
pub fn run(opts: &Options) -> Result<Vec<Row>, TrainError> {
    let mut rows = empty_rows(&opts.norms);
    for &seed in &opts.seeds {
        for row in rows.iter_mut() {
            let (params, cell) = run_cell(opts, &row.norm, seed)?;
            row.params = params;
            row.cells.push(cell);
        }
        write_results(opts, &rows)?;
    }
    Ok(rows)
}

/// The run folder of one norm with one seed.
pub fn run_dir(out: &Path, norm: &str, seed: u64) -> PathBuf {
    out.join(format!("{norm}-seed{seed}"))
}

/// One norm with one seed: trained (or resumed, or reused) and scored on the test list; the
/// scored cell is also written into the run folder ([`CELL_FILE`]).
pub fn run_cell(opts: &Options, norm: &str, seed: u64) -> Result<(usize, Cell), TrainError> {
    if !opts.quiet {
        eprintln!("compare: {norm}, seed {seed}");
    }
    let run_dir = run_dir(&opts.out, norm, seed);
    let cfg = TrainConfig {
        norm: norm.to_string(),
        seed,
        ..opts.base.clone()
    };
    let run_opts = RunOptions {
        resume: true,
        quiet: opts.quiet,
        ..RunOptions::default()
    };
    let s = train::train(cfg, &run_dir, opts.device.clone(), &run_opts)?;
    let test = evaluate::evaluate_run(&run_dir, None, Split::Test, opts.device.clone())?;
    let cell = Cell {
        seed,
        best_epoch: s.best_epoch.unwrap_or(0),
        val_macro_accuracy: s.best_val_macro_accuracy,
        test,
        clips_per_second: s.clips_per_second,
        params: s.params,
    };
    write_atomic(&run_dir.join(CELL_FILE), &serde_json::to_vec_pretty(&cell)?)?;
    Ok((s.params, cell))
}

/// How the runs' models were chosen, as the cells show it: runs without a validation split
/// (`--validation none`, or `auto` on a small list) keep their last epoch.
fn selection_line(rows: &[Row]) -> &'static str {
    let cells = || rows.iter().flat_map(|r| &r.cells);
    if cells().all(|c| c.val_macro_accuracy.is_none()) {
        "No validation split: each run's model is its last epoch; figures on the test list."
    } else if cells().all(|c| c.val_macro_accuracy.is_some()) {
        "Model selection on the validation split; figures on the test list."
    } else {
        "Model selection on the validation split where a run has one, the last epoch otherwise; \
         figures on the test list."
    }
}

/// Mean training speed over the runs that measured one: a run that was already complete when
/// `compare` resumed trains no epoch and reports 0, which is no speed.
fn speed_cell(row: &Row) -> String {
    let v: Vec<f64> = row
        .cells
        .iter()
        .map(|c| c.clips_per_second)
        .filter(|&v| v > 0.0)
        .collect();
    if v.is_empty() {
        "–".into()
    } else {
        format!("{:.1}", mean_std(&v).0)
    }
}

fn stat(row: &Row, f: impl Fn(&Cell) -> f64) -> (f64, f64) {
    mean_std(&row.cells.iter().map(f).collect::<Vec<_>>())
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom (df ≥ 1; the normal
/// quantile beyond the table).
fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    TABLE.get(df.wrapping_sub(1)).copied().unwrap_or(1.960)
}

/// A norm against the reference norm over the seeds both ran: the per-seed differences in test
/// macro accuracy (same seed = same data order, augmentation and shared initial weights, so the
/// pairing removes most of the seed noise).
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub norm: String,
    pub seeds: usize,
    pub mean_diff: f64,
    pub std_diff: f64,
    /// Half-width of the 95 % confidence interval of the mean difference (Student's t).
    pub ci95: f64,
}

impl Paired {
    /// Whether the difference is larger than the seed noise: the 95 % interval excludes 0.
    pub fn clear(&self) -> bool {
        self.seeds >= 2 && self.mean_diff.abs() > self.ci95
    }
}

/// Paired differences of every other norm against `reference`.
pub fn paired(rows: &[Row], reference: &str) -> Vec<Paired> {
    let Some(base) = rows.iter().find(|r| r.norm == reference) else {
        return Vec::new();
    };
    rows.iter()
        .filter(|r| r.norm != reference)
        .map(|r| {
            let diffs: Vec<f64> = r
                .cells
                .iter()
                .filter_map(|c| {
                    let b = base.cells.iter().find(|b| b.seed == c.seed)?;
                    Some(c.test.macro_accuracy - b.test.macro_accuracy)
                })
                .collect();
            let (mean_diff, std_diff) = mean_std(&diffs);
            let n = diffs.len();
            let ci95 = if n >= 2 {
                t95(n - 1) * std_diff / (n as f64).sqrt()
            } else {
                f64::NAN
            };
            Paired {
                norm: r.norm.clone(),
                seeds: n,
                mean_diff,
                std_diff,
                ci95,
            }
        })
        .collect()
}

/// The norm the paired table compares against: BN when it is in the comparison.
fn reference_norm(rows: &[Row]) -> Option<&str> {
    rows.iter()
        .find(|r| r.norm == "bn")
        .or(rows.first())
        .map(|r| r.norm.as_str())
}

/// The Markdown table: one line per norm, mean ± std over seeds.
pub fn markdown(opts: &Options, rows: &[Row]) -> String {
    let mut s = format!(
        "# Norm comparison: {} on {}, {} seed(s) ({}), {} epochs\n\n\
         {}\n\n\
         | norm | params | test accuracy | test macro accuracy | test log loss | val macro accuracy | clips/s |\n\
         |---|---|---|---|---|---|---|\n",
        opts.base.model.name,
        opts.base.data.display(),
        opts.seeds.len(),
        opts.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        opts.base.epochs,
        selection_line(rows)
    );
    let pm = |(m, sd): (f64, f64)| format!("{m:.3} ± {sd:.3}");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.norm,
            r.params,
            pm(stat(r, |c| c.test.accuracy)),
            pm(stat(r, |c| c.test.macro_accuracy)),
            pm(stat(r, |c| c.test.log_loss)),
            val_cell(r),
            speed_cell(r)
        );
    }
    if let Some(reference) = reference_norm(rows) {
        let pairs = paired(rows, reference);
        if !pairs.is_empty() {
            let _ = write!(
                s,
                "\nPaired against {reference} (same seeds): test macro accuracy difference, \
                 mean ± std over seeds and the 95 % confidence interval of the mean (Student's t).\n\n\
                 | norm | seeds | difference | 95 % interval | larger than the seed noise |\n\
                 |---|---|---|---|---|\n"
            );
            for p in pairs {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:+.3} ± {:.3} | [{:+.3}, {:+.3}] | {} |",
                    p.norm,
                    p.seeds,
                    p.mean_diff,
                    p.std_diff,
                    p.mean_diff - p.ci95,
                    p.mean_diff + p.ci95,
                    if p.clear() { "yes" } else { "no" }
                );
            }
        }
    }
    s
}

/// Validation macro accuracy, mean ± std over the runs that had a validation split.
fn val_cell(r: &Row) -> String {
    let v: Vec<f64> = r
        .cells
        .iter()
        .filter_map(|c| c.val_macro_accuracy)
        .collect();
    if v.is_empty() {
        return "– (no split)".into();
    }
    let (m, sd) = mean_std(&v);
    format!("{m:.3} ± {sd:.3}")
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
                "{},{},{},{},{},{:.6},{:.6},{:.6},{:.2}",
                r.norm,
                c.seed,
                r.params,
                c.best_epoch,
                c.val_macro_accuracy
                    .map_or(String::new(), |v| format!("{v:.6}")),
                c.test.accuracy,
                c.test.macro_accuracy,
                c.test.log_loss,
                c.clips_per_second
            );
        }
    }
    s
}

pub fn write_results(opts: &Options, rows: &[Row]) -> Result<(), FileError> {
    std::fs::create_dir_all(&opts.out).map_err(|e| FileError::new(&opts.out, e.to_string()))?;
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
    use super::*;

    #[test]
    fn sample_standard_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.290_994_448_7).abs() < 1e-9);
        assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
    }

    fn row(norm: &str, accs: &[f64]) -> Row {
        Row {
            norm: norm.into(),
            params: 0,
            cells: accs
                .iter()
                .enumerate()
                .map(|(seed, &a)| Cell {
                    seed: seed as u64,
                    best_epoch: 1,
                    val_macro_accuracy: None,
                    test: Metrics {
                        macro_accuracy: a,
                        ..Metrics::default()
                    },
                    clips_per_second: 0.0,
                    params: 0,
                })
                .collect(),
        }
    }

    /// The header says how the models were chosen as the runs did it, and a run that reported
    /// no speed (complete before `compare` resumed) does not pull the mean to zero.
    #[test]
    fn report_follows_the_runs() {
        let mut small = row("bn", &[0.5, 0.6]);
        assert!(selection_line(std::slice::from_ref(&small)).starts_with("No validation split"));
        assert_eq!(speed_cell(&small), "–");
        small.cells[1].clips_per_second = 40.0;
        assert_eq!(speed_cell(&small), "40.0");
        let mut split = row("bn", &[0.5]);
        split.cells[0].val_macro_accuracy = Some(0.4);
        assert!(selection_line(&[split.clone()])
            .starts_with("Model selection on the validation split;"));
        assert!(selection_line(&[split, small]).contains("the last epoch otherwise"));
    }

    #[test]
    fn paired_differences_use_matching_seeds() {
        // Differences +0.10, +0.12, +0.08, +0.10, +0.10: mean 0.10, sd sqrt(0.0002) = 0.01414,
        // interval half-width 2.776 * 0.01414 / sqrt(5) = 0.01756.
        let bn = row("bn", &[0.50, 0.40, 0.60, 0.45, 0.55]);
        let ubn = row("ubn", &[0.60, 0.52, 0.68, 0.55, 0.65]);
        let gn = row("gn", &[0.60, 0.30, 0.70, 0.35, 0.55]);
        let p = paired(&[bn, ubn, gn], "bn");
        assert_eq!(p.len(), 2);
        assert!((p[0].mean_diff - 0.10).abs() < 1e-12);
        assert!((p[0].ci95 - 0.017_56).abs() < 1e-4, "{}", p[0].ci95);
        assert!(p[0].clear());
        // gn: +0.10, -0.10, +0.10, -0.10, 0: mean 0, not clear.
        assert!(p[1].mean_diff.abs() < 1e-12);
        assert!(!p[1].clear());
        assert_eq!(t95(4), 2.776);
        assert_eq!(t95(100), 1.960);
    }
}
