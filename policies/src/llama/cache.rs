//! The per-sequence KV cache: rows that join, split and drop as batches change.

use super::*;

/// Keys and values of every layer for one batch of sequences: `[batch, kv_heads, len, head_dim]`.
///
/// Rows may hold sequences of different lengths: a shorter one is padded on the left, and
/// `pad[r]` says how many of row `r`'s leading positions are padding (masked out of attention and
/// skipped by the rotary positions). `len` counts padding too.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(super) layers: Vec<(Tensor<4>, Tensor<4>)>,
    pub(super) len: usize,
    pub(super) pad: Vec<usize>,
}

impl KvCache {
    /// Cached positions, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows (sequences).
    pub fn batch(&self) -> usize {
        self.pad.len()
    }

    /// The real (unpadded) length of row `r`.
    pub fn row_len(&self, r: usize) -> usize {
        self.len - self.pad[r]
    }

    /// The same cache for `n` copies of each sequence (batch `b` becomes `b·n`): candidates that
    /// share a prefix decode together.
    pub fn repeat(&self, n: usize) -> KvCache {
        KvCache::join(&[(self, n)])
    }

    /// One cache for many: each part's rows repeated `n` times, in order, the shorter parts
    /// padded on the left to the longest. Paths of different lengths (from one tree or many)
    /// then decode in one batch.
    ///
    /// # Panics
    /// Never for caches of one model; parts from models of different shapes are a caller bug
    /// that Burn reports when concatenating.
    pub fn join(parts: &[(&KvCache, usize)]) -> KvCache {
        let len = parts.iter().map(|(c, _)| c.len).max().unwrap_or(0);
        let n_layers = parts.first().map_or(0, |(c, _)| c.layers.len());
        let mut pad = Vec::new();
        for (c, n) in parts {
            for _ in 0..*n {
                pad.extend(c.pad.iter().map(|p| p + len - c.len));
            }
        }
        let layers = (0..n_layers)
            .map(|l| {
                let side = |pick: fn(&(Tensor<4>, Tensor<4>)) -> &Tensor<4>| -> Tensor<4> {
                    let rows: Vec<Tensor<4>> = parts
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(c, n)| {
                            let t = pick(&c.layers[l]).clone();
                            let t = if *n == 1 { t } else { t.repeat_dim(0, *n) };
                            let extra = len - c.len;
                            if extra == 0 {
                                t
                            } else {
                                let [b, h, _, d] = t.dims();
                                let z = Tensor::<4>::zeros([b, h, extra, d], &t.device());
                                let z = if t.dtype() == z.dtype() {
                                    z
                                } else {
                                    z.cast(t.dtype())
                                };
                                Tensor::cat(vec![z, t], 2)
                            }
                        })
                        .collect();
                    if rows.len() == 1 {
                        rows.into_iter().next().expect("one part")
                    } else {
                        Tensor::cat(rows, 0)
                    }
                };
                (side(|kv| &kv.0), side(|kv| &kv.1))
            })
            .collect();
        KvCache { layers, len, pad }
    }

    /// Keeps only the rows in `rows` (in that order): finished sequences leave the batch.
    pub fn select_rows(&self, rows: &[usize]) -> KvCache {
        let device = self.layers.first().map(|(k, _)| k.device());
        let mut pad: Vec<usize> = rows.iter().map(|&r| self.pad[r]).collect();
        let Some(device) = device else {
            return KvCache {
                layers: Vec::new(),
                len: self.len,
                pad,
            };
        };
        // Columns every kept row pads can go.
        let drop = pad.iter().copied().min().unwrap_or(0);
        pad.iter_mut().for_each(|p| *p -= drop);
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(idx, [rows.len()]), &device);
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| {
                let cut = |t: &Tensor<4>| {
                    let t = t.clone().select(0, idx.clone());
                    if drop == 0 {
                        t
                    } else {
                        t.narrow(2, drop, self.len - drop)
                    }
                };
                (cut(k), cut(v))
            })
            .collect();
        KvCache {
            layers,
            len: self.len - drop,
            pad,
        }
    }
}
