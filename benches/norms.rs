//! Cost of each normalization layer on one activation of training size (default
//! 32×16×128×431: batch 32, 16 channels, 128 mel bins, 431 frames): train forward, backward
//! of sum(y·r), eval forward. Median of `ASC_BENCH_REPS` (default 3) runs, in ms.
//!
//! Then one full training step (train forward, loss, backward, AdamW update) of each model with
//! each norm at batch 32 (issue 9): `cnn` on 1×128×431 (10 s at the dcase2020 preset) and on
//! 1×64×216, `cp-mobile` on 1×256×65 (the DCASE 2024 input); next to each, PyTorch's step of
//! the same model and norm in float32 (benches/train_torch.py, run here in the same invocation;
//! skipped with a message when python3 or torch is missing), the ratio ours/torch, each side's
//! cost relative to its BN step, and both peak RSS.
//!
//! `cargo bench --bench norms`. Knobs: `ASC_BENCH_PART=layers|models` runs one part;
//! `ASC_BENCH_NORMS=bn,gn` picks norms; `ASC_BENCH_SHAPE=8,16,128,431` the layer activation;
//! `ASC_BENCH_MODELS=cnn-431,cnn-216,cp-mobile` the step configurations (`cnn-431` alone takes
//! minutes); `ASC_BENCH_ROUNDS=5` runs every norm in turn five times and reports medians (the
//! VM's neighbours move a single run by 30 %); `ASC_BENCH_BATCH=8` overrides the batch of 32; `ASC_BENCH_TORCH_THREADS` (default
//! 2, as this machine) torch's threads; ours uses rayon's pool (`RAYON_NUM_THREADS`).

#[path = "common/peers.rs"]
mod peers;

use std::time::Instant;

use asc::nn::norm::{build_norm, NormBuilder, NormConfig, NORM_NAMES};
use asc::train::optim::Optimizer;
use asc::train::run::soft_cross_entropy;
use asc::train::{Session, TrainConfig};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn selected(name: &str) -> bool {
    std::env::var("ASC_BENCH_NORMS")
        .map(|f| f.split(',').any(|n| n == name))
        .unwrap_or(true)
}

/// One training-step configuration: `model` on batches of `input` (N, 1, H, W); `key` is its
/// name in `ASC_BENCH_MODELS`.
struct StepCase {
    key: &'static str,
    model: &'static str,
    input: (usize, usize, usize),
}

/// Issue 9's rows: the `cnn` on 10 s at the dcase2020 preset (128 × 431, heavy: several seconds
/// a step) and on 64 × 216, `cp-mobile` on the DCASE 2024 input (256 × 65), batch 32.
const STEP_CASES: [StepCase; 3] = [
    StepCase {
        key: "cnn-431",
        model: "cnn",
        input: (32, 128, 431),
    },
    StepCase {
        key: "cnn-216",
        model: "cnn",
        input: (32, 64, 216),
    },
    StepCase {
        key: "cp-mobile",
        model: "cp-mobile",
        input: (32, 256, 65),
    },
];

/// One side's figures for a configuration: median ms per step, RSS (MiB) when the model starts
/// being built and its peak until the last step.
#[derive(Clone, Copy)]
struct StepFigures {
    ms: f64,
    start_rss: Option<f64>,
    peak_rss: Option<f64>,
}

/// Our training step, as `asc train` runs it (`Session`, `soft_cross_entropy`, `Optimizer`
/// with the default AdamW): one warm-up step, then the median of `reps`.
fn train_step(
    model: &str,
    norm: &str,
    input: (usize, usize, usize),
    reps: usize,
) -> candle_core::Result<StepFigures> {
    peers::reset_peak_rss();
    let start_rss = peers::rss_mib();
    let (n, h, w) = input;
    let mut c = TrainConfig::defaults(model, norm, "-".into(), "-".into());
    c.labels = (0..10).map(|i| format!("c{i}")).collect();
    c.model.n_classes = 10;
    // The input standardisation `asc train` applies by default holds one mean/std per mel band.
    c.frontend.n_mels = h;
    let s = Session::build(c, Device::Cpu)?;
    let mut opt = Optimizer::new(s.config.optimizer.clone(), s.named_params())?;
    let x = Tensor::randn(0f32, 1.0, (n, 1, h, w), &Device::Cpu)?;
    let y = Tensor::ones((n, 10), DType::F32, &Device::Cpu)?.affine(0.1, 0.0)?;
    let mut times = Vec::new();
    for i in 0..=reps {
        let t = Instant::now();
        let loss = soft_cross_entropy(&s.model.forward_t(&x, true)?, &y)?;
        opt.backward_step(&loss, 1e-3)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(StepFigures {
        ms: median_ms(times),
        start_rss,
        peak_rss: peers::peak_rss_mib(),
    })
}

/// Environment variable that makes this bench run one step configuration, "model,norm,N,H,W",
/// print its [`StepFigures`] as JSON and exit: each configuration runs in a fresh process, as
/// PyTorch's does, so that memory the allocator kept from an earlier one counts in neither the
/// time nor the peak RSS.
const CHILD_VAR: &str = "ASC_BENCH_STEP";

/// [`train_step`] in a child process (see [`CHILD_VAR`]).
fn our_step(
    model: &str,
    norm: &str,
    input: (usize, usize, usize),
    reps: usize,
) -> candle_core::Result<StepFigures> {
    let (n, h, w) = input;
    let out = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD_VAR, format!("{model},{norm},{n},{h},{w}"))
        .env("ASC_BENCH_REPS", reps.to_string())
        .output()?;
    let fail = |why: String| candle_core::Error::Msg(format!("{model}/{norm} step: {why}"));
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().into()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    figures(&v).ok_or_else(|| fail(format!("no \"ms\" in {v}")))
}

/// The child's side of [`our_step`]: `spec` is [`CHILD_VAR`]'s value.
fn child_step(spec: &str, reps: usize) -> candle_core::Result<()> {
    let parts: Vec<&str> = spec.split(',').collect();
    let dims: Vec<usize> = parts[2..].iter().filter_map(|d| d.parse().ok()).collect();
    if parts.len() != 5 || dims.len() != 3 {
        candle_core::bail!("{CHILD_VAR}={spec:?}: expected model,norm,N,H,W");
    }
    let f = train_step(parts[0], parts[1], (dims[0], dims[1], dims[2]), reps)?;
    let v = serde_json::json!({
        "ms": f.ms,
        "start_rss_mib": f.start_rss,
        "peak_rss_mib": f.peak_rss,
    });
    println!("{v}");
    Ok(())
}

/// [`StepFigures`] from the JSON both sides print (`ms`, `start_rss_mib`, `peak_rss_mib`).
fn figures(v: &serde_json::Value) -> Option<StepFigures> {
    Some(StepFigures {
        ms: v["ms"].as_f64()?,
        start_rss: v["start_rss_mib"].as_f64(),
        peak_rss: v["peak_rss_mib"].as_f64(),
    })
}

/// PyTorch's step of the same model, norm and input (benches/train_torch.py, a fresh process
/// per configuration); `None` where python3 or torch is missing.
fn torch_step(
    model: &str,
    norm: &str,
    input: (usize, usize, usize),
    reps: usize,
    threads: &str,
) -> Option<StepFigures> {
    let (n, h, w) = input;
    let v = peers::python(
        "train_torch.py",
        &[
            "--model",
            model,
            "--input",
            &format!("{n},{h},{w}"),
            "--norms",
            norm,
            "--reps",
            &reps.to_string(),
            "--threads",
            threads,
        ],
    )?;
    figures(&v["rows"][0])
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn mib(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// A ratio to two places, "-" where it is missing.
fn two_places(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The median of the values present; `None` when any is missing (a side that did not run).
fn median_of(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = v.collect();
    v.filter(|v| !v.is_empty()).map(median_ms)
}

/// Training step of each selected model, input and norm, ours and PyTorch's side by side.
fn models(reps: usize) -> candle_core::Result<()> {
    let keys = env_or("ASC_BENCH_MODELS", "cnn-431,cnn-216,cp-mobile");
    let batch: Option<usize> = std::env::var("ASC_BENCH_BATCH")
        .ok()
        .map(|b| b.parse().expect("ASC_BENCH_BATCH: an integer"));
    let threads = env_or("ASC_BENCH_TORCH_THREADS", "2");
    let rounds: usize = env_or("ASC_BENCH_ROUNDS", "1")
        .parse()
        .expect("ASC_BENCH_ROUNDS: an integer");
    let rounds = rounds.max(1);
    println!(
        "\ntraining step (train forward, soft cross-entropy, backward, AdamW), median ms of {reps} \
         after one warm-up step, median over {rounds} round(s) of every norm in turn (the ratios: \
         medians of the per-round ratios); ours: {} rayon thread(s) on {} CPU(s); torch: \
         benches/train_torch.py, {threads} thread(s), BN/GN/LN/IN statistics through torch's \
         kernels; each configuration in a fresh process on both sides; RSS in MiB: peak \
         (VmHWM) and its rise (Δ) over the RSS before the model is built (runtime and libraries)",
        rayon::current_num_threads(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "{:<10} {:<11} {:<7} {:>9} {:>9} {:>6} {:>7} {:>8} {:>8} {:>9} {:>7} {:>8}",
        "model",
        "input",
        "norm",
        "ours ms",
        "torch ms",
        "ratio",
        "ours/BN",
        "torch/BN",
        "rss ours",
        "rss torch",
        "Δ ours",
        "Δ torch"
    );
    let mut torch_ok = true;
    for case in STEP_CASES
        .iter()
        .filter(|c| keys.split(',').any(|k| k == c.key))
    {
        let (n, h, w) = case.input;
        let input = (batch.unwrap_or(n), h, w);
        let names: Vec<&str> = NORM_NAMES.iter().copied().filter(|n| selected(n)).collect();
        // Each round runs every norm once, ours then torch's: a burst of contention on the
        // shared VM then lands on one round, not on one norm's row.
        let mut runs: Vec<Vec<(StepFigures, Option<StepFigures>)>> = vec![Vec::new(); names.len()];
        for _ in 0..rounds {
            for (i, name) in names.iter().enumerate() {
                let ours = our_step(case.model, name, input, reps)?;
                // After one failure (python3 or torch missing) the torch column stays empty.
                let torch = torch_ok
                    .then(|| torch_step(case.model, name, input, reps, &threads))
                    .flatten();
                torch_ok = torch.is_some();
                runs[i].push((ours, torch));
            }
        }
        let bn = names.iter().position(|n| *n == "bn").map(|i| &runs[i]);
        for (name, runs) in names.iter().zip(&runs) {
            let ours_ms = median_ms(runs.iter().map(|r| r.0.ms).collect());
            let torch_ms = median_of(runs.iter().map(|r| r.1.map(|t| t.ms)));
            // Ratios per round, then their median: both sides of a ratio ran minutes apart at
            // most, in the same round.
            let per_round = |f: &dyn Fn(usize) -> Option<f64>| median_of((0..rounds).map(f));
            let vs_torch = per_round(&|r| runs[r].1.map(|t| runs[r].0.ms / t.ms));
            let ours_bn = per_round(&|r| bn.map(|b| runs[r].0.ms / b[r].0.ms));
            let torch_bn = per_round(&|r| Some(runs[r].1?.ms / bn.and_then(|b| b[r].1)?.ms));
            let last = runs.last().expect("at least one round");
            let rise = |f: &StepFigures| f.peak_rss.zip(f.start_rss).map(|(p, s)| p - s);
            println!(
                "{:<10} {:<11} {name:<7} {:>9.1} {:>9} {:>6} {:>7} {:>8} {:>8} {:>9} {:>7} {:>8}",
                case.model,
                format!("{}x{h}x{w}", input.0),
                ours_ms,
                torch_ms.map_or("-".into(), |t| format!("{t:.1}")),
                two_places(vs_torch),
                two_places(ours_bn),
                two_places(torch_bn),
                mib(last.0.peak_rss),
                mib(last.1.and_then(|t| t.peak_rss)),
                mib(rise(&last.0)),
                mib(last.1.as_ref().and_then(rise)),
            );
        }
    }
    Ok(())
}

fn main() -> candle_core::Result<()> {
    // As `asc train` does: the step is timed as the product runs it.
    asc::process::keep_freed_memory();
    let part = std::env::var("ASC_BENCH_PART").unwrap_or_default();
    let reps: usize = std::env::var("ASC_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        return child_step(&spec, reps);
    }
    if part != "models" {
        layers(reps)?;
    }
    if part != "layers" {
        models(reps)?;
    }
    Ok(())
}

fn layers(reps: usize) -> candle_core::Result<()> {
    let shape: Vec<usize> = std::env::var("ASC_BENCH_SHAPE")
        .unwrap_or_else(|_| "32,16,128,431".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("ASC_BENCH_SHAPE: comma-separated integers")
        })
        .collect();
    assert_eq!(shape.len(), 4, "ASC_BENCH_SHAPE needs N,C,H,W");
    let dev = Device::Cpu;
    let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)? + 0.5)?)?;
    let r = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
    println!("shape {shape:?}, {reps} reps, median ms");
    println!(
        "{:<8} {:>10} {:>10} {:>10}",
        "norm", "fwd_train", "backward", "fwd_eval"
    );
    for name in NORM_NAMES {
        if !selected(name) {
            continue;
        }
        let (params, buffers) = (VarMap::new(), VarMap::new());
        let nb = NormBuilder::new(
            VarBuilder::from_varmap(&params, DType::F32, &dev),
            VarBuilder::from_varmap(&buffers, DType::F32, &dev),
        );
        let layer = build_norm(name, shape[1], &NormConfig::default(), &nb)?;
        let (mut fwd, mut bwd, mut ev) = (vec![], vec![], vec![]);
        for _ in 0..reps {
            let t = Instant::now();
            let y = layer.forward_t(x.as_tensor(), true)?;
            fwd.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let grads = (&y * &r)?.sum_all()?.backward()?;
            bwd.push(t.elapsed().as_secs_f64() * 1e3);
            drop(grads);
            let t = Instant::now();
            let _ = layer.forward_t(x.as_tensor(), false)?;
            ev.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{name:<8} {:>10.1} {:>10.1} {:>10.1}",
            median_ms(fwd),
            median_ms(bwd),
            median_ms(ev)
        );
    }
    Ok(())
}
