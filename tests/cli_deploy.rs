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

#[test]
fn train_export_classify_with_broken_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path());
    let run = dir.path().join("run");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "cnn",
        "--norm",
        "l2bn",
        "--out",
        s(&run),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--preset",
        "librosa",
    ]);
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
    // One-epoch comparison of `norms` over `seeds` seeds into `out`; returns its results.csv
    // and the order in which the runs were made.
    let compare = |norms: &str, seeds: &str, out: &Path| {
        let args = [
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
        ];
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
