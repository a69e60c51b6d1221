//! Shared helpers for the tests that compare against the PyTorch float64 fixtures written by
//! `tests/fixtures/gen_ops.py`.
#![allow(dead_code)]

use candle_core::{DType, Device, Result, Tensor};
use std::collections::HashMap;

pub type Fixture = HashMap<String, Tensor>;

pub fn load(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/ops/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {path}: {e} (run tests/fixtures/gen_ops.py)"))
}

/// Case names of a fixture (keys `NAME.<field>`), sorted, those having `field`.
pub fn cases(f: &Fixture, field: &str) -> Vec<String> {
    let suffix = format!(".{field}");
    let mut v: Vec<String> = f
        .keys()
        .filter_map(|k| k.strip_suffix(&suffix).map(str::to_string))
        .collect();
    v.sort();
    v
}

pub fn get(f: &Fixture, case: &str, field: &str) -> Tensor {
    f.get(&format!("{case}.{field}"))
        .unwrap_or_else(|| panic!("fixture lacks {case}.{field}"))
        .clone()
}

pub fn params(f: &Fixture, case: &str) -> Vec<usize> {
    get(f, case, "params")
        .to_vec1::<i64>()
        .expect("params are int64")
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// max |got − want| / max |want|, computed in f64.
pub fn rel_err(got: &Tensor, want: &Tensor) -> Result<f64> {
    if got.dims() != want.dims() {
        candle_core::bail!("shape {:?} vs reference {:?}", got.dims(), want.dims());
    }
    let g = got.to_dtype(DType::F64)?;
    let w = want.to_dtype(DType::F64)?;
    let diff = (g - &w)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = w.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-12);
    Ok(diff / scale)
}
