//! A fast natural log over a whole spectrogram (`docs/frontend.md` step 6). libm's `logf` is a
//! scalar call per value, and a clip has 55k–165k of them, so the log was a visible share of the
//! front end.
//! This is Cephes' `logf` (range reduction to [√½, √2), degree-9 polynomial; within 2 ulp of
//! the exact log, checked in the tests below), written without branches so it vectorises;
//! values it does not cover (zero, subnormal, negative, infinite, NaN) go to libm.

/// `ln(v)` in place for every value of `data`.
#[inline(always)]
pub fn ln_in_place(data: &mut [f32]) {
    // Chunks keep the common all-normal case branch-free while a rare odd value (an offset or
    // amin of 0 in a user config) falls back to libm for its chunk only.
    for chunk in data.chunks_mut(64) {
        if chunk.iter().all(|&v| covered(v)) {
            chunk.iter_mut().for_each(|v| *v = ln_normal(*v));
        } else {
            chunk.iter_mut().for_each(|v| *v = v.ln());
        }
    }
}

/// Positive, normal and finite: the inputs [`ln_normal`] is exact enough for.
fn covered(v: f32) -> bool {
    (f32::MIN_POSITIVE..=f32::MAX).contains(&v)
}

/// Cephes `logf` for a positive normal finite `x`.
// The coefficients are Cephes' as published (they round to the same f32 values), so that they
// can be checked against the source.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    // x = m · 2^e with m in [0.5, 1).
    let mut e = ((bits >> 23) as i32 - 126) as f32;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
    // Move m into [√½, √2) so the polynomial argument stays within ±0.29.
    let low = m < SQRT_HALF;
    e -= if low { 1.0 } else { 0.0 };
    let f = if low { m + m - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut y = 7.037_683_6e-2;
    y = y * f - 1.151_461_03e-1;
    y = y * f + 1.167_699_874e-1;
    y = y * f - 1.242_014_084_6e-1;
    y = y * f + 1.424_932_278_7e-1;
    y = y * f - 1.666_805_766_5e-1;
    y = y * f + 2.000_071_476_5e-1;
    y = y * f - 2.499_999_399_3e-1;
    y = y * f + 3.333_333_117_4e-1;
    y *= f * z;
    // ln 2 split in two parts (Cody–Waite) so e · ln 2 adds no rounding error of its own.
    y += e * -2.121_944_4e-4;
    y -= 0.5 * z;
    f + y + e * 0.693_359_375
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between `a` and the f64 value `exact`.
    fn ulps(a: f32, exact: f64) -> f64 {
        let e = exact as f32;
        let ulp = (f32::from_bits(e.abs().to_bits() + 1) - e.abs()) as f64;
        (a as f64 - exact).abs() / ulp
    }

    #[test]
    fn within_two_ulp_of_exact_log() {
        // Every 97th float from the smallest normal to the largest finite value.
        let mut worst = 0.0f64;
        let mut bits = f32::MIN_POSITIVE.to_bits();
        while bits < f32::MAX.to_bits() {
            let x = f32::from_bits(bits);
            let mut v = [x];
            ln_in_place(&mut v);
            let exact = (x as f64).ln();
            if exact != 0.0 {
                worst = worst.max(ulps(v[0], exact));
            }
            bits += 97;
        }
        assert!(worst <= 2.0, "worst {worst} ulp");
    }

    #[test]
    fn exact_where_libm_is_exact() {
        let mut v = [1.0f32, 2.0, 0.5];
        ln_in_place(&mut v);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], std::f32::consts::LN_2);
        assert_eq!(v[2], -std::f32::consts::LN_2);
    }

    #[test]
    fn values_outside_the_fast_range_follow_libm() {
        let odd = [0.0f32, -1.0, f32::INFINITY, f32::NAN, 1e-40];
        let mut v = odd;
        ln_in_place(&mut v);
        for (got, x) in v.iter().zip(odd) {
            let want = x.ln();
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "ln({x}) = {got}, libm {want}"
            );
        }
    }
}
