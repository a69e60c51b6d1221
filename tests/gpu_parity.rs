//! CPU vs CUDA parity (docs/gpu.md): the norm fixture protocol of tests/norm_parity.rs run on
//! both devices, and our ops (CPU kernels there, candle-op fallbacks on CUDA, src/nn/ops/mod.rs)
//! on the same inputs. Built only with `--features cuda`; needs an NVIDIA GPU and the CUDA
//! libraries at run time. Run it with `scripts/gpu-check.sh`.
#![cfg(feature = "cuda")]

mod norm_common;
use norm_common as common;

use asc::nn::ops;
use candle_core::{Device, Result, Tensor, Var};
use common::*;

/// CPU vs GPU, relative to the largest magnitude of the CPU value (issue 8).
const TOL: f32 = 1e-4;

fn cuda() -> Device {
    Device::new_cuda(0).expect("no CUDA device: this test needs an NVIDIA GPU and its driver")
}

#[test]
fn norms_match_cpu_and_reference_on_cuda() {
    let gpu = cuda();
    let mut failures = vec![];
    let mut checked = 0;
    for (stem, name, cfg) in variants() {
        for s in shape_indices(name, &cfg) {
            let run = |dev: &Device| {
                run_protocol(stem, name, &cfg, s, dev)
                    .unwrap_or_else(|e| panic!("{stem}_s{s} on {dev:?}: {e}"))
            };
            let (fx, on_cpu) = run(&Device::Cpu);
            let (_, on_gpu) = run(&gpu);
            for (c, g) in on_cpu.iter().zip(&on_gpu) {
                assert_eq!(c.what, g.what, "{stem}_s{s}: protocols differ");
                checked += 1;
                let (Some(cv), Some(gv)) = (&c.got, &g.got) else {
                    failures.push(format!("{stem}_s{s} {}: missing on one device", c.what));
                    continue;
                };
                for (vs, want) in [("CPU", cv), ("reference", &fx[&c.key])] {
                    match rel_err(gv, want) {
                        Ok(e) if e <= TOL => {}
                        Ok(e) => failures.push(format!(
                            "{stem}_s{s} {}: GPU vs {vs} rel err {e:.2e}",
                            c.what
                        )),
                        Err(e) => failures.push(format!("{stem}_s{s} {}: {e}", c.what)),
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 202, "only {checked} checks ran");
}

/// Output and input/weight gradients of `f` under sum(y·r), moved to the CPU.
fn forward_backward(
    f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    x: &Tensor,
    w: &Tensor,
    r_seed: u64,
    dev: &Device,
) -> Result<Vec<Tensor>> {
    let xv = Var::from_tensor(&x.to_device(dev)?)?;
    let wv = Var::from_tensor(&w.to_device(dev)?)?;
    let y = f(xv.as_tensor(), wv.as_tensor())?;
    let r = rand_tensor(y.dims(), r_seed, -1.0, 1.0).to_device(dev)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let mut out = vec![y.to_device(&Device::Cpu)?];
    for v in [&xv, &wv] {
        if let Some(g) = grads.get(v.as_tensor()) {
            out.push(g.to_device(&Device::Cpu)?);
        }
    }
    Ok(out)
}

/// The shapes the models use (docs/models.md): odd widths, asymmetric strides, padded pools, and
/// max pooling over tied values (a coarse value grid) so the first-maximum rule is exercised.
#[test]
fn ops_match_cpu_kernels_on_cuda() -> Result<()> {
    let gpu = cuda();
    let x = rand_tensor(&[2, 6, 9, 13], 1, -2.0, 2.0);
    let x_ties = ((rand_tensor(&[2, 6, 9, 13], 2, -4.0, 4.0).round()?) * 0.5)?;
    let w3 = rand_tensor(&[5, 6, 3, 3], 3, -0.5, 0.5);
    let wd = rand_tensor(&[6, 1, 3, 3], 4, -0.5, 0.5);
    let unused = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?;
    type Case<'a> = (
        &'a str,
        Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor>>,
        &'a Tensor,
        &'a Tensor,
    );
    let cases: Vec<Case> = vec![
        (
            "conv2d s(1,2) p(1,1)",
            Box::new(|x, w| ops::conv2d(x, w, (1, 2), (1, 1))),
            &x,
            &w3,
        ),
        (
            "conv2d s(2,1) p(1,1)",
            Box::new(|x, w| ops::conv2d(x, w, (2, 1), (1, 1))),
            &x,
            &w3,
        ),
        (
            "depthwise s(2,2) p(1,1)",
            Box::new(|x, w| ops::depthwise_conv2d(x, w, (2, 2), (1, 1))),
            &x,
            &wd,
        ),
        (
            "depthwise s(1,2) p(1,1)",
            Box::new(|x, w| ops::depthwise_conv2d(x, w, (1, 2), (1, 1))),
            &x,
            &wd,
        ),
        (
            "max_pool k(5,5) s(5,5)",
            Box::new(|x, _| ops::max_pool2d(x, (5, 5), (5, 5), (0, 0))),
            &x_ties,
            &unused,
        ),
        (
            "max_pool k(3,3) s(2,1) p(1,1)",
            Box::new(|x, _| ops::max_pool2d(x, (3, 3), (2, 1), (1, 1))),
            &x_ties,
            &unused,
        ),
        (
            "avg_pool k(3,3) s(1,2) p(1,1)",
            Box::new(|x, _| ops::avg_pool2d(x, (3, 3), (1, 2), (1, 1), true)),
            &x,
            &unused,
        ),
    ];
    let mut failures = vec![];
    for (what, f, x, w) in &cases {
        let on_cpu = forward_backward(f.as_ref(), x, w, 5, &Device::Cpu)?;
        let on_gpu = forward_backward(f.as_ref(), x, w, 5, &gpu)?;
        assert_eq!(on_cpu.len(), on_gpu.len(), "{what}: gradient sets differ");
        for (i, (c, g)) in on_cpu.iter().zip(&on_gpu).enumerate() {
            let e = rel_err(g, c)?;
            if e > TOL {
                failures.push(format!("{what} output {i}: GPU vs CPU rel err {e:.2e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
