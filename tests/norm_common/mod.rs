//! Helpers shared by the norm integration tests.
#![allow(dead_code)]

use asc::nn::norm::{
    build_norm, FctMode, GnOptions, GnPlusOptions, GnPlusVariant, L2bnMode, L2bnOptions, Norm,
    NormBuilder, NormConfig, UbnOptions,
};
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;

/// A layer with its two stores.
pub struct Built {
    pub layer: Box<dyn Norm>,
    pub params: VarMap,
    pub buffers: VarMap,
}

pub fn build(name: &str, c: usize, cfg: &NormConfig) -> Built {
    build_on(name, c, cfg, &Device::Cpu)
}

/// [`build`] with parameters and buffers on `dev` (the GPU parity test).
pub fn build_on(name: &str, c: usize, cfg: &NormConfig, dev: &Device) -> Built {
    let params = VarMap::new();
    let buffers = VarMap::new();
    let nb = NormBuilder::new(
        VarBuilder::from_varmap(&params, DType::F32, dev),
        VarBuilder::from_varmap(&buffers, DType::F32, dev),
    );
    let layer = build_norm(name, c, cfg, &nb).unwrap_or_else(|e| panic!("build {name}: {e}"));
    Built {
        layer,
        params,
        buffers,
    }
}

/// The fixture variants of tests/fixtures/gen_norms.py: (file stem, registry name, config).
pub fn variants() -> Vec<(&'static str, &'static str, NormConfig)> {
    let d = NormConfig::default;
    vec![
        ("bn", "bn", d()),
        ("l2bn", "l2bn", d()),
        (
            "l2bn_l2",
            "l2bn",
            d().with_options(L2bnOptions { mode: L2bnMode::L2 }),
        ),
        ("gn", "gn", d()),
        ("gn_g4", "gn", d().with_options(GnOptions { max_groups: 4 })),
        (
            "gnplus",
            "gnplus",
            d().with_options(GnOptions { max_groups: 4 }),
        ),
        (
            "gnplus_faithful",
            "gnplus",
            d().with_options(GnOptions { max_groups: 4 })
                .with_options(GnPlusOptions {
                    variant: GnPlusVariant::Faithful,
                }),
        ),
        ("ubn", "ubn", d()),
        (
            "ubn_below",
            "ubn",
            d().with_options(UbnOptions {
                fct_mode: FctMode::BatchWhenBelow,
                ..Default::default()
            }),
        ),
        ("iebn", "iebn", d()),
        ("ln", "ln", d()),
        ("in", "in", d()),
        ("none", "none", d()),
    ]
}

/// The input shapes of tests/fixtures/gen_norms.py (`SHAPES`), by index `s` of `<stem>_s<s>`.
pub const SHAPES: [&[usize]; 6] = [
    &[4, 8, 6, 5],
    &[3, 16, 5, 7],
    &[18, 9, 2, 3],
    &[1, 48, 4, 3],
    &[5, 12, 7],
    &[6, 33],
];

/// The shape indices with a fixture for layer `name` with `cfg` (gen_norms.py `applies`): UBN
/// only at rank 4, faithful GN+ only with N >= 2, IN only at rank >= 3.
pub fn shape_indices(name: &str, cfg: &NormConfig) -> Vec<usize> {
    (0..SHAPES.len())
        .filter(|&s| {
            let shape = SHAPES[s];
            let faithful = name == "gnplus"
                && cfg.options::<GnPlusOptions>().variant == GnPlusVariant::Faithful;
            let skip = (name == "ubn" && shape.len() != 4)
                || (faithful && shape[0] < 2)
                || (name == "in" && shape.len() < 3);
            !skip
        })
        .collect()
}

pub fn fixture(stem: &str, shape_idx: usize) -> HashMap<String, Tensor> {
    fixture_on(stem, shape_idx, &Device::Cpu)
}

/// [`fixture`] with every tensor on `dev`.
pub fn fixture_on(stem: &str, shape_idx: usize, dev: &Device) -> HashMap<String, Tensor> {
    fixture_file(&format!("{stem}_s{shape_idx}"), dev)
}

/// tests/fixtures/norms/`name`.safetensors with every tensor on `dev`.
pub fn fixture_file(name: &str, dev: &Device) -> HashMap<String, Tensor> {
    // The checkout the test was built in, else the working directory: scripts/gpu-check.sh runs
    // a test binary built on another machine from the repository root.
    let built_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if built_in.is_dir() {
        built_in
    } else {
        std::path::Path::new(".")
    };
    let path = root.join(format!("tests/fixtures/norms/{name}.safetensors"));
    candle_core::safetensors::load(&path, dev).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copies every `p.<name>` tensor of a fixture into the parameter store (in place, so the
/// layer sees it); returns the names set.
pub fn set_params(b: &mut Built, fx: &HashMap<String, Tensor>) -> Vec<String> {
    set_from(&mut b.params, fx, "p.")
}

/// Copies every `b0.<name>` tensor of a fixture into the buffer store (the initial running
/// statistics and moving cosine of the fixture); returns the names set.
pub fn set_initial_buffers(b: &mut Built, fx: &HashMap<String, Tensor>) -> Vec<String> {
    set_from(&mut b.buffers, fx, "b0.")
}

/// Copies every `<prefix><name>` tensor of a fixture into `map`, in place; the sorted names.
fn set_from(map: &mut VarMap, fx: &HashMap<String, Tensor>, prefix: &str) -> Vec<String> {
    let mut names = vec![];
    for (k, v) in fx {
        if let Some(name) = k.strip_prefix(prefix) {
            map.set_one(name, v)
                .unwrap_or_else(|e| panic!("set {prefix}{name}: {e}"));
            names.push(name.to_string());
        }
    }
    names.sort();
    names
}

/// max|a − b| / max(max|b|, 1e-6).
pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("shape {:?} vs {:?}", a.dims(), b.dims());
    }
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-6);
    Ok(diff / scale)
}

/// The element-wise check: the largest |a − b| / (rtol·|b| + atol·S) over the elements, where
/// S is the largest |b| of the element's plane (sample, channel) for rank >= 3, of its row for
/// rank 2 and of the whole tensor below; ≤ 1 passes. Unlike [`rel_err`] it sees an error
/// confined to small values (a channel or sample of small variance, where ε matters, next to
/// large ones), while values near 0 inside a plane are still judged on the plane's scale.
pub fn elementwise_err(a: &Tensor, b: &Tensor, rtol: f32, atol: f32) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("shape {:?} vs {:?}", a.dims(), b.dims());
    }
    let dims = b.dims();
    let plane = match dims.len() {
        0 | 1 => b.elem_count().max(1),
        2 => dims[1],
        _ => dims[2..].iter().product::<usize>().max(1),
    };
    let av = a.flatten_all()?.to_vec1::<f32>()?;
    let bv = b.flatten_all()?.to_vec1::<f32>()?;
    let mut worst = 0f32;
    for (ap, bp) in av.chunks(plane).zip(bv.chunks(plane)) {
        let scale = bp.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (x, y) in ap.iter().zip(bp) {
            let diff = (x - y).abs();
            let allowed = rtol * y.abs() + atol * scale;
            let e = if diff == 0.0 { 0.0 } else { diff / allowed };
            if e.is_nan() || e > worst {
                worst = if e.is_nan() { f32::INFINITY } else { e };
            }
        }
    }
    Ok(worst)
}

/// Deterministic pseudo-random tensor (LCG) of the given shape, values in [lo, hi).
pub fn rand_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub fn var_tensor(map: &VarMap, name: &str) -> Tensor {
    map.data()
        .lock()
        .unwrap()
        .get(name)
        .unwrap_or_else(|| panic!("no var {name}"))
        .as_tensor()
        .clone()
}

pub fn elem_count(map: &VarMap) -> usize {
    map.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// One result of the fixture protocol: what it is, the fixture key of its reference, and the
/// value moved to the CPU (`None`: the layer produced no gradient there).
pub struct Output {
    pub what: String,
    pub key: String,
    pub got: Option<Tensor>,
}

/// The protocol of tests/fixtures/gen_norms.py for fixture `stem`_s`s` run on `dev`: the
/// fixture's parameters and initial buffers set, train output of step 1, gradients of sum(y·r)
/// w.r.t. input and every parameter, buffers after step 1, train outputs of steps 2 and 3,
/// buffers after them, eval output at N and (where the fixture has it) at N = 1, and the
/// buffers again after eval (unchanged). Also returns
/// the fixture (on the CPU). Panics when parameter or buffer names differ from the fixture's.
pub fn run_protocol(
    stem: &str,
    name: &str,
    cfg: &NormConfig,
    s: usize,
    dev: &Device,
) -> Result<(HashMap<String, Tensor>, Vec<Output>)> {
    let fx = fixture_on(stem, s, dev);
    let x = &fx["x"];
    assert_eq!(x.dims(), SHAPES[s], "{stem}_s{s}: input shape");
    let mut b = build_on(name, x.dim(1)?, cfg, dev);
    let set = set_params(&mut b, &fx);
    let mut own: Vec<String> = b.params.data().lock().unwrap().keys().cloned().collect();
    own.sort();
    assert_eq!(own, set, "{stem}: parameter names differ from the fixture");
    let mut bufs: Vec<String> = b.buffers.data().lock().unwrap().keys().cloned().collect();
    bufs.sort();
    let initial = set_initial_buffers(&mut b, &fx);
    assert_eq!(
        bufs, initial,
        "{stem}: buffer names differ from the fixture"
    );
    let mut out = vec![];
    let mut push = |what: String, key: String, got: Option<&Tensor>| -> Result<()> {
        // A copy: the buffers are overwritten in place by the next step.
        let got = got.map(|t| t.to_device(&Device::Cpu)?.copy()).transpose()?;
        out.push(Output { what, key, got });
        Ok(())
    };
    let xv = Var::from_tensor(x)?;
    let y = b.layer.forward_t(xv.as_tensor(), true)?;
    push("y_train".into(), "y_train".into(), Some(&y))?;
    let grads = (&y * &fx["r"])?.sum_all()?.backward()?;
    push("grad x".into(), "g.x".into(), grads.get(xv.as_tensor()))?;
    for p in &set {
        let t = var_tensor(&b.params, p);
        push(format!("grad {p}"), format!("g.{p}"), grads.get(&t))?;
    }
    for k in &bufs {
        let t = var_tensor(&b.buffers, k);
        push(
            format!("buffer {k} after step 1"),
            format!("b1.{k}"),
            Some(&t),
        )?;
    }
    for (step, key) in [(2, "x2"), (3, "x3")] {
        let y = b.layer.forward_t(&fx[key], true)?;
        push(
            format!("y_train step {step}"),
            format!("y_train{step}"),
            Some(&y),
        )?;
    }
    for k in &bufs {
        let t = var_tensor(&b.buffers, k);
        push(format!("buffer {k}"), format!("b.{k}"), Some(&t))?;
    }
    let ye = b.layer.forward_t(x, false)?;
    push("y_eval".into(), "y_eval".into(), Some(&ye))?;
    if fx.contains_key("y_eval1") {
        let y1 = b.layer.forward_t(&x.narrow(0, 0, 1)?, false)?;
        push("y_eval N=1".into(), "y_eval1".into(), Some(&y1))?;
    }
    // Eval mode leaves every buffer as the train steps left it (UBN's moving cosine included,
    // docs/norms.md §5.6.4).
    for k in &bufs {
        let t = var_tensor(&b.buffers, k);
        push(format!("buffer {k} after eval"), format!("b.{k}"), Some(&t))?;
    }
    let fx = fx
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    Ok((fx, out))
}
