//! Parity of every layer with the PyTorch float64 reference of tests/fixtures/gen_norms.py
//! (written from docs/norms.md): train output, gradients of sum(y·r) w.r.t. input and every
//! parameter, buffers after 3 train steps, eval output at N and at N = 1.

mod norm_common;
use norm_common as common;

use candle_core::Device;
use common::*;

const TOL: f32 = 1e-4;

#[test]
fn layers_match_pytorch_reference() {
    let mut failures = vec![];
    let mut checked = 0;
    for (stem, name, cfg) in variants() {
        for s in 0..2 {
            let (fx, outputs) = run_protocol(stem, name, &cfg, s, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{stem}_s{s}: {e}"));
            for o in outputs {
                checked += 1;
                let Some(got) = &o.got else {
                    failures.push(format!("{stem}_s{s} {}: missing (no gradient?)", o.what));
                    continue;
                };
                match rel_err(got, &fx[&o.key]) {
                    Ok(e) if e <= TOL => {}
                    Ok(e) => failures.push(format!("{stem}_s{s} {}: rel err {e:.2e}", o.what)),
                    Err(e) => failures.push(format!("{stem}_s{s} {}: {e}", o.what)),
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
