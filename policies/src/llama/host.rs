//! The decoder on int8 weights ([`Llama::quantized`]): everything but attention runs on the
//! host in plain loops over rows — RMSNorm, the int8 projections (`ponder-kernels`), biases,
//! rotary embeddings, SwiGLU, residuals — and only the attention over the KV cache runs as
//! tensor operations. Decoding a token then costs a dozen tensor operations per layer instead
//! of about forty, and two host round trips of a few KB (Q/K/V out, the attention back).
//!
//! It computes what [`Llama::trunk`] computes, in the same order; `tests/suite/quantized.rs`
//! checks the two against each other on the same int8 weights.

use super::*;

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

/// The int8 product `h · Wᵀ` as `[n, out]` rows (the kernels give `[out, n]`).
fn project(w: &Weight, h: &[f32], n: usize) -> Result<Vec<f32>> {
    let Weight::Quant(m) = w else {
        return Err(Error::Model("the host decoder needs int8 weights".into()));
    };
    let y = m.matmul_t(h, n).map_err(|e| Error::Model(e.to_string()))?;
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
        let start = cache.len;
        let Weight::Quant(embed) = &self.embed else {
            return Err(Error::Model("the host decoder needs int8 weights".into()));
        };
        let ids: Vec<usize> = tokens.iter().flatten().map(|&i| i as usize).collect();
        let mut x = embed
            .gather(&ids)
            .map_err(|e| Error::Model(e.to_string()))?;
        // Position of token i of row r: after its real (unpadded) prefix.
        let pos = |r: usize, i: usize| start - cache.pad[r] + i;
        let mask = self.mask(cache, t);
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
        for ((layer, hl), (kc, vc)) in self
            .layers
            .iter()
            .zip(&host.layers)
            .zip(cache.layers.iter_mut())
        {
            let h = rms_norm(&x, &hl.attn_norm, self.cfg.rms_eps);
            let mut qkv = project(&layer.wqkv, &h, n)?;
            let width = d + 2 * kvd;
            if let Some(bias) = &hl.bqkv {
                for row in qkv.chunks_exact_mut(width) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            // Q `[b, nh, t, hd]` (rotated, scaled), K and V `[b, nkv, t, hd]` (K rotated).
            let mut q = vec![0f32; n * d];
            let mut k = vec![0f32; n * kvd];
            let mut v = vec![0f32; n * kvd];
            for r in 0..b {
                for i in 0..t {
                    let row = &qkv[(r * t + i) * width..(r * t + i + 1) * width];
                    let p = pos(r, i);
                    for hh in 0..nh {
                        let dst = ((r * nh + hh) * t + i) * hd;
                        let qv = &mut q[dst..dst + hd];
                        qv.copy_from_slice(&row[hh * hd..(hh + 1) * hd]);
                        rotate(qv, p);
                        qv.iter_mut().for_each(|e| *e *= scale);
                    }
                    for hh in 0..nkv {
                        let dst = ((r * nkv + hh) * t + i) * hd;
                        let kv = &mut k[dst..dst + hd];
                        kv.copy_from_slice(&row[d + hh * hd..d + (hh + 1) * hd]);
                        rotate(kv, p);
                        v[dst..dst + hd]
                            .copy_from_slice(&row[d + kvd + hh * hd..d + kvd + (hh + 1) * hd]);
                    }
                }
            }
            let dev = &self.device;
            let k: Tensor<4> = Tensor::from_data(TensorData::new(k, [b, nkv, t, hd]), dev);
            let v: Tensor<4> = Tensor::from_data(TensorData::new(v, [b, nkv, t, hd]), dev);
            // Heads h·rep..h·rep+rep share key head h: `[b, nh, t, hd]` is `[b, nkv, rep·t, hd]`.
            let q: Tensor<4> = Tensor::from_data(TensorData::new(q, [b, nkv, rep * t, hd]), dev);
            let k_all = Tensor::cat(vec![kc.clone(), k], 2);
            let v_all = Tensor::cat(vec![vc.clone(), v], 2);
            *kc = k_all.clone();
            *vc = v_all.clone();
            let scores = q.matmul(k_all.swap_dims(2, 3));
            let scores = match &mask {
                Some(m) => scores.mask_fill(m.clone(), f32::NEG_INFINITY),
                None => scores,
            };
            // `[b, nh, t, hd]` back on the host, as rows `[b·t, d]`.
            let attn = to_vec(softmax(scores, 3).matmul(v_all))?;
            let mut rows = vec![0f32; n * d];
            for r in 0..b {
                for hh in 0..nh {
                    for i in 0..t {
                        let src = ((r * nh + hh) * t + i) * hd;
                        let dst = (r * t + i) * d + hh * hd;
                        rows[dst..dst + hd].copy_from_slice(&attn[src..src + hd]);
                    }
                }
            }
            let o = project(&layer.wo, &rows, n)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rms_norm(&x, &hl.ffn_norm, self.cfg.rms_eps);
            let gu = project(&layer.w_gate_up, &h, n)?;
            let ffn = self.cfg.ffn;
            let mut act = vec![0f32; n * ffn];
            for (a, row) in act.chunks_exact_mut(ffn).zip(gu.chunks_exact(2 * ffn)) {
                let (g, u) = row.split_at(ffn);
                for ((a, g), u) in a.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            let down = project(&layer.w_down, &act, n)?;
            x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        }
        cache.len = start + t;
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
