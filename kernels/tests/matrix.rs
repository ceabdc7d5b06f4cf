//! Every build of the kernels against a scalar reference computed in f64 from the dequantised
//! weights, on shapes that exercise the odd cases (one block, an odd number of blocks, row
//! counts that do not divide into the parallel chunks, batches of 1..9 rows).

use ponder_kernels::{BLOCK, Format, Isa, QMatrix};
use proptest::prelude::*;

/// A deterministic pseudo-random matrix with a spread of magnitudes.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            // Every 7th block much larger: scales must be per block.
            if (i / BLOCK).is_multiple_of(7) {
                u * 40.0
            } else {
                u
            }
        })
        .collect()
}

fn reference(m: &QMatrix, x: &[f32], n: usize) -> Vec<f32> {
    let w = m.dequantize();
    let (rows, cols) = (m.rows(), m.cols());
    let mut out = vec![0f32; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let s: f64 = (0..cols)
                .map(|c| f64::from(w[r * cols + c]) * f64::from(x[j * cols + c]))
                .sum();
            out[r * n + j] = s as f32;
        }
    }
    out
}

fn levels() -> Vec<Isa> {
    [Isa::Baseline, Isa::Avx2]
        .into_iter()
        .filter(|&l| l <= Isa::best())
        .collect()
}

fn check(rows: usize, blocks: usize, n: usize, seed: u64) {
    for format in [Format::Q8, Format::Q4] {
        check_format(rows, blocks, n, seed, format);
    }
}

fn check_format(rows: usize, blocks: usize, n: usize, seed: u64, format: Format) {
    let cols = blocks * BLOCK;
    let w = values(rows * cols, seed);
    let x = values(n * cols, seed ^ 0xabcdef);
    let m = QMatrix::quantize(rows, cols, &w, format).unwrap();
    assert_eq!(m.format(), format);
    let want = reference(&m, &x, n);
    let scale: f32 = x.iter().map(|v| v.abs()).sum::<f32>() / n as f32;
    for isa in levels() {
        let got = m.matmul_t_at(isa, &x, n).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // f32 accumulation in a different order than the f64 reference.
            let tol = 1e-5 * scale * 40.0 + 1e-5 * w.abs();
            assert!(
                (g - w).abs() <= tol,
                "{isa:?} {format:?} {rows}x{cols} n={n}: out[{i}] = {g}, reference {w}"
            );
        }
    }
}

#[test]
fn every_build_matches_the_reference_on_model_shapes() {
    // SmolLM2-135M's projections (d 576, ffn 1536) and a Qwen2.5-0.5B row width (896).
    for (rows, blocks) in [(960, 18), (3072, 18), (576, 48), (64, 28)] {
        for n in [1, 2, 8] {
            check(rows, blocks, n, (rows * blocks * n) as u64);
        }
    }
}

#[test]
fn quantisation_error_is_at_most_half_a_step() {
    let cols = 4 * BLOCK;
    let w = values(3 * cols, 9);
    for format in [Format::Q8, Format::Q4] {
        let m = QMatrix::quantize(3, cols, &w, format).unwrap();
        let back = m.dequantize();
        for (b, (blk, orig)) in back.chunks(BLOCK).zip(w.chunks(BLOCK)).enumerate() {
            let amax = orig.iter().fold(0f32, |a, v| a.max(v.abs()));
            let lo = orig.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = orig.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let half_step = match format {
                Format::Q4 => (hi - lo) / 30.0,
                _ => amax / 254.0,
            };
            for (x, y) in blk.iter().zip(orig) {
                assert!(
                    (x - y).abs() <= half_step * 1.0001 + 1e-6,
                    "{format:?} block {b}: {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn four_bit_values_come_back_exactly() {
    // A block already on a 16-level grid (what a `Q4_1` file dequantises to) is kept as is.
    let (lo, d) = (-0.75f32, 0.125f32);
    let w: Vec<f32> = (0..2 * BLOCK).map(|i| lo + d * (i % 16) as f32).collect();
    let m = QMatrix::quantize(1, 2 * BLOCK, &w, Format::Q4).unwrap();
    assert_eq!(m.dequantize(), w);
    assert_eq!(m.bytes(), BLOCK + 2 * 8);
}

#[test]
fn zero_blocks_and_gather() {
    let cols = 2 * BLOCK;
    let mut w = vec![0f32; 2 * cols];
    w[cols + 5] = 3.0;
    let m = QMatrix::quantize(2, cols, &w, Format::Q8).unwrap();
    let rows = m.gather(&[1, 0, 1]).unwrap();
    assert_eq!(rows.len(), 3 * cols);
    assert_eq!(rows[5], 3.0);
    assert!(rows[cols..2 * cols].iter().all(|&v| v == 0.0));
    assert_eq!(m.matmul_t(&vec![1.0; cols], 1).unwrap(), vec![0.0, 3.0]);
    assert!(m.gather(&[2]).is_err());
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let q = |r, c, v: &[f32]| QMatrix::quantize(r, c, v, Format::Q4);
    assert!(q(2, 33, &[0.0; 66]).is_err());
    assert!(q(2, 32, &[0.0; 63]).is_err());
    assert!(q(usize::MAX, 32, &[0.0; 32]).is_err());
    let m = QMatrix::quantize(1, 32, &[1.0; 32], Format::Q8).unwrap();
    assert!(m.matmul_t(&[1.0; 31], 1).is_err());
    assert!(m.matmul_t(&[], 0).is_err());
    let e = m.matmul_t(&[1.0; 33], 1).unwrap_err().to_string();
    assert!(e.contains("33") && e.contains("32"), "{e}");
}

#[test]
fn quantised_rows_reproduce_their_dense_product_closely() {
    // What the model loses: relative error of the product against the f32 weights.
    let (rows, cols) = (256, 18 * BLOCK);
    let w = values(rows * cols, 3);
    let x = values(cols, 4);
    let m = QMatrix::quantize(rows, cols, &w, Format::Q8).unwrap();
    let got = m.matmul_t(&x, 1).unwrap();
    let (mut err, mut norm) = (0f64, 0f64);
    for r in 0..rows {
        let exact: f64 = (0..cols)
            .map(|c| f64::from(w[r * cols + c]) * f64::from(x[c]))
            .sum();
        err += (f64::from(got[r]) - exact).powi(2);
        norm += exact.powi(2);
    }
    let rel = (err / norm).sqrt();
    assert!(rel < 0.01, "relative error {rel}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_shape_matches_the_reference(rows in 1usize..200, blocks in 1usize..12, n in 1usize..10, seed in any::<u64>()) {
        check(rows, blocks, n, seed);
    }
}

#[test]
fn int8_activations_stay_within_their_bound() {
    use ponder_kernels::Activations;
    for (rows, blocks, seed) in [
        (300usize, 18usize, 1u64),
        (64, 48, 2),
        (9, 1, 3),
        (33, 7, 4),
    ] {
        let cols = blocks * BLOCK;
        let w = values(rows * cols, seed);
        let x = values(cols, seed + 9);
        for format in [Format::Q8, Format::Q4] {
            let m = QMatrix::quantize(rows, cols, &w, format).unwrap();
            let exact = m.matmul_t(&x, 1).unwrap();
            let got = m.matmul_t_with(&x, 1, Activations::Int8).unwrap();
            for r in 0..rows {
                // Σ_k d_block · q_k · max|x_block| / 254, with q_k <= 15 for 4-bit weights.
                let bound: f32 = (0..blocks)
                    .map(|b| {
                        let blk = &w[r * cols + b * BLOCK..r * cols + (b + 1) * BLOCK];
                        let lo = blk.iter().copied().fold(f32::INFINITY, f32::min);
                        let hi = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let xb = &x[b * BLOCK..(b + 1) * BLOCK];
                        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
                        (hi - lo) * BLOCK as f32 * amax / 254.0
                    })
                    .sum();
                let err = (got[r] - exact[r]).abs();
                match format {
                    // int8 weights multiply f32 activations either way.
                    Format::Q8 => assert_eq!(got[r], exact[r]),
                    _ => assert!(err <= bound * 1.001 + 1e-5, "row {r}: {err} > {bound}"),
                }
            }
        }
    }
}
