//! Optimisers whose whole state can be saved and restored, so a resumed run continues exactly
//! where it stopped (candle-nn's `AdamW` keeps its moments private, which rules that out).

use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Which optimiser, with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum OptimizerConfig {
    /// Decoupled weight decay (Loshchilov & Hutter), PyTorch's defaults for betas and eps.
    AdamW {
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    /// SGD with (optionally Nesterov) momentum and L2 weight decay, PyTorch's formulation.
    Sgd {
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
    },
}

impl OptimizerConfig {
    pub fn adamw(weight_decay: f64) -> Self {
        Self::AdamW {
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// An optimiser over named parameters.
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<(String, Var)>,
    /// First moment (AdamW) or momentum buffer (SGD), per parameter name.
    m: HashMap<String, Tensor>,
    /// Second moment (AdamW only).
    v: HashMap<String, Tensor>,
    step: u64,
}

impl Optimizer {
    /// `params` are the trainable variables only: buffers (running statistics) never come here.
    pub fn new(config: OptimizerConfig, mut params: Vec<(String, Var)>) -> Result<Self> {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (name, var) in &params {
            m.insert(name.clone(), var.zeros_like()?);
            if matches!(config, OptimizerConfig::AdamW { .. }) {
                v.insert(name.clone(), var.zeros_like()?);
            }
        }
        Ok(Self {
            config,
            params,
            m,
            v,
            step: 0,
        })
    }

    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from the gradients of `loss`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        self.apply(&loss.backward()?, lr)
    }

    /// The optimised variables, by name, in the order [`Optimizer::apply`] reads them.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update with learning rate `lr` from gradients already computed (and, over several
    /// ranks, summed: `train::parallel`).
    pub fn apply(&mut self, grads: &candle_core::backprop::GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?;
            let w = var.as_tensor();
            match self.config {
                OptimizerConfig::AdamW {
                    weight_decay,
                    beta1,
                    beta2,
                    eps,
                } => {
                    let m = (self.m[name].affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?;
                    let v =
                        (self.v[name].affine(beta2, 0.0)? + g.sqr()?.affine(1.0 - beta2, 0.0)?)?;
                    let bc1 = 1.0 - beta1.powi(self.step as i32);
                    let bc2 = 1.0 - beta2.powi(self.step as i32);
                    let update =
                        (m.affine(1.0 / bc1, 0.0)? / (v.affine(1.0 / bc2, 0.0)?.sqrt()? + eps)?)?;
                    let decayed = w.affine(1.0 - lr * weight_decay, 0.0)?;
                    var.set(&(decayed - update.affine(lr, 0.0)?)?)?;
                    self.m.insert(name.clone(), m);
                    self.v.insert(name.clone(), v);
                }
                OptimizerConfig::Sgd {
                    momentum,
                    weight_decay,
                    nesterov,
                } => {
                    let g = if weight_decay != 0.0 {
                        (g + w.affine(weight_decay, 0.0)?)?
                    } else {
                        g
                    };
                    // PyTorch: the first step initialises the buffer with the gradient.
                    let buf = if self.step == 1 {
                        g.clone()
                    } else {
                        (self.m[name].affine(momentum, 0.0)? + &g)?
                    };
                    let d = if nesterov {
                        (&g + buf.affine(momentum, 0.0)?)?
                    } else {
                        buf.clone()
                    };
                    var.set(&(w - d.affine(lr, 0.0)?)?)?;
                    self.m.insert(name.clone(), buf);
                }
            }
        }
        Ok(())
    }

    /// The optimiser state as named tensors (for the checkpoint) and its step count.
    pub fn state(&self) -> (HashMap<String, Tensor>, u64) {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        (out, self.step)
    }

    /// Restores what [`Optimizer::state`] returned; shapes must match the parameters.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (name, var) in &self.params {
            for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
                if !map.contains_key(name) {
                    continue;
                }
                let key = format!("{prefix}.{name}");
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state lacks '{key}'"))
                })?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "optimizer state '{key}' has shape {:?}, parameter has {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                map.insert(name.clone(), t.to_device(var.device())?);
            }
        }
        self.step = step;
        Ok(())
    }
}
