//! The `Q8_0` matrix: quantisation, dequantisation, and the parallel driver of the kernels.

use rayon::prelude::*;

use crate::simd::{self, Isa};
use crate::{Error, Result};

/// Weights per block (one scale each), as in GGUF's `Q8_0`.
pub const BLOCK: usize = 32;

/// Below this many multiply-adds a product runs on the calling thread: handing work to the
/// pool costs a few microseconds, about what 100k multiply-adds take on one core.
const PARALLEL_MIN: usize = 96 * 1024;

/// A `[rows, cols]` matrix of int8 weights in blocks of [`BLOCK`] along each row, one f32
/// scale per block: weight `(r, c)` is `quants[r·cols + c] · scales[r·cols/BLOCK + c/BLOCK]`.
///
/// Quantising maps each block's largest magnitude to ±127, so a weight's error is at most half
/// a step, `max|block| / 254`.
#[derive(Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    quants: Vec<i8>,
    scales: Vec<f32>,
}

impl std::fmt::Debug for Q8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Q8Matrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl Q8Matrix {
    /// Quantises a row-major `[rows, cols]` f32 matrix.
    ///
    /// # Errors
    /// `cols` not a positive multiple of [`BLOCK`], or `data` not `rows · cols` long.
    pub fn quantize(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        let shape = |message: String| Error::Shape {
            rows,
            cols,
            message,
        };
        if cols == 0 || !cols.is_multiple_of(BLOCK) {
            return Err(shape(format!(
                "columns must be a positive multiple of {BLOCK}"
            )));
        }
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(shape(format!("{} values given", data.len())));
        }
        let mut quants = vec![0i8; data.len()];
        let mut scales = vec![0f32; data.len() / BLOCK];
        quants
            .par_chunks_mut(BLOCK)
            .zip(scales.par_iter_mut())
            .zip(data.par_chunks(BLOCK))
            .for_each(|((q, s), v)| {
                let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let d = amax / 127.0;
                *s = d;
                if d > 0.0 {
                    let inv = 1.0 / d;
                    for (q, &x) in q.iter_mut().zip(v) {
                        // In -127..=127 by construction (|x| <= amax); `as` saturates anyway.
                        *q = (x * inv).round() as i8;
                    }
                }
            });
        Ok(Q8Matrix {
            rows,
            cols,
            quants,
            scales,
        })
    }

    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: one per weight plus four per block.
    pub fn bytes(&self) -> usize {
        self.quants.len() + 4 * self.scales.len()
    }

    /// The int8 weights of row `r` and its block scales.
    pub(crate) fn row(&self, r: usize) -> (&[i8], &[f32]) {
        let nb = self.cols / BLOCK;
        (
            &self.quants[r * self.cols..(r + 1) * self.cols],
            &self.scales[r * nb..(r + 1) * nb],
        )
    }

    /// Row `r` as f32, written into `out` (`cols` long).
    ///
    /// # Panics
    /// If `r >= rows` or `out` is not `cols` long (caller bugs).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (q, s) = self.row(r);
        crate::kernel::dequantize(q, s, out);
    }

    /// The rows `ids` as f32, `[ids.len(), cols]` row-major: an embedding lookup.
    ///
    /// # Errors
    /// An id outside the rows.
    pub fn gather(&self, ids: &[usize]) -> Result<Vec<f32>> {
        if let Some(&bad) = ids.iter().find(|&&r| r >= self.rows) {
            return Err(Error::Shape {
                rows: self.rows,
                cols: self.cols,
                message: format!("row {bad} requested"),
            });
        }
        let mut out = vec![0f32; ids.len() * self.cols];
        for (o, &r) in out.chunks_exact_mut(self.cols).zip(ids) {
            self.dequantize_row(r, o);
        }
        Ok(out)
    }

    /// The whole matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, o)| self.dequantize_row(r, o));
        out
    }

    /// `W · xᵀ` for `n` activation rows `x` (`[n, cols]` row-major): `[rows, n]` row-major,
    /// the widest kernel the CPU supports, rows split over rayon's pool.
    ///
    /// # Errors
    /// `x` not `n · cols` long, or `n == 0`.
    pub fn matmul_t(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.matmul_t_at(Isa::best(), x, n)
    }

    /// As [`Q8Matrix::matmul_t`] with the kernel built for `isa` at most (the CPU's best if
    /// lower): to compare the builds.
    ///
    /// # Errors
    /// As [`Q8Matrix::matmul_t`].
    pub fn matmul_t_at(&self, isa: Isa, x: &[f32], n: usize) -> Result<Vec<f32>> {
        if n == 0 || n.checked_mul(self.cols) != Some(x.len()) {
            return Err(Error::Input {
                len: x.len(),
                n,
                cols: self.cols,
            });
        }
        let mut out = vec![0f32; self.rows * n];
        let threads = rayon::current_num_threads();
        let work = self.rows * self.cols * n;
        if threads <= 1 || work < PARALLEL_MIN {
            simd::rows(isa, self, 0, x, n, &mut out);
        } else {
            // Several chunks per thread so uneven cores even out; at least 8 rows each.
            let per = self.rows.div_ceil(threads * 4).max(8);
            out.par_chunks_mut(per * n)
                .enumerate()
                .for_each(|(c, o)| simd::rows(isa, self, c * per, x, n, o));
        }
        Ok(out)
    }
}
