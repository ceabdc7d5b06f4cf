//! The quantised matrix: its formats, quantisation, dequantisation, and the parallel driver
//! of the kernels.

use rayon::prelude::*;

use crate::simd::{self, Isa};
use crate::{Error, Result};

/// Weights per block (one scale each), as in GGUF's `Q8_0` and `Q4_1`.
pub const BLOCK: usize = 32;

/// Below this many multiply-adds a product runs on the calling thread: handing work to the
/// pool costs a few microseconds, about what 100k multiply-adds take on one core.
const PARALLEL_MIN: usize = 96 * 1024;

/// How a [`QMatrix`] stores its weights: blocks of [`BLOCK`] consecutive weights of a row
/// share their scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// GGUF's `Q8_0`: int8 weights, one f32 scale per block (`w = q · d`), 1.125 bytes per
    /// weight. A weight is off by at most half a step, `max|block| / 254`.
    #[default]
    Q8,
    /// GGUF's `Q4_1` scheme: 4-bit weights with a scale and a minimum per block
    /// (`w = m + q · d`, `q` in 0..=15), 0.75 bytes per weight (f32 scale and minimum). A
    /// weight is off by at most `(max - min) / 30`; a model stored as `Q4_1` comes back
    /// exactly.
    Q4,
}

impl Format {
    /// The format's name (`q8`, `q4`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Q8 => "q8",
            Format::Q4 => "q4",
        }
    }
}

/// How activations enter a product: as given, or quantised to int8 blocks (see
/// [`QMatrix::matmul_t_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Activations {
    /// f32 as given: the product of the dequantised weights, up to summation order.
    #[default]
    F32,
    /// One activation row times 4-bit weights quantised to int8 blocks first.
    Int8,
}

/// What the kernels get besides the matrix: the activations and what was derived from them
/// once per product.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepared<'a> {
    pub(crate) x: &'a [f32],
    pub(crate) n: usize,
    /// Block sums of a single row (4-bit weights' minimums multiply them).
    pub(crate) sums: &'a [f32],
    /// The single row as int8 blocks and their scales.
    pub(crate) int8: Option<(&'a [i8], &'a [f32])>,
}

/// The weights themselves.
#[derive(Clone)]
enum Store {
    Q8 {
        quants: Vec<i8>,
    },
    /// Per block 16 bytes: byte `j` holds weight `j` in its low nibble and `j + 16` in its
    /// high one (GGUF's layout).
    Q4 {
        nibbles: Vec<u8>,
        mins: Vec<f32>,
    },
}

/// One row's blocks, as the kernels read them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Row<'a> {
    Q8 {
        quants: &'a [i8],
        scales: &'a [f32],
    },
    Q4 {
        nibbles: &'a [u8],
        scales: &'a [f32],
        mins: &'a [f32],
    },
}

/// A `[rows, cols]` matrix of quantised weights in blocks of [`BLOCK`] along each row (see
/// [`Format`]), multiplied by f32 activations without dequantising the matrix first.
#[derive(Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    store: Store,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("format", &self.format())
            .finish_non_exhaustive()
    }
}

impl QMatrix {
    /// Quantises a row-major `[rows, cols]` f32 matrix.
    ///
    /// # Errors
    /// `cols` not a positive multiple of [`BLOCK`], or `data` not `rows · cols` long.
    pub fn quantize(rows: usize, cols: usize, data: &[f32], format: Format) -> Result<Self> {
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
        let blocks = data.len() / BLOCK;
        let mut scales = vec![0f32; blocks];
        let store = match format {
            Format::Q8 => {
                let mut quants = vec![0i8; data.len()];
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
                                // In -127..=127 by construction (|x| <= amax).
                                *q = (x * inv).round() as i8;
                            }
                        }
                    });
                Store::Q8 { quants }
            }
            Format::Q4 => {
                let mut nibbles = vec![0u8; data.len() / 2];
                let mut mins = vec![0f32; blocks];
                nibbles
                    .par_chunks_mut(BLOCK / 2)
                    .zip(scales.par_iter_mut().zip(mins.par_iter_mut()))
                    .zip(data.par_chunks(BLOCK))
                    .for_each(|((q, (s, m)), v)| {
                        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
                        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let d = (hi - lo) / 15.0;
                        *s = d;
                        *m = lo;
                        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                        let level = |x: f32| ((x - lo) * inv).round().clamp(0.0, 15.0) as u8;
                        for (j, q) in q.iter_mut().enumerate() {
                            *q = level(v[j]) | (level(v[j + BLOCK / 2]) << 4);
                        }
                    });
                Store::Q4 { nibbles, mins }
            }
        };
        Ok(QMatrix {
            rows,
            cols,
            scales,
            store,
        })
    }

    /// The storage format.
    pub fn format(&self) -> Format {
        match self.store {
            Store::Q8 { .. } => Format::Q8,
            Store::Q4 { .. } => Format::Q4,
        }
    }

    /// Rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held: the weights, their scales and (4-bit) minimums.
    pub fn bytes(&self) -> usize {
        4 * self.scales.len()
            + match &self.store {
                Store::Q8 { quants } => quants.len(),
                Store::Q4 { nibbles, mins } => nibbles.len() + 4 * mins.len(),
            }
    }

    /// Row `r`'s blocks.
    #[inline]
    pub(crate) fn row(&self, r: usize) -> Row<'_> {
        let nb = self.cols / BLOCK;
        let scales = &self.scales[r * nb..(r + 1) * nb];
        match &self.store {
            Store::Q8 { quants } => Row::Q8 {
                quants: &quants[r * self.cols..(r + 1) * self.cols],
                scales,
            },
            Store::Q4 { nibbles, mins } => Row::Q4 {
                nibbles: &nibbles[r * self.cols / 2..(r + 1) * self.cols / 2],
                scales,
                mins: &mins[r * nb..(r + 1) * nb],
            },
        }
    }

    /// Row `r` as f32, written into `out` (`cols` long).
    ///
    /// # Panics
    /// If `r >= rows` or `out` is not `cols` long (caller bugs).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        crate::kernel::dequantize(self.row(r), out);
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

    /// As [`QMatrix::matmul_t`], with activations as `act` says: [`Activations::Int8`]
    /// quantises a single activation row to int8 blocks for 4-bit weights (llama.cpp's
    /// scheme: bytes times nibbles, half the instructions of widening the nibbles to f32),
    /// adding at most `Σ_k d_k · 15 · max|x_block(k)| / 254` to each product's error.
    ///
    /// # Errors
    /// As [`QMatrix::matmul_t`].
    pub fn matmul_t_with(&self, x: &[f32], n: usize, act: Activations) -> Result<Vec<f32>> {
        self.matmul_t_full(Isa::best(), x, n, act)
    }

    /// As [`QMatrix::matmul_t`] with the kernel built for `isa` at most (the CPU's best if
    /// lower): to compare the builds.
    ///
    /// # Errors
    /// As [`QMatrix::matmul_t`].
    pub fn matmul_t_at(&self, isa: Isa, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.matmul_t_full(isa, x, n, Activations::F32)
    }

    /// As [`QMatrix::matmul_t_with`] with the kernel built for `isa` at most.
    ///
    /// # Errors
    /// As [`QMatrix::matmul_t`].
    pub fn matmul_t_full(
        &self,
        isa: Isa,
        x: &[f32],
        n: usize,
        act: Activations,
    ) -> Result<Vec<f32>> {
        if n == 0 || n.checked_mul(self.cols) != Some(x.len()) {
            return Err(Error::Input {
                len: x.len(),
                n,
                cols: self.cols,
            });
        }
        let mut out = vec![0f32; self.rows * n];
        // 4-bit rows at batch 1 add `m · Σ x` per block: the block sums of x, once.
        let one_q4 = n == 1 && self.format() == Format::Q4;
        let sums: Vec<f32> = if one_q4 {
            x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect()
        } else {
            Vec::new()
        };
        let int8 = (one_q4 && act == Activations::Int8).then(|| quantize_row(x));
        let prep = Prepared {
            x,
            n,
            sums: &sums,
            int8: int8.as_ref().map(|(q, s)| (q.as_slice(), s.as_slice())),
        };
        let threads = rayon::current_num_threads();
        let work = self.rows * self.cols * n;
        if threads <= 1 || work < PARALLEL_MIN {
            simd::rows(isa, self, 0, &prep, &mut out);
        } else {
            // Several chunks per thread so uneven cores even out; at least 8 rows each.
            let per = self.rows.div_ceil(threads * 4).max(8);
            out.par_chunks_mut(per * n)
                .enumerate()
                .for_each(|(c, o)| simd::rows(isa, self, c * per, &prep, o));
        }
        Ok(out)
    }
}

/// One activation row as int8 blocks with f32 scales (the `Q8_0` scheme).
fn quantize_row(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; x.len()];
    let mut s = vec![0f32; x.len() / BLOCK];
    for ((q, s), v) in q
        .chunks_exact_mut(BLOCK)
        .zip(&mut s)
        .zip(x.chunks_exact(BLOCK))
    {
        let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        *s = d;
        if d > 0.0 {
            let inv = 1.0 / d;
            for (q, &x) in q.iter_mut().zip(v) {
                // Round half away from zero without a libm call (this runs per product):
                // |x · inv| <= 127, and `as` truncates toward zero.
                let y = x * inv;
                *q = (y + 0.5f32.copysign(y)) as i8;
            }
        }
    }
    (q, s)
}
