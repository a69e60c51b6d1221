//! The deployment half run as a user would: train a tiny model, `asc export` (log-mel and
//! `--waveform`), `asc classify` over a folder with broken files in every format, `asc compare`,
//! and a shortened `asc quickstart` end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn asc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asc"))
        .args(args)
        .output()
        .expect("asc runs")
}

fn ok(args: &[&str]) -> String {
    let out = asc(args);
    assert!(
        out.status.success(),
        "asc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small synthetic data set (10 clips per class, 1 s).
fn synth(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    ok(&[
        "synth",
        "--out",
        s(&data),
        "--clips-per-class",
        "10",
        "--seconds",
        "1",
        "--sample-rate",
        "16000",
    ]);
    data
}

/// `asc train` of a one-epoch `cnn` on `data` into `out`, with `extra` flags.
fn train_tiny(data: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--model",
        "cnn",
        "--out",
        s(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--preset",
        "librosa",
    ];
    args.extend(extra);
    ok(&args);
}

#[test]
fn train_export_classify_with_broken_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let run = dir.path().join("run");
    train_tiny(&data, &run, &["--norm", "l2bn"]);
    let model = dir.path().join("m.onnx");
    let wave = dir.path().join("w.onnx");
    let said = ok(&["export", "--run", s(&run), "--out", s(&model)]);
    assert!(said.contains("input 'logmel'"), "{said}");
    ok(&["export", "--run", s(&run), "--out", s(&wave), "--waveform"]);
    // Float16 weights: about half the file, and its cost measured on the evaluation list.
    let half = dir.path().join("h.onnx");
    let said = ok(&["export", "--run", s(&run), "--out", s(&half), "--fp16"]);
    let evaluated = said
        .lines()
        .find(|l| l.starts_with("float16 vs float32 on the evaluation list ("))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(!evaluated.contains("(0 clips)"), "{said}");
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&half) * 10 < size(&model) * 6, "{said}");
    let quarter = dir.path().join("q.onnx");
    // Static int8: weights and the activations convs and dense layers read, calibrated on
    // training clips; int8 weights alone need no data.
    let said = ok(&["export", "--run", s(&run), "--out", s(&quarter), "--int8"]);
    assert!(
        said.contains("int8 vs float32 on the evaluation list ("),
        "{said}"
    );
    assert!(said.contains("uint8 activations: "), "{said}");
    assert!(size(&quarter) * 10 < size(&model) * 4, "{said}");
    let weights_only = dir.path().join("w8.onnx");
    let said = ok(&[
        "export",
        "--run",
        s(&run),
        "--out",
        s(&weights_only),
        "--int8-weights",
    ]);
    assert!(
        said.contains("int8 weights vs float32 on the evaluation list (")
            && !said.contains("activations"),
        "{said}"
    );
    assert!(size(&weights_only) < size(&quarter), "{said}");
    assert!(!asc(&[
        "export",
        "--run",
        s(&run),
        "--out",
        s(&quarter),
        "--int8",
        "--fp16"
    ])
    .status
    .success());

    // A folder with two good clips (one in a subfolder) and two broken files.
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let clips: Vec<PathBuf> = std::fs::read_dir(data.join("audio"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .take(2)
        .collect();
    std::fs::copy(&clips[0], inputs.join("a.wav")).unwrap();
    std::fs::copy(&clips[1], inputs.join("sub/b.wav")).unwrap();
    std::fs::write(inputs.join("garbage.wav"), b"this is not a wav file at all").unwrap();
    let good = std::fs::read(&clips[0]).unwrap();
    std::fs::write(inputs.join("truncated.wav"), &good[..60]).unwrap();

    let out = asc(&[
        "classify",
        "--model",
        s(&model),
        "--format",
        "json",
        s(&inputs),
    ]);
    assert_eq!(out.status.code(), Some(1), "some inputs failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 4);
    let by_name = |n: &str| {
        items
            .iter()
            .find(|i| i["file"].as_str().unwrap().ends_with(n))
            .unwrap()
    };
    for good in ["a.wav", "b.wav"] {
        let item = by_name(good);
        let scores = item["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 6);
        let total: f64 = scores.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{item}");
        assert!(scores.contains_key(item["label"].as_str().unwrap()));
        assert!(!item["windows"].as_array().unwrap().is_empty());
    }
    for bad in ["garbage.wav", "truncated.wav"] {
        let e = by_name(bad)["error"].as_str().unwrap().to_string();
        assert!(e.contains(bad), "error names the file: {e}");
    }

    // DCASE submission format: header, one row per good file, errors on stderr.
    let out = asc(&[
        "classify",
        "--model",
        s(&model),
        "--format",
        "dcase",
        s(&inputs),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("filename\tscene_label\t"), "{text}");
    assert_eq!(lines[0].split('\t').count(), 8);
    assert_eq!(lines.len(), 3, "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("garbage.wav"));

    // The waveform model labels the good files too; table output for people.
    let table = asc(&[
        "classify",
        "--model",
        s(&wave),
        "--top-k",
        "2",
        s(&inputs.join("a.wav")),
    ]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("a.wav"));

    // A model file that is not a model: one clear error, exit status 1, no panic.
    let out = asc(&[
        "classify",
        "--model",
        s(&inputs.join("garbage.wav")),
        s(&inputs),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("garbage.wav") && err.contains("not an ONNX model"),
        "{err}"
    );
}

#[test]
fn compare_writes_table_csv_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    // The arguments of a one-epoch comparison of `norms` over `seeds` seeds into `out`.
    let args = |norms: &str, seeds: &str, out: &Path| -> Vec<String> {
        [
            "compare",
            "--data",
            s(&data),
            "--model",
            "cnn",
            "--norms",
            norms,
            "--seeds",
            seeds,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--preset",
            "librosa",
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    // Runs it; returns its results.csv and the order in which the runs were made.
    let compare = |norms: &str, seeds: &str, out: &Path| {
        let args = args(norms, seeds, out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = asc(&args);
        let log = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(run.status.success(), "asc {args:?} failed: {log}");
        let md = String::from_utf8(run.stdout).unwrap();
        for norm in norms.split(',') {
            assert!(md.contains(&format!("| {norm} |")), "{md}");
        }
        let order: Vec<String> = log
            .lines()
            .filter_map(|l| l.strip_prefix("compare: "))
            .map(str::to_string)
            .collect();
        (
            std::fs::read_to_string(out.join("results.csv")).unwrap(),
            order,
        )
    };
    let out = dir.path().join("cmp");
    let (csv, order) = compare("bn,gn", "2", &out);
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    // Seed by seed, every norm in turn: a comparison stopped early has equal seeds per norm.
    assert_eq!(
        order,
        ["bn, seed 0", "gn, seed 0", "bn, seed 1", "gn, seed 1"],
        "{order:?}"
    );
    assert!(out.join("results.png").exists());
    // Same seed, same data order and initial weights: bn seed 0 of a rerun agrees exactly, in
    // every column but the measured speed (the last).
    let (again, _) = compare("bn", "1", &dir.path().join("cmp2"));
    let seed0 = |t: &str| {
        let line = t.lines().find(|l| l.starts_with("bn,0,")).unwrap();
        line.rsplit_once(',').unwrap().0.to_string()
    };
    assert_eq!(seed0(&csv), seed0(&again));

    // The same comparison as a Slurm job array, its tasks run as the scheduler would run them
    // (the script, one task index in the environment each), one task left out at first.
    let cluster = dir.path().join("cluster");
    let mut slurm = args("bn,gn", "2", &cluster);
    slurm.extend(["--slurm", "--slurm-cpus", "1", "--sbatch=--mem=2G"].map(String::from));
    let slurm: Vec<&str> = slurm.iter().map(String::as_str).collect();
    let written = asc(&slurm);
    assert!(written.status.success(), "{written:?}");
    let script = cluster.join("sweep.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("#SBATCH --array=0-3\n") && text.contains("#SBATCH --mem=2G\n"),
        "{text}"
    );
    let task = |index: Option<usize>| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script).env_remove("SLURM_ARRAY_TASK_ID");
        if let Some(i) = index {
            cmd.env("SLURM_ARRAY_TASK_ID", i.to_string());
        }
        cmd.output().unwrap()
    };
    let unset = task(None);
    assert!(!unset.status.success());
    assert!(String::from_utf8_lossy(&unset.stderr).contains("SLURM_ARRAY_TASK_ID"));
    let beyond = task(Some(4));
    assert!(!beyond.status.success());
    assert!(String::from_utf8_lossy(&beyond.stderr).contains("task 4 does not exist"));
    for i in [0, 1, 3] {
        let out = task(Some(i));
        assert!(out.status.success(), "task {i}: {out:?}");
    }
    let collect = || asc(&["sweep", "collect", "--dir", s(&cluster)]);
    let partial = collect();
    let said = String::from_utf8_lossy(&partial.stdout).to_string();
    assert_eq!(partial.status.code(), Some(1), "{said}");
    assert!(
        said.contains("1 of 4 tasks not finished: 2") && said.contains("sbatch --array=2 "),
        "{said}"
    );
    assert!(task(Some(2)).status.success());
    let full = collect();
    assert!(full.status.success(), "{full:?}");
    let gathered = std::fs::read_to_string(cluster.join("results.csv")).unwrap();
    // Every run equals its local twin (same seed, same data order), all but the speed column.
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(strip(&gathered), strip(&csv));
}

#[test]
fn shortened_quickstart_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("qs");
    let clips = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio");
    let args = [
        "quickstart",
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--clips-per-class",
        "10",
        s(&clips),
    ];
    let report = ok(&args);
    for needle in [
        "l2bn",
        "bn",
        "model.onnx",
        "confusion.png",
        "curves.png",
        "bell.wav",
    ] {
        assert!(report.contains(needle), "report lacks {needle}: {report}");
    }
    let onnx = out.join("model.onnx");
    assert!(onnx.exists());
    let labels = ok(&[
        "classify",
        "--model",
        s(&onnx),
        "--format",
        "csv",
        s(&clips),
    ]);
    assert_eq!(labels.lines().count(), 1 + 3, "{labels}");
    // A rerun reuses the data set and the finished runs.
    let again = ok(&args);
    assert!(again.contains("l2bn"));
}

/// Device-specific models: a general run, a copy fine-tuned on device `a` alone (`--init`,
/// `--devices a`), both exported into one folder; `asc classify --model FOLDER` gives a file of
/// device a (read from its DCASE name, or forced with `--device-id`) the fine-tuned model's
/// output and any other device the general model's, exactly as classifying with each file
/// directly; a folder with two general models is refused.
#[test]
fn device_specific_models_are_picked_by_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["--validation", "none"];
        args.extend(extra);
        train_tiny(&data, out, &args);
    };
    let (general, device_a) = (dir.path().join("general"), dir.path().join("device-a"));
    train(&general, &[]);
    let init = general.join("best.safetensors");
    train(
        &device_a,
        &["--init", s(&init), "--devices", "a", "--lr", "1e-2"],
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(device_a.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["devices"], serde_json::json!(["a"]));
    let split: serde_json::Value =
        serde_json::from_slice(&std::fs::read(device_a.join("split.json")).unwrap()).unwrap();
    let trained = split["train"].as_array().unwrap();
    assert!(!trained.is_empty());
    assert!(
        trained
            .iter()
            .all(|f| f.as_str().unwrap().ends_with("-a.wav")),
        "{split}"
    );

    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    ok(&[
        "export",
        "--run",
        s(&general),
        "--out",
        s(&models.join("general.onnx")),
    ]);
    ok(&[
        "export",
        "--run",
        s(&device_a),
        "--out",
        s(&models.join("a.onnx")),
    ]);
    let audio = data.join("audio");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&audio)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let of_a = files.iter().find(|p| s(p).ends_with("-a.wav")).unwrap();
    let other = files.iter().find(|p| !s(p).ends_with("-a.wav")).unwrap();
    let json = |model: &Path, file: &Path, extra: &[&str]| {
        let mut args = vec!["classify", "--model", s(model), "--format", "json", s(file)];
        args.extend(extra);
        let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        v[0]["scores"].clone()
    };
    let (a_model, g_model) = (models.join("a.onnx"), models.join("general.onnx"));
    assert_eq!(json(&models, of_a, &[]), json(&a_model, of_a, &[]));
    assert_ne!(
        json(&a_model, of_a, &[]),
        json(&g_model, of_a, &[]),
        "fine-tuning changed nothing"
    );
    assert_eq!(json(&models, other, &[]), json(&g_model, other, &[]));
    assert_eq!(
        json(&models, other, &["--device-id", "a"]),
        json(&a_model, other, &[])
    );
    assert_eq!(
        json(&models, of_a, &["--device-id", "zz"]),
        json(&g_model, of_a, &[])
    );

    std::fs::copy(&g_model, models.join("general2.onnx")).unwrap();
    let out = asc(&["classify", "--model", s(&models), s(other)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("two general models"), "{stderr}");
}
