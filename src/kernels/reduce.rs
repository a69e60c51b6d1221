//! Plane reductions: the sums behind the normalization layers' statistics and gradients
//! (`nn::ops::standardize`, `nn::ops::equalize`) and the depthwise weight gradient.
//!
//! Why: these loops were a third of a CP-Mobile training step (BN's backward sums alone 16 %,
//! the depthwise weight gradient 10 %, `perf` on the development set) because the crate is built
//! for baseline x86-64: outside the kernels every loop runs on SSE, and the summing closures
//! kept bounds checks in the loop, so they ran one scalar add per value. Sixteen f32 lanes in
//! an array, left to the compiler inside an AVX-512 function, came out as 2-wide code: the
//! kernels say what each vector does ([`Lanes`]).
//!
//! How: each kernel is written once over a 16-lane vector type: one AVX-512 register, two AVX2
//! registers, or a plain array. Lane k of a block always takes the values ≡ k (mod 16) with a
//! multiply and an add (never fused), the tail of a block goes into the lanes as scalars and the
//! lanes are totalled in a fixed order, so the three paths give the same bits. Block totals (of
//! [`BLOCK`] values, 64 terms per lane) accumulate in f64 whatever the plane's length.

#[cfg(target_arch = "x86_64")]
use super::lanes::x86;
use super::lanes::{Lanes, LANES};
use super::Isa;
/// Values per block between the f32 lanes and the f64 total.
const BLOCK: usize = 1024;

/// The lanes' total, in a fixed order (pairwise).
#[inline(always)]
fn lane_total(acc: [f32; LANES]) -> f64 {
    let mut v = acc;
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for k in 0..w {
            v[k] += v[k + w];
        }
    }
    v[0] as f64
}

/// Σ over a plane of `len` values, block by block: `step(i)` adds the 16 values from `i` into
/// the `K` vector accumulators, `tail(i, acc)` the last `len − i` (< 16) of a block into their
/// lanes as scalars. Returns the `K` totals.
#[inline(always)]
fn blocked<V: Lanes, const K: usize>(
    len: usize,
    mut step: impl FnMut(usize, &mut [V; K]),
    mut tail: impl FnMut(std::ops::Range<usize>, &mut [[f32; LANES]; K]),
) -> [f64; K] {
    let mut total = [0f64; K];
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK).min(len);
        let full = start + (end - start) / LANES * LANES;
        let mut acc = [V::zero(); K];
        let mut i = start;
        while i < full {
            step(i, &mut acc);
            i += LANES;
        }
        let mut lanes = acc.map(V::to_array);
        tail(full..end, &mut lanes);
        for (t, l) in total.iter_mut().zip(lanes) {
            *t += lane_total(l);
        }
        start = end;
    }
    total
}

/// # Safety
/// The CPU has `V`'s features.
#[inline(always)]
unsafe fn sum_imp<V: Lanes>(x: &[f32]) -> f64 {
    let p = x.as_ptr();
    let [s] = blocked::<V, 1>(
        x.len(),
        |i, [a]| *a = a.add(V::load(p.add(i))),
        |r, [a]| {
            for (k, i) in r.enumerate() {
                a[k] += x[i];
            }
        },
    );
    s
}

/// # Safety
/// As [`sum_imp`].
#[inline(always)]
unsafe fn centred_squares_imp<V: Lanes>(x: &[f32], m: f32) -> f64 {
    let (p, mv) = (x.as_ptr(), V::splat(m));
    let [s] = blocked::<V, 1>(
        x.len(),
        |i, [a]| {
            let d = V::load(p.add(i)).sub(mv);
            *a = a.add(d.mul(d));
        },
        |r, [a]| {
            for (k, i) in r.enumerate() {
                a[k] += (x[i] - m) * (x[i] - m);
            }
        },
    );
    s
}

/// # Safety
/// As [`sum_imp`].
#[inline(always)]
unsafe fn dot_imp<V: Lanes>(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "dot of unequal lengths");
    let (px, py) = (x.as_ptr(), y.as_ptr());
    let [s] = blocked::<V, 1>(
        x.len(),
        |i, [a]| *a = a.add(V::load(px.add(i)).mul(V::load(py.add(i)))),
        |r, [a]| {
            for (k, i) in r.enumerate() {
                a[k] += x[i] * y[i];
            }
        },
    );
    s
}

/// # Safety
/// As [`sum_imp`].
#[inline(always)]
unsafe fn shifted_dots_imp<V: Lanes>(
    [y0, y1]: [&[f32]; 2],
    [x0, x1]: [&[f32]; 2],
    off: isize,
    masks: &[u16],
) -> [f64; 2] {
    assert!(
        y0.len() == y1.len() && x0.len() == x1.len(),
        "shifted dot: planes of unequal lengths"
    );
    assert!(
        masks.len() >= y0.len().div_ceil(LANES),
        "shifted dot: too few masks"
    );
    let (len, [py0, py1, px0, px1]) = (x0.len() as isize, [y0, y1, x0, x1].map(|p| p.as_ptr()));
    // Set bits only where x[i + off] exists: checked for the vectors that reach past either
    // end of `x`, so that no masked load reads outside it.
    let inside = |i: usize, m: u16| {
        let lo = i as isize + off;
        (lo >= 0 && lo + LANES as isize <= len)
            || (0..LANES).all(|k| m >> k & 1 == 0 || (0..len).contains(&(lo + k as isize)))
    };
    blocked::<V, 2>(
        y0.len(),
        |i, [a0, a1]| {
            let m = masks[i / LANES];
            assert!(inside(i, m), "shifted dot: mask reads outside x");
            let at = i as isize + off;
            let xv0 = V::load_masked(px0.wrapping_offset(at), m);
            let xv1 = V::load_masked(px1.wrapping_offset(at), m);
            *a0 = a0.add(V::load(py0.add(i)).mul(xv0));
            *a1 = a1.add(V::load(py1.add(i)).mul(xv1));
        },
        |r, [a0, a1]| {
            for (k, i) in r.enumerate() {
                if masks[i / LANES] >> (i % LANES) & 1 == 1 {
                    let at = (i as isize + off) as usize;
                    a0[k] += y0[i] * x0[at];
                    a1[k] += y1[i] * x1[at];
                } else {
                    a0[k] += y0[i] * 0.0;
                    a1[k] += y1[i] * 0.0;
                }
            }
        },
    )
}

/// # Safety
/// As [`sum_imp`].
#[inline(always)]
unsafe fn masked_moments_imp<V: Lanes>(
    gy: &[f32],
    y: &[f32],
    x: &[f32],
    m: f32,
    relu: bool,
) -> [f64; 2] {
    assert!(
        gy.len() == y.len() && y.len() == x.len(),
        "moments of unequal lengths"
    );
    let (pg, py, px, mv) = (gy.as_ptr(), y.as_ptr(), x.as_ptr(), V::splat(m));
    blocked::<V, 2>(
        x.len(),
        |i, [s0, s1]| {
            let mut dz = V::load(pg.add(i));
            if relu {
                dz = dz.where_positive(V::load(py.add(i)));
            }
            *s0 = s0.add(dz);
            *s1 = s1.add(dz.mul(V::load(px.add(i)).sub(mv)));
        },
        |r, [s0, s1]| {
            for (k, i) in r.enumerate() {
                let dz = if !relu || y[i] > 0.0 { gy[i] } else { 0.0 };
                s0[k] += dz;
                s1[k] += dz * (x[i] - m);
            }
        },
    )
}

/// Writes `$name(args…, isa)`: the generic body `$imp::<V>` inlined into an AVX-512F function,
/// an AVX2 + FMA function and a plain one, chosen by `isa`.
macro_rules! kernel {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $t:ty),*) -> $r:ty = $imp:ident;) => {
        $(#[$doc])*
        pub fn $name($($arg: $t,)* isa: Isa) -> $r {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $t),*) -> $r {
                $imp::<x86::Avx512>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $t),*) -> $r {
                $imp::<x86::Avx2>($($arg),*)
            }
            assert!(isa.available(), "{isa:?} kernels on a CPU without them");
            // SAFETY: the CPU has the path's features (asserted above); the plain path needs
            // none.
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => avx512($($arg),*),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => avx2($($arg),*),
                    _ => $imp::<[f32; LANES]>($($arg),*),
                }
            }
        }
    };
}

kernel! {
    /// Σ x.
    pub fn sum(x: &[f32]) -> f64 = sum_imp;
}

kernel! {
    /// Σ (x − m)²: a variance's numerator from the mean already found (two passes: the
    /// one-pass Σx² − (Σx)²/n cancels catastrophically on activations far from zero).
    pub fn centred_squares(x: &[f32], m: f32) -> f64 = centred_squares_imp;
}

kernel! {
    /// Σ x·y.
    pub fn dot(x: &[f32], y: &[f32]) -> f64 = dot_imp;
}

kernel! {
    /// For two planes p (two samples, one channel), Σ y_p[i] · x_p[i + off] over i in
    /// 0..len(y_p), taking 0 for x where bit i mod 16 of `masks[i / 16]` is clear (those values
    /// are not read): the depthwise weight gradient of a plane that keeps its size, read where it
    /// lies. Two planes per pass so that two independent sums hide the adds' latency (one sum
    /// alone was latency-bound); each is what it would be alone. Panics when a set bit points
    /// outside `x`.
    pub fn shifted_dots(y: [&[f32]; 2], x: [&[f32]; 2], off: isize, masks: &[u16]) -> [f64; 2]
        = shifted_dots_imp;
}

kernel! {
    /// [Σ dz, Σ dz·(x − m)] with dz = gy where the activation passes it: everywhere, or for a
    /// ReLU (`relu`) where its output `y` > 0 (0 elsewhere). The two sums a normalization's
    /// backward pass needs per plane, in one pass over the three planes.
    pub fn masked_moments(gy: &[f32], y: &[f32], x: &[f32], m: f32, relu: bool) -> [f64; 2]
        = masked_moments_imp;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    fn paths() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|i| i.available())
    }

    /// Lengths around the lane and block sizes, and a long plane.
    const LENS: [usize; 9] = [1, 7, 16, 17, 1023, 1024, 1025, 3000, 40_000];

    fn close(got: f64, want: f64, scale: f64, what: &str) {
        let tol = 1e-6 * scale.max(1.0);
        assert!(
            (got - want).abs() <= tol,
            "{what}: {got} vs {want} (tolerance {tol:e})"
        );
    }

    #[test]
    fn every_path_matches_f64_sums_and_the_others_bits() {
        for len in LENS {
            let (x, y, g) = (values(len, 1), values(len, 2), values(len, 3));
            let m = 0.125f32;
            let abs: f64 = x.iter().map(|v| v.abs() as f64).sum();
            let want_sum: f64 = x.iter().map(|&v| v as f64).sum();
            let want_sq: f64 = x.iter().map(|&v| (v as f64 - m as f64).powi(2)).sum();
            let want_dot: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mut first = None;
            for isa in paths() {
                let got = (
                    sum(&x, isa),
                    centred_squares(&x, m, isa),
                    dot(&x, &y, isa),
                    masked_moments(&g, &y, &x, m, true, isa),
                    masked_moments(&g, &y, &x, m, false, isa),
                );
                close(got.0, want_sum, abs, &format!("{isa:?} sum, {len}"));
                close(got.1, want_sq, want_sq, &format!("{isa:?} squares, {len}"));
                close(got.2, want_dot, abs, &format!("{isa:?} dot, {len}"));
                for (relu, [s0, s1]) in [(true, got.3), (false, got.4)] {
                    let dz = |i: usize| {
                        if !relu || y[i] > 0.0 {
                            g[i] as f64
                        } else {
                            0.0
                        }
                    };
                    let w0: f64 = (0..len).map(dz).sum();
                    let w1: f64 = (0..len).map(|i| dz(i) * (x[i] as f64 - m as f64)).sum();
                    close(s0, w0, abs, &format!("{isa:?} Σdz relu={relu}, {len}"));
                    close(s1, w1, abs, &format!("{isa:?} Σdz·x̂ relu={relu}, {len}"));
                }
                let bits = format!("{got:?}");
                match &first {
                    None => first = Some(bits),
                    Some(b) => assert_eq!(&bits, b, "{isa:?} differs from the widest path"),
                }
            }
        }
    }

    /// A constant plane far from zero: the two-pass variance stays exact where Σx² − (Σx)²/n
    /// in f32 would not.
    /// Shifted by −3 and +5 with pseudo-random masks (bits pointing outside `x` cleared):
    /// against the f64 sum of the lanes let in, and the same bits on every path.
    #[test]
    fn shifted_dots_match_f64_sums_and_the_others_bits() {
        for len in LENS {
            let (x, y) = (values(len, 4), values(len, 5));
            for off in [-3isize, 5] {
                let inside = |i: usize| (0..len as isize).contains(&(i as isize + off));
                let bits = values(len.div_ceil(LANES), 6);
                let masks: Vec<u16> = bits
                    .iter()
                    .enumerate()
                    .map(|(v, b)| {
                        let m = ((b + 0.5) * 65535.0) as u16;
                        (0..LANES)
                            .filter(|&k| m >> k & 1 == 1 && inside(v * LANES + k))
                            .fold(0, |m, k| m | 1 << k)
                    })
                    .collect();
                let want: f64 = (0..len)
                    .filter(|&i| masks[i / LANES] >> (i % LANES) & 1 == 1)
                    .map(|i| y[i] as f64 * x[(i as isize + off) as usize] as f64)
                    .sum();
                let abs: f64 = y.iter().map(|v| v.abs() as f64).sum();
                let mut first = None;
                let (x2, y2) = (values(len, 7), values(len, 8));
                for isa in paths() {
                    // In either slot, beside another plane.
                    for [a, b] in [[0, 1], [1, 0]] {
                        let (ys, xs) = ([&y[..], &y2[..]], [&x[..], &x2[..]]);
                        let got = shifted_dots([ys[a], ys[b]], [xs[a], xs[b]], off, &masks, isa)[a];
                        close(got, want, abs, &format!("{isa:?} shifted dot {off}, {len}"));
                        match first {
                            None => first = Some(got.to_bits()),
                            Some(b) => assert_eq!(got.to_bits(), b, "{isa:?} differs"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside x")]
    fn a_mask_pointing_outside_is_refused() {
        let (x, y) = (values(40, 1), values(40, 2));
        let masks = vec![u16::MAX; 3];
        shifted_dots([&y; 2], [&x; 2], -1, &masks, Isa::best());
    }

    #[test]
    fn centred_squares_of_an_offset_plane_are_small() {
        let x: Vec<f32> = (0..5000).map(|i| 1000.0 + (i % 2) as f32 * 0.5).collect();
        let m = (sum(&x, Isa::best()) / x.len() as f64) as f32;
        let s = centred_squares(&x, m, Isa::best());
        close(s, 5000.0 * 0.0625, 1.0, "offset plane");
    }

    #[test]
    fn empty_planes_sum_to_zero() {
        for isa in paths() {
            assert_eq!(sum(&[], isa), 0.0);
            assert_eq!(masked_moments(&[], &[], &[], 0.0, true, isa), [0.0, 0.0]);
        }
    }
}
