//! Training under faults, with `asc train` as a child process on a tiny synthetic data set
//! (60 clips of 0.25 s, 32 mel bands, 3 epochs of 4 steps): a run killed with SIGKILL anywhere
//! resumes from its last checkpoint to the same final weights as an uninterrupted run, a
//! checkpoint is never half-written, a non-finite loss stops the run naming the step, and a
//! full disk fails the save cleanly. All compare whole checkpoints tensor by tensor.

mod child;

use asc::train::checkpoint;
use candle_core::Device;
use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCHS: u64 = 3;

/// A tiny data set and a run config for it, in a temporary folder.
struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = child::tiny_training_set(dir.path(), EPOCHS);
        Self { dir, config }
    }

    fn run_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `asc train` into `run` (with `--resume` when asked), stderr to `run.log`.
    fn train(&self, run: &Path, resume: bool) -> Command {
        let mut cmd = child::asc();
        cmd.args(["train", "--data"])
            .arg(self.dir.path().join("data"))
            .arg("--config")
            .arg(&self.config)
            .arg("--out")
            .arg(run);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    }

    /// An uninterrupted run's final checkpoint.
    fn reference(&self) -> Tensors {
        let run = self.run_dir("reference");
        let out = child::run(&mut self.train(&run, false));
        assert_eq!(out.code, Some(0), "{}", out.describe());
        tensors(&run.join("checkpoint.safetensors"))
    }
}

/// Every tensor of a checkpoint (weights, buffers, optimiser moments) as raw f32 values.
type Tensors = HashMap<String, Vec<f32>>;

fn tensors(path: &Path) -> Tensors {
    let loaded = checkpoint::load(path, &Device::Cpu).unwrap();
    loaded
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

fn assert_same_weights(got: &Tensors, want: &Tensors, what: &str) {
    let mut names: Vec<&String> = want.keys().collect();
    names.sort();
    assert_eq!(got.len(), want.len(), "{what}: tensor count");
    for name in names {
        assert!(got[name] == want[name], "{what}: {name} differs");
    }
}

/// Epochs recorded in a checkpoint that must load completely (`None`: no checkpoint yet).
fn checkpoint_epochs(run: &Path) -> Option<u64> {
    let path = run.join("checkpoint.safetensors");
    if !path.exists() {
        return None;
    }
    let loaded = checkpoint::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("a checkpoint that does not load was left behind: {e}"));
    Some(loaded.state["train"]["epochs_done"].as_u64().unwrap())
}

/// Where to kill a running `asc train`.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Once the run has written its config: feature preparation or the first epoch.
    ConfigWritten,
    /// As soon as a checkpoint with this many epochs is on disk (while the rest of that
    /// epoch's files are written, or early in the next epoch).
    CheckpointAt(u64),
    /// This long after starting.
    After(Duration),
}

/// Starts `cmd`, waits for `point`, then SIGKILLs it; returns whether it was still running.
fn kill_at(mut cmd: Command, run: &Path, point: KillPoint) -> bool {
    let mut proc = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if proc.try_wait().unwrap().is_some() {
            break;
        }
        let reached = match point {
            KillPoint::ConfigWritten => run.join("config.json").exists(),
            // Reading a checkpoint another process renames into place is safe: the rename
            // swaps whole files.
            KillPoint::CheckpointAt(n) => checkpoint_epochs(run).is_some_and(|e| e >= n),
            KillPoint::After(t) => started.elapsed() >= t,
        };
        if reached {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run never reached {point:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = proc.kill();
    let status = proc.wait().unwrap();
    status.signal() == Some(libc::SIGKILL)
}

fn stray_temps(run: &Path) -> Vec<String> {
    std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// Kills the run at each point in turn (resuming after each), then lets it finish; the final
/// checkpoint must equal the uninterrupted run's, and every checkpoint seen between kills must
/// load and never go backwards.
fn interrupted_run_matches(fixture: &Fixture, name: &str, points: &[KillPoint], want: &Tensors) {
    let run = fixture.run_dir(name);
    let mut last = 0;
    let mut killed = 0;
    for (i, &point) in points.iter().enumerate() {
        if kill_at(fixture.train(&run, i > 0), &run, point) {
            killed += 1;
        }
        let epochs = checkpoint_epochs(&run).unwrap_or(0);
        eprintln!("{name}: {point:?}: checkpoint at epoch {epochs}");
        assert!(
            epochs >= last,
            "{name}: checkpoint went back from {last} to {epochs}"
        );
        last = epochs;
    }
    let out = child::run(&mut fixture.train(&run, true));
    assert_eq!(out.code, Some(0), "{name}: {}", out.describe());
    assert_same_weights(
        &tensors(&run.join("checkpoint.safetensors")),
        want,
        &format!("{name} (killed {killed} times)"),
    );
    assert!(stray_temps(&run).is_empty(), "{:?}", stray_temps(&run));
    eprintln!(
        "{name}: {killed} of {} kills hit a running process",
        points.len()
    );
}

#[test]
fn runs_killed_anywhere_resume_to_the_same_weights() {
    let fixture = Fixture::new();
    let started = Instant::now();
    let want = fixture.reference();
    let full = started.elapsed();
    eprintln!("uninterrupted run: {full:?}");
    // At the events that matter: before any checkpoint, right after each one.
    interrupted_run_matches(
        &fixture,
        "at_events",
        &[
            KillPoint::ConfigWritten,
            KillPoint::CheckpointAt(1),
            KillPoint::CheckpointAt(2),
        ],
        &want,
    );
    // At arbitrary times: fractions of an uninterrupted run's duration after each (re)start,
    // short enough that every kill finds the run still going.
    let times: Vec<KillPoint> = [0.1, 0.3, 0.2, 0.35, 0.15]
        .iter()
        .map(|f| KillPoint::After(full.mul_f64(*f)))
        .collect();
    interrupted_run_matches(&fixture, "at_times", &times, &want);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let fixture = Fixture::new();
    // From the start: a learning rate of 1e30 sends the weights to infinity in one step.
    let run = fixture.run_dir("diverges_at_once");
    let out = child::run(fixture.train(&run, false).args(["--lr", "1e30"]));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("step 1 (epoch 1): the loss is")
            && out.stderr.contains("No epoch finished")
            && !run.join("checkpoint.safetensors").exists(),
        "{}",
        out.describe()
    );
    // After a good epoch: the run's config is given the same learning rate before resuming.
    let run = fixture.run_dir("diverges_later");
    let out = child::run(fixture.train(&run, false).args(["--stop-after", "1"]));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let good = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let steps_per_epoch = checkpoint::load(&run.join("checkpoint.safetensors"), &Device::Cpu)
        .unwrap()
        .state["train"]["step"]
        .as_u64()
        .unwrap();
    let config_path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["lr"] = serde_json::json!(1e30);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let out = child::run(&mut fixture.train(&run, true));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let message = out.stderr.lines().last().unwrap_or_default();
    let step: u64 = message
        .strip_prefix("error: step ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step in {message:?}"));
    assert!(
        (steps_per_epoch..2 * steps_per_epoch).contains(&step),
        "step {step} is not in epoch 2 ({steps_per_epoch} steps per epoch)"
    );
    assert!(
        message.contains("(epoch 2): the loss is")
            && message.contains("The last good checkpoint (after epoch 1) is kept in"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(run.join("checkpoint.safetensors")).unwrap(),
        good,
        "the last good checkpoint was changed"
    );
}

/// `asc train` with its file size limited to `bytes`: writes beyond it fail with EFBIG, as they
/// would with ENOSPC on a full disk (mounting a small file system needs privileges CI lacks).
fn with_file_size_limit(mut cmd: Command, bytes: u64) -> Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Without this the kernel kills the process with SIGXFSZ instead of failing the write.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_full_disk_fails_the_save_cleanly_and_loses_nothing() {
    let fixture = Fixture::new();
    let want = fixture.reference();
    let run = fixture.run_dir("full_disk");
    let out = child::run(fixture.train(&run, false).args(["--stop-after", "1"]));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let checkpoint_path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&checkpoint_path).unwrap();
    // Room for the features, configs, curves and the best model, not for the checkpoint with
    // its optimiser moments.
    let limit = good.len() as u64 / 2;
    assert!(
        std::fs::metadata(run.join("best.safetensors"))
            .unwrap()
            .len()
            < limit
    );
    let out = child::run(&mut with_file_size_limit(fixture.train(&run, true), limit));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let want_message = format!(
        "error: {}: cannot write: File too large",
        checkpoint_path.display()
    );
    assert!(out.stderr.contains(&want_message), "{}", out.describe());
    assert_eq!(
        std::fs::read(&checkpoint_path).unwrap(),
        good,
        "checkpoint changed"
    );
    assert!(stray_temps(&run).is_empty(), "{:?}", stray_temps(&run));
    // With room again, the run resumes from the checkpoint the failed save left alone.
    let out = child::run(&mut fixture.train(&run, true));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_same_weights(&tensors(&checkpoint_path), &want, "after a full disk");
}

/// Appends `rows` (TAB-separated, without newlines) to a list file of the data set.
fn append_rows(path: &Path, rows: &[String]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The first data row's file name of a list file.
fn first_listed(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let row = text.lines().nth(1).unwrap();
    row.split('\t').next().unwrap().to_string()
}

#[test]
fn bad_rows_stop_training_unless_skipped_with_a_warning_each() {
    let fixture = Fixture::new();
    let data = fixture.dir.path().join("data");
    let meta = data.join("meta.csv");
    let train_list = data.join("evaluation_setup/fold1_train.csv");
    let meta_lines = std::fs::read_to_string(&meta).unwrap().lines().count();
    let duplicate = std::fs::read_to_string(&meta)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    append_rows(
        &meta,
        &[
            "audio/airport-nowhere-0-0-a.wav\tairport\tnowhere-0\ta".into(),
            "audio/only-two-fields.wav\tairport".into(),
            duplicate,
            "../outside-0-0-a.wav\tairport\toutside-0\ta".into(),
        ],
    );
    let train_lines = std::fs::read_to_string(&train_list)
        .unwrap()
        .lines()
        .count();
    let evaluate_clip = first_listed(&data.join("evaluation_setup/fold1_evaluate.csv"));
    append_rows(&train_list, &[format!("{evaluate_clip}\tspaceship")]);
    // A listed clip whose audio is not an audio file.
    let corrupt = first_listed(&train_list);
    std::fs::write(data.join(&corrupt), b"not audio at all").unwrap();

    let run = fixture.run_dir("strict");
    let out = child::run(&mut fixture.train(&run, false));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let want = format!(
        "error: {}:{}: audio file {} does not exist (--skip-bad leaves bad rows out)",
        meta.display(),
        meta_lines + 1,
        data.join("audio/airport-nowhere-0-0-a.wav").display()
    );
    assert!(out.stderr.contains(&want), "{}", out.describe());

    let run = fixture.run_dir("skipping");
    let out = child::run(
        fixture
            .train(&run, false)
            .args(["--skip-bad", "--epochs", "1"]),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: skipped "))
        .collect();
    let expected = [
        format!("{}:{}: audio file", meta.display(), meta_lines + 1),
        format!("{}:{}: malformed row", meta.display(), meta_lines + 2),
        format!("{}:{}: duplicate entry", meta.display(), meta_lines + 3),
        format!(
            "{}:{}: ../outside-0-0-a.wav escapes",
            meta.display(),
            meta_lines + 4
        ),
        format!(
            "{}:{}: unknown label \"spaceship\"",
            train_list.display(),
            train_lines + 1
        ),
        format!(
            "{}: not an audio file this tool reads",
            data.join(&corrupt).display()
        ),
    ];
    for words in &expected {
        assert!(
            warnings.iter().any(|w| w.contains(words.as_str())),
            "no warning saying {words:?}: {warnings:#?}"
        );
    }
    assert_eq!(warnings.len(), expected.len() + 1, "{warnings:#?}");
    assert!(
        warnings
            .last()
            .unwrap()
            .contains("skipped 6 bad rows or clips (--skip-bad)"),
        "{warnings:#?}"
    );
    assert!(
        out.stdout.contains("6 bad rows or clips skipped"),
        "{}",
        out.stdout
    );
}
