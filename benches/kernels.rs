//! The direct convolution kernels (`asc::kernels::conv`) on each instruction-set path, layer by
//! layer for the baseline CNN at batch 1 on one thread: forward and weight gradient in ms and
//! GMAC/s, next to PyTorch's (oneDNN) time for the same layer (benches/kernels_torch.py, run in
//! the same invocation; skipped with a message when python3 or torch is missing) and next to
//! the peak: the GMAC/s of a loop of independent FMAs on the same path, measured here.
//!
//! Each r = 7 Winograd algorithm of `asc::kernels::winograd` (inference's forward) gets a column
//! too, its GMAC/s counted in the direct convolution's multiply-adds (the work it replaces).
//!
//! `cargo bench --bench kernels`; `ASC_BENCH_REPS` (default 5) repetitions, best time kept.
//! One thread on both sides (a rayon pool of one here, `torch.set_num_threads(1)` there).

#[path = "common/peers.rs"]
#[allow(dead_code)] // only the Python runner is used here
mod peers;

use asc::kernels::conv::{forward, weight_gradient, Conv, Packed};
use asc::kernels::winograd::{self, Table};
use asc::kernels::Isa;
use std::time::Instant;

/// The baseline CNN's three 7×7 convolutions on a 10 s (431 frames) and a 5 s (216) clip at
/// 128 mels; the third runs after the 5×5 max pool.
const LAYERS: [(&str, usize, usize, usize, usize); 6] = [
    ("conv1 1→16, 128×431", 1, 128, 431, 16),
    ("conv2 16→16, 128×431", 16, 128, 431, 16),
    ("conv3 16→32, 25×86", 16, 25, 86, 32),
    ("conv1 1→16, 128×216", 1, 128, 216, 16),
    ("conv2 16→16, 128×216", 16, 128, 216, 16),
    ("conv3 16→32, 25×43", 16, 25, 43, 32),
];

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5)
        .collect()
}

/// GMAC/s of a loop of 24 independent FMA chains on `isa`: what the core can issue at most.
fn fma_peak(isa: Isa) -> f64 {
    let iters = 20_000_000u64;
    let t = Instant::now();
    let lanes = peak_loop(isa, iters);
    let s = t.elapsed().as_secs_f64();
    (iters as f64 * 24.0 * lanes as f64) / s / 1e9
}

fn peak_loop(isa: Isa, iters: u64) -> usize {
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::*;
        match isa {
            Isa::Avx512 => return avx512_peak(iters),
            Isa::Avx2 => return avx2_peak(iters),
            Isa::Portable => {}
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512_peak(iters: u64) -> usize {
            let mut a = [_mm512_set1_ps(1.0); 24];
            let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..iters {
                for v in a.iter_mut() {
                    *v = _mm512_fmadd_ps(*v, m, c);
                }
            }
            std::hint::black_box(a);
            16
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2_peak(iters: u64) -> usize {
            let mut a = [_mm256_set1_ps(1.0); 12];
            let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..iters * 2 {
                for v in a.iter_mut() {
                    *v = _mm256_fmadd_ps(*v, m, c);
                }
            }
            std::hint::black_box(a);
            8
        }
    }
    // Portable: plain multiply-adds over arrays, vectorised for the baseline target (SSE2).
    let mut a = [[1.0f32; 8]; 3];
    for _ in 0..iters {
        for v in a.iter_mut() {
            for x in v.iter_mut() {
                *x = *x * 0.999_999 + 1e-7;
            }
        }
    }
    std::hint::black_box(a);
    1
}

fn main() {
    let reps: usize = std::env::var("ASC_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut args = vec![reps.to_string()];
    args.extend(
        LAYERS
            .iter()
            .map(|&(_, c, h, w, o)| format!("{c},{h},{w},{o},7")),
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let torch = peers::python("kernels_torch.py", &argv);
    println!(
        "direct convolution, batch 1, one thread, best of {reps}; GMAC/s in brackets; \
         torch: benches/kernels_torch.py (oneDNN), one thread; peak: independent FMAs"
    );
    for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
        let peak = pool.install(|| fma_peak(isa));
        println!("\n{} path, FMA peak {peak:.1} GMAC/s", isa.name());
        let tables: Vec<&Table> = Table::all().iter().filter(|t| t.r == 7).collect();
        let heads: String = tables
            .iter()
            .map(|t| format!(" F({}, 7) forward ms |", t.m))
            .collect();
        println!(
            "| layer | forward ms |{heads} weight grad ms | torch forward ms | torch weight grad ms |"
        );
        println!("|---|---|{}---|---|---|", "---|".repeat(tables.len()));
        for (i, &(name, c, h, w, o)) in LAYERS.iter().enumerate() {
            let g = Conv {
                c,
                h,
                w,
                o,
                kh: 7,
                kw: 7,
                ph: 3,
                pw: 3,
            };
            let macs = (c * o * 49 * h * w) as f64;
            let x = values(c * h * w);
            let wt = values(o * c * 49);
            let gy = values(o * h * w);
            let p = Packed::new(g, &wt, None, isa);
            let (fwd, gw, wino) = pool.install(|| {
                let fwd = best_ms(reps, || {
                    std::hint::black_box(forward(&x, 1, &p));
                });
                let gw = best_ms(reps, || {
                    std::hint::black_box(weight_gradient(&x, &gy, &g, isa));
                });
                let wino: Vec<f64> = tables
                    .iter()
                    .map(|t| {
                        let p = winograd::Packed::with_table(g, &wt, None, isa, t);
                        let mut y = vec![0.0; o * h * w];
                        best_ms(reps, || winograd::forward_into(&x, 1, &p, &mut y))
                    })
                    .collect();
                (fwd, gw, wino)
            });
            let rate = |ms: f64| macs / ms / 1e6;
            let peer = |key: &str| {
                torch
                    .as_ref()
                    .and_then(|t| t.get(i))
                    .and_then(|v| v[key].as_f64())
                    .map_or("-".into(), |ms| format!("{ms:.2} ({:.1})", rate(ms)))
            };
            let wino: String = wino
                .iter()
                .map(|&ms| format!(" {ms:.2} ({:.1}) |", rate(ms)))
                .collect();
            println!(
                "| {name} | {fwd:.2} ({:.1}) |{wino} {gw:.2} ({:.1}) | {} | {} |",
                rate(fwd),
                rate(gw),
                peer("forward_ms"),
                peer("weight_grad_ms")
            );
        }
    }
}
