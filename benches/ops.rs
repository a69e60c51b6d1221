//! Forward and forward+backward time of `asc::nn::ops` against candle's own ops on the shapes of
//! the baseline CNN's first layers (batch 32 × 16 × 128 × 431, `docs/architecture.md` § "Known
//! performance facts") and of CP-Mobile's depthwise convs. Run: `cargo bench --bench ops` (release
//! profile), or with `-- --quick` for one repetition. Prints a markdown table; times are the
//! minimum over the repetitions, in milliseconds.
use asc::nn::ops;
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

/// Minimum wall time in ms of `reps` runs of `f` after one warm-up run.
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// (forward ms, forward+backward ms) of `op` applied to the variables.
fn fwd_bwd(reps: usize, vars: &[&Var], op: &dyn Fn() -> Result<Tensor>) -> Result<(f64, f64)> {
    let fwd = time(reps, || {
        let y = op()?;
        // Touch the result so the work cannot be skipped.
        std::hint::black_box(y.dims());
        Ok(())
    })?;
    let both = time(reps, || {
        let y = op()?;
        let g = y.sum_all()?.backward()?;
        for v in vars {
            std::hint::black_box(g.get(v).map(|t| t.dims().to_vec()));
        }
        Ok(())
    })?;
    Ok((fwd, both))
}

fn row(name: &str, ours: (f64, f64), candle: Option<(f64, f64)>) {
    match candle {
        Some(c) => println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}× | {:.1}× |",
            ours.0,
            ours.1,
            c.0,
            c.1,
            c.0 / ours.0,
            c.1 / ours.1
        ),
        None => println!("| {name} | {:.1} | {:.1} | - | - | - | - |", ours.0, ours.1),
    }
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 3 };
    let dev = Device::Cpu;
    println!(
        "rayon threads: {}; reps: {reps} (+1 warm-up), minimum reported",
        rayon::current_num_threads()
    );
    println!("| op | ours fwd ms | ours fwd+bwd ms | candle fwd ms | candle fwd+bwd ms | speed-up fwd | speed-up fwd+bwd |");
    println!("|---|---|---|---|---|---|---|");

    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (32, 16, 128, 431), &dev)?)?;
    let w = Var::from_tensor(&(Tensor::randn(0f32, 1., (16, 16, 3, 3), &dev)? * 0.1)?)?;
    let ours = fwd_bwd(reps, &[&x, &w], &|| ops::conv2d(&x, &w, (1, 1), (1, 1)))?;
    let candle = fwd_bwd(reps.min(2), &[&x, &w], &|| x.conv2d(&w, 1, 1, 1, 1))?;
    row("conv2d 3×3 16→16, 32×16×128×431", ours, Some(candle));

    let ours = fwd_bwd(reps, &[&x], &|| ops::max_pool2d(&x, (2, 2), (2, 2), (0, 0)))?;
    let candle = fwd_bwd(reps, &[&x], &|| x.max_pool2d(2))?;
    row(
        "max_pool2d 2×2, 32×16×128×431 (candle's bwd is wrong)",
        ours,
        Some(candle),
    );

    let ours = fwd_bwd(reps, &[&x], &|| {
        ops::avg_pool2d(&x, (3, 3), (2, 2), (1, 1), true)
    })?;
    row("avg_pool2d 3×3 s2 p1, 32×16×128×431", ours, None);

    let xd = Var::from_tensor(&Tensor::randn(0f32, 1., (32, 64, 32, 54), &dev)?)?;
    let wd = Var::from_tensor(&(Tensor::randn(0f32, 1., (64, 1, 3, 3), &dev)? * 0.3)?)?;
    let ours = fwd_bwd(reps, &[&xd, &wd], &|| {
        ops::depthwise_conv2d(&xd, &wd, (1, 1), (1, 1))
    })?;
    let candle = fwd_bwd(reps.min(2), &[&xd, &wd], &|| xd.conv2d(&wd, 1, 1, 1, 64))?;
    row("depthwise 3×3, 32×64×32×54", ours, Some(candle));

    let ours = fwd_bwd(reps, &[&xd, &wd], &|| {
        ops::depthwise_conv2d(&xd, &wd, (1, 2), (1, 1))
    })?;
    let fb = fwd_bwd(reps.min(2), &[&xd, &wd], &|| {
        ops::fallback::depthwise_conv2d(&xd, &wd, (1, 2), (1, 1))
    })?;
    row(
        "depthwise 3×3 stride (1,2) (candle: conv + index_select)",
        ours,
        Some(fb),
    );
    Ok(())
}
