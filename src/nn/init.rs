//! Seeded parameter initialisation. candle draws `Init::Randn`/`Init::Uniform` from an unseeded
//! thread RNG, so two runs with the same `--seed` would start from different weights and a norm
//! comparison would mix initialisation noise into every gap. This backend draws each variable
//! from a stream derived from the run's seed and the variable's name: the same seed gives the
//! same weights whatever the construction order, and every norm of a comparison shares the
//! initial weights of the layers they have in common.

use crate::dataset::rng::{hash_str, SplitMix64};
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarMap};

/// A [`VarMap`] whose random initialisers are seeded.
pub struct SeededVarMap {
    map: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(map: VarMap, seed: u64) -> Self {
        Self { map, seed }
    }

    /// The values candle would draw for `init`, from this map's stream for `name`; `None` for
    /// deterministic initialisers.
    fn draw(&self, shape: &Shape, name: &str, init: Init) -> Option<Vec<f32>> {
        let mut rng = SplitMix64::derive(self.seed, hash_str(name));
        let n = shape.elem_count();
        match init {
            Init::Randn { mean, stdev } => Some(
                (0..n)
                    .map(|_| (mean + stdev * rng.normal() as f64) as f32)
                    .collect(),
            ),
            Init::Uniform { lo, up } => Some(
                (0..n)
                    .map(|_| (lo + (up - lo) * rng.next_f64()) as f32)
                    .collect(),
            ),
            _ => None,
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if self
            .map
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
        {
            return self.map.get(s, name, h, dtype, dev);
        }
        let Some(values) = self.draw(&s, name, h) else {
            return self.map.get(s, name, h, dtype, dev);
        };
        let t = self
            .map
            .get(s.clone(), name, Init::Const(0.0), dtype, dev)?;
        let drawn = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let data = self.map.data().lock().expect("varmap lock");
        data[name].set(&drawn)?;
        drop(t);
        Ok(data[name].as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.map.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarBuilder;

    fn draw(seed: u64) -> (Vec<f32>, Vec<f32>) {
        let map = VarMap::new();
        let vb = VarBuilder::from_backend(
            Box::new(SeededVarMap::new(map.clone(), seed)),
            DType::F32,
            Device::Cpu,
        );
        let a = vb
            .get_with_hints(
                64,
                "a",
                Init::Randn {
                    mean: 0.0,
                    stdev: 2.0,
                },
            )
            .unwrap();
        let b = vb
            .get_with_hints(64, "b", Init::Uniform { lo: -1.0, up: 1.0 })
            .unwrap();
        // The tensor handed out is the variable itself (what the optimiser updates).
        assert_eq!(
            map.data().lock().unwrap()["a"]
                .as_tensor()
                .to_vec1::<f32>()
                .unwrap(),
            a.to_vec1::<f32>().unwrap()
        );
        (a.to_vec1().unwrap(), b.to_vec1().unwrap())
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let (a1, b1) = draw(7);
        let (a2, b2) = draw(7);
        let (a3, _) = draw(8);
        assert_eq!((&a1, &b1), (&a2, &b2));
        assert_ne!(a1, a3);
        assert!(b1.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = a1.iter().sum::<f32>() / 64.0;
        let var = a1.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 64.0;
        assert!(
            mean.abs() < 0.8 && (1.5..6.5).contains(&var),
            "{mean} {var}"
        );
    }
}
