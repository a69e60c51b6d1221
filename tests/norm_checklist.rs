//! The test checklist of docs/norms.md §7: ONNX decomposition = eval forward (run in tract on two
//! input sizes), batch independence at inference, running-stat updates, group-norm identities,
//! L2BN scale invariance, init values, parameter counts, and a checkpoint round trip.

mod norm_common;
use norm_common as common;

use asc::nn::norm::{
    BnetInit, GnOptions, GnPlusOptions, GnPlusVariant, L2bnMode, L2bnOptions, Norm, NormConfig,
    UbnOptions, NORM_NAMES,
};
use asc::onnx::graph::{Dim, OnnxGraph};
use candle_core::{Device, Tensor};
use common::*;
use prost::Message;
use tract_onnx::prelude::*;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Elementwise |a − b| ≤ atol + rtol·|b| (docs/norms.md §1 "Exactness": atol 1e-5, rtol 1e-4).
fn assert_close(what: &str, a: &Tensor, b: &Tensor, atol: f32, rtol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A layer of each fixture variant (C = 8) with the fixture's random parameters and the buffers
/// left by three train steps.
fn trained_layers() -> Vec<(&'static str, Built, NormConfig)> {
    variants()
        .into_iter()
        .map(|(stem, name, cfg)| {
            let fx = fixture(stem, 0);
            let mut b = build(name, 8, &cfg);
            set_params(&mut b, &fx);
            for k in ["x", "x2", "x3"] {
                b.layer.forward_t(&fx[k], true).unwrap();
            }
            (stem, b, cfg)
        })
        .collect()
}

/// Emits the layer as a one-layer model with symbolic N, H, W and runs it in tract.
fn run_onnx(layer: &dyn Norm, c: usize, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut g = OnnxGraph::new();
    let dims = [
        Dim::Sym("N".into()),
        Dim::Fixed(c as i64),
        Dim::Sym("H".into()),
        Dim::Sym("W".into()),
    ];
    g.add_input("x", &dims);
    let mut out = layer.emit_onnx(&mut g, "x").unwrap();
    if out == "x" {
        out = g.add_node("Identity", &["x"], vec![]);
    }
    g.add_output(&out, &dims);
    let bytes = g.to_model().encode_to_vec();
    let model = tract_onnx::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    inputs
        .iter()
        .map(|x| {
            let data = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let t = tract_ndarray::ArrayD::from_shape_vec(x.dims(), data)
                .unwrap()
                .into_tensor();
            let res = model.run(tvec!(t.into())).unwrap();
            let v = res[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<f32>>();
            Tensor::from_vec(v, res[0].shape(), &Device::Cpu).unwrap()
        })
        .collect()
}

#[test]
fn onnx_decomposition_equals_eval_forward_in_tract() {
    let inputs = [
        rand_tensor(&[2, 8, 6, 5], 11, -2.0, 3.0),
        rand_tensor(&[3, 8, 7, 11], 12, -2.0, 3.0),
    ];
    for (stem, b, cfg) in trained_layers() {
        if cfg.options::<GnPlusOptions>().variant == GnPlusVariant::Faithful {
            let err = b
                .layer
                .emit_onnx(&mut OnnxGraph::new(), "x")
                .unwrap_err()
                .to_string();
            assert!(err.contains("cannot be exported"), "{err}");
            continue;
        }
        let got = run_onnx(b.layer.as_ref(), 8, &inputs);
        for (x, y) in inputs.iter().zip(&got) {
            let want = b.layer.forward_t(x, false).unwrap();
            assert_close(&format!("{stem} onnx {:?}", x.dims()), y, &want, 1e-5, 1e-4);
        }
    }
}

#[test]
fn eval_is_batch_independent_except_faithful_gnplus() {
    let x = rand_tensor(&[4, 8, 6, 5], 21, -1.0, 2.0);
    let other = rand_tensor(&[3, 8, 6, 5], 22, -3.0, 5.0);
    let x_mixed = Tensor::cat(&[&x.narrow(0, 0, 1).unwrap(), &other], 0).unwrap();
    for (stem, b, cfg) in trained_layers() {
        let y0 = b
            .layer
            .forward_t(&x, false)
            .unwrap()
            .narrow(0, 0, 1)
            .unwrap();
        let y0_mixed = b
            .layer
            .forward_t(&x_mixed, false)
            .unwrap()
            .narrow(0, 0, 1)
            .unwrap();
        let single = b.layer.forward_t(&x.narrow(0, 0, 1).unwrap(), false);
        if cfg.options::<GnPlusOptions>().variant == GnPlusVariant::Faithful {
            assert!(
                max_abs_diff(&y0, &y0_mixed) > 1e-3,
                "{stem}: faithful GN+ looked batch-independent"
            );
            assert!(single.is_err(), "{stem}: faithful GN+ must reject N = 1");
            continue;
        }
        assert!(
            max_abs_diff(&y0, &y0_mixed) <= 1e-5,
            "{stem}: sample 0 depends on the others"
        );
        assert!(
            max_abs_diff(&y0, &single.unwrap()) <= 1e-5,
            "{stem}: N = 1 differs"
        );
    }
}

#[test]
fn running_stats_follow_the_pytorch_rule() {
    // docs/norms.md §7.3: rm = 0.1·μ_B, rv = 0.9 + 0.1·σ²_B·M/(M−1) after one step from (0, 1).
    // Every layer with running statistics is held to the same rule from random initial
    // buffers by the fixtures (b1.*, tests/norm_parity.rs).
    let (n, c, h, w) = (5, 3, 4, 6);
    let x = rand_tensor(&[n, c, h, w], 31, -1.0, 4.0);
    let b = build("bn", c, &NormConfig::default());
    b.layer.forward_t(&x, true).unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let m = (n * h * w) as f64;
    let rm = var_tensor(&b.buffers, "running_mean")
        .to_vec1::<f32>()
        .unwrap();
    let rv = var_tensor(&b.buffers, "running_var")
        .to_vec1::<f32>()
        .unwrap();
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| {
                v[(i * c + ch) * h * w..(i * c + ch + 1) * h * w]
                    .iter()
                    .map(|&e| e as f64)
            })
            .collect();
        let mu = vals.iter().sum::<f64>() / m;
        let var = vals.iter().map(|e| (e - mu).powi(2)).sum::<f64>() / m;
        assert!((rm[ch] as f64 - 0.1 * mu).abs() < 1e-6, "rm[{ch}]");
        assert!(
            (rv[ch] as f64 - (0.9 + 0.1 * var * m / (m - 1.0))).abs() < 1e-6,
            "rv[{ch}]"
        );
    }
}

#[test]
fn ubn_freezes_running_stats_below_tau() {
    let mut b = build("ubn", 8, &NormConfig::default());
    let zero = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
    b.buffers.set_one("moving_cos", &zero).unwrap();
    // Zero-mean noise: the cosine between samples is near 0, so c stays below τ = 0.15.
    let x = rand_tensor(&[6, 8, 5, 5], 41, -1.0, 1.0);
    b.layer.forward_t(&x, true).unwrap();
    let c = var_tensor(&b.buffers, "moving_cos")
        .to_vec1::<f32>()
        .unwrap()[0];
    assert!(c.abs() < 0.15, "moving_cos {c}");
    let rm = var_tensor(&b.buffers, "running_mean")
        .to_vec1::<f32>()
        .unwrap();
    let rv = var_tensor(&b.buffers, "running_var")
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        rm.iter().all(|&v| v == 0.0) && rv.iter().all(|&v| v == 1.0),
        "{rm:?} {rv:?}"
    );
    // Eval never touches the gate state (judgement in docs/norms.md §5.6.4).
    b.layer.forward_t(&x, false).unwrap();
    assert_eq!(
        var_tensor(&b.buffers, "moving_cos")
            .to_vec1::<f32>()
            .unwrap()[0],
        c
    );
}

#[test]
fn group_norm_identities() {
    let c = 8;
    let x = rand_tensor(&[3, c, 5, 7], 51, -2.0, 3.0);
    let gamma = rand_tensor(&[c], 52, 0.5, 1.5);
    let beta = rand_tensor(&[c], 53, -0.5, 0.5);
    let with_params = |name: &str, cfg: &NormConfig| {
        let mut b = build(name, c, cfg);
        b.params.set_one("weight", &gamma).unwrap();
        b.params.set_one("bias", &beta).unwrap();
        b.layer.forward_t(&x, true).unwrap()
    };
    let gn_c = with_params(
        "gn",
        &NormConfig::default().with_options(GnOptions { max_groups: c }),
    );
    let gn_1 = with_params(
        "gn",
        &NormConfig::default().with_options(GnOptions { max_groups: 1 }),
    );
    assert_close(
        "GN(G=C) = IN",
        &gn_c,
        &with_params("in", &NormConfig::default()),
        1e-6,
        1e-5,
    );
    assert_close(
        "GN(G=1) = LN",
        &gn_1,
        &with_params("ln", &NormConfig::default()),
        1e-6,
        1e-5,
    );
    assert!(
        max_abs_diff(&gn_c, &gn_1) > 1e-2,
        "G = C and G = 1 should differ"
    );
}

#[test]
fn l2bn_is_scale_invariant_iebn_is_not() {
    let x = rand_tensor(&[4, 8, 6, 5], 61, -1.0, 2.0);
    for mode in [L2bnMode::Rms, L2bnMode::L2] {
        let cfg = NormConfig::default().with_options(L2bnOptions { mode });
        let b = build("l2bn", 8, &cfg);
        let y = b.layer.forward_t(&x, true).unwrap();
        for alpha in [3.0, 0.25] {
            let xa = (&x * alpha).unwrap();
            let ya = b.layer.forward_t(&xa, true).unwrap();
            assert_close(&format!("{mode:?} train α={alpha}"), &ya, &y, 1e-5, 1e-4);
            let (ye, yae) = (
                b.layer.forward_t(&x, false).unwrap(),
                b.layer.forward_t(&xa, false).unwrap(),
            );
            assert_close(&format!("{mode:?} eval α={alpha}"), &yae, &ye, 1e-5, 1e-4);
        }
    }
    let mut b = build("iebn", 8, &NormConfig::default());
    set_params(&mut b, &fixture("iebn", 0));
    let y = b.layer.forward_t(&x, true).unwrap();
    let ya = b.layer.forward_t(&(&x * 3.0).unwrap(), true).unwrap();
    assert!(
        max_abs_diff(&y, &ya) > 1e-3,
        "IEBN should see the raw scale through its GAP attention"
    );
}

#[test]
fn init_values_match_the_papers() {
    let x = rand_tensor(&[4, 8, 6, 5], 71, -1.0, 2.0);
    let cfg = NormConfig::default();
    let bn = build("bn", 8, &cfg).layer.forward_t(&x, true).unwrap();
    // IEBN: attention σ(−1) = 0.2689 (docs/norms.md §6.1), so y = 0.2689·BN(x) at init.
    let a = sigmoid(-1.0);
    assert!((a - 0.2689).abs() < 1e-4);
    let iebn = build("iebn", 8, &cfg).layer.forward_t(&x, true).unwrap();
    assert_close("IEBN init", &iebn, &(&bn * a).unwrap(), 1e-6, 1e-5);
    // UBN with identity BNET: y = σ(1)·BN(x), σ(1) = 0.7311 (docs/norms.md §5.1), train and eval.
    let s = sigmoid(1.0);
    assert!((s - 0.7311).abs() < 1e-4);
    let ucfg = NormConfig::default().with_options(UbnOptions {
        bnet_init: BnetInit::Identity,
        ..Default::default()
    });
    let ubn = build("ubn", 8, &ucfg);
    let bn_b = build("bn", 8, &cfg);
    let (y_u, y_b) = (
        ubn.layer.forward_t(&x, true).unwrap(),
        bn_b.layer.forward_t(&x, true).unwrap(),
    );
    assert_close(
        "UBN identity init (train)",
        &y_u,
        &(&y_b * s).unwrap(),
        1e-6,
        1e-5,
    );
    let (e_u, e_b) = (
        ubn.layer.forward_t(&x, false).unwrap(),
        bn_b.layer.forward_t(&x, false).unwrap(),
    );
    assert_close(
        "UBN identity init (eval)",
        &e_u,
        &(&e_b * s).unwrap(),
        1e-6,
        1e-5,
    );
    // GN+: s = σ(λ₀ = 1) = 0.7311 (docs/norms.md §4.1): y = s·GN(x) + (1−s)·BN(GN(x)).
    let gcfg = NormConfig::default().with_options(GnOptions { max_groups: 4 });
    let gp = build("gnplus", 8, &gcfg);
    let lambda = var_tensor(&gp.params, "lambda").to_vec1::<f32>().unwrap()[0] as f64;
    assert!((sigmoid(lambda) - s).abs() < 1e-7);
    let xg = build("gn", 8, &gcfg).layer.forward_t(&x, true).unwrap();
    let xb = build("bn", 8, &cfg).layer.forward_t(&xg, true).unwrap();
    let want = ((&xg * s).unwrap() + (&xb * (1.0 - s)).unwrap()).unwrap();
    assert_close(
        "GN+ init",
        &gp.layer.forward_t(&x, true).unwrap(),
        &want,
        1e-6,
        1e-5,
    );
    // UBN reference init: the BNET kernel has the kaiming fan-out spread N(0, 2/(9C)).
    let c = 64;
    let u = build("ubn", c, &cfg);
    let k = var_tensor(&u.params, "bnconv.weight")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let var = k.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / k.len() as f64;
    let want = 2.0 / (9.0 * c as f64);
    assert!(
        (var / want - 1.0).abs() < 0.25,
        "kernel variance {var} vs {want}"
    );
}

#[test]
fn parameter_and_buffer_counts() {
    // docs/norms.md §7.6: BN/GN/LN/IN/L2BN 2C; GN+ 2C+1; IEBN 4C; UBN (k²+4)C.
    for c in [8, 24] {
        for name in NORM_NAMES {
            let b = build(name, c, &NormConfig::default());
            let (params, buffers) = match name {
                "bn" | "l2bn" => (2 * c, 2 * c),
                "gn" | "ln" | "in" => (2 * c, 0),
                "gnplus" => (2 * c + 1, 2 * c),
                "iebn" => (4 * c, 2 * c),
                "ubn" => (13 * c, 2 * c + 1),
                "none" => (0, 0),
                other => panic!("no expected count for {other}"),
            };
            assert_eq!(elem_count(&b.params), params, "{name} C={c} params");
            assert_eq!(elem_count(&b.buffers), buffers, "{name} C={c} buffers");
            assert_eq!(b.layer.name(), name);
        }
    }
    let faithful = NormConfig::default().with_options(GnPlusOptions {
        variant: GnPlusVariant::Faithful,
    });
    assert_eq!(elem_count(&build("gnplus", 8, &faithful).buffers), 0);
}

#[test]
fn checkpoint_round_trip_gives_identical_eval() {
    let dir = tempfile::tempdir().unwrap();
    let x = rand_tensor(&[3, 8, 6, 5], 81, -1.0, 2.0);
    for (stem, b, cfg) in trained_layers() {
        let (pp, bp) = (
            dir.path().join(format!("{stem}.p")),
            dir.path().join(format!("{stem}.b")),
        );
        b.params.save(&pp).unwrap();
        b.buffers.save(&bp).unwrap();
        let name = b.layer.name();
        let mut fresh = build(name, 8, &cfg);
        fresh.params.load(&pp).unwrap();
        fresh.buffers.load(&bp).unwrap();
        let (y, y2) = (
            b.layer.forward_t(&x, false).unwrap(),
            fresh.layer.forward_t(&x, false).unwrap(),
        );
        assert_eq!(max_abs_diff(&y, &y2), 0.0, "{stem}");
        if name == "ubn" {
            let c0 = var_tensor(&b.buffers, "moving_cos")
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(
                c0,
                var_tensor(&fresh.buffers, "moving_cos")
                    .to_vec1::<f32>()
                    .unwrap()
            );
            assert!(c0[0] < 1.0, "moving_cos never moved");
        }
    }
}

#[test]
fn bad_inputs_are_errors_naming_shapes() {
    let cfg = NormConfig::default();
    let bn = build("bn", 8, &cfg);
    let err = bn
        .layer
        .forward_t(&rand_tensor(&[1, 8, 1, 1], 1, 0.0, 1.0), true)
        .unwrap_err();
    assert!(err.to_string().contains("N·H·W"), "{err}");
    let err = bn
        .layer
        .forward_t(&rand_tensor(&[2, 5, 3, 3], 1, 0.0, 1.0), true)
        .unwrap_err();
    assert!(err.to_string().contains("[2, 5, 3, 3]"), "{err}");
    let ubn = build("ubn", 8, &cfg);
    assert!(ubn
        .layer
        .forward_t(&rand_tensor(&[2, 8, 9], 1, 0.0, 1.0), true)
        .is_err());
    // Rank 2 and 3 inputs are the rank-4 computation with unit spatial dims, for every
    // registered layer but UBN (rank 4 only, above).
    for name in NORM_NAMES.into_iter().filter(|n| *n != "ubn") {
        let x4 = rand_tensor(&[6, 8, 1, 3], 2, -1.0, 1.0);
        let (a, b) = (build(name, 8, &cfg), build(name, 8, &cfg));
        let y4 = a.layer.forward_t(&x4, true).unwrap();
        let y3 = b
            .layer
            .forward_t(&x4.reshape((6, 8, 3)).unwrap(), true)
            .unwrap();
        assert_eq!(
            max_abs_diff(&y4.reshape((6, 8, 3)).unwrap(), &y3),
            0.0,
            "{name}"
        );
    }
}

/// The prose a new layer needs (docs/architecture.md, "Adding a norm") names every registered
/// layer: the README's list and the `--norm` table of docs/norms.md §9.
#[test]
fn docs_name_every_registered_norm() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let norms = std::fs::read_to_string(root.join("docs/norms.md")).unwrap();
    for name in NORM_NAMES {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not name `{name}`"
        );
        assert!(
            norms.contains(&format!("| `{name}` |")),
            "docs/norms.md §9 has no `--norm` row for `{name}`"
        );
    }
}
