//! The training defaults on real recordings: the committed slice of the development set
//! (`tests/fixtures/real/`, cut by `datasets/devset/make_slice.py`: five scene classes, 40
//! training clips from two source recordings per class, 20 test clips from a third recording
//! the model never hears; 1 s at 16 kHz, licences in its `LICENSES.md`).
//!
//! Every earlier check trained on synthetic clips, and the defaults that passed them lost half
//! the accuracy of a plain PyTorch loop on real recordings (`docs/real-audio.md`). This test
//! runs `TrainConfig::defaults` as a user with 40 clips would (fewer epochs, a smaller batch)
//! and asks for what the defaults must give on real audio: the training list is learnt, and the
//! test recordings, which the model never heard, are classified well above chance (0.2).
//!
//! The bounds come from measurement, not from this run: seeds 0–4 of this exact test
//! (`ASC_REAL_SEEDS=0,1,2,3,4 cargo test --test real_audio -- --nocapture` prints them; the
//! 2026-12-06 run) took the training loss from 1.60–1.63 (ln 5 = 1.61: nothing learnt) to
//! 0.89–1.03, and gave test macro accuracy 0.45, 0.45, 0.60, 0.70, 0.75. So the loss must end
//! below 0.8 of where it started, and the test recordings must reach 0.35 (chance 0.2; a model
//! that learnt nothing transferable names one class for everything and scores 0.2): room for a
//! change of numerics to move a clip or two as a seed does, never for a recipe that does not
//! learn.

use asc::dataset::Split;
use asc::train::evaluate::evaluate_run;
use asc::train::{train, RunOptions, TrainConfig};
use candle_core::Device;
use std::path::Path;

const EPOCHS: u64 = 30;
/// 40 training clips make two steps per epoch at the default batch of 32 (the run warns): a
/// user with this little data lowers the batch, as this test does.
const BATCH: usize = 8;
const MIN_TEST_MACRO: f64 = 0.35;
const MAX_LOSS_RATIO: f64 = 0.8;

/// Trains the defaults on the slice with one seed; returns (first and last training loss,
/// test macro accuracy).
fn run(seed: u64, dir: &Path) -> (f64, f64, f64) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut cfg = TrainConfig::defaults("cnn", "bn", data, dir.join("cache"));
    cfg.epochs = EPOCHS;
    cfg.batch_size = BATCH;
    cfg.seed = seed;
    let run_dir = dir.join(format!("run-{seed}"));
    let opts = RunOptions {
        quiet: true,
        ..RunOptions::default()
    };
    train(cfg, &run_dir, Device::Cpu, &opts).unwrap();
    let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let test = evaluate_run(&run_dir, None, Split::Test, Device::Cpu).unwrap();
    (losses[0], *losses.last().unwrap(), test.macro_accuracy)
}

#[test]
fn defaults_learn_real_recordings() {
    let seeds: Vec<u64> = std::env::var("ASC_REAL_SEEDS")
        .map(|s| s.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![0]);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for seed in seeds {
        let (first, last, macro_acc) = run(seed, dir.path());
        println!(
            "seed {seed}: train loss {first:.3} -> {last:.3}, test macro accuracy {macro_acc:.3}"
        );
        if last > MAX_LOSS_RATIO * first {
            failures.push(format!(
                "seed {seed}: training loss {first:.3} -> {last:.3}, above {MAX_LOSS_RATIO} of the start"
            ));
        }
        if macro_acc < MIN_TEST_MACRO {
            failures.push(format!(
                "seed {seed}: test macro accuracy {macro_acc:.3} < {MIN_TEST_MACRO} (chance 0.2)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
