//! Seeded variable creation. candle draws `Init::Randn` and `Init::Uniform` from an unseeded
//! thread RNG, so two runs of one config started from different weights, and a run killed
//! before its first checkpoint could not be replayed (`docs/style.md`: an experiment is one
//! config). Here every new variable is drawn from its own stream derived from (seed, variable
//! name): the initial weights are a function of the seed alone, whatever the construction order or
//! thread count.

use crate::dataset::rng::{hash_str, SplitMix64};
use candle_core::{bail, DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

/// A [`VarMap`] whose missing variables are created from seeded draws.
struct SeededVarMap {
    map: VarMap,
    seed: u64,
}

/// A builder that stores its variables in `map` (shared, as `VarMap` clones are) and draws new
/// ones from `seed`.
pub fn seeded_builder(
    map: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend = SeededVarMap {
        map: map.clone(),
        seed,
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

/// `n` values of `init`, drawn from the stream of `(seed, name)`.
fn draw(init: Init, n: usize, seed: u64, name: &str) -> Result<Vec<f32>> {
    let mut rng = SplitMix64::derive(seed, hash_str(name));
    Ok(match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * rng.normal() as f64) as f32)
            .collect(),
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.next_f64()) as f32)
            .collect(),
        Init::Kaiming { .. } => {
            bail!("{name}: Kaiming hints are not seeded; give Randn or Uniform with the bound")
        }
    })
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let mut vars = self.map.data().lock().expect("varmap lock");
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                bail!("{name}: shape {:?}, asked for {:?}", var.shape(), shape);
            }
            return Ok(var.as_tensor().clone());
        }
        let values = draw(init, shape.elem_count(), self.seed, name)?;
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&tensor)?;
        vars.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        bail!("{name}: a seeded VarMap creates variables from their shape; use `get`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64, order: &[&str]) -> VarMap {
        let map = VarMap::new();
        let vb = seeded_builder(&map, seed, DType::F32, &Device::Cpu);
        for name in order {
            let init = Init::Randn {
                mean: 0.0,
                stdev: 0.5,
            };
            vb.get_with_hints((4, 3), name, init).unwrap();
        }
        map
    }

    fn values(map: &VarMap, name: &str) -> Vec<f32> {
        let vars = map.data().lock().unwrap();
        vars[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn same_seed_same_weights_whatever_the_order() {
        let a = build(7, &["conv.weight", "fc.weight"]);
        let b = build(7, &["fc.weight", "conv.weight"]);
        let c = build(8, &["conv.weight", "fc.weight"]);
        assert_eq!(values(&a, "conv.weight"), values(&b, "conv.weight"));
        assert_eq!(values(&a, "fc.weight"), values(&b, "fc.weight"));
        assert_ne!(values(&a, "conv.weight"), values(&c, "conv.weight"));
        assert_ne!(values(&a, "conv.weight"), values(&a, "fc.weight"));
    }

    #[test]
    fn draws_follow_the_hint() {
        let n = 20_000;
        let x = draw(
            Init::Randn {
                mean: 1.0,
                stdev: 2.0,
            },
            n,
            1,
            "w",
        )
        .unwrap();
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
            "{mean} {var}"
        );
        let u = draw(Init::Uniform { lo: -0.5, up: 0.25 }, n, 1, "b").unwrap();
        assert!(u.iter().all(|&v| (-0.5..0.25).contains(&v)));
        assert_eq!(draw(Init::Const(3.0), 2, 1, "c").unwrap(), vec![3.0, 3.0]);
    }
}
