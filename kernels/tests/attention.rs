//! Attention over segmented keys and values against a direct f64 computation, for every build.

use ponder_kernels::{Segment, attend};

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn segmented_attention_matches_the_direct_sum() {
    let (hd, heads) = (64usize, 3usize);
    let stride = hd * heads;
    for (tokens, cuts, len, seed) in [
        (1usize, vec![], 1usize, 1u64),
        (10, vec![3, 7], 10, 2),
        (40, vec![17], 25, 3),
        (100, vec![1, 2, 50, 99], 100, 4),
    ] {
        let k = values(tokens * stride, seed);
        let v = values(tokens * stride, seed + 100);
        let q: Vec<f32> = values(hd, seed + 200).iter().map(|x| x * 4.0).collect();
        // The same rows in segments cut at `cuts`.
        let mut bounds = vec![0];
        bounds.extend(&cuts);
        bounds.push(tokens);
        let segments: Vec<Segment<'_>> = bounds
            .windows(2)
            .map(|w| Segment {
                keys: &k[w[0] * stride..w[1] * stride],
                values: &v[w[0] * stride..w[1] * stride],
            })
            .collect();
        for head in 0..heads {
            let off = head * hd;
            let s: Vec<f64> = (0..len)
                .map(|j| {
                    (0..hd)
                        .map(|e| f64::from(q[e]) * f64::from(k[j * stride + off + e]))
                        .sum()
                })
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            let want: Vec<f64> = (0..hd)
                .map(|e| {
                    (0..len)
                        .map(|j| (s[j] - m).exp() / z * f64::from(v[j * stride + off + e]))
                        .sum()
                })
                .collect();
            let mut out = vec![0f32; hd];
            let mut scratch = Vec::new();
            attend(&q, &segments, stride, off, len, &mut out, &mut scratch);
            for (e, (g, w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-5,
                    "tokens {tokens} len {len} head {head} [{e}]: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "positions attended")]
fn attending_past_the_cache_is_a_caller_bug() {
    let k = vec![0f32; 64];
    let s = [Segment {
        keys: &k,
        values: &k,
    }];
    attend(&[0.0; 64], &s, 64, 0, 2, &mut [0.0; 64], &mut Vec::new());
}
