//! Attention of one query over keys and values held in segments (a KV cache kept as a chain of
//! shared prefixes): scores, softmax, weighted sum of values.

use crate::simd::{self, Isa};

/// Keys and values of one segment: `tokens` rows of `stride` floats each; the head attended to
/// starts at a fixed offset of each row.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Keys, `[tokens, stride]`.
    pub keys: &'a [f32],
    /// Values, `[tokens, stride]`.
    pub values: &'a [f32],
}

/// `out = Σ_j softmax(q · k_j)_j · v_j` over the first `len` rows of `segments` (in order),
/// reading each row's `q.len()` floats from `offset` (one key/value head of a row of
/// `stride`). `q` is expected pre-scaled (by `1/√head_dim`). `scores` is scratch space.
///
/// # Panics
/// If the segments hold fewer than `len` rows, `offset + q.len() > stride`, or `out` is not as
/// long as `q` (caller bugs).
pub fn attend(
    q: &[f32],
    segments: &[Segment<'_>],
    stride: usize,
    offset: usize,
    len: usize,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    assert!(
        offset + q.len() <= stride && out.len() == q.len(),
        "head out of its row"
    );
    let held: usize = segments.iter().map(|s| s.keys.len() / stride).sum();
    assert!(held >= len, "{len} positions attended, {held} held");
    simd::attend(Isa::best(), q, segments, stride, offset, len, out, scores);
}

/// The portable loops (`simd.rs` runs them in its AVX2 build too, with its own dot products).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_with(
    dot: impl Fn(&[f32], &[f32]) -> f32,
    axpy: impl Fn(f32, &[f32], &mut [f32]),
    q: &[f32],
    segments: &[Segment<'_>],
    stride: usize,
    offset: usize,
    len: usize,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let hd = q.len();
    scores.clear();
    'outer: for s in segments {
        for k in s.keys.chunks_exact(stride) {
            if scores.len() == len {
                break 'outer;
            }
            scores.push(dot(q, &k[offset..offset + hd]));
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
            axpy(scores[j] * inv, &v[offset..offset + hd], out);
            j += 1;
        }
    }
}
