//! A comparison spread over a cluster scheduler (`asc compare --slurm`, `asc sweep`): the sweep
//! is written once (`sweep.json`) with a Slurm job-array script (`sweep.sbatch`) that runs one
//! (norm, seed) per array task, each in its own run folder on a shared filesystem, and
//! [`collect`] reads the finished runs back into the same table and plot as `asc compare`.
//! Tasks that failed or never ran are listed by index, so that exactly they can be resubmitted;
//! a resubmitted task resumes its run from its last checkpoint.
//!
//! The contract with the scheduler is one environment variable: task `i` runs
//! `asc sweep task --dir DIR --index i` with `i = $SLURM_ARRAY_TASK_ID`. Any scheduler that
//! can run an indexed array (PBS's `$PBS_ARRAY_INDEX`, a shell loop) can run the same tasks.

use super::{run_cell, run_dir, Cell, Options, Row, CELL_FILE};
use crate::error::FileError;
use crate::fsutil::write_atomic;
use crate::train::{TrainConfig, TrainError};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The file a sweep is described in, in its folder.
pub const SWEEP_FILE: &str = "sweep.json";
/// The job-array script, in the sweep's folder.
pub const SBATCH_FILE: &str = "sweep.sbatch";

/// What a comparison trains, as every task reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The base experiment; `norm` and `seed` are replaced per run.
    pub base: TrainConfig,
    pub norms: Vec<String>,
    pub seeds: Vec<u64>,
    /// `cpu` or `cuda`.
    pub device: String,
}

impl Sweep {
    /// The (norm, seed) of every task, by index: seed by seed, every norm in turn, the order
    /// `asc compare` trains in, so a partly finished sweep has whole seeds first.
    pub fn cells(&self) -> Vec<(String, u64)> {
        self.seeds
            .iter()
            .flat_map(|&seed| self.norms.iter().map(move |n| (n.clone(), seed)))
            .collect()
    }

    /// Reads `dir/sweep.json`.
    pub fn load(dir: &Path) -> Result<Self, FileError> {
        let path = dir.join(SWEEP_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| FileError::new(&path, format!("cannot read the sweep: {e}")))?;
        serde_json::from_str(&text).map_err(|e| FileError::new(&path, e.to_string()))
    }

    /// The comparison's options for the sweep in `dir`.
    fn options(&self, dir: &Path, device: Device, quiet: bool) -> Options {
        Options {
            base: self.base.clone(),
            norms: self.norms.clone(),
            seeds: self.seeds.clone(),
            out: dir.to_path_buf(),
            device,
            quiet,
        }
    }
}

/// The scheduler's settings for each task.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmOptions {
    pub job_name: String,
    /// CPU cores per task (the run's threads).
    pub cpus: usize,
    /// Wall-clock limit per task, Slurm's format (`HH:MM:SS`, `D-HH:MM:SS`).
    pub time: String,
    pub partition: Option<String>,
    /// At most this many tasks at once (`--array=0-N%K`).
    pub max_parallel: Option<usize>,
    /// Further `#SBATCH` lines, as given (`--mem=8G`, `--gres=gpu:1`, `--account=x`).
    pub extra: Vec<String>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            job_name: "asc-compare".into(),
            cpus: 4,
            time: "24:00:00".into(),
            partition: None,
            max_parallel: None,
            extra: Vec::new(),
        }
    }
}

/// Writes the sweep of `opts` into `opts.out` (`sweep.json`, `sweep.sbatch`, `logs/`) for the
/// `asc` at `exe`, and returns the script's path. Paths in the sweep are made absolute: tasks
/// start wherever the scheduler puts them. An existing sweep with other settings is refused,
/// so that a resubmission never mixes two experiments in one folder.
pub fn write_slurm(
    opts: &Options,
    device: &str,
    slurm: &SlurmOptions,
    exe: &Path,
) -> Result<PathBuf, TrainError> {
    let dir = absolute(&opts.out)?;
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| FileError::new(&dir, e.to_string()))?;
    let mut base = opts.base.clone();
    base.data = absolute(&base.data)?;
    base.cache = absolute(&base.cache)?;
    let sweep = Sweep {
        base,
        norms: opts.norms.clone(),
        seeds: opts.seeds.clone(),
        device: device.to_string(),
    };
    if dir.join(SWEEP_FILE).exists() {
        let old = Sweep::load(&dir)?;
        if old != sweep {
            return Err(FileError::new(
                &dir.join(SWEEP_FILE),
                "holds a different sweep (other settings, norms or seeds); use a new --out",
            )
            .into());
        }
    }
    write_atomic(&dir.join(SWEEP_FILE), &serde_json::to_vec_pretty(&sweep)?)?;
    let script = sbatch_script(&sweep, &dir, slurm, &absolute(exe)?);
    let path = dir.join(SBATCH_FILE);
    write_atomic(&path, script.as_bytes())?;
    Ok(path)
}

/// The job-array script: `#SBATCH` lines (comments to any other shell, so the script also runs
/// as `SLURM_ARRAY_TASK_ID=i bash sweep.sbatch`), then one task.
pub fn sbatch_script(sweep: &Sweep, dir: &Path, slurm: &SlurmOptions, exe: &Path) -> String {
    let n = sweep.cells().len();
    let mut s = String::from("#!/bin/bash\n");
    let mut line = |l: String| {
        let _ = writeln!(s, "#SBATCH {l}");
    };
    line(format!("--job-name={}", slurm.job_name));
    let limit = slurm
        .max_parallel
        .map_or(String::new(), |k| format!("%{k}"));
    line(format!("--array=0-{}{limit}", n.saturating_sub(1)));
    line(format!("--cpus-per-task={}", slurm.cpus));
    line(format!("--time={}", slurm.time));
    line(format!("--output={}/logs/%A_%a.out", dir.display()));
    if let Some(p) = &slurm.partition {
        line(format!("--partition={p}"));
    }
    for e in &slurm.extra {
        line(e.clone());
    }
    let cells = sweep
        .cells()
        .iter()
        .enumerate()
        .map(|(i, (norm, seed))| format!("#   {i}: {norm}, seed {seed}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{s}\n# asc compare as a job array: {n} tasks, one (norm, seed) each, in {dir}.\n\
         # Submit: sbatch {script}\n\
         # Collect (any time; lists unfinished tasks): {exe} sweep collect --dir {dir}\n\
         # Tasks:\n{cells}\nset -euo pipefail\n\
         : \"${{SLURM_ARRAY_TASK_ID:?run as a Slurm array task, or set it}}\"\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"\n\
         exec {exe} sweep task --dir {dir} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        dir = shell_quote(&dir.display().to_string()),
        script = shell_quote(&dir.join(SBATCH_FILE).display().to_string()),
        exe = shell_quote(&exe.display().to_string()),
        cpus = slurm.cpus,
    )
}

/// Runs task `index` of the sweep in `dir`: trains (or resumes) its run and scores it.
pub fn run_task(dir: &Path, index: usize, device: Device) -> Result<Cell, TrainError> {
    let sweep = Sweep::load(dir)?;
    let cells = sweep.cells();
    let Some((norm, seed)) = cells.get(index) else {
        return Err(FileError::new(
            &dir.join(SWEEP_FILE),
            format!(
                "task {index} does not exist: the sweep has {} (0 to {})",
                cells.len(),
                cells.len().saturating_sub(1)
            ),
        )
        .into());
    };
    let opts = sweep.options(dir, device, false);
    Ok(run_cell(&opts, norm, *seed)?.1)
}

/// What [`collect`] found.
#[derive(Debug, Clone)]
pub struct Collected {
    pub options: Options,
    /// The finished runs, by norm (a norm with none has no cells).
    pub rows: Vec<Row>,
    /// Indices of the tasks without a finished run.
    pub missing: Vec<usize>,
}

/// Reads the finished runs of the sweep in `dir` and, when there are any, writes
/// `results.md`, `results.csv` and `results.png` as `asc compare` does.
pub fn collect(dir: &Path) -> Result<Collected, TrainError> {
    let sweep = Sweep::load(dir)?;
    let options = sweep.options(dir, Device::Cpu, true);
    let mut rows = super::empty_rows(&sweep.norms);
    let mut missing = Vec::new();
    for (i, (norm, seed)) in sweep.cells().iter().enumerate() {
        let path = run_dir(dir, norm, *seed).join(CELL_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            missing.push(i);
            continue;
        };
        let cell: Cell =
            serde_json::from_str(&text).map_err(|e| FileError::new(&path, e.to_string()))?;
        let row = rows
            .iter_mut()
            .find(|r| &r.norm == norm)
            .expect("norm of the sweep");
        row.params = cell.params;
        row.cells.push(cell);
    }
    if rows.iter().any(|r| !r.cells.is_empty()) {
        super::write_results(&options, &rows)?;
    }
    Ok(Collected {
        options,
        rows,
        missing,
    })
}

/// `indices` as Slurm's `--array` list, ranges joined: `0-2,5,7-8`.
pub fn array_list(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    parts.join(",")
}

fn absolute(p: &Path) -> Result<PathBuf, FileError> {
    std::path::absolute(p).map_err(|e| FileError::new(p, e.to_string()))
}

/// `s` quoted for a POSIX shell where it needs to be.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep() -> Sweep {
        Sweep {
            base: TrainConfig::defaults("cnn", "bn", "/d".into(), "/d/.cache".into()),
            norms: vec!["bn".into(), "l2bn".into()],
            seeds: vec![0, 1, 2],
            device: "cpu".into(),
        }
    }

    #[test]
    fn tasks_run_seed_by_seed() {
        let cells = sweep().cells();
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[0], ("bn".to_string(), 0));
        assert_eq!(cells[1], ("l2bn".to_string(), 0));
        assert_eq!(cells[5], ("l2bn".to_string(), 2));
    }

    #[test]
    fn the_script_is_one_array_task_per_run() {
        let slurm = SlurmOptions {
            partition: Some("cpu".into()),
            max_parallel: Some(2),
            extra: vec!["--mem=8G".into()],
            ..SlurmOptions::default()
        };
        let s = sbatch_script(
            &sweep(),
            Path::new("/shared/my sweep"),
            &slurm,
            Path::new("/opt/asc"),
        );
        for want in [
            "#SBATCH --array=0-5%2\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --partition=cpu\n",
            "#SBATCH --mem=8G\n",
            "#SBATCH --output=/shared/my sweep/logs/%A_%a.out\n",
            "#   5: l2bn, seed 2\n",
            "exec /opt/asc sweep task --dir '/shared/my sweep' --index \"$SLURM_ARRAY_TASK_ID\"\n",
        ] {
            assert!(s.contains(want), "{want:?} not in\n{s}");
        }
    }

    #[test]
    fn array_lists_join_ranges() {
        assert_eq!(array_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_list(&[3]), "3");
        assert_eq!(array_list(&[]), "");
    }

    #[test]
    fn quoting_keeps_plain_paths_plain() {
        assert_eq!(shell_quote("/a/b-c_1.x"), "/a/b-c_1.x");
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
