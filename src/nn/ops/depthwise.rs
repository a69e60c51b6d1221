//! Depthwise 2-D convolution (groups = channels, one filter per channel) as a direct kernel with
//! separate height/width strides and paddings.
//!
//! Why: candle runs a grouped conv as one conv per group plus a `cat` (345 ms forward+backward
//! for 64 channels against 7.6 ms for a direct kernel, `docs/architecture.md` § "candle on CPU"),
//! and CP-Mobile's blocks are depthwise 3×3 with strides (2, 2), (1, 2), (2, 1) (`docs/models.md`
//! § cp-mobile). Forward pass and both gradients are the shared kernels of
//! [`crate::kernels::depthwise`] (whose forward inference runs too): the input gradient as the
//! forward kernel on the dilated output gradient, the kernel gradient as dot products over the
//! forward pass's phase planes, summed in f64 across the batch.

use super::window::Window2d;
use super::{cpu_f32, grad_tensor, use_cpu_kernels, with_f32};
use crate::kernels::{depthwise as kdw, Isa};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Depthwise convolution of `x` (N, C, H, W) with `w` (C, 1, KH, KW); `stride` and `padding` as
/// (height, width). No bias, no dilation, channel multiplier 1.
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let geom = Window2d::depthwise(x.dims(), w.dims(), stride, padding)?;
    if !use_cpu_kernels(&[x, w]) {
        return super::fallback::depthwise_conv2d(x, w, stride, padding);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let op = DepthwiseOp { geom };
    if x.track_op() || w.track_op() {
        x.apply_op2(&w, op)
    } else {
        x.apply_op2_no_bwd(&w, &op)
    }
}

/// The depthwise kernel's own uses of its geometry.
impl Window2d {
    /// The forward kernel's geometry, one sample's worth.
    fn kernel(&self) -> kdw::Depthwise {
        self.strided().depthwise()
    }
}

struct DepthwiseOp {
    geom: Window2d,
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "asc-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "depthwise_conv2d")?;
        let w = cpu_f32(s2, l2, "depthwise_conv2d")?;
        let y = kdw::forward(x, g.n, w, None, &g.kernel(), Isa::active());
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geom;
        let (kernel, isa) = (g.kernel(), Isa::active());
        let (gx, gw) = with_f32(gy, "depthwise backward", |gys| {
            let gx = x
                .track_op()
                .then(|| {
                    with_f32(w, "depthwise backward", |ws| {
                        Ok(kdw::input_gradient(gys, g.n, ws, &kernel, isa))
                    })
                })
                .transpose()?;
            let gw = w
                .track_op()
                .then(|| {
                    with_f32(x, "depthwise backward", |xs| {
                        Ok(kdw::weight_gradient(xs, gys, g.n, &kernel, isa))
                    })
                })
                .transpose()?;
            Ok((gx, gw))
        })?;
        Ok((grad_tensor(x, gx)?, grad_tensor(w, gw)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_fallback() -> Result<()> {
        let dev = Device::Cpu;
        for (stride, padding) in [((1, 2), (1, 1)), ((2, 1), (1, 1)), ((2, 2), (0, 1))] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 7, 11), &dev)?)?;
            let w = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 1, 3, 3), &dev)?)?;
            let y = depthwise_conv2d(&x, &w, stride, padding)?;
            let yr = super::super::fallback::depthwise_conv2d(&x, &w, stride, padding)?;
            let d = (&y - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "forward differs by {d}");
            let gy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
            let g1 = (&y * &gy)?.sum_all()?.backward()?;
            let g2 = (&yr * &gy)?.sum_all()?.backward()?;
            for v in [&x, &w] {
                let a = g1.get(v).expect("grad");
                let b = g2.get(v).expect("grad");
                let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-3, "gradient differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_grouped_weight() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let e = depthwise_conv2d(&x, &w, (1, 1), (1, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 2, 3, 3]"), "{e}");
    }
}
