//! Strided copies of rows of floats between planes: filling zero-padded phase planes and
//! column matrices from an input plane, and cropping rows of a padded output, as vector moves.
//!
//! Why: CP-Mobile's planes are 9 or 17 columns wide, so these copies are runs of 8 to 17 floats;
//! as `copy_from_slice` (a `memcpy` call per run) and scalar loops they had cost more than the
//! depthwise arithmetic around them (`docs/benchmarks.md`).

use super::Isa;

/// `rows` runs of `len` values: run k copies `src + k·src_pitch + i·step` to
/// `dst + k·dst_pitch + i` for i in 0..len (offsets into the source and destination buffers).
#[derive(Clone, Copy, Debug)]
pub(super) struct Rows {
    src: usize,
    src_pitch: usize,
    step: usize,
    dst: usize,
    dst_pitch: usize,
    len: usize,
    rows: usize,
}

impl Rows {
    /// The runs that gather, from an H × W plane (`plane`) zero-padded by `pad`, the values at
    /// padded positions (r·SH + a, t·SW + b) for r < `grid.0`, t < `grid.1` into a grid of
    /// pitch `pitch` at `dst`: those inside the plane, one run per grid row; the rest of the
    /// grid is left as it is (zero in the callers' buffers). `None` when none is inside.
    pub(super) fn gather(
        (h, w): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
        (a, b): (usize, usize),
        (rows, cols): (usize, usize),
        (dst, pitch): (usize, usize),
    ) -> Option<Rows> {
        // Grid column t is padded column t·sw + b, input column t·sw + b − pw: the valid t are
        // those with pw ≤ t·sw + b < pw + w; rows likewise.
        let t0 = pw.saturating_sub(b).div_ceil(sw);
        let t1 = (pw + w).saturating_sub(b).div_ceil(sw).min(cols);
        let r0 = ph.saturating_sub(a).div_ceil(sh);
        let r1 = (ph + h).saturating_sub(a).div_ceil(sh).min(rows);
        (t0 < t1 && r0 < r1).then(|| Rows {
            src: (r0 * sh + a - ph) * w + t0 * sw + b - pw,
            src_pitch: sh * w,
            step: sw,
            dst: dst + r0 * pitch + t0,
            dst_pitch: pitch,
            len: t1 - t0,
            rows: r1 - r0,
        })
    }

    /// The first `len` of each of `rows` rows of `src_pitch` floats, packed `len` apart.
    pub(super) fn crop(rows: usize, src_pitch: usize, len: usize) -> Rows {
        Rows {
            src: 0,
            src_pitch,
            step: 1,
            dst: 0,
            dst_pitch: len,
            len,
            rows,
        }
    }

    /// The same runs from `by` floats further into the source.
    pub(super) fn from(self, by: usize) -> Rows {
        Rows {
            src: self.src + by,
            ..self
        }
    }

    /// The same runs written `by` floats further into the destination.
    pub(super) fn to(self, by: usize) -> Rows {
        Rows {
            dst: self.dst + by,
            ..self
        }
    }

    /// The same runs copied back (step 1 only).
    pub(super) fn transposed(self) -> Rows {
        debug_assert_eq!(self.step, 1);
        Rows {
            src: self.dst,
            src_pitch: self.dst_pitch,
            dst: self.src,
            dst_pitch: self.src_pitch,
            ..self
        }
    }

    /// Floats read from `src` on and written from `dst` on.
    pub(super) fn extents(&self) -> (usize, usize) {
        if self.rows * self.len == 0 {
            return (0, 0);
        }
        (
            (self.rows - 1) * self.src_pitch + (self.len - 1) * self.step + 1,
            (self.rows - 1) * self.dst_pitch + self.len,
        )
    }

    /// Copies the runs from `src` to `dst` on path `isa`.
    ///
    /// # Safety
    /// `isa` runs on this CPU; `src` has `extents().0` readable floats from `self.src` on, `dst`
    /// `dst_len` writable ones (at least `self.dst + extents().1`) that nothing else accesses
    /// meanwhile, and the two do not overlap. Values of `dst` outside the runs keep their
    /// values, except that with `dst_pitch == len` up to 15 past the last run may be set to
    /// zero: callers copy runs in increasing order into buffers whose other values are zero
    /// padding or written afterwards.
    pub(super) unsafe fn copy(&self, isa: Isa, src: *const f32, dst: *mut f32, dst_len: usize) {
        debug_assert!(self.dst + self.extents().1 <= dst_len);
        let (src, dst) = (src.add(self.src), dst.add(self.dst));
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::copy_rows(src, dst, dst_len - self.dst, self),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::copy_rows(src, dst, dst_len - self.dst, self),
            _ => portable::copy_rows(src, dst, self),
        }
    }

    /// [`Rows::copy`] between two slices, the extents checked.
    pub(super) fn copy_slices(&self, isa: Isa, src: &[f32], dst: &mut [f32]) {
        let (read, written) = self.extents();
        assert!(self.src + read <= src.len() && self.dst + written <= dst.len());
        assert!(isa.available(), "{isa:?} kernels on a CPU without them");
        // SAFETY: just checked; a `&mut` slice overlaps nothing else.
        unsafe { self.copy(isa, src.as_ptr(), dst.as_mut_ptr(), dst.len()) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    const L: usize = 16;

    /// The first `n` of 16 lanes.
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        if n >= L {
            !0
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// [`super::Rows::copy`] with 16-lane moves; a step of 2 (CP-Mobile's width strides) as
    /// two loads and a permute that keeps the even lanes. Only a run's last vector is masked,
    /// with masks worked out once per call: per row, CP-Mobile's runs of 8 to 17 floats had
    /// spent more instructions on their masks and store choice than on the moves (`perf`, 76 %
    /// of a (1, 2) depthwise conv in this copy, `docs/benchmarks.md`).
    ///
    /// # Safety
    /// The CPU has AVX-512F; as [`super::Rows::copy`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn copy_rows(src: *const f32, dst: *mut f32, cap: usize, r: &super::Rows) {
        if r.step > 2 {
            return super::portable::copy_rows(src, dst, r);
        }
        if r.len == 0 {
            return;
        }
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        // The last vector of each run: its first lane, the lanes it keeps, and for a step of 2
        // the lanes of its two loads (values `last..` sit at 2·last, 2·last + 2, …:
        // (len − last − 1)·2 + 1 floats from 2·last).
        let last = (r.len - 1) / L * L;
        let keep = first(r.len - last);
        let avail = (r.len - last - 1) * 2 + 1;
        let (lo, hi) = (first(avail), first(avail.saturating_sub(L)));
        // Masked stores of partial vectors are slow (on AMD's Zen 4 they made this copy half
        // the kernel's time): where the whole vector lies inside the destination, store all 16
        // lanes, the lanes past the run keeping the destination's values. Gapless runs are
        // written in order, so lanes past one land where the next run writes afterwards and
        // need not be read first. Rows up to `whole_rows` end their last vector inside `cap`.
        let whole_rows = (cap + 1)
            .saturating_sub(last + L)
            .div_ceil(r.dst_pitch.max(1));
        for k in 0..r.rows {
            let (s, d) = (src.add(k * r.src_pitch), dst.add(k * r.dst_pitch));
            for i in (0..last).step_by(L) {
                let v = if r.step == 1 {
                    _mm512_loadu_ps(s.add(i))
                } else {
                    let (a, b) = (
                        _mm512_loadu_ps(s.add(2 * i)),
                        _mm512_loadu_ps(s.add(2 * i + L)),
                    );
                    _mm512_permutex2var_ps(a, evens, b)
                };
                _mm512_storeu_ps(d.add(i), v);
            }
            let v = if r.step == 1 {
                _mm512_maskz_loadu_ps(keep, s.add(last))
            } else {
                let a = _mm512_maskz_loadu_ps(lo, s.add(2 * last));
                let b = _mm512_maskz_loadu_ps(hi, s.wrapping_add(2 * last + L));
                _mm512_permutex2var_ps(a, evens, b)
            };
            let d = d.add(last);
            if keep == !0 || (k < whole_rows && r.dst_pitch == r.len) {
                _mm512_storeu_ps(d, v);
            } else if k < whole_rows {
                _mm512_storeu_ps(d, _mm512_mask_blend_ps(keep, _mm512_loadu_ps(d), v));
            } else {
                _mm512_mask_storeu_ps(d, keep, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    const L: usize = 8;

    /// [`super::Rows::copy`] with 8-lane moves, a step of 2 (CP-Mobile's width strides) as two
    /// loads and two shuffles that keep the even lanes, and what is left of each run after its
    /// whole vectors value by value: AMD's masked loads and stores (`vmaskmovps`) had made
    /// this copy slower than a scalar one. Other steps scalar.
    ///
    /// # Safety
    /// The CPU has AVX2; as [`super::Rows::copy`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn copy_rows(src: *const f32, dst: *mut f32, _cap: usize, r: &super::Rows) {
        if r.step > 2 {
            return super::portable::copy_rows(src, dst, r);
        }
        for k in 0..r.rows {
            let (s, d) = (src.add(k * r.src_pitch), dst.add(k * r.dst_pitch));
            // Whole vectors: a step of 2 loads 16 floats from 2i, one past the last value it
            // keeps, which lies inside the source but after the last run.
            let whole = if r.step == 2 && k + 1 == r.rows {
                r.len.saturating_sub(1) / L * L
            } else {
                r.len / L * L
            };
            let load = |i: usize| {
                if r.step == 1 {
                    _mm256_loadu_ps(s.add(i))
                } else {
                    let (lo, hi) = (
                        _mm256_loadu_ps(s.add(2 * i)),
                        _mm256_loadu_ps(s.add(2 * i + L)),
                    );
                    // [a0 a2 b0 b2 | a4 a6 b4 b6], then its 64-bit quarters in order 0, 2, 1, 3.
                    let even = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi));
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(even))
                }
            };
            for i in (0..whole).step_by(L) {
                _mm256_storeu_ps(d.add(i), load(i));
            }
            // The rest as one vector that overlaps the last whole one (runs of 9 to 15,
            // CP-Mobile's, are two moves instead of one and a scalar loop), except where a step
            // of 2 would read past the source's last run.
            if whole >= L && whole < r.len && (r.step == 1 || k + 1 < r.rows) {
                _mm256_storeu_ps(d.add(r.len - L), load(r.len - L));
                continue;
            }
            for i in whole..r.len {
                *d.add(i) = *s.add(i * r.step);
            }
        }
    }
}

mod portable {
    /// [`super::Rows::copy`], one value at a time.
    ///
    /// # Safety
    /// As [`super::Rows::copy`].
    pub unsafe fn copy_rows(src: *const f32, dst: *mut f32, r: &super::Rows) {
        for k in 0..r.rows {
            for i in 0..r.len {
                *dst.add(k * r.dst_pitch + i) = *src.add(k * r.src_pitch + i * r.step);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path against the definition, on runs of 1 to 40 floats (one vector's tail, whole
    /// vectors, several), steps 1 and 2, with and without gaps between runs, in destinations
    /// that end right after the last run or further: the runs hold the source's values and
    /// every other value keeps its own, but the 15 after the last gapless run, which may be 0.
    #[test]
    fn every_path_copies_the_runs_and_nothing_else() {
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            for (len, step, gap, rows, spare) in (1..=40).flat_map(|len| {
                (1..=2).flat_map(move |step| {
                    [0, 1, 3].into_iter().flat_map(move |gap| {
                        [1, 4].into_iter().flat_map(move |rows| {
                            [0, 20]
                                .into_iter()
                                .map(move |spare| (len, step, gap, rows, spare))
                        })
                    })
                })
            }) {
                let r = Rows {
                    src: 3,
                    src_pitch: len * step + 2,
                    step,
                    dst: 5,
                    dst_pitch: len + gap,
                    len,
                    rows,
                };
                let (read, written) = r.extents();
                let src: Vec<f32> = (0..r.src + read).map(|i| i as f32 + 0.5).collect();
                let fresh: Vec<f32> = (0..r.dst + written + spare)
                    .map(|i| -(i as f32) - 1.0)
                    .collect();
                let mut dst = fresh.clone();
                r.copy_slices(isa, &src, &mut dst);
                let end = r.dst + written;
                for (i, (&got, &old)) in dst.iter().zip(&fresh).enumerate() {
                    let (k, j) = (
                        (i.wrapping_sub(r.dst)) / r.dst_pitch,
                        (i.wrapping_sub(r.dst)) % r.dst_pitch,
                    );
                    let want = if i >= r.dst && k < rows && j < len {
                        src[r.src + k * r.src_pitch + j * step]
                    } else {
                        old
                    };
                    let may_zero = gap == 0 && i >= end && i < end + 15 && got == 0.0;
                    assert!(
                        got == want || may_zero,
                        "{isa:?} {r:?}: value {i} is {got}, not {want}"
                    );
                }
            }
        }
    }
}
