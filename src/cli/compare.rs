//! `asc compare`: one model, several norms, several seeds, one table (`asc::compare`); with
//! `--slurm`, the same comparison written as a Slurm job array (`asc::compare::cluster`), whose
//! tasks `asc sweep` runs and collects.

use super::experiment::{build_config, ExperimentArgs};
use asc::compare::cluster::{self, SlurmOptions};
use asc::train::session;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    exp: ExperimentArgs,
    /// Comma-separated norm names, of the registry's (`asc::nn::norm::NORM_NAMES`).
    #[arg(long, value_delimiter = ',', help = format!(
        "Comma-separated norm names, each one of {} [default: every registered norm]",
        asc::nn::norm::names_in_words()
    ))]
    norms: Vec<String>,
    /// Number of seeds (0, 1, ..., N-1); every norm sees the same seeds.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Folder for the runs and results.md / results.csv / results.png.
    #[arg(long)]
    out: PathBuf,
    /// Train nothing here: write the comparison as a Slurm job array, one (norm, seed) per task
    /// (OUT/sweep.json, OUT/sweep.sbatch; submit with `sbatch OUT/sweep.sbatch`, gather with
    /// `asc sweep collect --dir OUT`). OUT, the data and the cache must be on a filesystem
    /// every node sees.
    #[arg(long)]
    slurm: bool,
    /// CPU cores per array task.
    #[arg(long, default_value_t = 4, requires = "slurm")]
    slurm_cpus: usize,
    /// Wall-clock limit per task (Slurm's format).
    #[arg(long, default_value = "24:00:00", requires = "slurm")]
    slurm_time: String,
    /// Slurm partition.
    #[arg(long, requires = "slurm")]
    slurm_partition: Option<String>,
    /// At most this many tasks at once.
    #[arg(long, requires = "slurm")]
    slurm_max_parallel: Option<usize>,
    /// A further #SBATCH option, as sbatch takes it (`--sbatch=--mem=8G`); repeatable.
    #[arg(long = "sbatch", requires = "slurm", allow_hyphen_values = true)]
    sbatch: Vec<String>,
}

pub fn run(mut a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = asc::train::parallel::launcher_size().filter(|&n| n > 1) {
        anyhow::bail!(
            "asc compare was started by an MPI launcher with {n} ranks: the ranks would train the same runs into the same folders; run `asc train` under mpirun, or spread a comparison with --slurm"
        );
    }
    if a.norms.is_empty() {
        a.norms = asc::nn::norm::NORM_NAMES.map(String::from).to_vec();
    }
    for n in &a.norms {
        asc::nn::norm::check_name(n)?;
    }
    let opts = asc::compare::Options {
        base: build_config(&a.exp, &a.norms[0], None)?,
        norms: a.norms.clone(),
        seeds: (0..a.seeds.max(1)).collect(),
        out: a.out.clone(),
        device: session::device(&a.exp.device)?,
        quiet: false,
    };
    if a.slurm {
        let slurm = SlurmOptions {
            cpus: a.slurm_cpus,
            time: a.slurm_time.clone(),
            partition: a.slurm_partition.clone(),
            max_parallel: a.slurm_max_parallel,
            extra: a.sbatch.clone(),
            ..SlurmOptions::default()
        };
        let exe = std::env::current_exe()?;
        let script = cluster::write_slurm(&opts, &a.exp.device, &slurm, &exe)?;
        let tasks = opts.norms.len() * opts.seeds.len();
        println!("wrote {} ({tasks} array tasks)", script.display());
        println!("submit:  sbatch {}", script.display());
        println!("collect: asc sweep collect --dir {}", a.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows = asc::compare::run(&opts)?;
    print!("{}", asc::compare::markdown(&opts, &rows));
    println!("\nwrote {}/results.{{md,csv,png}}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
