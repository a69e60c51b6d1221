//! ReLU as one kernel, and the activation the normalization kernels can apply on their way out.
//!
//! Why: candle's ReLU backward is five full passes (`x ≥ 0`, a dtype cast, a multiply, and the
//! gradient store's zeros plus add) and counts x = 0 as active, where PyTorch does not. Here the
//! backward is one pass that reads the output: ∂x = ∂y where y > 0. Fused into
//! [`super::standardize`] the ReLU costs no pass of its own at all.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::{cpu_f32, par_fill, use_cpu_kernels, with_f32};
use crate::kernels::{reduce, Isa};

/// Values per rayon task of the elementwise passes.
const CHUNK: usize = 1 << 15;

/// The activation applied after a normalization (docs/models.md: conv → norm → ReLU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
}

impl Activation {
    /// The activation on its own, for layers that cannot fuse it.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(x.clone()),
            Activation::Relu => relu(x),
        }
    }

    /// `max(v, 0)` or `v`.
    #[inline]
    pub(crate) fn eval(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
        }
    }

    /// The derivative at the activation's output `y`: 1, or for ReLU 1 where y > 0 and 0
    /// elsewhere (so the kernels mask the incoming gradient without a pass of their own).
    #[inline]
    pub(crate) fn slope(self, y: f32) -> f32 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// [Σ∂z, Σ∂z·(x − m)] over a plane, ∂z = ∂y times the slope at the output `y`: the sums a
    /// normalization's backward pass needs (one vectorised pass, [`reduce::masked_moments`]).
    pub(crate) fn moments(self, gy: &[f32], y: &[f32], x: &[f32], m: f32) -> [f64; 2] {
        reduce::masked_moments(gy, y, x, m, self == Activation::Relu, Isa::active())
    }
}

/// `max(x, 0)` with a one-pass backward (gradient 0 at x = 0, as PyTorch).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernels(&[x]) {
        // candle's own ReLU: right except at exactly 0.
        return x.relu();
    }
    let x = x.contiguous()?;
    if x.track_op() {
        x.apply_op1(Relu)
    } else {
        x.apply_op1_no_bwd(&Relu)
    }
}

fn relu_grad(gy: &[f32], y: &[f32]) -> Vec<f32> {
    par_fill(gy.len(), CHUNK, 1, |i, o| {
        let (gc, yc) = (&gy[i * CHUNK..], &y[i * CHUNK..]);
        for ((ov, dv), yv) in o.iter_mut().zip(gc).zip(yc) {
            ov.write(if *yv > 0.0 { *dv } else { 0.0 });
        }
    })
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "asc-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "relu")?;
        let y = par_fill(x.len(), CHUNK, 1, |i, o| {
            for (ov, xv) in o.iter_mut().zip(&x[i * CHUNK..]) {
                ov.write(xv.max(0.0));
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, gy: &Tensor) -> Result<Option<Tensor>> {
        let g = with_f32(gy, "relu backward", |gys| {
            with_f32(y, "relu backward", |ys| Ok(relu_grad(gys, ys)))
        })?;
        Tensor::from_vec(g, gy.shape(), gy.device()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward equals candle's; the gradient is ∂y where x > 0 and 0 elsewhere, 0 included.
    #[test]
    fn relu_gradient_is_zero_at_and_below_zero() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[-1f32, 0.0, 0.5, 2.0, -0.0], &dev)?)?;
        let y = relu(&x)?;
        assert_eq!(y.to_vec1::<f32>()?, x.relu()?.to_vec1::<f32>()?);
        let r = Tensor::new(&[1f32, 2.0, 3.0, 4.0, 5.0], &dev)?;
        let g = (&y * &r)?.sum_all()?.backward()?;
        let gx = g.get(&x).expect("grad").to_vec1::<f32>()?;
        assert_eq!(gx, vec![0.0, 0.0, 3.0, 4.0, 0.0]);
        Ok(())
    }

    #[test]
    fn relu_matches_candle_on_a_large_tensor() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 5, 7001), &dev)?)?;
        let r = Tensor::randn(0f32, 1.0, (3, 5, 7001), &dev)?;
        let g1 = (relu(&x)? * &r)?.sum_all()?.backward()?;
        let g2 = (x.relu()? * &r)?.sum_all()?.backward()?;
        let d = (g1.get(&x).expect("grad") - g2.get(&x).expect("grad"))?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "random inputs are never exactly 0");
        Ok(())
    }
}
