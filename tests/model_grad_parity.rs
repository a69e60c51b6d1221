//! Whole-model gradient parity with PyTorch float64 (issue 10): for every model and every norm,
//! the fixture `tests/fixtures/models/<model>_<norm>.safetensors` (written by
//! `tests/fixtures/gen_models.py` from docs/models.md and docs/norms.md, independently of this
//! crate) holds weights, a batch, labels, the mean cross-entropy of the train-mode logits and the
//! gradient of every parameter. We build the model through [`Session`] (the training path), load
//! the weights by name — a name missing on either side fails the case — run one train-mode forward,
//! our training loss and backward, and compare.
//!
//! Tolerances: PyTorch float32 itself sits near 1e-6 from float64 here; 1e-3 on the gradients
//! (max error relative to the largest reference element, and the L1-norm ratio) leaves room
//! for float32 accumulation yet catches any misrouted gradient (candle's max-pool backward was
//! off by ~100 %, docs/candle-defects.md). Forward quantities (loss, running statistics after
//! the step) get 1e-4.
//!
//! One exception, stated: GN+'s λ in a layer where GN has one channel per group (C ≤ 32 with
//! the default 32 groups, `norm::standardizes_each_map`) has an exact gradient of order ε, as
//! the BN part then re-normalizes maps that are already standardized (docs/norms.md §4.2); float32
//! cannot resolve it (PyTorch's own float32 gradient of `cnn` GN+ `norm1.lambda` is off by 13 %,
//! ours by 15 %). Such a λ is judged on the scale of the terms that cancel in it, Σ|∂L/∂γ| of
//! its layer, and not by its L1 ratio; the `gnplus_g4` fixtures (at most 4 groups) have λ
//! alive in every layer and judge it like any other parameter.

use asc::nn::models::{FcnnOptions, FsfcnnOptions};
use asc::nn::norm::{standardizes_each_map, GnOptions, NormConfig, NORM_NAMES};
use asc::train::run::soft_cross_entropy;
use asc::train::{Session, TrainConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

const MODELS: [&str; 4] = ["cnn", "cp-mobile", "fcnn", "fsfcnn"];
/// `fcnn`'s stage widths in the fixtures (`FCNN_CHANNELS` of gen_models.py): the paper's 144,
/// 288 and 576 would make 10 files of 24 MB each; the structure is the same.
const FCNN_CHANNELS: [usize; 3] = [6, 8, 12];
/// `fsfcnn`'s (`FSFCNN_CHANNELS`; the paper's are 48, 96, 512, 768).
const FSFCNN_CHANNELS: [usize; 4] = [6, 8, 12, 16];
/// (fixture stem, norm name, settings): every norm with the defaults, and GN+ with at most
/// 4 groups as well (see the module doc).
fn variants() -> Vec<(&'static str, &'static str, NormConfig)> {
    let mut v: Vec<_> = NORM_NAMES
        .iter()
        .map(|&n| (n, n, NormConfig::default()))
        .collect();
    let g4 = NormConfig::default().with_options(GnOptions { max_groups: 4 });
    v.push(("gnplus_g4", "gnplus", g4));
    v
}
/// Gradient tolerance: max |g − ref| / max |ref|, and |Σ|g| / Σ|ref| − 1|.
const GRAD_TOL: f64 = 1e-3;
/// Tolerance of forward quantities: the loss and the buffers after the step.
const FWD_TOL: f64 = 1e-4;

type Fixture = HashMap<String, Tensor>;

fn fixture(model: &str, stem: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/models/{model}_{stem}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {path}: {e} (run tests/fixtures/gen_models.py)"))
}

/// Names under `prefix` in the fixture, prefix removed.
fn fixture_names(fx: &Fixture, prefix: &str) -> BTreeSet<String> {
    fx.keys()
        .filter_map(|k| k.strip_prefix(prefix).map(String::from))
        .collect()
}

/// Copies `prefix.<name>` tensors into the variables of `map`; the two name sets must be equal
/// and every shape must match, or the error lists what differs.
fn load_vars(fx: &Fixture, prefix: &str, map: &VarMap) -> Result<(), String> {
    let data = map.data().lock().expect("varmap lock");
    let ours: BTreeSet<String> = data.keys().cloned().collect();
    let theirs = fixture_names(fx, prefix);
    let missing: Vec<_> = ours.difference(&theirs).collect();
    let extra: Vec<_> = theirs.difference(&ours).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "{prefix}* names differ: model has, fixture lacks {missing:?}; fixture has, model lacks {extra:?}"
        ));
    }
    for (name, var) in data.iter() {
        let t = &fx[&format!("{prefix}{name}")];
        if t.dims() != var.dims() {
            return Err(format!(
                "{prefix}{name}: fixture shape {:?}, model shape {:?}",
                t.dims(),
                var.dims()
            ));
        }
        let t = t.to_dtype(var.dtype()).map_err(|e| e.to_string())?;
        var.set(&t).map_err(|e| format!("{prefix}{name}: {e}"))?;
    }
    Ok(())
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().map(|x| x.abs()).fold(0.0, f64::max)
}

/// max |got − want| / max(max |want|, `scale`) and Σ|got| / Σ|want|, in f64.
fn compare(got: &Tensor, want: &Tensor, scale: f64) -> candle_core::Result<(f64, f64)> {
    if got.dims() != want.dims() {
        candle_core::bail!("shape {:?} vs reference {:?}", got.dims(), want.dims());
    }
    let (g, w) = (values(got)?, values(want)?);
    let diff = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = max_abs(&w).max(scale).max(1e-30);
    let l1_got: f64 = g.iter().map(|v| v.abs()).sum();
    let l1_want: f64 = w.iter().map(|v| v.abs()).sum::<f64>().max(1e-30);
    Ok((diff / scale, l1_got / l1_want))
}

/// The scale a λ gradient of GN+ is judged on when its layer has one channel per group (see
/// the module doc): Σ|∂L/∂γ| of the layer, or `None` for any other parameter.
fn dead_lambda_scale(fx: &Fixture, name: &str, norm: &str, cfg: &NormConfig) -> Option<f64> {
    let layer = name.strip_suffix(".lambda")?;
    let gamma = fx.get(&format!("grad.{layer}.weight"))?;
    let c = gamma.elem_count();
    if !standardizes_each_map(norm, c, cfg) {
        return None;
    }
    let v = values(gamma).ok()?;
    Some(v.iter().map(|x| x.abs()).sum())
}

/// The result of one (model, norm) case.
struct Outcome {
    /// Worst gradient relative error and the parameter it belongs to.
    worst_rel: (f64, String),
    /// The L1 ratio farthest from 1 and its parameter.
    worst_l1: (f64, String),
    loss_err: f64,
    /// GN+ λ judged on their layer's Σ|∂L/∂γ|, with that error.
    dead_lambdas: Vec<String>,
    failures: Vec<String>,
}

fn session(model: &str, norm: &str, norm_config: &NormConfig) -> Session {
    let mut cfg = TrainConfig::defaults(model, norm, PathBuf::new(), PathBuf::new());
    cfg.norm_config = norm_config.clone();
    cfg.model.n_classes = 10;
    // Dropout masks cannot be matched with PyTorch's; the parity is of everything else.
    cfg.model.dropout = 0.0;
    // The fixtures are of the network; input standardisation has its own parity in export_parity.
    cfg.model.input_norm = asc::nn::models::InputNorm::None;
    cfg.model = match model {
        "fcnn" => cfg.model.with_options(FcnnOptions {
            channels: FCNN_CHANNELS,
            ..FcnnOptions::default()
        }),
        "fsfcnn" => cfg.model.with_options(FsfcnnOptions {
            channels: FSFCNN_CHANNELS,
            ..FsfcnnOptions::default()
        }),
        _ => cfg.model,
    };
    Session::build(cfg, Device::Cpu).unwrap_or_else(|e| panic!("{model}/{norm}: build: {e}"))
}

fn check_case(
    model: &str,
    stem: &str,
    norm: &str,
    cfg: &NormConfig,
) -> candle_core::Result<Outcome> {
    let fx = fixture(model, stem);
    let s = session(model, norm, cfg);
    let mut failures = Vec::new();
    for (prefix, map) in [("param.", &s.params), ("buffer.", &s.buffers)] {
        if let Err(e) = load_vars(&fx, prefix, map) {
            failures.push(e);
        }
    }
    if !failures.is_empty() {
        return Ok(Outcome {
            worst_rel: (f64::INFINITY, String::new()),
            worst_l1: (f64::INFINITY, String::new()),
            loss_err: f64::INFINITY,
            dead_lambdas: Vec::new(),
            failures,
        });
    }
    let x = &fx["input"];
    let labels = fx["labels"].to_dtype(DType::U32)?;
    let k = s.config.model.n_classes;
    let onehot = Tensor::eye(k, DType::F32, &Device::Cpu)?.index_select(&labels, 0)?;
    let logits = s.model.forward_t(x, true)?;
    let loss = soft_cross_entropy(&logits, &onehot)?;
    let loss_ref = fx["loss"].to_dtype(DType::F64)?.to_vec1::<f64>()?[0];
    let loss_got = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let loss_err = (loss_got - loss_ref).abs() / loss_ref.abs();
    if loss_err > FWD_TOL {
        failures.push(format!(
            "loss {loss_got} vs {loss_ref}: rel err {loss_err:.2e}"
        ));
    }
    let grads = loss.backward()?;
    let mut worst_rel = (0.0, String::new());
    let mut worst_l1 = (1.0, String::new());
    let mut dead_lambdas = Vec::new();
    for (name, var) in s.named_params() {
        let Some(g) = grads.get(var.as_tensor()) else {
            failures.push(format!("{name}: no gradient"));
            continue;
        };
        let dead_scale = dead_lambda_scale(&fx, &name, norm, cfg);
        let (rel, l1) = compare(g, &fx[&format!("grad.{name}")], dead_scale.unwrap_or(0.0))?;
        if dead_scale.is_some() {
            dead_lambdas.push(format!("{name} {rel:.1e}"));
        } else if (l1 - 1.0).abs() > (worst_l1.0 - 1.0f64).abs() {
            worst_l1 = (l1, name.clone());
        }
        if rel > worst_rel.0 {
            worst_rel = (rel, name.clone());
        }
        if !(rel <= GRAD_TOL && (dead_scale.is_some() || (l1 - 1.0).abs() <= GRAD_TOL)) {
            failures.push(format!(
                "grad {name}: rel max err {rel:.2e}, L1 ratio {l1:.6}"
            ));
        }
    }
    let buffers = s.buffers.data().lock().expect("varmap lock");
    for (name, var) in buffers.iter() {
        let (rel, _) = compare(var.as_tensor(), &fx[&format!("buffer_after.{name}")], 0.0)?;
        if rel > FWD_TOL {
            failures.push(format!("buffer {name} after the step: rel err {rel:.2e}"));
        }
    }
    Ok(Outcome {
        worst_rel,
        worst_l1,
        loss_err,
        dead_lambdas,
        failures,
    })
}

#[test]
fn every_model_and_norm_matches_pytorch_gradients() {
    println!("| model | norm | loss rel. err | worst grad rel. err (param) | L1 ratio farthest from 1 (param) | λ on the Σ|∂L/∂γ| scale |");
    println!("|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for model in MODELS {
        for (stem, norm, cfg) in variants() {
            let o = check_case(model, stem, norm, &cfg)
                .unwrap_or_else(|e| panic!("{model}/{stem}: {e}"));
            println!(
                "| {model} | {stem} | {:.1e} | {:.1e} ({}) | {:.6} ({}) | {} |",
                o.loss_err,
                o.worst_rel.0,
                o.worst_rel.1,
                o.worst_l1.0,
                o.worst_l1.1,
                o.dead_lambdas.join(", ")
            );
            failures.extend(o.failures.iter().map(|f| format!("{model}/{stem}: {f}")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches with PyTorch:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The name check itself: a fixture lacking one of the model's variables, or carrying one the
/// model does not have, is refused with both names listed.
#[test]
fn loading_refuses_missing_and_extra_names() {
    let mut fx = fixture("cnn", "bn");
    let s = session("cnn", "bn", &NormConfig::default());
    assert!(load_vars(&fx, "param.", &s.params).is_ok());
    let w = fx.remove("param.conv1.weight").expect("fixture has conv1");
    fx.insert("param.conv9.weight".into(), w);
    let err = load_vars(&fx, "param.", &s.params).unwrap_err();
    assert!(
        err.contains("conv1.weight") && err.contains("conv9.weight"),
        "{err}"
    );
}

/// Whether `names` hold a variable of cp-mobile's head norm.
fn has_head_norm<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| n.starts_with("head.norm."))
}

/// The norm between cp-mobile's head conv and its global average pool: the reference keeps or
/// drops it by probing the layer's definition numerically (does the pooled output depend on the
/// input? tests/fixtures/gen_models.py, `Net.norm_before_gap`), the model by its own rule
/// (`norm::standardizes_each_map`). They must agree for every norm; a disagreement is named
/// here rather than as a list of missing variables.
#[test]
fn cp_mobile_head_norm_agrees_with_the_reference() {
    let word = |kept: bool| if kept { "keeps" } else { "drops" };
    let mut disagree = Vec::new();
    for (stem, norm, cfg) in variants() {
        let fx = fixture("cp-mobile", stem);
        let theirs = has_head_norm(fixture_names(&fx, "param.").iter())
            || has_head_norm(fixture_names(&fx, "buffer.").iter());
        let s = session("cp-mobile", norm, &cfg);
        let ours = has_head_norm(s.params.data().lock().expect("varmap lock").keys())
            || has_head_norm(s.buffers.data().lock().expect("varmap lock").keys());
        if ours != theirs {
            disagree.push(format!(
                "{stem}: the reference {} the head norm, the model {} it",
                word(theirs),
                word(ours)
            ));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}
