//! What the README promises about reproducibility, checked with `asc train` as a child process on
//! a small synthetic data set (100 clips of 0.5 s at 16 kHz, 32 mel bands, one epoch of batches of
//! 16; with 0.25 s clips and batches of 8 the defect this guards against did not show): the same
//! config gives the same final checkpoint, tensor by tensor and bit for bit, run after run and
//! whatever the number of threads (`RAYON_NUM_THREADS` 1, 2 and 3), for `cnn` with BN and for
//! `cp-mobile` (depthwise convolutions) with UBN (its gate's cosine statistic). Across CPUs with
//! other vector widths results may differ in the last bits (README, "Reproducibility").

mod child;

use asc::nn::models::ModelConfig;
use asc::train::{checkpoint, TrainConfig};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::Path;

/// Every tensor of a checkpoint (weights, buffers, optimiser moments) as raw f32 bits.
fn tensors(path: &Path) -> BTreeMap<String, Vec<u32>> {
    let loaded = checkpoint::load(path, &Device::Cpu).unwrap();
    loaded
        .tensors
        .iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (k.clone(), v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

/// The final checkpoint of a run of `config` with `threads` rayon threads.
fn train(dir: &Path, config: &Path, name: &str, threads: usize) -> BTreeMap<String, Vec<u32>> {
    let run = dir.join(name);
    let out = child::run(
        child::asc()
            .env("RAYON_NUM_THREADS", threads.to_string())
            .args(["train", "--data"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(&run),
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    tensors(&run.join("checkpoint.safetensors"))
}

/// The names of the tensors whose bits differ between two checkpoints.
fn differing(a: &BTreeMap<String, Vec<u32>>, b: &BTreeMap<String, Vec<u32>>) -> Vec<String> {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same tensors"
    );
    a.keys().filter(|k| a[*k] != b[*k]).cloned().collect()
}

fn same_weights_whatever_the_threads(model: &str, norm: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tiny = child::training_set(dir.path(), 1, "0.5");
    let mut cfg: TrainConfig = serde_json::from_slice(&std::fs::read(&tiny).unwrap()).unwrap();
    cfg.model = ModelConfig::new(model, 0).with_input_norm(cfg.model.input_norm);
    cfg.norm = norm.to_string();
    cfg.batch_size = 16;
    let config = dir.path().join("config.json");
    std::fs::write(&config, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();

    let two = train(dir.path(), &config, "t2", 2);
    let again = train(dir.path(), &config, "t2-again", 2);
    assert!(
        differing(&two, &again).is_empty(),
        "run to run: {:?}",
        differing(&two, &again)
    );
    for threads in [1, 3] {
        let other = train(dir.path(), &config, &format!("t{threads}"), threads);
        let diff = differing(&two, &other);
        assert!(
            diff.is_empty(),
            "{model}+{norm}, 2 vs {threads} threads: {diff:?} differ"
        );
    }
}

#[test]
fn cnn_bn_weights_do_not_depend_on_the_thread_count() {
    same_weights_whatever_the_threads("cnn", "bn");
}

#[test]
fn cp_mobile_ubn_weights_do_not_depend_on_the_thread_count() {
    same_weights_whatever_the_threads("cp-mobile", "ubn");
}
