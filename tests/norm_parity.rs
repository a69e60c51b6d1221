//! Parity of every layer with the PyTorch float64 reference of tests/fixtures/gen_norms.py
//! (written from norms.md): train output, gradients of sum(y·r) w.r.t. input and every
//! parameter, buffers after 3 train steps, eval output at N and at N = 1.

mod norm_common;
use norm_common as common;

use candle_core::Var;
use common::*;

const TOL: f32 = 1e-4;

#[test]
fn layers_match_pytorch_reference() {
    let mut failures = vec![];
    let mut checked = 0;
    for (stem, name, cfg) in variants() {
        for s in 0..2 {
            let fx = fixture(stem, s);
            let x = &fx["x"];
            let c = x.dim(1).unwrap();
            let mut b = build(name, c, &cfg);
            let set = set_params(&mut b, &fx);
            let mut own: Vec<String> = b.params.data().lock().unwrap().keys().cloned().collect();
            own.sort();
            assert_eq!(own, set, "{stem}: parameter names differ from the fixture");
            let mut check = |what: &str, got: Option<&candle_core::Tensor>, key: &str| {
                checked += 1;
                let Some(got) = got else {
                    failures.push(format!("{stem}_s{s} {what}: missing (no gradient?)"));
                    return;
                };
                match rel_err(got, &fx[key]) {
                    Ok(e) if e <= TOL => {}
                    Ok(e) => failures.push(format!("{stem}_s{s} {what}: rel err {e:.2e}")),
                    Err(e) => failures.push(format!("{stem}_s{s} {what}: {e}")),
                }
            };
            let xv = Var::from_tensor(x).unwrap();
            let y = b.layer.forward_t(xv.as_tensor(), true).unwrap();
            check("y_train", Some(&y), "y_train");
            let grads = (&y * &fx["r"])
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            check("grad x", grads.get(xv.as_tensor()), "g.x");
            for p in &set {
                let t = var_tensor(&b.params, p);
                check(&format!("grad {p}"), grads.get(&t), &format!("g.{p}"));
            }
            b.layer.forward_t(&fx["x2"], true).unwrap();
            b.layer.forward_t(&fx["x3"], true).unwrap();
            let mut bufs: Vec<String> = b.buffers.data().lock().unwrap().keys().cloned().collect();
            bufs.sort();
            let mut want: Vec<String> = fx
                .keys()
                .filter_map(|k| k.strip_prefix("b.").map(String::from))
                .collect();
            want.sort();
            assert_eq!(bufs, want, "{stem}: buffer names differ from the fixture");
            for k in &bufs {
                check(
                    &format!("buffer {k}"),
                    Some(&var_tensor(&b.buffers, k)),
                    &format!("b.{k}"),
                );
            }
            let ye = b.layer.forward_t(x, false).unwrap();
            check("y_eval", Some(&ye), "y_eval");
            if fx.contains_key("y_eval1") {
                let y1 = b
                    .layer
                    .forward_t(&x.narrow(0, 0, 1).unwrap(), false)
                    .unwrap();
                check("y_eval N=1", Some(&y1), "y_eval1");
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
