//! The AVX2 + FMA build of the kernels, with explicit 8-lane vectors (the compiler's own
//! vectorisation of `kernel.rs` keeps the accumulators in memory, 3-4x slower).
//!
//! Every function here is `#[target_feature(enable = "avx2,fma")]`: `simd.rs` calls [`rows`]
//! only after run-time detection. Inside, the arithmetic intrinsics are safe; the only
//! `unsafe` blocks are the unaligned loads and stores, each on a slice just bounds-checked to
//! hold the 8 values (or bytes) it touches.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::matrix::{BLOCK, Prepared, QMatrix, Row};

/// Activation rows per pass over the weights (64 rows of 1536 f32 = 384 KB).
const ACT_BLOCK: usize = 64;

/// 8 floats from the start of `x`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(x: &[f32]) -> __m256 {
    let x = &x[..8];
    // SAFETY: `x` holds 8 f32 (bounds-checked above); `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// 8 int8 from the start of `q`, widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn widen(q: &[i8]) -> __m256 {
    let q = &q[..8];
    // SAFETY: `q` holds 8 bytes (bounds-checked above), exactly what `loadl_epi64` reads; it
    // has no alignment requirement.
    let v = unsafe { _mm_loadl_epi64(q.as_ptr().cast()) };
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
}

/// The low 8 bytes of `b` (unsigned) as f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn widen_u8(b: __m128i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))
}

/// Stores 8 floats at the start of `out`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn store(out: &mut [f32], v: __m256) {
    let out = &mut out[..8];
    // SAFETY: `out` holds 8 f32 (bounds-checked above) and is borrowed mutably; `storeu` has
    // no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// One int8 row (with its block scales) times one f32 row: the batch-1 kernel, reading each
/// weight once straight from the quantised storage.
#[target_feature(enable = "avx2,fma")]
fn dot_q8(q: &[i8], s: &[f32], x: &[f32]) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for ((q, x), &d) in q.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)).zip(s) {
        // The block's sum before its scale: two chains of two products each.
        let t0 = _mm256_mul_ps(widen(q), load(x));
        let t1 = _mm256_mul_ps(widen(&q[8..]), load(&x[8..]));
        let t0 = _mm256_fmadd_ps(widen(&q[16..]), load(&x[16..]), t0);
        let t1 = _mm256_fmadd_ps(widen(&q[24..]), load(&x[24..]), t1);
        let d = _mm256_set1_ps(d);
        acc0 = _mm256_fmadd_ps(t0, d, acc0);
        acc1 = _mm256_fmadd_ps(t1, d, acc1);
    }
    hsum(_mm256_add_ps(acc0, acc1))
}

/// The 16 bytes at the start of `q` split into their low and high nibbles.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn nibbles16(q: &[u8]) -> (__m128i, __m128i) {
    let q = &q[..16];
    // SAFETY: `q` holds 16 bytes (bounds-checked above), what `loadu_si128` reads; no
    // alignment requirement.
    let v = unsafe { _mm_loadu_si128(q.as_ptr().cast()) };
    let mask = _mm_set1_epi8(0x0F);
    (
        _mm_and_si128(v, mask),
        _mm_and_si128(_mm_srli_epi16::<4>(v), mask),
    )
}

/// One 4-bit row times one activation row quantised to int8 blocks (`a`, scales `sa`; `sums`
/// the f32 block sums for the minimums): `maddubs` multiplies the unsigned nibbles by the
/// signed bytes and adds pairs in i16 (at most 2 · 15 · 127 = 3810: no overflow), `madd` adds
/// those pairs in i32.
#[target_feature(enable = "avx2,fma")]
fn dot_q4_i8(
    nibbles: &[u8],
    scales: &[f32],
    mins: &[f32],
    a: &[i8],
    sa: &[f32],
    sums: &[f32],
) -> f32 {
    let ones = _mm256_set1_epi16(1);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let nb = scales.len();
    let block = |b: usize| -> (__m256, f32) {
        let (lo, hi) = nibbles16(&nibbles[b * (BLOCK / 2)..]);
        let a = &a[b * BLOCK..(b + 1) * BLOCK];
        // SAFETY: `a` holds 32 bytes (sliced above); `loadu` has no alignment requirement.
        let x = unsafe { _mm256_loadu_si256(a.as_ptr().cast()) };
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set_m128i(hi, lo), x), ones);
        (_mm256_cvtepi32_ps(p), scales[b] * sa[b])
    };
    let mut b = 0;
    while b + 2 <= nb {
        let (p0, d0) = block(b);
        let (p1, d1) = block(b + 1);
        acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0), acc0);
        acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d1), acc1);
        b += 2;
    }
    if b < nb {
        let (p0, d0) = block(b);
        acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d0), acc0);
    }
    let offsets: f32 = mins.iter().zip(sums).map(|(m, s)| m * s).sum();
    hsum(_mm256_add_ps(acc0, acc1)) + offsets
}

/// Widens a row's blocks into f32.
#[target_feature(enable = "avx2,fma")]
fn dequantize(row: Row<'_>, out: &mut [f32]) {
    let (quants, scales) = match row {
        Row::Q8 { quants, scales } => (quants, scales),
        Row::Q4 {
            nibbles,
            scales,
            mins,
        } => {
            for (((q, o), &d), &m) in nibbles
                .chunks_exact(BLOCK / 2)
                .zip(out.chunks_exact_mut(BLOCK))
                .zip(scales)
                .zip(mins)
            {
                let (lo, hi) = nibbles16(q);
                let (d, m) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
                let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
                for (k, p) in parts.into_iter().enumerate() {
                    store(&mut o[8 * k..], _mm256_fmadd_ps(widen_u8(p), d, m));
                }
            }
            return;
        }
    };
    for ((q, o), &d) in quants
        .chunks_exact(BLOCK)
        .zip(out.chunks_exact_mut(BLOCK))
        .zip(scales)
    {
        let d = _mm256_set1_ps(d);
        for k in (0..BLOCK).step_by(8) {
            store(&mut o[k..], _mm256_mul_ps(widen(&q[k..]), d));
        }
    }
}

/// One 4-bit row (`w = m + q · d` per block) times one f32 row whose block sums are `sums`:
/// `Σ_b d_b · (q_b · x_b) + Σ_b m_b · sums_b`.
#[target_feature(enable = "avx2,fma")]
fn dot_q4(nibbles: &[u8], scales: &[f32], mins: &[f32], x: &[f32], sums: &[f32]) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    for ((q, x), &d) in nibbles
        .chunks_exact(BLOCK / 2)
        .zip(x.chunks_exact(BLOCK))
        .zip(scales)
    {
        let (lo, hi) = nibbles16(q);
        let t0 = _mm256_mul_ps(widen_u8(lo), load(x));
        let t1 = _mm256_mul_ps(widen_u8(_mm_srli_si128::<8>(lo)), load(&x[8..]));
        let t0 = _mm256_fmadd_ps(widen_u8(hi), load(&x[16..]), t0);
        let t1 = _mm256_fmadd_ps(widen_u8(_mm_srli_si128::<8>(hi)), load(&x[24..]), t1);
        let d = _mm256_set1_ps(d);
        acc0 = _mm256_fmadd_ps(t0, d, acc0);
        acc1 = _mm256_fmadd_ps(t1, d, acc1);
    }
    let offsets: f32 = mins.iter().zip(sums).map(|(m, s)| m * s).sum();
    hsum(_mm256_add_ps(acc0, acc1)) + offsets
}

/// An `R x C` tile of dot products: `R` widened weight rows against `C` activation rows, all
/// `cols` long. Each loaded weight vector serves `C` products and each activation vector `R`,
/// with the `R·C` accumulators in registers (2 x 4 uses 11 of the 16).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tile<const R: usize, const C: usize>(
    w: [&[f32]; R],
    x: [&[f32]; C],
    cols: usize,
) -> [[f32; C]; R] {
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut k = 0;
    while k < cols {
        let mut wv = [_mm256_setzero_ps(); R];
        for r in 0..R {
            wv[r] = load(&w[r][k..]);
        }
        for c in 0..C {
            let xv = load(&x[c][k..]);
            for r in 0..R {
                acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
            }
        }
        k += 8;
    }
    let mut out = [[0f32; C]; R];
    for r in 0..R {
        for c in 0..C {
            out[r][c] = hsum(acc[r][c]);
        }
    }
    out
}

/// Output rows `r0..r0 + out.len() / n` of `W · xᵀ`, `out` `[rows, n]`.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn rows(m: &QMatrix, r0: usize, prep: &Prepared<'_>, out: &mut [f32]) {
    let (x, n, sums) = (prep.x, prep.n, prep.sums);
    if n == 1 {
        for (i, o) in out.iter_mut().enumerate() {
            *o = match (m.row(r0 + i), prep.int8) {
                (Row::Q8 { quants, scales }, _) => dot_q8(quants, scales, x),
                (
                    Row::Q4 {
                        nibbles,
                        scales,
                        mins,
                    },
                    Some((a, sa)),
                ) => dot_q4_i8(nibbles, scales, mins, a, sa, sums),
                (
                    Row::Q4 {
                        nibbles,
                        scales,
                        mins,
                    },
                    None,
                ) => dot_q4(nibbles, scales, mins, x, sums),
            };
        }
        return;
    }
    let cols = m.cols();
    let xr = |j: usize| &x[j * cols..(j + 1) * cols];
    let count = out.len() / n;
    // Two rows at a time, widened once into L1-resident scratch and reused for a block of
    // activation rows; blocks of `ACT_BLOCK` rows keep the activations in L2 (a prefill of
    // hundreds of positions would otherwise stream them from memory for every weight row).
    let mut w = vec![0f32; 2 * cols];
    for jb in (0..n).step_by(ACT_BLOCK) {
        let je = (jb + ACT_BLOCK).min(n);
        let mut i = 0;
        while i < count {
            let pair = (count - i).min(2);
            for p in 0..pair {
                dequantize(m.row(r0 + i + p), &mut w[p * cols..(p + 1) * cols]);
            }
            let (w0, w1) = w.split_at(cols);
            let mut j = jb;
            while j < je {
                let wide = je - j >= 4;
                match (pair, wide) {
                    (2, true) => {
                        let t =
                            tile::<2, 4>([w0, w1], [xr(j), xr(j + 1), xr(j + 2), xr(j + 3)], cols);
                        for c in 0..4 {
                            out[i * n + j + c] = t[0][c];
                            out[(i + 1) * n + j + c] = t[1][c];
                        }
                    }
                    (2, false) => {
                        let t = tile::<2, 1>([w0, w1], [xr(j)], cols);
                        out[i * n + j] = t[0][0];
                        out[(i + 1) * n + j] = t[1][0];
                    }
                    (_, true) => {
                        let t = tile::<1, 4>([w0], [xr(j), xr(j + 1), xr(j + 2), xr(j + 3)], cols);
                        out[i * n + j..i * n + j + 4].copy_from_slice(&t[0]);
                    }
                    (_, false) => out[i * n + j] = tile::<1, 1>([w0], [xr(j)], cols)[0][0],
                }
                j += if wide { 4 } else { 1 };
            }
            i += pair;
        }
    }
}

/// `a · b` (equal lengths; 8-float chunks with a scalar tail).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + 16 <= n {
        acc0 = _mm256_fmadd_ps(load(&a[k..]), load(&b[k..]), acc0);
        acc1 = _mm256_fmadd_ps(load(&a[k + 8..]), load(&b[k + 8..]), acc1);
        k += 16;
    }
    if k + 8 <= n {
        acc0 = _mm256_fmadd_ps(load(&a[k..]), load(&b[k..]), acc0);
        k += 8;
    }
    let mut s = hsum(_mm256_add_ps(acc0, acc1));
    for (x, y) in a[k..n].iter().zip(&b[k..n]) {
        s += x * y;
    }
    s
}

/// `y += alpha · x` (equal lengths).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let a = _mm256_set1_ps(alpha);
    let mut k = 0;
    while k + 8 <= n {
        let v = _mm256_fmadd_ps(a, load(&x[k..]), load(&y[k..]));
        store(&mut y[k..], v);
        k += 8;
    }
    for (y, x) in y[k..n].iter_mut().zip(&x[k..n]) {
        *y += alpha * x;
    }
}

/// [`crate::attention::attend`] with 8-lane dot products and updates.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    q: &[f32],
    segments: &[crate::attention::Segment<'_>],
    stride: usize,
    offset: usize,
    len: usize,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    // The loops of `attention::attend_with`, written out with the 8-lane dot products (passed
    // as closures to the portable function they would not be inlined there).
    let hd = q.len();
    scores.clear();
    'outer: for s in segments {
        for k in s.keys.chunks_exact(stride) {
            if scores.len() == len {
                break 'outer;
            }
            scores.push(dot_f32(q, &k[offset..offset + hd]));
        }
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o = 0.0);
    let mut j = 0;
    'values: for s in segments {
        for v in s.values.chunks_exact(stride) {
            if j == len {
                break 'values;
            }
            axpy_f32(scores[j] * inv, &v[offset..offset + hd], out);
            j += 1;
        }
    }
}
