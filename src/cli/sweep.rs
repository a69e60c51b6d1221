//! `asc sweep`: the tasks of a comparison written with `asc compare --slurm`, run one at a time
//! by a scheduler, and their results gathered (`asc::compare::cluster`).

use asc::compare::cluster;
use asc::train::session;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Run one task of the sweep: train (or resume) and score its (norm, seed).
    Task {
        /// The sweep's folder (`asc compare --slurm --out DIR`).
        #[arg(long)]
        dir: PathBuf,
        /// The task's index: `$SLURM_ARRAY_TASK_ID` (the script says which run each index is).
        #[arg(long)]
        index: usize,
    },
    /// Gather the finished runs into results.md, results.csv and results.png, and list the tasks
    /// still to run (exit status 1 while any are).
    Collect {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.action {
        Action::Task { dir, index } => {
            let sweep = cluster::Sweep::load(&dir)?;
            let device = session::device(&sweep.device)?;
            let cell = cluster::run_task(&dir, index, device)?;
            println!(
                "task {index}: seed {}, test macro accuracy {:.4}, accuracy {:.4}",
                cell.seed, cell.test.macro_accuracy, cell.test.accuracy
            );
            Ok(ExitCode::SUCCESS)
        }
        Action::Collect { dir } => {
            let c = cluster::collect(&dir)?;
            let total = c.missing.len() + c.rows.iter().map(|r| r.cells.len()).sum::<usize>();
            if c.rows.iter().any(|r| !r.cells.is_empty()) {
                print!("{}", asc::compare::markdown(&c.options, &c.rows));
                println!("\nwrote {}/results.{{md,csv,png}}", dir.display());
            }
            if c.missing.is_empty() {
                println!("all {total} tasks finished");
                return Ok(ExitCode::SUCCESS);
            }
            let list = cluster::array_list(&c.missing);
            println!(
                "{} of {total} tasks not finished: {list}\nresubmit them: sbatch --array={list} {}",
                c.missing.len(),
                dir.join(cluster::SBATCH_FILE).display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
