//! UBN's scaling calibration and BNET affine as one op (docs/norms.md §5.2):
//! `y = act(g ⊙ (DWConv(x̂) + b_k))` with the per-sample channel gate
//! `g = sigmoid(w_s·GAP(x̂) + b_s)`, stride 1.
//!
//! Why: composed (the gate in candle ops, the depthwise conv, a per-plane affine) the gate's
//! gradient reached x̂ as a broadcast (N, C, H, W) tensor that candle's gradient store then added
//! to the conv's input gradient (two more passes), and the conv's output was kept for the
//! affine's backward. Here the gate's gradient is a per-plane constant added in one pass, the
//! affine runs in place on the conv's output, and the backward needs only the output: where the
//! activation passes, `z + b_k = y/g`.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::planes::planes_per_task;
use super::window::Window2d;
use super::{cpu_f32, depthwise_conv2d, grad_tensor, par_fill, use_cpu_kernels, with_f32};
use super::{plane_affine, Activation};
use crate::kernels::{depthwise as kdw, reduce, Isa};

/// `act(g ⊙ (DWConv(x) + b_k))`, g = sigmoid(w_s·GAP(x) + b_s), for `x` (N, C, H, W), `kernel`
/// (C, 1, KH, KW) and `coefs` (3C) = w_s, b_s, b_k; stride 1, zero `padding` (height, width).
pub fn gated_depthwise(
    x: &Tensor,
    kernel: &Tensor,
    coefs: &Tensor,
    padding: (usize, usize),
    act: Activation,
) -> Result<Tensor> {
    let geom = Window2d::depthwise(x.dims(), kernel.dims(), (1, 1), padding)?;
    if coefs.elem_count() != 3 * geom.c {
        bail!(
            "gated_depthwise: expected 3x{} coefficients (w_s, b_s, b_k), got shape {:?}",
            geom.c,
            coefs.dims()
        );
    }
    if !use_cpu_kernels(&[x, kernel, coefs]) {
        return composed(x, kernel, coefs, padding, act, geom.c);
    }
    let (x, kernel, coefs) = (x.contiguous()?, kernel.contiguous()?, coefs.contiguous()?);
    let op = GatedOp {
        geom,
        act,
        saved: OnceLock::new(),
    };
    if x.track_op() || kernel.track_op() || coefs.track_op() {
        x.apply_op3(&kernel, &coefs, op)
    } else {
        x.apply_op3_no_bwd(&kernel, &coefs, &op)
    }
}

/// The gate `sigmoid(w·GAP(t) + b)` of an (N, C, L) input `t`, shape (N, C, 1); `w` and `b` of
/// shape (C), in candle ops: IEBN's attention (docs/norms.md §6.2), and UBN's scaling
/// calibration where [`gated_depthwise`] cannot run its kernel.
pub fn gap_gate(t: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c = w.elem_count();
    let z = t
        .mean_keepdim(2)?
        .broadcast_mul(&w.reshape((1, c, 1))?)?
        .broadcast_add(&b.reshape((1, c, 1))?)?;
    candle_nn::ops::sigmoid(&z)
}

/// The same with candle ops and the separate layers (devices without our kernels).
fn composed(
    x: &Tensor,
    kernel: &Tensor,
    coefs: &Tensor,
    padding: (usize, usize),
    act: Activation,
    c: usize,
) -> Result<Tensor> {
    let n = x.dim(0)?;
    let [ws, bs, bk] = [0, 1, 2].map(|i| coefs.narrow(0, i * c, c));
    let (ws, bs, bk) = (ws?, bs?, bk?);
    let g = gap_gate(&x.reshape((n, c, ()))?, &ws, &bs)?.reshape((n, c))?;
    let z = depthwise_conv2d(x, kernel, (1, 1), padding)?;
    let shift = g.broadcast_mul(&bk)?;
    let y = plane_affine(&z.reshape((n, c, ()))?, &g, &shift, act)?;
    y.reshape(z.dims())
}

/// What the backward needs of the forward pass, per (sample, channel) plane.
struct Saved {
    /// The input's plane means, GAP(x).
    mean: Vec<f32>,
    /// The gate g.
    gate: Vec<f32>,
}

struct GatedOp {
    geom: Window2d,
    act: Activation,
    saved: OnceLock<Saved>,
}

impl GatedOp {
    fn kernel(&self) -> kdw::Depthwise {
        self.geom.strided().depthwise()
    }
}

/// sigmoid(v) = 1 / (1 + e^−v).
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp3 for GatedOp {
    fn name(&self) -> &'static str {
        "asc-gated-depthwise"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.geom;
        let x = cpu_f32(s1, l1, "gated_depthwise")?;
        let w = cpu_f32(s2, l2, "gated_depthwise")?;
        let coefs = cpu_f32(s3, l3, "gated_depthwise")?;
        let (ws, bs, bk) = (&coefs[..g.c], &coefs[g.c..2 * g.c], &coefs[2 * g.c..]);
        let (isa, l_in, l_out) = (Isa::active(), g.h * g.w, g.oh * g.ow);
        let mean: Vec<f32> = x
            .par_chunks(l_in)
            .with_min_len(planes_per_task(l_in))
            .map(|xp| (reduce::sum(xp, isa) / l_in as f64) as f32)
            .collect();
        let gate: Vec<f32> = mean
            .iter()
            .enumerate()
            .map(|(p, &m)| sigmoid(ws[p % g.c] * m + bs[p % g.c]))
            .collect();
        let mut y = kdw::forward(x, g.n, w, Some(bk), &self.kernel(), isa);
        let act = self.act;
        y.par_chunks_mut(l_out)
            .with_min_len(planes_per_task(l_out))
            .zip(&gate)
            .for_each(|(yp, &gp)| yp.iter_mut().for_each(|v| *v = act.eval(gp * *v)));
        // A second forward of the same op (never done by candle) would keep the first values.
        let _ = self.saved.set(Saved { mean, gate });
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    /// With ∂z = ∂y·act'(y)·g the gradient of the conv's output: ∂b_k = Σ∂z; ∂g = Σ∂y·act'·(z +
    /// b_k) = Σ∂y·act'·y / g; ∂u = ∂g·g(1 − g) for u = w_s·GAP + b_s, so ∂w_s = Σ_n ∂u·GAP,
    /// ∂b_s = Σ_n ∂u, and ∂x = DWConvᵀ(∂z) + w_s·∂u / (H·W) on every value of the plane.
    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        coefs: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = &self.geom;
        let Some(saved) = self.saved.get() else {
            bail!("gated_depthwise backward: nothing saved by the forward pass");
        };
        let (act, isa, l_in, l_out) = (self.act, Isa::active(), g.h * g.w, g.oh * g.ow);
        let kern = self.kernel();
        let (gx, gk, gc) = with_f32(gy, "gated_depthwise backward", |gys| {
            with_f32(res, "gated_depthwise backward", |ys| {
                with_f32(coefs, "gated_depthwise backward", |cs| {
                    // Per plane: Σ∂y·act' and Σ∂y·act'·y.
                    let sums: Vec<[f64; 2]> = gys
                        .par_chunks(l_out)
                        .zip(ys.par_chunks(l_out))
                        .with_min_len(planes_per_task(l_out))
                        .map(|(gp, yp)| act.moments(gp, yp, yp, 0.0))
                        .collect();
                    let gate = &saved.gate;
                    let gz = par_fill(gys.len(), l_out, planes_per_task(l_out), |p, o| {
                        let gp = gate[p];
                        let at = p * l_out;
                        let (gyp, yp) = (&gys[at..at + l_out], &ys[at..at + l_out]);
                        for ((ov, dy), yv) in o.iter_mut().zip(gyp).zip(yp) {
                            ov.write(gp * dy * act.slope(*yv));
                        }
                    });
                    // ∂u = ∂g·g(1 − g) = Σ∂y·act'·y·(1 − g) per plane, then the (3C)
                    // coefficient gradient.
                    let du: Vec<f64> = sums
                        .iter()
                        .zip(gate)
                        .map(|([_, dyy], &gp)| dyy * (1.0 - gp as f64))
                        .collect();
                    let mut gc = vec![0f64; 3 * g.c];
                    for (p, (du, [dy, _])) in du.iter().zip(&sums).enumerate() {
                        let c = p % g.c;
                        gc[c] += du * saved.mean[p] as f64;
                        gc[g.c + c] += du;
                        gc[2 * g.c + c] += gate[p] as f64 * dy;
                    }
                    let gx = x
                        .track_op()
                        .then(|| {
                            with_f32(kernel, "gated_depthwise backward", |ws| {
                                let mut gx = kdw::input_gradient(&gz, g.n, ws, &kern, isa);
                                gx.par_chunks_mut(l_in)
                                    .with_min_len(planes_per_task(l_in))
                                    .enumerate()
                                    .for_each(|(p, gp)| {
                                        let d = (cs[p % g.c] as f64 * du[p] / l_in as f64) as f32;
                                        gp.iter_mut().for_each(|v| *v += d);
                                    });
                                Ok(gx)
                            })
                        })
                        .transpose()?;
                    let gk = kernel
                        .track_op()
                        .then(|| {
                            with_f32(x, "gated_depthwise backward", |xs| {
                                Ok(kdw::weight_gradient(xs, &gz, g.n, &kern, isa))
                            })
                        })
                        .transpose()?;
                    Ok((gx, gk, gc.into_iter().map(|v| v as f32).collect()))
                })
            })
        })?;
        Ok((
            grad_tensor(x, gx)?,
            grad_tensor(kernel, gk)?,
            grad_tensor(coefs, Some(gc))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("difference")
    }

    /// Output and every gradient against candle's autograd through the composed layers (the
    /// gate in candle ops, candle's own sigmoid), both activations, 3 × 3 and 5 × 3 kernels.
    #[test]
    fn matches_the_composed_layers() -> Result<()> {
        let dev = Device::Cpu;
        let (n, c, h, w) = (3, 4, 9, 7);
        for ((kh, kw), act) in [(3, 3), (5, 3)]
            .into_iter()
            .flat_map(|k| [Activation::Identity, Activation::Relu].map(|a| (k, a)))
        {
            let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)? + 0.3)?)?;
            let k = Var::from_tensor(&Tensor::randn(0f32, 0.5, (c, 1, kh, kw), &dev)?)?;
            let cf = Var::from_tensor(&Tensor::randn(0f32, 1.0, 3 * c, &dev)?)?;
            let r = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev)?;
            let pad = ((kh - 1) / 2, (kw - 1) / 2);
            let fast = gated_depthwise(&x, &k, &cf, pad, act)?;
            let slow = composed(&x, &k, &cf, pad, act, c)?;
            let what = format!("{kh}x{kw} {act:?}");
            assert!(max_diff(&fast, &slow) < 1e-5, "{what}: y");
            let g1 = (&fast * &r)?.sum_all()?.backward()?;
            let g2 = (&slow * &r)?.sum_all()?.backward()?;
            for (name, v) in [("x", &x), ("kernel", &k), ("coefs", &cf)] {
                let (a, b) = (g1.get(v).expect("grad"), g2.get(v).expect("grad"));
                let top = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                let d = max_diff(a, b);
                assert!(
                    d <= 1e-4 * top.max(1.0),
                    "{what}: d{name} differs by {d} of {top}"
                );
            }
        }
        Ok(())
    }
}
