//! The per-sequence KV cache: rows that join, split and drop as batches change.

use super::*;

/// Keys and values of every layer for one batch of sequences: `[batch, kv_heads, len, head_dim]`
/// tensors, or (for a model on quantised weights, whose decoder runs on the host) one
/// `HostRow` per sequence.
///
/// Rows may hold sequences of different lengths: a shorter one is padded on the left, and
/// `pad[r]` says how many of row `r`'s leading positions are padding (masked out of attention and
/// skipped by the rotary positions). `len` counts padding too. (Host rows are never padded in
/// memory; `pad` then only records the lengths.)
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(super) layers: Vec<(Tensor<4>, Tensor<4>)>,
    /// The host rows, when the cache belongs to a host decoder (`layers` is then empty).
    pub(super) host: Option<Vec<Arc<HostRow>>>,
    pub(super) len: usize,
    pub(super) pad: Vec<usize>,
}

/// One sequence's keys and values on the host, per layer `[tokens, kv_heads · head_dim]`
/// each, as a chain: the tokens of `parent` (shared, immutable: a prefix other rows and cached
/// tree nodes hold too), then this row's own. Joining, repeating and selecting rows copies
/// nothing; a row shared when a forward appends to it gets a fresh link on top instead of a
/// copy ([`HostRow::for_append`]).
#[derive(Debug, Default)]
pub(super) struct HostRow {
    pub(super) parent: Option<Arc<HostRow>>,
    /// Per layer: this link's keys and values.
    pub(super) own: Vec<(Vec<f32>, Vec<f32>)>,
    /// Tokens in this link.
    pub(super) own_len: usize,
    /// Tokens in the whole chain.
    pub(super) total: usize,
    /// Links in the chain (1 for a row without parent).
    pub(super) depth: usize,
}

/// Beyond this many links a row is flattened into one before appending (attention walks the
/// links; a search that caches every node would otherwise grow chains as deep as the tree).
const MAX_LINKS: usize = 12;

impl HostRow {
    pub(super) fn empty(layers: usize) -> HostRow {
        HostRow {
            parent: None,
            own: vec![(Vec::new(), Vec::new()); layers],
            own_len: 0,
            total: 0,
            depth: 1,
        }
    }

    /// The row ready to take new tokens without touching what others share: itself when no
    /// one else holds it, else a new link on top of it (or one flat copy when the chain is
    /// long).
    pub(super) fn for_append(row: &mut Arc<HostRow>) -> &mut HostRow {
        if Arc::get_mut(row).is_none() {
            let layers = row.own.len();
            let fresh = if row.depth >= MAX_LINKS {
                row.flattened()
            } else {
                HostRow {
                    parent: Some(row.clone()),
                    own: vec![(Vec::new(), Vec::new()); layers],
                    own_len: 0,
                    total: row.total,
                    depth: row.depth + 1,
                }
            };
            *row = Arc::new(fresh);
        }
        Arc::get_mut(row).expect("a row no one else holds")
    }

    /// One link with the chain's tokens.
    fn flattened(&self) -> HostRow {
        let layers = self.own.len();
        let mut own = vec![(Vec::new(), Vec::new()); layers];
        for (l, (k, v)) in own.iter_mut().enumerate() {
            for link in self.links() {
                k.extend_from_slice(&link.own[l].0);
                v.extend_from_slice(&link.own[l].1);
            }
        }
        HostRow {
            parent: None,
            own,
            own_len: self.total,
            total: self.total,
            depth: 1,
        }
    }

    /// The links from the oldest to this one.
    pub(super) fn links(&self) -> Vec<&HostRow> {
        let mut v = Vec::with_capacity(self.depth);
        let mut at = Some(self);
        while let Some(r) = at {
            v.push(r);
            at = r.parent.as_deref();
        }
        v.reverse();
        v
    }
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
        if parts.first().is_some_and(|(c, _)| c.host.is_some()) {
            // Host rows: shared, not copied.
            let mut rows = Vec::new();
            for (c, n) in parts {
                for _ in 0..*n {
                    rows.extend(c.host.iter().flatten().cloned());
                }
            }
            return KvCache {
                layers: Vec::new(),
                host: Some(rows),
                len,
                pad,
            };
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
        KvCache {
            layers,
            host: None,
            len,
            pad,
        }
    }

    /// Keeps only the rows in `rows` (in that order): finished sequences leave the batch.
    pub fn select_rows(&self, rows: &[usize]) -> KvCache {
        let device = self.layers.first().map(|(k, _)| k.device());
        let mut pad: Vec<usize> = rows.iter().map(|&r| self.pad[r]).collect();
        if let Some(host) = &self.host {
            let drop = pad.iter().copied().min().unwrap_or(0);
            pad.iter_mut().for_each(|p| *p -= drop);
            return KvCache {
                layers: Vec::new(),
                host: Some(rows.iter().map(|&r| host[r].clone()).collect()),
                len: self.len - drop,
                pad,
            };
        }
        let Some(device) = device else {
            return KvCache {
                layers: Vec::new(),
                host: None,
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
            host: None,
            len: self.len - drop,
            pad,
        }
    }
}
