//! The architectures as a DCASE user relies on them: CP-Mobile's published size (DCASE 2024
//! baseline: 61,148 parameters, 29,419,156 MACs on 1 × 256 × 65 with BatchNorm,
//! `docs/datasets.md`), and every model with every norm trains, saves, reloads into a fresh model
//! and gives bit-identical eval outputs; with IN, CP-Mobile's head keeps the input signal.

use asc::nn::models::{CnnOptions, CpMobileOptions, ModelConfig, MODEL_NAMES};
use asc::nn::norm::NORM_NAMES;
use asc::train::checkpoint::{self, Weights};
use asc::train::optim::Optimizer;
use asc::train::run::soft_cross_entropy;
use asc::train::{Session, TrainConfig};
use candle_core::{DType, Device, Tensor, Var};
use std::path::PathBuf;

fn session(model: &str, norm: &str, n_classes: usize, seed: u64) -> Session {
    let mut c = TrainConfig::defaults(model, norm, "-".into(), "-".into());
    c.labels = (0..n_classes).map(|i| format!("c{i}")).collect();
    c.model.n_classes = n_classes;
    c.frontend.n_mels = 32;
    c.seed = seed;
    Session::build(c, Device::Cpu).unwrap()
}

#[test]
fn cp_mobile_has_the_dcase2024_baseline_size() {
    let s = session("cp-mobile", "bn", 10, 0);
    assert_eq!(s.param_count(), 61_148);
    assert_eq!(s.complexity((256, 65)).macs, 29_419_156);
}

/// torchinfo's rows with a layer run twice (fcnn's shared attention MLP) listed once, its MACs
/// summed over the runs: one row per layer, as `asc complexity` prints them.
fn calls_merged(rows: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut merged: Vec<serde_json::Value> = Vec::new();
    for row in rows {
        match merged.iter_mut().find(|m| m["name"] == row["name"]) {
            Some(m) => {
                let macs = m["macs"].as_u64().unwrap() + row["macs"].as_u64().unwrap();
                m["macs"] = macs.into();
            }
            None => merged.push(row.clone()),
        }
    }
    merged
}

/// Every layer's parameters, MACs and output shape, by name, against torchinfo 1.8 (DCASE's
/// counter) on the same architectures rebuilt in PyTorch (tests/fixtures/gen_complexity.py),
/// and the 1 s report `asc complexity` gives for CP-Mobile at its front end.
#[test]
fn layer_costs_match_torchinfo() {
    for (case, model, hw) in [
        ("cp-mobile_256x65", "cp-mobile", (256, 65)),
        ("cnn_128x44", "cnn", (128, 44)),
        ("cnn_128x431", "cnn", (128, 431)),
        ("fcnn_128x44", "fcnn", (128, 44)),
        ("fcnn_128x400", "fcnn", (128, 400)),
        ("fsfcnn_128x44", "fsfcnn", (128, 44)),
        ("fsfcnn_128x400", "fsfcnn", (128, 400)),
    ] {
        let path = format!("tests/fixtures/complexity/{case}.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let want: serde_json::Value = serde_json::from_str(&text).unwrap();
        let got = session(model, "bn", 10, 0).complexity(hw);
        let rows = calls_merged(want["layers"].as_array().unwrap());
        assert_eq!(got.layers.len(), rows.len(), "{case}: layer count");
        for (g, w) in got.layers.iter().zip(rows) {
            let kind = match w["kind"].as_str().unwrap() {
                "BatchNorm2d" => "bn",
                other => other,
            };
            let out: Vec<usize> = serde_json::from_value(w["out"].clone()).unwrap();
            assert_eq!(g.name, w["name"].as_str().unwrap(), "{case}");
            assert_eq!(g.kind, kind, "{case} {}", g.name);
            assert_eq!(g.out.to_vec(), out, "{case} {}", g.name);
            assert_eq!(g.params, w["params"].as_u64().unwrap(), "{case} {}", g.name);
            assert_eq!(g.macs, w["macs"].as_u64().unwrap(), "{case} {}", g.name);
        }
        assert_eq!(got.params, want["total_params"].as_u64().unwrap(), "{case}");
        assert_eq!(got.macs, want["total_macs"].as_u64().unwrap(), "{case}");
    }
    let mut c = TrainConfig::defaults("cp-mobile", "bn", "-".into(), "-".into());
    c.labels = (0..10).map(|i| format!("c{i}")).collect();
    c.model.n_classes = 10;
    let per_second = Session::build(c, Device::Cpu).unwrap().complexity_for(1.0);
    assert_eq!(per_second.input, [256, 65]);
    assert_eq!(per_second.macs, 29_419_156);
    let verdict = per_second.verdict();
    assert!(
        verdict.contains("fp32 244,592 B OVER") && verdict.contains("fp16 122,296 B within"),
        "{verdict}"
    );
}

/// A norm with a convolution inside (UBN's depthwise 3x3) is charged for it at the norm's output
/// size, and every parameter of every model and norm lands in a listed layer.
#[test]
fn every_parameter_is_counted_in_a_layer() {
    for model in MODEL_NAMES {
        for norm in NORM_NAMES {
            let s = session(model, norm, 10, 0);
            let c = s.complexity((32, 40));
            assert!(
                c.layers.iter().all(|l| l.name != "(other)"),
                "{model} {norm}"
            );
            assert_eq!(c.params as usize, s.param_count(), "{model} {norm}");
        }
    }
    let (bn, ubn) = (session("cnn", "bn", 10, 0), session("cnn", "ubn", 10, 0));
    let (bn, ubn) = (bn.complexity((32, 40)), ubn.complexity((32, 40)));
    // norm0's output is 16 x 32 x 40; UBN's depthwise conv there has 16 x 9 weights + 16 biases.
    let norm0 = |c: &asc::complexity::Complexity| c.layers[1].macs;
    assert!(
        norm0(&ubn) >= norm0(&bn) + (16 * 9 + 16) * 32 * 40,
        "{ubn:?}"
    );
}

/// An architecture's settings (`model.cp-mobile`, `model.cnn` in config.json) change the network
/// they build, round-trip through JSON, default to the baseline where a config has none (run
/// folders written before they existed) and are refused, naming the setting, where they cannot
/// make a network.
#[test]
fn architecture_settings_build_other_networks() {
    let small = CpMobileOptions {
        blocks_per_stage: vec![2, 1, 1],
        strides: vec![[1, 1], [1, 2], [2, 1], [1, 1]],
        ..Default::default()
    };
    let mut c = session("cp-mobile", "bn", 10, 0).config;
    c.model = c.model.with_options(small.clone());
    let s = Session::build(c.clone(), Device::Cpu).unwrap();
    assert!(s.param_count() < 61_148, "{}", s.param_count());
    let text = serde_json::to_string(&c.model).unwrap();
    assert!(text.contains("\"cp-mobile\":{"), "{text}");
    let back: ModelConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back.options::<CpMobileOptions>(), small);

    // A config from before the settings existed: the baseline.
    let mut v = serde_json::to_value(&c.model).unwrap();
    v.as_object_mut().unwrap().remove("cp-mobile");
    let old: ModelConfig = serde_json::from_value(v).unwrap();
    assert_eq!(old.options::<CpMobileOptions>(), CpMobileOptions::default());

    let wider = CnnOptions {
        channels: [8, 16, 24],
        kernel: 5,
        hidden: 50,
    };
    let mut c = session("cnn", "bn", 10, 0).config;
    let baseline = Session::build(c.clone(), Device::Cpu)
        .unwrap()
        .param_count();
    c.model = c.model.with_options(wider);
    assert_ne!(
        Session::build(c, Device::Cpu).unwrap().param_count(),
        baseline
    );

    let mut c = session("cp-mobile", "bn", 10, 0).config;
    c.model = c.model.with_options(CpMobileOptions {
        strides: vec![[1, 1]; 5],
        ..Default::default()
    });
    let err = Session::build(c, Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("model.cp-mobile: 5 strides for 6 blocks"),
        "{err}"
    );
    let bad = r#"{"name": "cnn", "n_classes": 3, "cnn": {"chanels": [1, 2, 3]}}"#;
    let err = serde_json::from_str::<ModelConfig>(bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("model.cnn: unknown field `chanels`"),
        "{err}"
    );
}

/// [`session`], with the stages of `fcnn` (8, 8, 16 channels instead of 144, 288, 576) and
/// `fsfcnn` (8, 8, 16, 16 instead of 48, 96, 512, 768) narrowed: the same layers, a hundredth of
/// the work.
fn small_session(model: &str, norm: &str, n_classes: usize, seed: u64) -> Session {
    let mut c = session(model, norm, n_classes, seed).config;
    c.model = match model {
        "fcnn" => c.model.with_options(asc::nn::models::FcnnOptions {
            channels: [8, 8, 16],
            ..Default::default()
        }),
        "fsfcnn" => c.model.with_options(asc::nn::models::FsfcnnOptions {
            channels: [8, 8, 16, 16],
            ..Default::default()
        }),
        _ => c.model,
    };
    Session::build(c, Device::Cpu).unwrap()
}

#[test]
fn every_model_and_norm_trains_saves_and_reloads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for model in MODEL_NAMES {
        for norm in NORM_NAMES {
            let s = small_session(model, norm, 4, 1);
            let mut opt = Optimizer::new(s.config.optimizer.clone(), s.named_params()).unwrap();
            let x = Tensor::randn(0f32, 1.0, (4, 1, 32, 41), &Device::Cpu).unwrap();
            let y = Tensor::eye(4, DType::F32, &Device::Cpu).unwrap();
            let first = s.model.forward_t(&x, false).unwrap();
            for _ in 0..2 {
                let loss = soft_cross_entropy(&s.model.forward_t(&x, true).unwrap(), &y).unwrap();
                assert!(loss.to_scalar::<f32>().unwrap().is_finite());
                opt.backward_step(&loss, 1e-2).unwrap();
            }
            let trained = s.model.forward_t(&x, false).unwrap();
            let moved = (&trained - &first)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(
                moved.to_scalar::<f32>().unwrap() > 0.0,
                "{model}/{norm} did not train"
            );

            let path = dir.path().join(format!("{model}-{norm}.safetensors"));
            let w = Weights {
                params: &s.params,
                buffers: &s.buffers,
            };
            checkpoint::save(&path, &w, &Default::default(), &serde_json::json!({})).unwrap();
            let fresh = small_session(model, norm, 4, 99);
            fresh.load_weights(&path).unwrap();
            let reloaded = fresh.model.forward_t(&x, false).unwrap();
            assert_eq!(
                trained.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                reloaded.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{model}/{norm}: eval output after reload"
            );
        }
    }
}

/// With IN, the head's norm would make every logit its bias (norm::standardizes_each_map):
/// the head then has no norm, and the logits and the stem's gradient depend on the input.
#[test]
fn instance_norm_head_keeps_the_input_signal() {
    let mut cfg = TrainConfig::defaults("cp-mobile", "in", PathBuf::new(), PathBuf::new());
    cfg.model.n_classes = 10;
    cfg.frontend.n_mels = 33;
    let s = Session::build(cfg, Device::Cpu).unwrap();
    let names: Vec<String> = s.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("head.norm")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "b6.project.norm.weight"));
    let x = Tensor::randn(0f32, 1., (2, 1, 33, 41), &Device::Cpu).unwrap();
    let logits = s.model.forward_t(&x, true).unwrap();
    let spread = max_abs(&(logits.get(0).unwrap() - logits.get(1).unwrap()).unwrap());
    assert!(spread > 1e-3, "logits of two inputs differ by {spread}");
    let loss = logits.get(0).unwrap().get(3).unwrap();
    let grads = loss.backward().unwrap();
    let stem: Var = s
        .named_params()
        .into_iter()
        .find(|(n, _)| n == "stem0.conv.weight")
        .unwrap()
        .1;
    let g = max_abs(grads.get(stem.as_tensor()).unwrap());
    assert!(g > 1e-4, "stem gradient {g}");
}

/// The largest absolute element of `t`.
fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
