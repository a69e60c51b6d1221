//! Inference benchmark: tract (our `Classifier`) vs onnxruntime on the same exported model and
//! the same input, batch 1 and 32, in the same run (benches/infer_onnxruntime.py, 1 and 2
//! threads); and the end-to-end pipeline, decode → log-mel → model over a folder of 10 s WAVs,
//! ours (`asc classify`'s library path, rayon over files) vs librosa + onnxruntime in Python
//! (benches/pipeline_python.py). Run: `cargo bench --bench infer`; with `ASC_TRACT_CONV=tract`
//! tract runs its own convolutions instead of ours (`src/infer/conv_op.rs`).
//!
//! Each model row also gives the peak RSS of each side over loading the model and the runs
//! (`VmHWM`, reset through `/proc/self/clear_refs` first) and its growth over the RSS before.

mod common;
#[path = "common/peers.rs"]
mod peers;

use asc::export::{self, InputKind, ModelMetadata};
use asc::features::{FrontendConfig, Spectrogram};
use asc::infer::{self, Classifier};
use asc::train::{Session, TrainConfig};
use candle_core::Device;
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// (model, front end, frames): the `cnn` on 10 s at the dcase2020 preset, `cp-mobile` on 1 s at
/// the cpjku preset (the DCASE 2024 input, 256 × 65).
const CASES: [(&str, &str, usize); 2] = [("cnn", "dcase2020", 431), ("cp-mobile", "cpjku", 65)];

fn export_model(dir: &Path, model: &str, preset: &str) -> (PathBuf, ModelMetadata) {
    let mut c = TrainConfig::defaults(model, "bn", "-".into(), "-".into());
    c.labels = (0..10).map(|i| format!("class{i}")).collect();
    c.model.n_classes = 10;
    c.frontend = FrontendConfig::preset(preset).unwrap();
    let s = Session::build(c, Device::Cpu).unwrap();
    let meta = ModelMetadata {
        labels: s.config.labels.clone(),
        frontend: s.config.frontend.clone(),
        input: InputKind::Logmel,
        clip_frames: CASES.iter().find(|c| c.0 == model).unwrap().2,
        model: model.into(),
        norm: "bn".into(),
        version: "bench".into(),
        training: serde_json::Value::Null,
        devices: Vec::new(),
    };
    let path = dir.join(format!("{model}.onnx"));
    let bytes = export::model_graph(&s, &meta)
        .unwrap()
        .to_model()
        .encode_to_vec();
    std::fs::write(&path, bytes).unwrap();
    (path, meta)
}

fn median_ms<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn model_rows(dir: &Path) {
    let threads = rayon::current_num_threads();
    println!("\nmodel inference, ms per batch (median of 7 to 501 runs, ~0.3 s of tract's time, the same count on both sides); tract: Classifier, {threads} rayon thread(s) over the batch");
    println!("peak RSS in MiB over load + runs (growth over the RSS before); ort: 1 thread");
    println!(
        "own conv: convolutions and pools our kernels run in tract's plan (none with ASC_TRACT_CONV=tract)"
    );
    println!(
        "{:<10} {:>5} {:>8} {:>10} {:>12} {:>12} {:>10} {:>16} {:>16}",
        "model",
        "batch",
        "own conv",
        "tract",
        "ort 1 thr",
        "ort 2 thr",
        "tract/ort1",
        "tract RSS",
        "ort RSS"
    );
    for (model, preset, frames) in CASES {
        let (path, meta) = export_model(dir, model, preset);
        let m = meta.frontend.n_mels;
        for batch in [1usize, 32] {
            let spec = Spectrogram {
                n_mels: m,
                frames,
                data: (0..m * frames)
                    .map(|i| ((i % 97) as f32 / 97.0) * 8.0 - 12.0)
                    .collect(),
            };
            let specs = vec![spec; batch];
            peers::reset_peak_rss();
            let rss_before = peers::rss_mib().unwrap_or(f64::NAN);
            // A fresh Classifier per row, so its plan is built inside the measured span, as
            // onnxruntime's session is on the Python side.
            let c = Classifier::from_onnx(&path).unwrap();
            let run = || {
                std::hint::black_box(c.classify_spectrograms(&specs).unwrap());
            };
            // Runs for about 0.3 s of this side's time (7 to 501): a batch-1 `cp-mobile` row
            // takes ~1 ms, and seven runs of that on a shared VM gave ratios 0.2 apart.
            // onnxruntime's side takes the same count.
            run();
            let once = Instant::now();
            run();
            let runs = ((300.0 / (once.elapsed().as_secs_f64() * 1e3)) as usize).clamp(7, 501) | 1;
            let tract = median_ms(runs, run);
            // A batch runs as single examples: this is the plan the runs used.
            let own = c.own_convs(&[1, 1, m, frames]).unwrap();
            drop(c);
            let tract_peak = peers::peak_rss_mib().unwrap_or(f64::NAN);
            let ort = peers::python(
                "infer_onnxruntime.py",
                &[
                    path.to_str().unwrap(),
                    &batch.to_string(),
                    &m.to_string(),
                    &frames.to_string(),
                    &runs.to_string(),
                ],
            );
            let f = |v: &Option<serde_json::Value>, k: &str| {
                v.as_ref().and_then(|v| v[k].as_f64()).unwrap_or(f64::NAN)
            };
            let (o1, o2) = (f(&ort, "ms_1"), f(&ort, "ms_2"));
            println!(
                "{model:<10} {batch:>5} {own:>8} {tract:>7.2} ms {o1:>9.2} ms {o2:>9.2} ms {:>9.2}x {:>8.0} (+{:>4.0}) {:>8.0} (+{:>4.0})",
                tract / o1,
                tract_peak,
                tract_peak - rss_before,
                f(&ort, "peak_mb_1"),
                f(&ort, "growth_mb_1"),
            );
        }
    }
}

fn pipeline_row(dir: &Path) {
    let (path, _) = export_model(dir, "cnn", "dcase2020");
    let wavs = dir.join("wavs");
    std::fs::create_dir_all(&wavs).unwrap();
    let files = common::write_clips(&wavs, 32, 44_100, 10, 0x9E37_79B9_7F4A_7C15, |k, noise| {
        noise * 0.5 + (k as f32 * 0.05).sin() * 0.3
    });
    let c = Classifier::from_onnx(&path).unwrap();
    let ours = median_ms(3, || {
        let r = infer::classify_all(&c, &files, &|| {});
        assert!(r.iter().all(|x| x.1.is_ok()));
    });
    let py = peers::python(
        "pipeline_python.py",
        &[path.to_str().unwrap(), wavs.to_str().unwrap()],
    )
    .and_then(|v| v["ms"].as_f64());
    let threads = rayon::current_num_threads();
    println!(
        "\nend to end, 32 WAVs of 10 s at 44.1 kHz, cnn (decode, log-mel, model), ms per folder"
    );
    match py {
        Some(p) => println!(
            "ours ({threads} rayon threads): {ours:.0} ms; librosa + onnxruntime in python (onnxruntime default threads): {p:.0} ms; ours is {:.1}x faster",
            p / ours
        ),
        None => println!("ours ({threads} threads): {ours:.0} ms; python side skipped"),
    }
}

fn main() {
    // Allocate as the `asc` binary does (`asc::process`), so tract's per-run output tensors
    // reuse freed memory instead of page-faulting fresh mappings on every run.
    asc::process::keep_freed_memory();
    let dir = tempfile::tempdir().unwrap();
    model_rows(dir.path());
    pipeline_row(dir.path());
}
