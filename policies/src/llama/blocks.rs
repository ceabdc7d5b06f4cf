//! The decoder's blocks: a layer's weights, the trunk (RMSNorm, grouped-query attention with
//! rotary embeddings, SwiGLU MLP, per layer), and the kernels it is built from.

use super::*;

/// A matrix weight in the checkpoint's `[out, in]` layout: a tensor on the model's device, or
/// quantised blocks in host memory multiplied by `ponder-kernels` (CPU backends; see
/// [`Llama::quantized`]).
#[derive(Clone, Debug)]
// A handful of weights per layer: the size difference does not matter, an extra box would.
#[allow(clippy::large_enum_variant)]
pub(super) enum Weight {
    Dense(Tensor<2>),
    Quant(Arc<QMatrix>),
}

impl Weight {
    /// `[out, in]`.
    pub(super) fn dims(&self) -> [usize; 2] {
        match self {
            Weight::Dense(w) => w.dims(),
            Weight::Quant(m) => [m.rows(), m.cols()],
        }
    }

    /// `W · hᵀ` for `h` `[n, in]`: `[out, n]`. With the weight as the matmul's left side, the
    /// CPU kernels stream it without repacking: at batch 8 the 30 layers of SmolLM2 run in
    /// 47 ms this way against 91 ms as `h · W[in, out]` (weights out of cache).
    pub(super) fn apply(&self, h: Tensor<2>) -> Result<Tensor<2>> {
        match self {
            Weight::Dense(w) => Ok(w.clone().matmul(h.transpose())),
            Weight::Quant(m) => quant_product(m, h),
        }
    }

    /// `W · x` for `x` `[in, n]` (activations already transposed): `[out, n]`.
    pub(super) fn apply_t(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        match self {
            Weight::Dense(w) => Ok(w.clone().matmul(x)),
            Weight::Quant(m) => quant_product(m, x.transpose()),
        }
    }

    /// Rows `ids` (an embedding lookup): `[ids.len(), in]`.
    pub(super) fn rows(&self, ids: &[u32], device: &Device) -> Result<Tensor<2>> {
        match self {
            Weight::Dense(w) => {
                let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
                let n = ids.len();
                let ids: Tensor<1, Int> = Tensor::from_data(TensorData::new(ids, [n]), device);
                Ok(w.clone().select(0, ids))
            }
            Weight::Quant(m) => {
                let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                let v = m.gather(&ids).map_err(|e| Error::Model(e.to_string()))?;
                Ok(Tensor::from_data(
                    TensorData::new(v, [ids.len(), m.cols()]),
                    device,
                ))
            }
        }
    }

    /// The values, row-major (dequantised for int8 weights).
    pub(super) fn to_host(&self) -> Result<Vec<f32>> {
        match self {
            Weight::Dense(w) => {
                let [r, c] = w.dims();
                to_vec(w.clone().reshape([r * c]))
            }
            Weight::Quant(m) => Ok(m.dequantize()),
        }
    }

    /// A dense copy on `device` in `dtype` (int8 weights dequantised).
    pub(super) fn dense(&self, dtype: DType, device: &Device) -> Result<Tensor<2>> {
        let w = match self {
            Weight::Dense(w) => w.clone(),
            Weight::Quant(m) => Tensor::from_data(
                TensorData::new(m.dequantize(), [m.rows(), m.cols()]),
                device,
            ),
        };
        Ok(if w.dtype() == dtype { w } else { w.cast(dtype) })
    }

    /// The quantised form of a dense f32 weight on a host device, or `self` when its rows are
    /// not whole blocks (tiny test models) or it is already quantised.
    pub(super) fn quantize(&self, format: Format) -> Result<Weight> {
        let Weight::Dense(w) = self else {
            return Ok(self.clone());
        };
        let [r, c] = w.dims();
        if !c.is_multiple_of(ponder_kernels::BLOCK) {
            return Ok(self.clone());
        }
        let m = QMatrix::quantize(r, c, &self.to_host()?, format)
            .map_err(|e| Error::Model(e.to_string()))?;
        Ok(Weight::Quant(Arc::new(m)))
    }
}

/// `W · hᵀ` on the host with the quantised kernels: `h` `[n, in]` read back (a few KB per token
/// at decode), the product `[out, n]` sent to the device.
fn quant_product(m: &QMatrix, h: Tensor<2>) -> Result<Tensor<2>> {
    let [n, _] = h.dims();
    let device = h.device();
    let x = to_vec(h)?;
    let y = m.matmul_t(&x, n).map_err(|e| Error::Model(e.to_string()))?;
    Ok(Tensor::from_data(
        TensorData::new(y, [m.rows(), n]),
        &device,
    ))
}

/// One decoder block. Linear weights keep the checkpoint's `[out, in]` layout and run as
/// `W · hᵀ` (see [`Weight::apply`]); Q/K/V are one fused matrix, and so are gate/up.
#[derive(Clone, Debug)]
pub(super) struct Layer {
    pub(super) attn_norm: Tensor<1>,
    /// Q, K and V stacked: `[d + 2·kv, d]`.
    pub(super) wqkv: Weight,
    /// Their biases (Qwen2), stacked the same way.
    pub(super) bqkv: Option<Tensor<1>>,
    pub(super) wo: Weight,
    pub(super) ffn_norm: Tensor<1>,
    /// Gate and up stacked: `[2·ffn, d]`.
    pub(super) w_gate_up: Weight,
    pub(super) w_down: Weight,
}

impl Llama {
    /// The decoder up to the final norm: hidden states `[batch · t, d]`, or `[batch, d]` with
    /// `last_only`.
    pub(super) fn trunk(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
        last_only: bool,
        lora: Option<Adapters<'_>>,
    ) -> Result<Tensor<2>> {
        if let Some(a) = lora
            && a.lora.layers.len() != self.layers.len()
        {
            return Err(Error::Model(format!(
                "adapters for {} layers on a model of {}",
                a.lora.layers.len(),
                self.layers.len()
            )));
        }
        let (b, t) = self.check(tokens, cache)?;
        if let Some(host) = &self.host {
            if lora.is_some() {
                return Err(Error::Model(
                    "LoRA adapters run on the tensor decoder: load the model with f32 weights \
                     (`--weights f32`)"
                        .into(),
                ));
            }
            return self.trunk_host(host, tokens, cache, last_only);
        }
        let start = cache.len;
        let (d, hd, nh, nkv) = (
            self.cfg.d_model,
            self.cfg.head_dim(),
            self.cfg.n_heads,
            self.cfg.n_kv_heads,
        );
        let rep = nh / nkv;
        let total = start + t;
        let ids: Vec<u32> = tokens.iter().flatten().copied().collect();
        let mut x: Tensor<3> = self.embed.rows(&ids, &self.device)?.reshape([b, t, d]);
        let padded = cache.pad.iter().any(|&p| p > 0);
        // Rotary tables `[rows, 1, t, head_dim/2]` at each row's own positions (a padded row
        // starts counting after its padding).
        let (cos, sin) = if padded {
            let pos: Vec<i64> = cache
                .pad
                .iter()
                .flat_map(|&p| (start - p..start - p + t).map(|i| i as i64))
                .collect();
            let pos: Tensor<1, Int> =
                Tensor::from_data(TensorData::new(pos, [b * t]), &self.device);
            let half = hd / 2;
            let at = |table: &Tensor<2>| -> Tensor<4> {
                table
                    .clone()
                    .select(0, pos.clone())
                    .reshape([b, 1, t, half])
            };
            (at(&self.cos), at(&self.sin))
        } else {
            let half = hd / 2;
            let at = |table: &Tensor<2>| -> Tensor<4> {
                table.clone().narrow(0, start, t).reshape([1, 1, t, half])
            };
            (at(&self.cos), at(&self.sin))
        };
        let mask = self.mask(cache, t);
        let scale = 1.0 / (hd as f32).sqrt();
        for (li, (layer, (kc, vc))) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let ad = lora.map(|a| (&a.lora.layers[li], a.scale));
            let h: Tensor<2> =
                rms_norm(x.clone(), &layer.attn_norm, self.cfg.rms_eps).reshape([b * t, d]);
            // `[d + 2·kv, b·t]`: Q, K, V are row ranges.
            let kvd = nkv * hd;
            let delta = ad.and_then(|(l, scale)| {
                fused_delta(
                    l,
                    &[(Target::Q, d), (Target::K, kvd), (Target::V, kvd)],
                    &h.clone().transpose(),
                    scale,
                )
            });
            let qkv = layer.wqkv.apply(h)?;
            let qkv = match delta {
                Some(dq) => qkv + dq,
                None => qkv,
            };
            let qkv = match &layer.bqkv {
                Some(bias) => qkv + bias.clone().unsqueeze_dim(1),
                None => qkv,
            };
            let heads = |from: usize, len: usize, n: usize| -> Tensor<4> {
                qkv.clone()
                    .narrow(0, from, len)
                    .transpose()
                    .reshape([b, t, n, hd])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (
                heads(0, d, nh),
                heads(d, kvd, nkv),
                heads(d + kvd, kvd, nkv),
            );
            let q = self.rotate(q, &cos, &sin);
            let k = self.rotate(k, &cos, &sin);
            let k_all = Tensor::cat(vec![kc.clone(), k], 2);
            let v_all = Tensor::cat(vec![vc.clone(), v], 2);
            *kc = k_all.clone();
            *vc = v_all.clone();
            // Heads h·rep..h·rep+rep share key head h: `[b, nh, t, hd]` -> `[b, nkv, rep·t, hd]`.
            let q: Tensor<4> = q.reshape([b, nkv, rep * t, hd]);
            let scores = q.matmul(k_all.swap_dims(2, 3)).mul_scalar(scale);
            let scores = match &mask {
                Some(m) => scores.mask_fill(m.clone(), f32::NEG_INFINITY),
                None => scores,
            };
            let attn = softmax(scores, 3).matmul(v_all).reshape([b, nh, t, hd]);
            let attn: Tensor<2> = attn.swap_dims(1, 2).reshape([b * t, d]);
            let delta = ad.and_then(|(l, scale)| {
                fused_delta(l, &[(Target::O, d)], &attn.clone().transpose(), scale)
            });
            let o = layer.wo.apply(attn)?;
            let o = match delta {
                Some(dl) => o + dl,
                None => o,
            };
            x = x + o.transpose().reshape([b, t, d]);
            let h: Tensor<2> =
                rms_norm(x.clone(), &layer.ffn_norm, self.cfg.rms_eps).reshape([b * t, d]);
            // `[2·ffn, b·t]`: gate rows, then up rows; the product stays transposed into the
            // down projection (`W_down · (g ⊙ u)`, no transposes in between).
            let ffn = self.cfg.ffn;
            let delta = ad.and_then(|(l, scale)| {
                fused_delta(
                    l,
                    &[(Target::Gate, ffn), (Target::Up, ffn)],
                    &h.clone().transpose(),
                    scale,
                )
            });
            let gu = layer.w_gate_up.apply(h)?;
            let gu = match delta {
                Some(dl) => gu + dl,
                None => gu,
            };
            let act = silu(gu.clone().narrow(0, 0, ffn)) * gu.narrow(0, ffn, ffn);
            let delta = ad.and_then(|(l, scale)| fused_delta(l, &[(Target::Down, d)], &act, scale));
            let down = layer.w_down.apply_t(act)?;
            let down = match delta {
                Some(dl) => down + dl,
                None => down,
            };
            x = x + down.transpose().reshape([b, t, d]);
        }
        cache.len = total;
        let x = if last_only && t > 1 {
            x.narrow(1, t - 1, 1)
        } else {
            x
        };
        let rows = x.dims()[0] * x.dims()[1];
        Ok(rms_norm(x, &self.norm, self.cfg.rms_eps).reshape([rows, d]))
    }

    /// Checks a forward's input against the model and the cache: `(batch, new tokens)`.
    pub(super) fn check(&self, tokens: &[Vec<u32>], cache: &KvCache) -> Result<(usize, usize)> {
        let b = tokens.len();
        let t = tokens.first().map_or(0, Vec::len);
        let bad = Error::Model;
        if b == 0 || t == 0 || tokens.iter().any(|s| s.len() != t) {
            return Err(bad(
                "forward needs a non-empty batch of equal-length sequences".into(),
            ));
        }
        if cache.host.is_some() != self.host.is_some() {
            return Err(bad(
                "a KV cache from another model (caches come from `new_cache` of the same model)"
                    .into(),
            ));
        }
        if b != cache.batch() {
            return Err(bad(format!(
                "a batch of {b} sequences against a cache of {}",
                cache.batch()
            )));
        }
        if let Some(&id) = tokens
            .iter()
            .flatten()
            .find(|&&id| id as usize >= self.cfg.vocab)
        {
            return Err(bad(format!(
                "token id {id} is outside the vocabulary ({})",
                self.cfg.vocab
            )));
        }
        let longest = (0..b).map(|r| cache.row_len(r)).max().unwrap_or(0) + t;
        if longest > self.cfg.max_seq {
            return Err(bad(format!(
                "sequence of {longest} tokens is longer than the model's {}",
                self.cfg.max_seq
            )));
        }
        Ok((b, t))
    }

    /// The attention mask of `t` new positions after what `cache` holds, `[rows, kv_heads,
    /// rep·t, total]`, true where masked: query i of row r sees keys pad[r]..=start+i. The
    /// query heads sharing a key head are stacked along the query axis (`rep` groups of `t`),
    /// so grouped-query attention needs no copies of K/V. `None` when nothing is masked (one
    /// new position, no padding).
    pub(super) fn mask(&self, cache: &KvCache, t: usize) -> Option<Tensor<4, Bool>> {
        let (b, start) = (cache.batch(), cache.len);
        let total = start + t;
        let nkv = self.cfg.n_kv_heads;
        let rep = self.cfg.n_heads / nkv;
        let padded = cache.pad.iter().any(|&p| p > 0);
        (padded || t > 1).then(|| {
            let mut m = Vec::with_capacity(b * rep * t * total);
            for &p in &cache.pad {
                for _ in 0..rep {
                    for i in 0..t {
                        m.extend((0..total).map(|j| j < p || j > start + i));
                    }
                }
            }
            Tensor::<4, Bool>::from_data(TensorData::new(m, [b, 1, rep * t, total]), &self.device)
                .expand([b, nkv, rep * t, total])
        })
    }

    /// Applies rotary embeddings to `[batch, heads, t, head_dim]` for positions given by the
    /// `[batch or 1, 1, t, head_dim/2]` tables.
    pub(super) fn rotate(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, hd] = x.dims();
        let half = hd / 2;
        let (cos, sin) = (cos.clone(), sin.clone());
        match self.cfg.rope {
            Rope::Interleaved => {
                let pairs: Tensor<5> = x.reshape([b, h, t, half, 2]);
                let x0: Tensor<4> = pairs
                    .clone()
                    .slice([0..b, 0..h, 0..t, 0..half, 0..1])
                    .reshape([b, h, t, half]);
                let x1: Tensor<4> = pairs
                    .slice([0..b, 0..h, 0..t, 0..half, 1..2])
                    .reshape([b, h, t, half]);
                let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
                let r1 = x0 * sin + x1 * cos;
                Tensor::cat(vec![r0.unsqueeze_dim::<5>(4), r1.unsqueeze_dim::<5>(4)], 4)
                    .reshape([b, h, t, hd])
            }
            Rope::Half => {
                let x0 = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
                let x1 = x.slice([0..b, 0..h, 0..t, half..hd]);
                let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
                let r1 = x0 * sin + x1 * cos;
                Tensor::cat(vec![r0, r1], 3)
            }
        }
    }
}

/// RMS norm; in F32 even for a half-precision model (squares of large activations overflow
/// F16, and BF16 loses the mean's precision).
fn rms_norm(x: Tensor<3>, weight: &Tensor<1>, eps: f32) -> Tensor<3> {
    let dtype = x.dtype();
    if dtype != DType::F32 {
        let y = rms_norm(x.cast(DType::F32), &weight.clone().cast(DType::F32), eps);
        return y.cast(dtype);
    }
    let var = x.clone().powf_scalar(2.0).mean_dim(2);
    let inv = (var + eps).sqrt().recip();
    x * inv * weight.clone().unsqueeze()
}

pub(super) fn rope_tables(cfg: &LlamaConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = cfg.head_dim() / 2;
    let mut cos = Vec::with_capacity(cfg.max_seq * half);
    let mut sin = Vec::with_capacity(cfg.max_seq * half);
    for pos in 0..cfg.max_seq {
        for i in 0..half {
            let theta = f64::from(cfg.rope_base).powf(-2.0 * i as f64 / cfg.head_dim() as f64);
            let a = pos as f64 * theta;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [cfg.max_seq, half]), device),
        Tensor::from_data(TensorData::new(sin, [cfg.max_seq, half]), device),
    )
}
