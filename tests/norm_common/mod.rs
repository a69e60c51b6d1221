//! Helpers shared by the norm integration tests.
#![allow(dead_code)]

use asc::nn::norm::{build_norm, FctMode, GnPlusVariant, L2bnMode, Norm, NormBuilder, NormConfig};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;

/// A layer with its two stores.
pub struct Built {
    pub layer: Box<dyn Norm>,
    pub params: VarMap,
    pub buffers: VarMap,
}

pub fn build(name: &str, c: usize, cfg: &NormConfig) -> Built {
    let params = VarMap::new();
    let buffers = VarMap::new();
    let dev = Device::Cpu;
    let nb = NormBuilder::new(
        VarBuilder::from_varmap(&params, DType::F32, &dev),
        VarBuilder::from_varmap(&buffers, DType::F32, &dev),
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
            NormConfig {
                l2bn_mode: L2bnMode::L2,
                ..d()
            },
        ),
        ("gn", "gn", d()),
        (
            "gn_g4",
            "gn",
            NormConfig {
                gn_max_groups: 4,
                ..d()
            },
        ),
        (
            "gnplus",
            "gnplus",
            NormConfig {
                gn_max_groups: 4,
                ..d()
            },
        ),
        (
            "gnplus_faithful",
            "gnplus",
            NormConfig {
                gn_max_groups: 4,
                gnplus_variant: GnPlusVariant::Faithful,
                ..d()
            },
        ),
        ("ubn", "ubn", d()),
        (
            "ubn_below",
            "ubn",
            NormConfig {
                ubn_fct_mode: FctMode::BatchWhenBelow,
                ..d()
            },
        ),
        ("iebn", "iebn", d()),
        ("ln", "ln", d()),
        ("in", "in", d()),
        ("none", "none", d()),
    ]
}

pub fn fixture(stem: &str, shape_idx: usize) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/norms/{stem}_s{shape_idx}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Copies every `p.<name>` tensor of a fixture into the parameter store (in place, so the
/// layer sees it); returns the names set.
pub fn set_params(b: &mut Built, fx: &HashMap<String, Tensor>) -> Vec<String> {
    let mut names = vec![];
    for (k, v) in fx {
        if let Some(name) = k.strip_prefix("p.") {
            b.params
                .set_one(name, v)
                .unwrap_or_else(|e| panic!("set {name}: {e}"));
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
