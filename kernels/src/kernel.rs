//! The kernels as plain loops over fixed-size arrays, written so the compiler vectorises them
//! (32-lane accumulators, no reduction across lanes until the end). `simd.rs` instantiates them
//! inside `#[target_feature]` functions; `FMA` says whether `mul_add` is a single instruction
//! there (otherwise it would be a libm call).

use crate::q8::{BLOCK, Q8Matrix};

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
pub(crate) fn rows<const FMA: bool>(m: &Q8Matrix, r0: usize, x: &[f32], n: usize, out: &mut [f32]) {
    if n == 1 {
        for (i, o) in out.iter_mut().enumerate() {
            let (q, s) = m.row(r0 + i);
            *o = dot_q8::<FMA>(q, s, x);
        }
        return;
    }
    // Batches: widen the row once, reuse it for every activation row (it stays in L1).
    let cols = m.cols();
    let mut w = vec![0f32; cols];
    for (i, o) in out.chunks_exact_mut(n).enumerate() {
        let (q, s) = m.row(r0 + i);
        dequantize(q, s, &mut w);
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

/// Widens int8 blocks to f32 (`out[i] = q[i] · s[i / BLOCK]`).
#[inline(always)]
pub(crate) fn dequantize(q: &[i8], s: &[f32], out: &mut [f32]) {
    let (qb, _) = q.as_chunks::<BLOCK>();
    let (ob, _) = out.as_chunks_mut::<BLOCK>();
    assert_eq!(qb.len(), ob.len(), "a row of {} values", q.len());
    for ((q, o), &d) in qb.iter().zip(ob).zip(s) {
        for l in 0..BLOCK {
            o[l] = f32::from(q[l]) * d;
        }
    }
}
