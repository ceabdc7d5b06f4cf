//! The decoder on int8 weights ([`Llama::quantized`]): everything but attention runs on the
//! host in plain loops over rows — RMSNorm, the int8 projections (`ponder-kernels`), biases,
//! rotary embeddings, SwiGLU, residuals — and only the attention over the KV cache runs as
//! tensor operations. Decoding a token then costs a dozen tensor operations per layer instead
//! of about forty, and two host round trips of a few KB (Q/K/V out, the attention back).
//!
//! It computes what [`Llama::trunk`] computes, in the same order; `tests/suite/quantized.rs`
//! checks the two against each other on the same int8 weights.

use super::cache::HostRow;
use super::*;
use ponder_kernels::{Activations, Segment, attend};
use rayon::prelude::*;

/// The host-side parameters besides the int8 matrices: norms, biases, rotary tables.
#[derive(Debug)]
pub(super) struct HostParts {
    pub(super) layers: Vec<HostLayer>,
    pub(super) norm: Vec<f32>,
    /// `[max_seq, head_dim / 2]`.
    pub(super) cos: Vec<f32>,
    pub(super) sin: Vec<f32>,
}

#[derive(Debug)]
pub(super) struct HostLayer {
    pub(super) attn_norm: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) bqkv: Option<Vec<f32>>,
}

impl HostParts {
    pub(super) fn new(m: &Llama) -> Result<HostParts> {
        Ok(HostParts {
            layers: m
                .layers
                .iter()
                .map(|l| {
                    Ok(HostLayer {
                        attn_norm: to_vec(l.attn_norm.clone())?,
                        ffn_norm: to_vec(l.ffn_norm.clone())?,
                        bqkv: l.bqkv.clone().map(to_vec).transpose()?,
                    })
                })
                .collect::<Result<_>>()?,
            norm: to_vec(m.norm.clone())?,
            cos: to_vec(m.cos.clone())?,
            sin: to_vec(m.sin.clone())?,
        })
    }
}

/// Row-wise RMSNorm of `x` (`[rows, d]`).
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0f32; x.len()];
    for (o, r) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in o.iter_mut().zip(r).zip(w) {
            *o = v * inv * g;
        }
    }
    out
}

/// The quantised product `h · Wᵀ` as `[n, out]` rows (the kernels give `[out, n]`).
fn project(w: &Weight, h: &[f32], n: usize, act: Activations) -> Result<Vec<f32>> {
    let Weight::Quant(m) = w else {
        return Err(Error::Model("the host decoder needs int8 weights".into()));
    };
    let y = m
        .matmul_t_with(h, n, act)
        .map_err(|e| Error::Model(e.to_string()))?;
    if n == 1 {
        return Ok(y);
    }
    let rows = m.rows();
    let mut out = vec![0f32; y.len()];
    for (r, col) in y.chunks_exact(n).enumerate() {
        for (j, v) in col.iter().enumerate() {
            out[j * rows + r] = *v;
        }
    }
    Ok(out)
}

impl Llama {
    /// [`Llama::trunk`] on int8 weights without adapters (see the module docs).
    pub(super) fn trunk_host(
        &self,
        host: &HostParts,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
        last_only: bool,
    ) -> Result<Tensor<2>> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let n = b * t;
        let (d, hd, nh, nkv) = (
            self.cfg.d_model,
            self.cfg.head_dim(),
            self.cfg.n_heads,
            self.cfg.n_kv_heads,
        );
        let (half, kvd, rep) = (hd / 2, nkv * hd, nh / nkv);
        let Weight::Quant(embed) = &self.embed else {
            return Err(Error::Model(
                "the host decoder needs quantised weights".into(),
            ));
        };
        let Some(rows) = cache.host.as_mut() else {
            return Err(Error::Model(
                "a tensor KV cache given to the host decoder (caches come from `new_cache` of \
                 the same model)"
                    .into(),
            ));
        };
        let ids: Vec<usize> = tokens.iter().flatten().map(|&i| i as usize).collect();
        let mut x = embed
            .gather(&ids)
            .map_err(|e| Error::Model(e.to_string()))?;
        // Each row's own link, ready to take the new tokens (shared prefixes stay untouched).
        let mut rows: Vec<&mut HostRow> = rows.iter_mut().map(HostRow::for_append).collect();
        // Position of token i of row r: after its real (unpadded) prefix.
        let before: Vec<usize> = rows.iter().map(|r| r.total).collect();
        // The softmax scale, folded into the queries.
        let scale = 1.0 / (hd as f32).sqrt();
        let rotate = |v: &mut [f32], p: usize| {
            let (cos, sin) = (
                &host.cos[p * half..(p + 1) * half],
                &host.sin[p * half..(p + 1) * half],
            );
            for i in 0..half {
                let (a, c) = match self.cfg.rope {
                    Rope::Interleaved => (2 * i, 2 * i + 1),
                    Rope::Half => (i, i + half),
                };
                let (x0, x1) = (v[a], v[c]);
                v[a] = x0 * cos[i] - x1 * sin[i];
                v[c] = x0 * sin[i] + x1 * cos[i];
            }
        };
        let mut scores = Vec::new();
        for (li, (layer, hl)) in self.layers.iter().zip(&host.layers).enumerate() {
            let h = rms_norm(&x, &hl.attn_norm, self.cfg.rms_eps);
            let mut qkv = project(&layer.wqkv, &h, n, self.activations)?;
            let width = d + 2 * kvd;
            if let Some(bias) = &hl.bqkv {
                for row in qkv.chunks_exact_mut(width) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            // Rotate Q (and scale it) and K in place; append K and V to each row's link.
            for (r, row) in rows.iter_mut().enumerate() {
                let (ks, vs) = &mut row.own[li];
                for i in 0..t {
                    let at = (r * t + i) * width;
                    let p = before[r] + i;
                    let qkv_row = &mut qkv[at..at + width];
                    for q in qkv_row[..d].chunks_exact_mut(hd) {
                        rotate(q, p);
                        q.iter_mut().for_each(|e| *e *= scale);
                    }
                    for k in qkv_row[d..d + kvd].chunks_exact_mut(hd) {
                        rotate(k, p);
                    }
                    ks.extend_from_slice(&qkv_row[d..d + kvd]);
                    vs.extend_from_slice(&qkv_row[d + kvd..]);
                }
            }
            // Attention, each query head over its key/value head (heads h·rep..h·rep+rep share
            // head h), each new token over its row's positions up to its own.
            let mut attn = vec![0f32; n * d];
            let qkv = &qkv;
            let (before, rows_ref) = (&before, &rows);
            let one_row = |r: usize, out_rows: &mut [f32], scores: &mut Vec<f32>| {
                let segments: Vec<Segment<'_>> = rows_ref[r]
                    .links()
                    .into_iter()
                    .map(|link| Segment {
                        keys: &link.own[li].0,
                        values: &link.own[li].1,
                    })
                    .collect();
                for (i, out) in out_rows.chunks_exact_mut(d).enumerate() {
                    let at = r * t + i;
                    let q = &qkv[at * width..at * width + d];
                    for hh in 0..nh {
                        let g = hh / rep;
                        attend(
                            &q[hh * hd..(hh + 1) * hd],
                            &segments,
                            kvd,
                            g * hd,
                            before[r] + i + 1,
                            &mut out[hh * hd..(hh + 1) * hd],
                            scores,
                        );
                    }
                }
            };
            if b > 1 {
                // Rows in parallel: each writes its own `t` output rows.
                attn.par_chunks_mut(t * d)
                    .enumerate()
                    .for_each_init(Vec::new, |scores, (r, out)| one_row(r, out, scores));
            } else {
                one_row(0, &mut attn, &mut scores);
            }
            let rows_out = attn;
            let o = project(&layer.wo, &rows_out, n, self.activations)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rms_norm(&x, &hl.ffn_norm, self.cfg.rms_eps);
            let gu = project(&layer.w_gate_up, &h, n, self.activations)?;
            let ffn = self.cfg.ffn;
            let mut act = vec![0f32; n * ffn];
            for (a, row) in act.chunks_exact_mut(ffn).zip(gu.chunks_exact(2 * ffn)) {
                let (g, u) = row.split_at(ffn);
                for ((a, g), u) in a.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            let down = project(&layer.w_down, &act, n, self.activations)?;
            x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        }
        for row in rows {
            row.own_len += t;
            row.total += t;
        }
        cache.len += t;
        let (x, rows) = if last_only && t > 1 {
            let mut last = Vec::with_capacity(b * d);
            for r in 0..b {
                last.extend_from_slice(&x[((r + 1) * t - 1) * d..(r + 1) * t * d]);
            }
            (last, b)
        } else {
            (x, n)
        };
        let x = rms_norm(&x, &host.norm, self.cfg.rms_eps);
        Ok(Tensor::from_data(
            TensorData::new(x, [rows, d]),
            &self.device,
        ))
    }
}
