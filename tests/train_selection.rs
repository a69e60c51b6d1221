//! How a run chooses its model, and what it learns from the training list before the first
//! step, run as a user would (`asc train` on a tiny synthetic set):
//! - without a validation split the run's model (`best.safetensors`) is the last epoch's, the
//!   epoch lines carry no validation figures, and `metrics.jsonl` records none (not zeros);
//! - `auto` holds out nothing on a small list and says why; `split` holds out whole locations;
//! - `split.json` names the clips of each side;
//! - the input standardisation statistics are the per-band (or, `global`, the all-band) mean and
//!   std of the training clips' features, computed here independently from `asc features` output;
//! - `asc train --help` shows the defaults the library uses.

mod child;

use asc::train::checkpoint;
use asc::train::TrainConfig;
use candle_core::Device;
use std::path::{Path, PathBuf};

struct Fixture {
    dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = child::tiny_training_set(dir.path(), 2);
        let data = dir.path().join("data");
        Self { dir, data, config }
    }

    /// The `asc train` command into `name` with `extra` flags.
    fn command(&self, name: &str, extra: &[&str]) -> std::process::Command {
        let mut cmd = child::asc();
        cmd.args(["train", "--data"])
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .arg("--out")
            .arg(self.dir.path().join(name))
            .args(extra);
        cmd
    }

    /// `asc train` into `name` with `extra` flags; returns the run folder and stderr.
    fn train(&self, name: &str, extra: &[&str]) -> (PathBuf, String) {
        let out = child::run(&mut self.command(name, extra));
        assert_eq!(out.code, Some(0), "{}", out.describe());
        (self.dir.path().join(name), out.stderr)
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn epochs(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The weights (parameters and buffers) of a checkpoint file, by name.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let loaded = checkpoint::load(path, &Device::Cpu).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = loaded
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("extra."))
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn without_validation_the_last_epoch_is_the_model() {
    let f = Fixture::new();
    let (run, stderr) = f.train("none", &["--validation", "none", "--watch-test"]);
    assert!(!stderr.contains("val "), "no validation figures: {stderr}");
    assert!(stderr.contains("test acc"), "{stderr}");
    for e in epochs(&run) {
        assert!(e["val_macro_accuracy"].is_null(), "{e}");
        assert!(e["test_macro_accuracy"].as_f64().is_some(), "{e}");
        // Every epoch names the build, kernel path and threads that computed it.
        let build = e["build"].as_str().unwrap_or_default();
        assert!(
            build.starts_with(&format!("asc {}", asc::BUILD)) && build.contains(" kernels, "),
            "{e}"
        );
    }
    let state = json(&run.join("state.json"));
    assert_eq!(state["best_epoch"], 2);
    assert!(state["best_val_macro_accuracy"].is_null());
    assert_eq!(
        weights(&run.join("best.safetensors")),
        weights(&run.join("checkpoint.safetensors")),
        "best.safetensors holds the last epoch's weights"
    );
    let split = json(&run.join("split.json"));
    assert_eq!(split["validation"].as_array().unwrap().len(), 0);
    let meta = std::fs::read_to_string(f.data.join("evaluation_setup/fold1_train.csv")).unwrap();
    assert_eq!(
        split["train"].as_array().unwrap().len(),
        meta.lines().count() - 1,
        "every clip of the training list trains"
    );
}

#[test]
fn auto_holds_out_nothing_on_a_small_list_and_says_why() {
    let f = Fixture::new();
    let (run, stderr) = f.train("auto", &[]);
    assert!(
        stderr.contains("fewer than 1000") && stderr.contains("last epoch"),
        "{stderr}"
    );
    assert_eq!(json(&run.join("config.json"))["validation"], "auto");
    assert!(json(&run.join("split.json"))["validation"]
        .as_array()
        .unwrap()
        .is_empty());
    // Every run reports its cost per 1 s clip, and `asc complexity --run` says the same.
    assert!(
        stderr.contains("per 1 s clip: DCASE 2025 limits:"),
        "{stderr}"
    );
    let report = json(&run.join("complexity.json"));
    let printed = child::run(
        child::asc()
            .args(["complexity", "--json", "--run"])
            .arg(&run),
    );
    assert_eq!(printed.code, Some(0), "{}", printed.describe());
    let printed: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(printed, report);
    assert!(report["macs"].as_u64().unwrap() > 0);
    let table = std::fs::read_to_string(run.join("complexity.txt")).unwrap();
    assert!(
        table.contains("total") && table.contains("limit 30,000,000"),
        "{table}"
    );
}

/// `asc complexity` before any training: a model by name, a clip length, and clear refusals.
#[test]
fn complexity_of_a_model_by_name() {
    let out = child::run(child::asc().args(["complexity", "--model", "cp-mobile"]));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.contains("61,148  29,419,156"), "{}", out.stdout);
    assert!(
        out.stdout.contains("fp16 122,296 B within"),
        "{}",
        out.stdout
    );
    let ten =
        child::run(child::asc().args(["complexity", "--model", "cp-mobile", "--seconds", "10"]));
    assert!(ten.stdout.contains("input 1 x 256 x 641"), "{}", ten.stdout);
    for (args, says) in [
        (&["complexity"][..], "--run RUN"),
        (&["complexity", "--model", "cnnn"], "cnnn"),
        (
            &["complexity", "--model", "cnn", "--seconds", "0"],
            "--seconds",
        ),
    ] {
        let out = child::run(child::asc().args(args));
        assert_eq!(out.code, Some(1), "{}", out.describe());
        assert!(out.stderr.contains(says), "{}", out.describe());
    }
}

#[test]
fn split_holds_out_whole_locations_and_chooses_on_them() {
    let f = Fixture::new();
    let (run, stderr) = f.train("split", &["--validation", "split"]);
    assert!(stderr.contains("val loss"), "{stderr}");
    let split = json(&run.join("split.json"));
    let names = |side: &str| -> Vec<String> {
        split[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let (train, val) = (names("train"), names("validation"));
    assert!(!val.is_empty());
    // The location is the identifier column of meta.csv.
    let meta = std::fs::read_to_string(f.data.join("meta.csv")).unwrap();
    let location = |file: &str| -> String {
        meta.lines()
            .find(|l| l.starts_with(&format!("{file}\t")))
            .map(|l| l.split('\t').nth(2).unwrap().to_string())
            .unwrap()
    };
    for v in &val {
        assert!(
            train.iter().all(|t| location(t) != location(v)),
            "{v} shares its location with a training clip"
        );
    }
    for e in epochs(&run) {
        assert!(e["val_macro_accuracy"].as_f64().is_some(), "{e}");
    }
}

#[test]
fn input_statistics_are_those_of_the_training_features() {
    for kind in ["per-band", "global"] {
        check_input_statistics(kind);
    }
}

/// The run's `input_norm` buffers against the training clips' `asc features` output: per mel
/// band, or one mean and std over every band repeated for each (`global`).
fn check_input_statistics(kind: &str) {
    let f = Fixture::new();
    let (run, _) = f.train("std", &["--validation", "split", "--input-norm", kind]);
    // The training clips' log-mels as `asc features` writes them, with the run's front end.
    let cfg = json(&run.join("config.json"));
    let frontend = f.dir.path().join("frontend.json");
    std::fs::write(&frontend, cfg["frontend"].to_string()).unwrap();
    let feats = f.dir.path().join("feats");
    let out = child::run(
        child::asc()
            .arg("features")
            .arg(f.data.join("audio"))
            .arg("--out")
            .arg(&feats)
            .arg("--frontend")
            .arg(&frontend),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let m = cfg["frontend"]["n_mels"].as_u64().unwrap() as usize;
    let (mut sum, mut sq, mut n) = (vec![0f64; m], vec![0f64; m], 0f64);
    for clip in json(&run.join("split.json"))["train"].as_array().unwrap() {
        let stem = Path::new(clip.as_str().unwrap()).file_stem().unwrap();
        let spec = npy_f32(&feats.join(stem).with_extension("npy"));
        let frames = spec.len() / m;
        for (b, row) in spec.chunks(frames).enumerate() {
            sum[b] += row.iter().map(|&v| v as f64).sum::<f64>();
            sq[b] += row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
        }
        n += frames as f64;
    }
    if kind == "global" {
        let (s, q) = (sum.iter().sum::<f64>(), sq.iter().sum::<f64>());
        sum = vec![s; m];
        sq = vec![q; m];
        n *= m as f64;
    }
    let w: std::collections::HashMap<_, _> =
        weights(&run.join("best.safetensors")).into_iter().collect();
    let (mean, std) = (&w["buffer.input_norm.mean"], &w["buffer.input_norm.std"]);
    for b in 0..m {
        let mu = sum[b] / n;
        let sd = (sq[b] / n - mu * mu).max(0.0).sqrt().max(1e-2);
        assert!(
            (mean[b] as f64 - mu).abs() <= 1e-4 * mu.abs().max(1.0),
            "{kind} band {b}: mean {} vs {mu}",
            mean[b]
        );
        assert!(
            (std[b] as f64 - sd).abs() <= 1e-4 * sd.max(1.0),
            "{kind} band {b}: std {} vs {sd}",
            std[b]
        );
    }
}

/// A little-endian float32 `.npy` file's data (the header is skipped).
fn npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn train_help_shows_the_library_defaults() {
    let out = child::run(child::asc().args(["train", "--help"]));
    assert_eq!(out.code, Some(0));
    let d = TrainConfig::defaults("cnn", "bn", PathBuf::new(), PathBuf::new());
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for (flag, value) in [
        ("--epochs", d.epochs.to_string()),
        ("--batch-size", d.batch_size.to_string()),
        ("--lr", d.lr.to_string()),
        ("--warmup-steps", d.schedule.warmup_steps().to_string()),
        ("--schedule", d.schedule.kind().to_string()),
        ("--mixup", d.augment.mixup_alpha.to_string()),
        ("--freq-mask", d.augment.freq_mask.to_string()),
        ("--time-mask", d.augment.time_mask.to_string()),
        ("--mixstyle", d.augment.mixstyle_p.to_string()),
        ("--validation-fraction", d.validation_fraction.to_string()),
    ] {
        let at = help
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} missing: {help}"));
        let next = help[at + 2..]
            .find(" --")
            .map_or(help.len(), |i| at + 2 + i);
        assert!(
            help[at..next].contains(&format!("[default: {value}]")),
            "{flag} should show [default: {value}]: {}",
            &help[at..next]
        );
    }
}

#[test]
fn unknown_norm_or_model_is_refused_before_the_run_folder_is_written() {
    let f = Fixture::new();
    for (flag, name, known) in [
        ("--norm", "foo", "l2bn"),
        ("--model", "resnet", "cp-mobile"),
    ] {
        let run = f.dir.path().join(format!("bad-{name}"));
        let out = child::run(
            child::asc()
                .args(["train", "--data"])
                .arg(&f.data)
                .args([flag, name, "--out"])
                .arg(&run),
        );
        assert_ne!(out.code, Some(0), "{}", out.describe());
        assert!(
            out.stderr.contains(&format!("'{name}'")) && out.stderr.contains(known),
            "{}",
            out.describe()
        );
        assert!(!run.exists(), "{} was written", run.display());
    }
}

/// `--init` starts from the given weights: with a learning rate of 0 the parameters stay where
/// the init file put them (another run's trained weights, not the seed's draw), while the input
/// statistics are measured on this run's list; a checkpoint of another model is refused naming
/// the file and the variable (a UBN model from a BN checkpoint).
#[test]
fn init_starts_from_the_given_weights() {
    let f = Fixture::new();
    let (first, _) = f.train("first", &["--validation", "none"]);
    let init = first.join("best.safetensors");
    let init_arg = init.to_str().unwrap();
    let (second, _) = f.train(
        "second",
        &[
            "--validation",
            "none",
            "--init",
            init_arg,
            "--lr",
            "0",
            "--seed",
            "7",
        ],
    );
    assert_eq!(json(&second.join("config.json"))["init"], init_arg);
    let params = |path: &Path| -> Vec<(String, Vec<f32>)> {
        weights(path)
            .into_iter()
            .filter(|(k, _)| k.starts_with("param."))
            .collect()
    };
    assert_eq!(params(&init), params(&second.join("best.safetensors")));
    // Without --init the same seed draws other weights: the comparison above can fail.
    let (drawn, _) = f.train(
        "drawn",
        &["--validation", "none", "--lr", "0", "--seed", "7"],
    );
    assert_ne!(params(&init), params(&drawn.join("best.safetensors")));

    let out = child::run(
        child::asc()
            .args(["train", "--data"])
            .arg(&f.data)
            .arg("--config")
            .arg(&f.config)
            .args(["--norm", "ubn", "--init", init_arg, "--out"])
            .arg(f.dir.path().join("wrong")),
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(init_arg) && out.stderr.contains("lacks"),
        "{}",
        out.describe()
    );
}

/// `--trace-batches` writes one line per step with its clips (training clips of split.json)
/// and crop starts, and an interrupted run resumed writes each step once; `--dropout` is the
/// run's dropout.
#[test]
fn trace_batches_records_every_step_once() {
    let f = Fixture::new();
    let (run, _) = f.train(
        "traced",
        &[
            "--validation",
            "none",
            "--trace-batches",
            "--stop-after",
            "1",
            "--dropout",
            "0.5",
        ],
    );
    assert_eq!(json(&run.join("config.json"))["model"]["dropout"], 0.5);
    let (run2, _) = f.train(
        "traced",
        &["--validation", "none", "--trace-batches", "--resume"],
    );
    assert_eq!(run, run2);
    let train: Vec<String> =
        serde_json::from_value(json(&run.join("split.json"))["train"].clone()).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("batches.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(
        steps,
        (0..steps.len() as u64).collect::<Vec<_>>(),
        "each step once, in order"
    );
    let epochs_done = epochs(&run).len();
    assert_eq!(
        lines.last().unwrap()["epoch"].as_u64().unwrap() as usize,
        epochs_done
    );
    let mut seen_per_epoch = vec![0usize; epochs_done];
    for l in &lines {
        let clips = l["clips"].as_array().unwrap();
        assert_eq!(clips.len(), l["starts"].as_array().unwrap().len());
        for c in clips {
            assert!(train.contains(&c.as_str().unwrap().to_string()), "{c}");
        }
        seen_per_epoch[l["epoch"].as_u64().unwrap() as usize - 1] += clips.len();
    }
    // Every training clip once per epoch (the last partial batch is kept unless it is 1 clip).
    for seen in seen_per_epoch {
        assert!(
            seen + 1 >= train.len() && seen <= train.len(),
            "{seen} of {}",
            train.len()
        );
    }
}

/// A teacher logits table for the fixture's data set: `logit` on each clip's own class, 0
/// elsewhere, the class columns in reverse order (they are matched by name), one row for a clip
/// that is not in the data set (ignored), and `edit` applied to the data rows.
fn teacher_table(
    f: &Fixture,
    logit: f32,
    edit: impl Fn(usize, String) -> Option<String>,
) -> PathBuf {
    let meta = std::fs::read_to_string(f.data.join("meta.csv")).unwrap();
    let rows: Vec<(String, String)> = meta
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split('\t');
            (
                cells.next().unwrap().to_string(),
                cells.next().unwrap().to_string(),
            )
        })
        .collect();
    let mut labels: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    labels.sort();
    labels.dedup();
    labels.reverse();
    let mut text = format!("filename\t{}\n", labels.join("\t"));
    for (i, (file, label)) in rows.iter().enumerate() {
        let logits: Vec<String> = labels
            .iter()
            .map(|l| {
                if l == label {
                    logit.to_string()
                } else {
                    "0".to_string()
                }
            })
            .collect();
        if let Some(line) = edit(i, format!("{file}\t{}", logits.join("\t"))) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text.push_str(&format!(
        "audio/not-in-the-set.wav\t{}\n",
        vec!["1"; labels.len()].join("\t")
    ));
    let path = f.dir.path().join(format!("teacher-{}.tsv", text.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// [`teacher_table`]'s logits as an .npy matrix in meta.csv's row order, classes alphabetical.
fn teacher_matrix(f: &Fixture, logit: f32) -> PathBuf {
    let meta = std::fs::read_to_string(f.data.join("meta.csv")).unwrap();
    let labels: Vec<&str> = meta
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    let mut classes = labels.clone();
    classes.sort();
    classes.dedup();
    let matrix = ndarray::Array2::from_shape_fn((labels.len(), classes.len()), |(i, c)| {
        if classes[c] == labels[i] {
            logit
        } else {
            0.0
        }
    });
    let path = f.dir.path().join("teacher.npy");
    ndarray_npy::write_npy(&path, &matrix).unwrap();
    path
}

/// `--teacher-logits`: with λ = 1 the teacher's term weighs nothing and the run equals one
/// without a teacher bit for bit (mixup on, so mixed teacher targets are exercised); with the
/// default λ the weights differ; the settings are kept in config.json; a file that does not fit
/// is refused before training, naming the file and the line or clip.
#[test]
fn distillation_from_teacher_logits() {
    let f = Fixture::new();
    let table = teacher_table(&f, 3.0, |_, line| Some(line));
    let table_arg = table.to_str().unwrap();
    let common = ["--validation", "none", "--mixup", "0.3"];
    let (plain, _) = f.train("plain", &common);
    let with = |name: &str, teacher: &str, extra: &[&str]| {
        let args: Vec<&str> = common
            .iter()
            .copied()
            .chain(["--teacher-logits", teacher])
            .chain(extra.iter().copied())
            .collect();
        f.train(name, &args).0
    };
    let one = with("lambda1", table_arg, &["--kd-lambda", "1"]);
    assert_eq!(
        weights(&plain.join("best.safetensors")),
        weights(&one.join("best.safetensors"))
    );
    let kd = with("kd", table_arg, &[]);
    assert_ne!(
        weights(&plain.join("best.safetensors")),
        weights(&kd.join("best.safetensors"))
    );
    let distill = &json(&kd.join("config.json"))["distill"];
    assert_eq!(distill["lambda"], 0.02);
    assert_eq!(distill["temperature"], 2.0);
    assert_eq!(distill["teacher_logits"], table_arg);
    // The same logits as an .npy matrix: meta.csv's rows in order, classes alphabetical.
    let npy = teacher_matrix(&f, 3.0);
    let from_npy = with("npy", npy.to_str().unwrap(), &[]);
    assert_eq!(
        weights(&kd.join("best.safetensors")),
        weights(&from_npy.join("best.safetensors"))
    );

    let refused = |table: &Path, extra: &[&str]| {
        let mut args = vec!["--teacher-logits", table.to_str().unwrap()];
        args.extend(extra);
        let out = child::run(&mut f.command("refused", &args));
        assert_eq!(out.code, Some(1), "{}", out.describe());
        out.stderr
    };
    let bad_number = teacher_table(&f, 3.0, |i, line| {
        Some(if i == 1 {
            line.replacen("\t0", "\tzero", 1)
        } else {
            line
        })
    });
    let stderr = refused(&bad_number, &[]);
    assert!(
        stderr.contains("line 3") && stderr.contains("\"zero\""),
        "{stderr}"
    );
    let missing = teacher_table(&f, 3.0, |i, line| (i != 0).then_some(line));
    let stderr = refused(&missing, &[]);
    assert!(stderr.contains("no teacher logits for 1 of"), "{stderr}");
    let stderr = refused(&table, &["--kd-temperature", "0"]);
    assert!(stderr.contains("temperature must be positive"), "{stderr}");
    let out = child::run(
        child::asc()
            .args(["train", "--data"])
            .arg(&f.data)
            .args(["--kd-lambda", "0.5", "--out"])
            .arg(f.dir.path().join("no-teacher")),
    );
    assert!(
        out.stderr.contains("need --teacher-logits"),
        "{}",
        out.describe()
    );
}

/// A synthetic device response set: a decaying noise burst at the data's rate and a short
/// low-pass response at 8 kHz (resampled on reading).
fn response_folder(f: &Fixture) -> PathBuf {
    let folder = f.dir.path().join("irs");
    std::fs::create_dir_all(&folder).unwrap();
    let write = |name: &str, rate: u32, samples: &[f32]| {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(folder.join(name), spec).unwrap();
        samples.iter().for_each(|&v| w.write_sample(v).unwrap());
        w.finalize().unwrap();
    };
    let mut state = 7u32;
    let burst: Vec<f32> = (0..800)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * (-(i as f32) / 120.0).exp()
        })
        .collect();
    write("room.wav", 16_000, &burst);
    write("phone.wav", 8_000, &[0.25, 0.5, 0.25]);
    folder
}

/// `--dir`: training clips are convolved with the folder's responses (every one with
/// `--dir-p 1`), which changes the trained weights, and `--dir-devices` limits it to clips of
/// those devices; the setting is kept in config.json; an empty folder, an unreadable response
/// and `--dir-p` without `--dir` are refused.
#[test]
fn device_impulse_responses_augment_training() {
    let f = Fixture::new();
    let folder = response_folder(&f);
    let common = ["--validation", "none"];
    let (plain, _) = f.train("plain", &common);
    let mut args = common.to_vec();
    args.extend(["--dir", folder.to_str().unwrap(), "--dir-p", "1"]);
    let (dir, _) = f.train("dir", &args);
    assert_ne!(
        weights(&plain.join("best.safetensors")),
        weights(&dir.join("best.safetensors"))
    );
    // Restricted to a device no clip has: nothing is convolved and no draw is made, so the run
    // is the plain one bit for bit.
    args.extend(["--dir-devices", "zz"]);
    let (none, _) = f.train("dir-zz", &args);
    assert_eq!(
        weights(&plain.join("best.safetensors")),
        weights(&none.join("best.safetensors"))
    );
    let cfg = json(&dir.join("config.json"));
    assert_eq!(cfg["dir"]["probability"], 1.0);
    assert_eq!(cfg["dir"]["folder"], folder.to_str().unwrap());

    let empty = f.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = child::run(&mut f.command("e", &["--dir", empty.to_str().unwrap()]));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("no impulse responses"),
        "{}",
        out.describe()
    );
    std::fs::write(folder.join("broken.wav"), b"RIFF nonsense").unwrap();
    let out = child::run(&mut f.command("b", &["--dir", folder.to_str().unwrap()]));
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("broken.wav"), "{}", out.describe());
    let out = child::run(&mut f.command("p", &["--dir-p", "0.5"]));
    assert!(
        out.stderr.contains("--dir-p and --dir-devices need --dir"),
        "{}",
        out.describe()
    );
}
