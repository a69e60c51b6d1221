//! One depthwise conv alone on the best path of this CPU (issue 16): one thread, the plan made
//! once, the best of 100 rounds of 100 calls of `forward_planned`, in µs and GMAC/s. The shapes
//! are CP-Mobile's at 256 mel bins and 65 frames (64 × 64 × 17 stride (1, 1) or (1, 2), 64 × 64
//! × 9 stride (2, 1), 120 × 32 × 9); `ASC_KERNEL_ISA` forces a path as everywhere.
//!
//! Run: `cargo run --release --example depthwise_profile -- C H W SH SW` (3 × 3, padding 1).

use asc::kernels::depthwise::{forward_planned, Depthwise, Plan};
use asc::kernels::Isa;
fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let &[c, h, w, sh, sw] = args.as_slice() else {
        eprintln!("usage: depthwise_profile C H W SH SW (five positive integers)");
        std::process::exit(2);
    };
    let g = Depthwise {
        c,
        h,
        w,
        kh: 3,
        kw: 3,
        sh,
        sw,
        ph: 1,
        pw: 1,
    };
    let isa = Isa::active();
    let x: Vec<f32> = (0..c * h * w)
        .map(|i| (i % 13) as f32 * 0.1 - 0.5)
        .collect();
    let k: Vec<f32> = (0..c * 9).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    if sh * sw == 0 || !g.is_valid() {
        eprintln!("depthwise_profile: {g:?} has an empty output");
        std::process::exit(2);
    }
    let plan = Plan::new(&g, isa);
    let mut y = vec![0f32; c * g.oh() * g.ow()];
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| {
            let mut best = f64::MAX;
            for _ in 0..100 {
                let t = std::time::Instant::now();
                for _ in 0..100 {
                    forward_planned(&x, 1, &k, None, &plan, false, &mut y);
                }
                best = best.min(t.elapsed().as_secs_f64() / 100.0 * 1e6);
            }
            let macs = (c * g.oh() * g.ow() * 9) as f64;
            println!(
                "{g:?} {isa:?}: {best:.1} us, {:.1} GMAC/s",
                macs / best / 1e3
            );
        });
}
