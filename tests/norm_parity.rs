//! Parity of every layer with the PyTorch float64 reference of tests/fixtures/gen_norms.py
//! (written from docs/norms.md): train output, gradients of sum(y·r) w.r.t. input and every
//! parameter, buffers after the first and the third train step (from random initial buffers),
//! train outputs of steps 2 and 3, eval output at N and at N = 1, and the buffers once more
//! after eval (which must leave them alone), on six shapes per layer.
//!
//! Each value passes two checks: the largest error relative to the largest reference element
//! ([`rel_err`], `TOL`), and the element-wise check of [`elementwise_err`] (`RTOL` of the element
//! plus `ATOL` of the largest element of its plane), which sees errors confined to the channels
//! and samples of small variance that the fixtures carry so that ε matters
//! (tests/fixtures/gen_norms.py). `fixtures_see_wrong_settings` shows that a layer built with a
//! wrong ε, momentum, group count or gate setting fails them; scripts/norm_mutations.py does the
//! same for defects in the code.

mod norm_common;
use norm_common as common;

use asc::nn::norm::{
    FctMode, GnOptions, L2bnMode, L2bnOptions, NormConfig, UbnOptions, NORM_NAMES,
};
use candle_core::{Device, Tensor};
use common::*;

const TOL: f32 = 1e-4;
/// Element-wise tolerance: relative to the element, plus a part of its plane's largest value.
const RTOL: f32 = 1e-4;
const ATOL: f32 = 3e-5;

/// The outcome of one fixture: failed checks (an error of the protocol itself is one), the
/// number of checks, and the worst of each measure.
struct Checked {
    failed: Vec<String>,
    checked: usize,
    worst_rel: f32,
    worst_elementwise: f32,
}

/// Runs fixture `stem`_s`s` on a layer `name` built with `cfg` and compares every output.
fn check(stem: &str, name: &str, cfg: &NormConfig, s: usize) -> Checked {
    let mut c = Checked {
        failed: vec![],
        checked: 0,
        worst_rel: 0.0,
        worst_elementwise: 0.0,
    };
    let (fx, outputs) = match run_protocol(stem, name, cfg, s, &Device::Cpu) {
        Ok(r) => r,
        Err(e) => {
            c.failed.push(format!("{stem}_s{s}: {e}"));
            return c;
        }
    };
    c.checked = outputs.len();
    for o in outputs {
        let Some(got) = &o.got else {
            c.failed
                .push(format!("{stem}_s{s} {}: missing (no gradient?)", o.what));
            continue;
        };
        let want: &Tensor = &fx[&o.key];
        match (rel_err(got, want), elementwise_err(got, want, RTOL, ATOL)) {
            (Ok(e), Ok(el)) => {
                c.worst_rel = c.worst_rel.max(e);
                c.worst_elementwise = c.worst_elementwise.max(el);
                if !(e <= TOL && el <= 1.0) {
                    c.failed.push(format!(
                        "{stem}_s{s} {}: rel err {e:.2e}, element-wise {el:.2e} of the tolerance",
                        o.what
                    ));
                }
            }
            (Err(e), _) | (_, Err(e)) => c.failed.push(format!("{stem}_s{s} {}: {e}", o.what)),
        }
    }
    c
}

/// The fixture variants name every registered layer: a new norm without a fixture fails here
/// rather than going untested.
#[test]
fn fixture_variants_cover_every_registered_norm() {
    let covered: Vec<_> = variants().into_iter().map(|(_, name, _)| name).collect();
    let missing: Vec<_> = NORM_NAMES
        .into_iter()
        .filter(|n| !covered.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "no fixture variant (tests/norm_common/mod.rs `variants`, tests/fixtures/gen_norms.py) for {missing:?}"
    );
}

#[test]
fn layers_match_pytorch_reference() {
    let mut all = vec![];
    let mut checked = 0;
    let mut files = 0;
    println!(
        "| fixture | shape | checks | worst rel. err | worst element-wise (of the tolerance) |"
    );
    println!("|---|---|---|---|---|");
    for (stem, name, cfg) in variants() {
        for s in shape_indices(name, &cfg) {
            let c = check(stem, name, &cfg, s);
            println!(
                "| {stem}_s{s} | {:?} | {} | {:.1e} | {:.2} |",
                SHAPES[s], c.checked, c.worst_rel, c.worst_elementwise
            );
            all.extend(c.failed);
            checked += c.checked;
            files += 1;
        }
    }
    assert!(
        all.is_empty(),
        "{} of {checked} checks failed:\n{}",
        all.len(),
        all.join("\n")
    );
    assert_eq!(files, 72, "fixture files checked");
    assert!(checked >= 770, "only {checked} checks ran");
}

/// Settings that differ from the fixture's, per layer: each must make some fixture of the
/// variant fail (the fixtures can see a wrong ε, running-statistics momentum, group count, L2BN
/// mode, and every setting of UBN's gate).
fn wrong_settings(name: &str, cfg: &NormConfig) -> Vec<(&'static str, NormConfig)> {
    let with = |f: &dyn Fn(&mut NormConfig)| {
        let mut c = cfg.clone();
        f(&mut c);
        c
    };
    let mut v = vec![];
    if name != "none" {
        v.push(("ε × 10", with(&|c| c.eps *= 10.0)));
        v.push(("ε = 0", with(&|c| c.eps = 0.0)));
    }
    // A layer with buffers keeps running statistics (docs/norms.md §1); UBN's moving cosine
    // comes with them.
    let running = elem_count(&build(name, 8, cfg).buffers) > 0;
    if running {
        v.push(("momentum 0.2", with(&|c| c.momentum = 0.2)));
    }
    if matches!(name, "gn" | "gnplus") {
        v.push((
            "half the groups",
            with(&|c| c.update(|o: &mut GnOptions| o.max_groups /= 2)),
        ));
    }
    if name == "l2bn" {
        let other = match cfg.options::<L2bnOptions>().mode {
            L2bnMode::Rms => L2bnMode::L2,
            L2bnMode::L2 => L2bnMode::Rms,
        };
        v.push((
            "the other L2BN mode",
            with(&|c| c.update(|o: &mut L2bnOptions| o.mode = other)),
        ));
    }
    if name == "ubn" {
        let flipped = match cfg.options::<UbnOptions>().fct_mode {
            FctMode::BatchWhenAbove => FctMode::BatchWhenBelow,
            FctMode::BatchWhenBelow => FctMode::BatchWhenAbove,
        };
        v.push((
            "gate direction",
            with(&|c| c.update(|o: &mut UbnOptions| o.fct_mode = flipped)),
        ));
        let ubn_changes: [(_, fn(&mut UbnOptions)); 5] = [
            ("τ = 0.14", |o| o.tau = 0.14),
            ("τ = 0.16", |o| o.tau = 0.16),
            ("momentum_cos 0.2", |o| o.momentum_cos = 0.2),
            ("cosine over 17 samples", |o| o.cos_samples = 17),
            ("cosine over 15 samples", |o| o.cos_samples = 15),
        ];
        for (label, change) in ubn_changes {
            v.push((label, with(&|c| c.update(change))));
        }
    }
    v
}

#[test]
fn fixtures_see_wrong_settings() {
    let mut unseen = vec![];
    let mut tried = 0;
    for (stem, name, cfg) in variants() {
        for (what, wrong) in wrong_settings(name, &cfg) {
            tried += 1;
            let seen = shape_indices(name, &cfg)
                .into_iter()
                .any(|s| !check(stem, name, &wrong, s).failed.is_empty());
            if !seen {
                unseen.push(format!("{stem}: {what}"));
            }
        }
    }
    assert!(
        unseen.is_empty(),
        "fixtures pass with a wrong setting:\n{}",
        unseen.join("\n")
    );
    assert_eq!(tried, 49, "wrong settings tried");
}

/// Sorted values of a tensor.
fn sorted(t: &Tensor) -> Vec<f32> {
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.sort_by(f32::total_cmp);
    v
}

/// Two-sample Kolmogorov–Smirnov statistic of sorted samples.
fn ks_statistic(a: &[f32], b: &[f32]) -> f64 {
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// UBN's BNET conv at its reference init (docs/norms.md §5.1) against PyTorch's
/// (tests/fixtures/norms/ubn_init.safetensors): the bias drawn like nn.Conv2d's default,
/// U(−1/√fan_in, 1/√fan_in) with PyTorch's fan_in, the kernel with kaiming_normal_(fan_out,
/// relu)'s std, for k = 3 and 5.
#[test]
fn ubn_bnet_init_matches_pytorch() {
    let fx = fixture_file("ubn_init", &Device::Cpu);
    let c = 256; // as in the fixture: the kernel's std depends on C
    for k in [3, 5] {
        let cfg = NormConfig::default().with_options(UbnOptions {
            kernel: k,
            ..Default::default()
        });
        let b = build("ubn", c, &cfg);
        let scalar = |key: &str| fx[&format!("k{k}.{key}")].to_vec1::<f32>().unwrap()[0];
        let (bound, std) = (scalar("bias_bound"), scalar("weight_std"));
        let bias = sorted(&var_tensor(&b.params, "bnconv.bias"));
        let torch_bias = sorted(&fx[&format!("k{k}.bias")]);
        let (lo, hi) = (bias[0], bias[bias.len() - 1]);
        assert!(
            lo >= -bound && hi <= bound,
            "k={k}: bias in [{lo}, {hi}], PyTorch's bound {bound}"
        );
        assert!(
            -lo > 0.9 * bound && hi > 0.9 * bound,
            "k={k}: bias in [{lo}, {hi}] does not fill PyTorch's ±{bound}"
        );
        // Same distribution as PyTorch's sample: KS critical value at α = 1e-6.
        let d = ks_statistic(&bias, &torch_bias);
        let n = (bias.len() * torch_bias.len()) as f64 / (bias.len() + torch_bias.len()) as f64;
        let crit = (-(0.5e-6f64).ln() / 2.0).sqrt() / n.sqrt();
        assert!(
            d < crit,
            "k={k}: bias KS statistic {d:.3} vs PyTorch's sample (critical {crit:.3})"
        );
        let w = sorted(&var_tensor(&b.params, "bnconv.weight"));
        let m = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
        let s = (w.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(
            (s / std as f64 - 1.0).abs() < 0.1 && m.abs() < 5.0 * s / (w.len() as f64).sqrt(),
            "k={k}: kernel mean {m:.2e}, std {s:.4} vs PyTorch's {std:.4}"
        );
    }
}
