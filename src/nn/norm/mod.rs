//! PLACEHOLDER until the norm branch lands: the trait as models use it, and a minimal BN.
use candle_core::{Result, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub trait Norm: Send + Sync + std::fmt::Debug {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NormConfig {}

pub const NORM_NAMES: &[&str] = &["bn", "none"];

#[derive(Debug)]
struct Identity;
impl Norm for Identity {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(x.clone())
    }
}

#[derive(Debug)]
struct Bn {
    gamma: Tensor,
    beta: Tensor,
    rm: Var,
    rv: Var,
}

impl Norm for Bn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (mean, var) = if train {
            let xc = x.transpose(0, 1)?.reshape((c, n * h * w))?;
            let mean = xc.mean_keepdim(1)?;
            let var = xc.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
            let m = (n * h * w) as f64;
            let rm = (self.rm.as_tensor().affine(0.9, 0.0)?
                + mean.flatten_all()?.detach().affine(0.1, 0.0)?)?;
            let rv = (self.rv.as_tensor().affine(0.9, 0.0)?
                + var
                    .flatten_all()?
                    .detach()
                    .affine(0.1 * m / (m - 1.0), 0.0)?)?;
            self.rm.set(&rm)?;
            self.rv.set(&rv)?;
            (mean.reshape((1, c, 1, 1))?, var.reshape((1, c, 1, 1))?)
        } else {
            (
                self.rm.as_tensor().reshape((1, c, 1, 1))?,
                self.rv.as_tensor().reshape((1, c, 1, 1))?,
            )
        };
        let xh = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        xh.broadcast_mul(&self.gamma.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.beta.reshape((1, c, 1, 1))?)
    }
}

pub fn build(
    name: &str,
    channels: usize,
    _cfg: &NormConfig,
    params: VarBuilder,
    buffers: VarBuilder,
) -> Result<Box<dyn Norm>> {
    match name {
        "none" => Ok(Box::new(Identity)),
        "bn" => {
            let gamma = params.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?;
            let beta = params.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?;
            let rm =
                buffers.get_with_hints(channels, "running_mean", candle_nn::Init::Const(0.0))?;
            let rv =
                buffers.get_with_hints(channels, "running_var", candle_nn::Init::Const(1.0))?;
            Ok(Box::new(Bn {
                gamma,
                beta,
                rm: Var::from_tensor(&rm)?,
                rv: Var::from_tensor(&rv)?,
            }))
        }
        other => candle_core::bail!("unknown norm '{other}'"),
    }
}
