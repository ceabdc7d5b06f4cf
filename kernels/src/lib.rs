//! ponder's CPU kernels: weights kept as quantised blocks ([`QMatrix`]: GGUF's `Q8_0` int8 or
//! `Q4_1`-style 4-bit schemes, 32 weights per block; see [`Format`]) and multiplied by f32
//! activations without dequantising the matrix first, split over the cores by rayon.
//!
//! Decoding one token is memory-bound: every weight is read once per step. An f32 weight is 4
//! bytes, a `Q8` one 1.125 and a `Q4` one 0.75, so a quantised model reads 3.6x / 5.3x less per
//! token and holds that much less in RAM. At batch 1 each block is widened to f32 in registers,
//! scaled and multiplied into 8-lane accumulators; at larger batches a row is widened once
//! into a scratch row and reused for a block of activation rows in register tiles.
//!
//! The kernels are plain Rust loops written so the compiler vectorises them; [`simd`] compiles
//! the same loops again for AVX2+FMA and AVX-512 and picks the widest the CPU has at run time.
//! That dispatch is the only `unsafe` code in ponder (calling a `#[target_feature]` function),
//! each block justified; every build is tested against a scalar reference
//! (`tests/q8.rs`).
//!
//! ```
//! use ponder_kernels::{Format, QMatrix};
//! // W = [[1, 2, ..., 32], [-1, -1, ..., -1]] (2 rows, 32 columns).
//! let mut w: Vec<f32> = (1..=32).map(|v| v as f32).collect();
//! w.extend(std::iter::repeat_n(-1.0, 32));
//! let m = QMatrix::quantize(2, 32, &w, Format::Q8).unwrap();
//! let x = vec![1.0f32; 32]; // one activation row of ones
//! let y = m.matmul_t(&x, 1).unwrap(); // [rows, n] = W · xᵀ
//! assert!((y[0] - 528.0).abs() < 2.0 && (y[1] + 32.0).abs() < 0.5);
//! ```

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod kernel;
mod matrix;
pub mod simd;

pub use attention::{Segment, attend};
pub use matrix::{Activations, BLOCK, Format, QMatrix};
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
