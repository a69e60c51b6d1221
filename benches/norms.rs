//! Cost of each normalization layer on one activation of training size (default
//! 32×16×128×431: batch 32, 16 channels, 128 mel bins, 431 frames): train forward, backward
//! of sum(y·r), eval forward. Median of `ASC_BENCH_REPS` (default 3) runs, in ms.
//!
//! Then one full training step (train forward, loss, backward, AdamW update) of each model with
//! each norm, batch 16: `cnn` on 1×64×63 (the quickstart input), `cp-mobile` on 1×256×65 (the
//! DCASE 2024 input), with clips per second.
//!
//! `cargo bench --bench norms`; `ASC_BENCH_SHAPE=8,16,128,431` and `ASC_BENCH_NORMS=bn,gn`
//! shrink the run; `ASC_BENCH_PART=layers|models` runs one part.

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

/// Median ms of one training step of `model` with `norm` on a batch of `input` (N, 1, H, W).
fn train_step_ms(
    model: &str,
    norm: &str,
    input: (usize, usize, usize),
    reps: usize,
) -> candle_core::Result<f64> {
    let (n, h, w) = input;
    let mut c = TrainConfig::defaults(model, norm, "-".into(), "-".into());
    c.labels = (0..10).map(|i| format!("c{i}")).collect();
    c.model.n_classes = 10;
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
    Ok(median_ms(times))
}

fn models(reps: usize) -> candle_core::Result<()> {
    println!("\ntraining step, batch 16, median of {reps} after one warm-up step");
    println!(
        "{:<10} {:<8} {:>10} {:>10}",
        "model", "norm", "ms/step", "clips/s"
    );
    for (model, input) in [("cnn", (16, 64, 63)), ("cp-mobile", (16, 256, 65))] {
        for name in NORM_NAMES.iter().filter(|n| selected(n)) {
            let ms = train_step_ms(model, name, input, reps)?;
            println!(
                "{model:<10} {name:<8} {ms:>10.1} {:>10.1}",
                input.0 as f64 / ms * 1e3
            );
        }
    }
    Ok(())
}

fn main() -> candle_core::Result<()> {
    let part = std::env::var("ASC_BENCH_PART").unwrap_or_default();
    let reps: usize = std::env::var("ASC_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
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
