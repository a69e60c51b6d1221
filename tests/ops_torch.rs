//! `asc::nn::ops` against PyTorch float64 (fixtures from `tests/fixtures/gen_ops.py`): forward,
//! input gradient and weight gradient of every case, through three paths: the CPU f32 kernels,
//! the candle-op fallback in f32 (what CUDA runs), and the public API in f64 (which dispatches to
//! the fallback and so checks it to near machine precision).
mod common;

use asc::nn::ops;
use candle_core::{DType, Result, Tensor, Var};
use common::{cases, get, load, params, rel_err, Fixture};

type OpFn<'a> = &'a dyn Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>;
type BoxOp = Box<dyn Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>>;

/// Runs `op` on a case, backpropagates the stored upstream gradient and compares with the
/// references. Returns the worst relative error.
fn check(f: &Fixture, case: &str, dt: DType, op: OpFn) -> Result<f64> {
    let x = Var::from_tensor(&get(f, case, "x").to_dtype(dt)?)?;
    let w = match f.get(&format!("{case}.w")) {
        Some(w) => Some(Var::from_tensor(&w.to_dtype(dt)?)?),
        None => None,
    };
    let y = op(x.as_tensor(), w.as_ref().map(|w| w.as_tensor()))?;
    let gy = get(f, case, "gy").to_dtype(dt)?;
    let grads = (&y * &gy)?.sum_all()?.backward()?;
    let mut worst = rel_err(&y, &get(f, case, "y"))?;
    let gx = grads.get(&x).expect("no input gradient");
    worst = worst.max(rel_err(gx, &get(f, case, "gx"))?);
    if let Some(w) = &w {
        let gw = grads.get(w).expect("no weight gradient");
        worst = worst.max(rel_err(gw, &get(f, case, "gw"))?);
    }
    Ok(worst)
}

/// Every case through the three paths, with f32 and f64 tolerances.
fn check_all(name: &str, make: &dyn Fn(&[usize], bool) -> BoxOp) {
    let f = load(name);
    let names = cases(&f, "params");
    assert!(!names.is_empty(), "{name}: no cases");
    for case in &names {
        let p = params(&f, case);
        let fast = make(&p, false);
        let fallback = make(&p, true);
        let e_fast = check(&f, case, DType::F32, fast.as_ref()).unwrap();
        let e_fb = check(&f, case, DType::F32, fallback.as_ref()).unwrap();
        let e_f64 = check(&f, case, DType::F64, fast.as_ref()).unwrap();
        println!(
            "{name}/{case}: kernel f32 {e_fast:.2e}, fallback f32 {e_fb:.2e}, f64 {e_f64:.2e}"
        );
        assert!(e_fast < 2e-6, "{name}/{case}: CPU kernel off by {e_fast:e}");
        assert!(e_fb < 2e-6, "{name}/{case}: fallback off by {e_fb:e}");
        assert!(e_f64 < 1e-12, "{name}/{case}: f64 path off by {e_f64:e}");
    }
}

fn conv_like(depthwise: bool) -> impl Fn(&[usize], bool) -> BoxOp {
    move |p: &[usize], fallback: bool| {
        let (s, pad) = ((p[0], p[1]), (p[2], p[3]));
        let op: BoxOp = Box::new(move |x: &Tensor, w: Option<&Tensor>| {
            let w = w.expect("conv case without weight");
            match (depthwise, fallback) {
                (false, false) => ops::conv2d(x, w, s, pad),
                (false, true) => ops::fallback::conv2d(x, w, s, pad),
                (true, false) => ops::depthwise_conv2d(x, w, s, pad),
                (true, true) => ops::fallback::depthwise_conv2d(x, w, s, pad),
            }
        });
        op
    }
}

fn pool_like(avg: bool) -> impl Fn(&[usize], bool) -> BoxOp {
    move |p: &[usize], fallback: bool| {
        let (k, s, pad, cip) = ((p[0], p[1]), (p[2], p[3]), (p[4], p[5]), p[6] != 0);
        let op: BoxOp = Box::new(
            move |x: &Tensor, _: Option<&Tensor>| match (avg, fallback) {
                (false, false) => ops::max_pool2d(x, k, s, pad),
                (false, true) => ops::fallback::max_pool2d(x, k, s, pad),
                (true, false) => ops::avg_pool2d(x, k, s, pad, cip),
                (true, true) => ops::fallback::avg_pool2d(x, k, s, pad, cip),
            },
        );
        op
    }
}

#[test]
fn conv2d_matches_pytorch() {
    check_all("conv", &conv_like(false));
}

#[test]
fn depthwise_conv2d_matches_pytorch() {
    check_all("depthwise", &conv_like(true));
}

#[test]
fn max_pool2d_matches_pytorch_with_ties() {
    check_all("max_pool", &pool_like(false));
}

#[test]
fn avg_pool2d_matches_pytorch() {
    check_all("avg_pool", &pool_like(true));
}

/// The first layer's input is not a variable: no input gradient is computed, the weight still
/// gets its gradient.
#[test]
fn conv2d_skips_input_gradient_for_constants() -> Result<()> {
    let f = load("conv");
    let x = get(&f, "s12_p11", "x");
    let w = Var::from_tensor(&get(&f, "s12_p11", "w"))?;
    let y = ops::conv2d(&x, &w, (1, 2), (1, 1))?;
    let grads = (&y * &get(&f, "s12_p11", "gy"))?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let e = rel_err(
        grads.get(&w).expect("weight gradient"),
        &get(&f, "s12_p11", "gw"),
    )?;
    assert!(e < 2e-6, "weight gradient off by {e:e}");
    Ok(())
}
