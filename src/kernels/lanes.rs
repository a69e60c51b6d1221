//! Sixteen f32 lanes as one vector type for the kernels written once for every path
//! (`reduce`, the Winograd transforms): one AVX-512 register, two AVX2 registers, or a plain
//! array. And one machine register of either x86 path ([`Register`]) for the conv tiles,
//! whose blocking is counted in registers (each path fills its register file).
//!
//! Why: sixteen f32 lanes in an array, left to the compiler inside an AVX-512 function, came out
//! as 2-wide code (`perf annotate` of the first plane sums), and loops over slices came out as
//! 256-bit read-modify-write code; with this type each kernel says what each vector does.

/// f32 lanes per vector.
pub(super) const LANES: usize = 16;

/// Sixteen f32 lanes and the operations the kernels need on them. Every method is inlined into
/// the `target_feature` function that instantiates the kernel.
pub(super) trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(v: f32) -> Self;
    /// # Safety
    /// `p` has 16 readable floats; the CPU has the path's features.
    unsafe fn load(p: *const f32) -> Self;
    /// Lane k = `p[k]` where bit k of `m` is set, 0 elsewhere; the other lanes' memory is not
    /// read.
    ///
    /// # Safety
    /// `p[k]` is readable for every set bit k; the CPU has the path's features.
    unsafe fn load_masked(p: *const f32, m: u16) -> Self;
    /// Lane k = `p[k · stride]`.
    ///
    /// # Safety
    /// `p[15 · stride]` is readable; the CPU has the path's features.
    unsafe fn gather(p: *const f32, stride: usize) -> Self;
    /// # Safety
    /// `p` has 16 writable floats; the CPU has the path's features.
    unsafe fn store(self, p: *mut f32);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// self · a + b: one rounding on the x86 paths (FMA), two on the array.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// `self` where `y` > 0, 0 elsewhere (a ReLU's mask on its input gradient).
    fn where_positive(self, y: Self) -> Self;
    fn to_array(self) -> [f32; LANES];
}

impl Lanes for [f32; LANES] {
    #[inline(always)]
    fn zero() -> Self {
        [0.0; LANES]
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        [v; LANES]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::ptr::read_unaligned(p as *const [f32; LANES])
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: u16) -> Self {
        std::array::from_fn(|k| {
            if m >> k & 1 == 1 {
                *p.wrapping_add(k)
            } else {
                0.0
            }
        })
    }
    #[inline(always)]
    unsafe fn gather(p: *const f32, stride: usize) -> Self {
        std::array::from_fn(|k| *p.add(k * stride))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; LANES], self)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        std::array::from_fn(|k| self[k] + o[k])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        std::array::from_fn(|k| self[k] - o[k])
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        std::array::from_fn(|k| self[k] * o[k])
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        std::array::from_fn(|k| self[k] * a[k] + b[k])
    }
    #[inline(always)]
    fn where_positive(self, y: Self) -> Self {
        std::array::from_fn(|k| if y[k] > 0.0 { self[k] } else { 0.0 })
    }
    #[inline(always)]
    fn to_array(self) -> [f32; LANES] {
        self
    }
}

/// One machine register of f32 lanes (16 on AVX-512, 8 on AVX2) and what the conv tiles do with
/// it. Every method is inlined into the `target_feature` function that instantiates the tile.
pub(super) trait Register: Copy {
    /// f32 lanes per register.
    const L: usize;
    fn zero() -> Self;
    fn splat(v: f32) -> Self;
    /// # Safety
    /// `p` has `L` readable floats; the CPU has the path's features.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` has `L` writable floats; the CPU has the path's features.
    unsafe fn store(self, p: *mut f32);
    /// self · a + b, one rounding (FMA).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// max(self, 0).
    fn relu(self) -> Self;
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! The vector types of the two x86 paths. Their methods call intrinsics of features the
    //! enclosing kernel function enables; they are only reached from those functions.
    #![allow(unsafe_op_in_unsafe_fn)]
    use super::{Lanes, LANES};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    impl Lanes for Avx512 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): reached only inside `avx512f` functions.
            unsafe { Avx512(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { Avx512(_mm512_set1_ps(v)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: u16) -> Self {
            Avx512(_mm512_maskz_loadu_ps(m, p))
        }
        #[inline(always)]
        unsafe fn gather(p: *const f32, stride: usize) -> Self {
            let s = stride as i32;
            let k = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            Avx512(_mm512_i32gather_ps::<4>(
                _mm512_mullo_epi32(k, _mm512_set1_epi32(s)),
                p,
            ))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_add_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_sub_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            unsafe { Avx512(_mm512_mul_ps(self.0, o.0)) }
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            unsafe { Avx512(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }
        #[inline(always)]
        fn where_positive(self, y: Self) -> Self {
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(y.0, _mm512_setzero_ps());
                Avx512(_mm512_maskz_mov_ps(m, self.0))
            }
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut a = [0f32; LANES];
            unsafe { _mm512_storeu_ps(a.as_mut_ptr(), self.0) };
            a
        }
    }

    /// Lanes 0–7 in the first register, 8–15 in the second.
    #[derive(Clone, Copy)]
    pub struct Avx2([__m256; 2]);

    impl Avx2 {
        #[inline(always)]
        fn map2(self, o: Self, f: impl Fn(__m256, __m256) -> __m256) -> Self {
            Avx2([f(self.0[0], o.0[0]), f(self.0[1], o.0[1])])
        }
    }

    impl Lanes for Avx2 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): reached only inside `avx2,fma` functions.
            unsafe { Avx2([_mm256_setzero_ps(); 2]) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { Avx2([_mm256_set1_ps(v); 2]) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2([_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))])
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: u16) -> Self {
            let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let half = |m: u16| {
                let m = _mm256_and_si256(_mm256_set1_epi32(m as i32), bits);
                _mm256_cmpeq_epi32(m, bits)
            };
            Avx2([
                _mm256_maskload_ps(p, half(m & 0xff)),
                _mm256_maskload_ps(p.wrapping_add(8), half(m >> 8)),
            ])
        }
        #[inline(always)]
        unsafe fn gather(p: *const f32, stride: usize) -> Self {
            let s = stride as i32;
            let k = _mm256_mullo_epi32(
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                _mm256_set1_epi32(s),
            );
            Avx2([
                _mm256_i32gather_ps::<4>(p, k),
                _mm256_i32gather_ps::<4>(p.add(8 * stride), k),
            ])
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0[0]);
            _mm256_storeu_ps(p.add(8), self.0[1]);
        }
        #[inline(always)]
        fn add(self, o: Self) -> Self {
            self.map2(o, |a, b| unsafe { _mm256_add_ps(a, b) })
        }
        #[inline(always)]
        fn sub(self, o: Self) -> Self {
            self.map2(o, |a, b| unsafe { _mm256_sub_ps(a, b) })
        }
        #[inline(always)]
        fn mul(self, o: Self) -> Self {
            self.map2(o, |a, b| unsafe { _mm256_mul_ps(a, b) })
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            Avx2([
                unsafe { _mm256_fmadd_ps(self.0[0], a.0[0], b.0[0]) },
                unsafe { _mm256_fmadd_ps(self.0[1], a.0[1], b.0[1]) },
            ])
        }
        #[inline(always)]
        fn where_positive(self, y: Self) -> Self {
            self.map2(y, |g, y| unsafe {
                _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(y, _mm256_setzero_ps()), g)
            })
        }
        #[inline(always)]
        fn to_array(self) -> [f32; LANES] {
            let mut a = [0f32; LANES];
            unsafe {
                _mm256_storeu_ps(a.as_mut_ptr(), self.0[0]);
                _mm256_storeu_ps(a.as_mut_ptr().add(8), self.0[1]);
            }
            a
        }
    }

    /// One AVX-512 register.
    #[derive(Clone, Copy)]
    pub struct Zmm(__m512);

    impl super::Register for Zmm {
        const L: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): reached only inside `avx512f` functions.
            unsafe { Zmm(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { Zmm(_mm512_set1_ps(v)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Zmm(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            unsafe { Zmm(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }
        #[inline(always)]
        fn relu(self) -> Self {
            unsafe { Zmm(_mm512_max_ps(self.0, _mm512_setzero_ps())) }
        }
    }

    /// One AVX2 register.
    #[derive(Clone, Copy)]
    pub struct Ymm(__m256);

    impl super::Register for Ymm {
        const L: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY (all methods): reached only inside `avx2,fma` functions.
            unsafe { Ymm(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { Ymm(_mm256_set1_ps(v)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Ymm(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0)
        }
        #[inline(always)]
        fn mul_add(self, a: Self, b: Self) -> Self {
            unsafe { Ymm(_mm256_fmadd_ps(self.0, a.0, b.0)) }
        }
        #[inline(always)]
        fn relu(self) -> Self {
            unsafe { Ymm(_mm256_max_ps(self.0, _mm256_setzero_ps())) }
        }
    }
}
