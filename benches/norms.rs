//! Cost of each normalization layer on one activation of training size (default
//! 32×16×128×431: batch 32, 16 channels, 128 mel bins, 431 frames): train forward, backward
//! of sum(y·r), eval forward. Median of `ASC_BENCH_REPS` (default 3) runs, in ms.
//!
//! `cargo bench --bench norms`; `ASC_BENCH_SHAPE=8,16,128,431` and `ASC_BENCH_NORMS=bn,gn`
//! shrink the run.

use std::time::Instant;

use asc::nn::norm::{build_norm, NormBuilder, NormConfig, NORM_NAMES};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> candle_core::Result<()> {
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
    let reps: usize = std::env::var("ASC_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let filter = std::env::var("ASC_BENCH_NORMS").ok();
    let dev = Device::Cpu;
    let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)? + 0.5)?)?;
    let r = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev)?;
    println!("shape {shape:?}, {reps} reps, median ms");
    println!(
        "{:<8} {:>10} {:>10} {:>10}",
        "norm", "fwd_train", "backward", "fwd_eval"
    );
    for name in NORM_NAMES {
        if let Some(f) = &filter {
            if !f.split(',').any(|n| n == name) {
                continue;
            }
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
