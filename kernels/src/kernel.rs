//! The kernels as plain loops over fixed-size arrays, written so the compiler vectorises them
//! (32-lane accumulators, no reduction across lanes until the end). `simd.rs` instantiates them
//! inside `#[target_feature]` functions; `FMA` says whether `mul_add` is a single instruction
//! there (otherwise it would be a libm call).

use crate::matrix::{BLOCK, QMatrix, Row};

/// Two blocks at a time: two independent accumulator sets hide the add latency.
const PAIR: usize = 2 * BLOCK;

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Sum of 32 lanes as a tree (vectorises; a left-to-right sum would be 32 dependent adds).
/// Every index is a constant, so the arrays stay in registers.
#[inline(always)]
fn hsum(a: [f32; BLOCK]) -> f32 {
    let mut h = [0f32; 16];
    for l in 0..16 {
        h[l] = a[l] + a[l + 16];
    }
    let mut q = [0f32; 8];
    for l in 0..8 {
        q[l] = h[l] + h[l + 8];
    }
    (q[0] + q[4]) + (q[1] + q[5]) + ((q[2] + q[6]) + (q[3] + q[7]))
}

/// Output rows `r0..r0 + out.len() / n` of `W · xᵀ`, `out` `[rows, n]`.
#[inline(always)]
pub(crate) fn rows<const FMA: bool>(m: &QMatrix, r0: usize, x: &[f32], n: usize, out: &mut [f32]) {
    let cols = m.cols();
    if n == 1 {
        let mut w = Vec::new();
        for (i, o) in out.iter_mut().enumerate() {
            *o = match m.row(r0 + i) {
                Row::Q8 { quants, scales } => dot_q8::<FMA>(quants, scales, x),
                row => {
                    w.resize(cols, 0.0);
                    dequantize(row, &mut w);
                    dot::<FMA>(&w, x)
                }
            };
        }
        return;
    }
    // Batches: widen the row once, reuse it for every activation row (it stays in L1).
    let mut w = vec![0f32; cols];
    for (i, o) in out.chunks_exact_mut(n).enumerate() {
        dequantize(m.row(r0 + i), &mut w);
        for (o, xr) in o.iter_mut().zip(x.chunks_exact(cols)) {
            *o = dot::<FMA>(&w, xr);
        }
    }
}

/// One int8 row (with its block scales) times one f32 row.
#[inline(always)]
fn dot_q8<const FMA: bool>(q: &[i8], s: &[f32], x: &[f32]) -> f32 {
    let mut a0 = [0f32; BLOCK];
    let mut a1 = [0f32; BLOCK];
    let (qp, qr) = q.as_chunks::<PAIR>();
    let (xp, xr) = x.as_chunks::<PAIR>();
    for ((qb, xb), d) in qp.iter().zip(xp).zip(s.chunks_exact(2)) {
        let (q0, q1) = qb.split_at(BLOCK);
        let (x0, x1) = xb.split_at(BLOCK);
        block::<FMA>(&mut a0, q0, x0, d[0]);
        block::<FMA>(&mut a1, q1, x1, d[1]);
    }
    if !qr.is_empty() {
        block::<FMA>(&mut a0, qr, xr, s[s.len() - 1]);
    }
    for l in 0..BLOCK {
        a0[l] += a1[l];
    }
    hsum(a0)
}

#[inline(always)]
fn block<const FMA: bool>(a: &mut [f32; BLOCK], q: &[i8], x: &[f32], d: f32) {
    let (q, x) = (&q[..BLOCK], &x[..BLOCK]);
    for l in 0..BLOCK {
        a[l] = madd::<FMA>(f32::from(q[l]) * d, x[l], a[l]);
    }
}

/// One f32 row times another.
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    // Two accumulators indexed by constants only (a dynamic index would keep them in memory).
    let mut a0 = [0f32; BLOCK];
    let mut a1 = [0f32; BLOCK];
    let (ap, ar) = a.as_chunks::<PAIR>();
    let (bp, br) = b.as_chunks::<PAIR>();
    for (x, y) in ap.iter().zip(bp) {
        for l in 0..BLOCK {
            a0[l] = madd::<FMA>(x[l], y[l], a0[l]);
            a1[l] = madd::<FMA>(x[l + BLOCK], y[l + BLOCK], a1[l]);
        }
    }
    // `cols` is a multiple of BLOCK: at most one block is left.
    let (ab, _) = ar.as_chunks::<BLOCK>();
    let (bb, _) = br.as_chunks::<BLOCK>();
    for (x, y) in ab.iter().zip(bb) {
        for l in 0..BLOCK {
            a0[l] = madd::<FMA>(x[l], y[l], a0[l]);
        }
    }
    for l in 0..BLOCK {
        a0[l] += a1[l];
    }
    hsum(a0)
}

/// Widens a row's blocks to f32.
#[inline(always)]
pub(crate) fn dequantize(row: Row<'_>, out: &mut [f32]) {
    let (ob, _) = out.as_chunks_mut::<BLOCK>();
    match row {
        Row::Q8 { quants, scales } => {
            let (qb, _) = quants.as_chunks::<BLOCK>();
            assert_eq!(qb.len(), ob.len(), "a row of {} values", quants.len());
            for ((q, o), &d) in qb.iter().zip(ob).zip(scales) {
                for l in 0..BLOCK {
                    o[l] = f32::from(q[l]) * d;
                }
            }
        }
        Row::Q4 {
            nibbles,
            scales,
            mins,
        } => {
            let (qb, _) = nibbles.as_chunks::<{ BLOCK / 2 }>();
            assert_eq!(qb.len(), ob.len(), "a row of {} values", 2 * nibbles.len());
            for (((q, o), &d), &m) in qb.iter().zip(ob).zip(scales).zip(mins) {
                for l in 0..BLOCK / 2 {
                    o[l] = m + f32::from(q[l] & 0x0F) * d;
                    o[l + BLOCK / 2] = m + f32::from(q[l] >> 4) * d;
                }
            }
        }
    }
}
