//! ponder's CPU kernels: weights kept as int8 blocks ([`Q8Matrix`], the GGUF `Q8_0` scheme: 32
//! weights share one f32 scale) and multiplied by f32 activations without dequantising the
//! matrix first, split over the cores by rayon.
//!
//! Decoding one token is memory-bound: every weight is read once per step. An f32 weight is 4
//! bytes and a `Q8_0` one 1.125, so a quantised model reads about 3.6x less per token and holds
//! 3.6x less in RAM. Each 32-weight block is widened to f32 in registers, scaled and multiplied
//! into 32-lane accumulators; at batch sizes above one a row is widened once into a scratch row
//! and reused for every activation row.
//!
//! The kernels are plain Rust loops written so the compiler vectorises them; [`simd`] compiles
//! the same loops again for AVX2+FMA and AVX-512 and picks the widest the CPU has at run time.
//! That dispatch is the only `unsafe` code in ponder (calling a `#[target_feature]` function),
//! each block justified; every build is tested against a scalar reference
//! (`tests/q8.rs`).
//!
//! ```
//! use ponder_kernels::Q8Matrix;
//! // W = [[1, 2, ..., 32], [-1, -1, ..., -1]] (2 rows, 32 columns).
//! let mut w: Vec<f32> = (1..=32).map(|v| v as f32).collect();
//! w.extend(std::iter::repeat_n(-1.0, 32));
//! let m = Q8Matrix::quantize(2, 32, &w).unwrap();
//! let x = vec![1.0f32; 32]; // one activation row of ones
//! let y = m.matmul_t(&x, 1).unwrap(); // [rows, n] = W · xᵀ
//! assert!((y[0] - 528.0).abs() < 2.0 && (y[1] + 32.0).abs() < 0.5);
//! ```

#[cfg(target_arch = "x86_64")]
mod avx2;
mod kernel;
mod q8;
pub mod simd;

pub use q8::{BLOCK, Q8Matrix};
pub use simd::Isa;

/// Result alias for the kernels crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shapes that do not fit together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The matrix's shape is unusable (columns not a multiple of the block, or a data length
    /// that is not `rows · cols`).
    #[error("a {rows}x{cols} quantised matrix: {message}")]
    Shape {
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
        /// What was wrong.
        message: String,
    },
    /// The activations do not match the matrix.
    #[error("activations of {len} values are not {n} rows of {cols}")]
    Input {
        /// Values given.
        len: usize,
        /// Rows claimed.
        n: usize,
        /// The matrix's columns.
        cols: usize,
    },
}
