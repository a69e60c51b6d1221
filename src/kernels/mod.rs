//! CPU kernels shared by training (`nn::ops`) and inference (`infer`): one implementation of the
//! arithmetic the models spend their time in, with an AVX-512 path, an AVX2 + FMA path and a
//! portable one, chosen at run time.
//!
//! Why our own: for the baseline CNN's 7×7 convolutions with 16 channels, im2col + GEMM builds a
//! column matrix 49× the input and feeds a GEMM with only 16 rows, and tract's on-the-fly im2col
//! is gather-bound at that size (`docs/benchmarks.md`). A direct convolution that keeps a tile of
//! outputs in registers runs the same layer near the FMA peak.
//!
//! `ASC_KERNEL_ISA=avx512|avx2|portable` forces a path for a whole process (benchmarks of the
//! AVX2 path on an AVX-512 machine); tests call each path by name through the `Isa` argument.

pub mod conv;
mod copy;
pub mod depthwise;
pub mod im2col;
mod lanes;
pub mod pool;
pub mod reduce;
pub mod winograd;

use std::sync::OnceLock;

/// Which instruction set runs the inner loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// Every path, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The widest path this CPU runs.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The name `ASC_KERNEL_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The path this process uses: `ASC_KERNEL_ISA` when set to a path the CPU runs, the widest
    /// otherwise. A name that is unknown or not runnable here is reported once on stderr rather
    /// than failing deep inside a training step.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = Isa::best();
            let Ok(want) = std::env::var("ASC_KERNEL_ISA") else {
                return best;
            };
            match Isa::ALL.into_iter().find(|i| i.name() == want) {
                Some(i) if i.available() => i,
                Some(i) => {
                    eprintln!(
                        "warning: ASC_KERNEL_ISA={} is not supported by this CPU; using {}",
                        i.name(),
                        best.name()
                    );
                    best
                }
                None => {
                    eprintln!(
                        "warning: ASC_KERNEL_ISA={want} is not one of avx512, avx2, portable; using {}",
                        best.name()
                    );
                    best
                }
            }
        })
    }
}

/// Output length of a window of `k` at stride `s` over `len` values zero-padded by `p` on both
/// sides (floor, as PyTorch), or `None` when `k` or `s` is zero or the padded input is shorter
/// than the window: the one formula behind every kernel's geometry.
pub fn out_len(len: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    (k > 0 && s > 0 && len + 2 * p >= k).then(|| (len + 2 * p - k) / s + 1)
}

/// Deterministic values in [−0.5, 0.5) for the kernels' tests (an LCG: no test depends on a
/// random-number crate or on run order).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// A dense convolution of `n` inputs as a float64 loop over the definition, padding by bounds
/// checks: the reference of the kernels' tests.
#[cfg(test)]
pub(crate) fn naive_conv(
    x: &[f32],
    n: usize,
    w: &[f32],
    b: &[f32],
    g: &im2col::Strided,
) -> Vec<f32> {
    let (oh, ow) = (g.oh(), g.ow());
    let mut y = vec![0.0f32; n * g.o * oh * ow];
    for i in 0..n {
        for o in 0..g.o {
            for r in 0..oh {
                for t in 0..ow {
                    let mut acc = b[o] as f64;
                    for c in 0..g.c {
                        for u in 0..g.kh {
                            for v in 0..g.kw {
                                let (ih, iw) = (r * g.sh + u, t * g.sw + v);
                                if ih < g.ph || iw < g.pw {
                                    continue;
                                }
                                let (ih, iw) = (ih - g.ph, iw - g.pw);
                                if ih >= g.h || iw >= g.w {
                                    continue;
                                }
                                acc += x[((i * g.c + c) * g.h + ih) * g.w + iw] as f64
                                    * w[((o * g.c + c) * g.kh + u) * g.kw + v] as f64;
                            }
                        }
                    }
                    y[((i * g.o + o) * oh + r) * ow + t] = acc as f32;
                }
            }
        }
    }
    y
}

/// The largest absolute difference between two equally long results, for the kernels' tests.
#[cfg(test)]
pub(crate) fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "result lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
