//! A Llama-family decoder on Burn 0.22 (RMSNorm, rotary embeddings in both layouts, grouped-query
//! attention, SwiGLU, tied or untied embeddings) with a per-sequence KV cache, loaded from GGUF.
//!
//! Tensors are plain `Tensor<D>`: the [`Device`] picks the backend at run time (`flex` by default
//! on CPU, `ndarray` selectable).

use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::{silu, softmax};

use std::path::Path;
use std::sync::Arc;

use ponder_kernels::{Activations, Format, QMatrix};

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::lora::{Adapters, Target, fused_delta};

mod blocks;
mod cache;
mod export;
mod host;
mod load;

use blocks::*;
pub use cache::KvCache;
pub use ponder_formats::shape::{LlamaConfig, Rope};

/// The decoder with its weights.
#[derive(Clone, Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    device: Device,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Tensor<1>,
    /// Output projection, `[vocab, d]` (the embedding itself when tied).
    lm_head: Weight,
    /// Whether the output projection is the embedding.
    tied: bool,
    cos: Tensor<2>,
    sin: Tensor<2>,
    /// Set by [`Llama::quantized`] when every matrix is int8: the host decoder's parameters.
    host: Option<Arc<host::HostParts>>,
    /// How the host decoder's single-row products take their activations.
    activations: Activations,
}

impl Llama {
    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The floating-point type the model computes in (F32 unless [`Llama::cast`]).
    pub fn dtype(&self) -> DType {
        self.norm.dtype()
    }

    /// The format of the decoder blocks' matrices when they are quantised blocks in host
    /// memory ([`Llama::quantized`]), `None` when they are tensors.
    pub fn quantization(&self) -> Option<Format> {
        match &self.layers.first().map_or(&self.lm_head, |l| &l.w_down) {
            Weight::Quant(m) => Some(m.format()),
            Weight::Dense(_) => None,
        }
    }

    /// Whether the matrix weights are quantised blocks in host memory.
    pub fn is_quantized(&self) -> bool {
        self.quantization().is_some()
    }

    /// Bytes the weights hold (matrices, norms and biases; the rotary tables excluded).
    pub fn weight_bytes(&self) -> usize {
        let el = self.dtype().size();
        let w = |w: &Weight| match w {
            Weight::Dense(t) => t.dims()[0] * t.dims()[1] * el,
            Weight::Quant(m) => m.bytes(),
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                w(&l.wqkv)
                    + w(&l.wo)
                    + w(&l.w_gate_up)
                    + w(&l.w_down)
                    + (2 * self.cfg.d_model + l.bqkv.as_ref().map_or(0, |b| b.dims()[0])) * el
            })
            .sum();
        w(&self.embed)
            + if self.tied { 0 } else { w(&self.lm_head) }
            + layers
            + self.cfg.d_model * el
    }

    /// This model with every matrix weight (embedding, projections, output head) stored as
    /// quantised blocks in host memory (`Q8`: int8, 3.6x less memory than f32; `Q4`: 4-bit,
    /// 5.3x less, exact for a `Q4_1`/`Q4_K` checkpoint) and multiplied by the kernels of
    /// `ponder-kernels` over all cores; everything but attention then runs on the host
    /// (`host.rs`). Decoding reads every weight once per token, so it runs 2-3x faster than on
    /// f32 tensors. Norms, biases, the KV cache and attention stay in f32. A weight whose rows
    /// are not whole 32-value blocks stays dense (and the tensor decoder runs).
    ///
    /// # Errors
    /// A device other than a plain CPU one (`flex` or `ndarray`): the kernels run on the host
    /// and do not record autodiff graphs, so GPU and training devices keep dense weights.
    pub fn quantized(&self, format: Format) -> Result<Llama> {
        self.quantized_parts(format, format)
    }

    /// This model with the host decoder's single-row products (decoding one sequence) taking
    /// their activations as `activations` says: `F32` (the default: the product of the
    /// dequantised weights, so a sequence decodes to the same logits alone or in a batch) or
    /// `Int8` (4-bit weights times int8 activations, llama.cpp's scheme: about 10% faster at
    /// batch 1 here, but on SmolLM2 its logits are 8.5% off the f32 ones in RMS — activation
    /// outliers share blocks with small values — against 2e-6 for `F32`).
    pub fn with_activations(mut self, activations: Activations) -> Llama {
        self.activations = activations;
        self
    }

    /// As [`Llama::quantized`] with one format for the decoder blocks' matrices and another
    /// for the embedding and output head (checkpoints often keep those at 8 bits when the
    /// blocks are at 4).
    ///
    /// # Errors
    /// As [`Llama::quantized`].
    pub fn quantized_parts(&self, blocks: Format, embedding: Format) -> Result<Llama> {
        // Device equality ignores autodiff: check it separately.
        let host = !self.device.is_autodiff()
            && (self.device == Device::flex() || {
                #[allow(deprecated)] // the ndarray backend is selectable; see backend.rs
                let nd = Device::ndarray();
                self.device == nd
            });
        if !host || self.dtype() != DType::F32 {
            return Err(Error::Model(format!(
                "quantised weights need an f32 model on a CPU backend (flex or ndarray), not {:?} in {:?}",
                self.device,
                self.dtype()
            )));
        }
        let embed = self.embed.quantize(embedding)?;
        let mut q = Llama {
            cfg: self.cfg.clone(),
            device: self.device.clone(),
            lm_head: if self.tied {
                embed.clone()
            } else {
                self.lm_head.quantize(embedding)?
            },
            embed,
            layers: self
                .layers
                .iter()
                .map(|l| {
                    Ok(Layer {
                        wqkv: l.wqkv.quantize(blocks)?,
                        wo: l.wo.quantize(blocks)?,
                        w_gate_up: l.w_gate_up.quantize(blocks)?,
                        w_down: l.w_down.quantize(blocks)?,
                        ..l.clone()
                    })
                })
                .collect::<Result<_>>()?,
            norm: self.norm.clone(),
            tied: self.tied,
            cos: self.cos.clone(),
            sin: self.sin.clone(),
            host: None,
            activations: Activations::F32,
        };
        let all = |l: &Layer| {
            [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down]
                .iter()
                .all(|w| matches!(w, Weight::Quant(_)))
        };
        if q.is_quantized() && matches!(q.embed, Weight::Quant(_)) && q.layers.iter().all(all) {
            q.host = Some(Arc::new(host::HostParts::new(&q)?));
        }
        Ok(q)
    }

    /// A copy with every weight and the rotary tables stored in `dtype` (F16 or BF16 for
    /// mixed-precision training: activations then run in `dtype`, norms and the adapters'
    /// updates in F32, see [`crate::lora`]). The copy shares nothing with `self`; int8
    /// weights come back dense.
    ///
    /// # Errors
    /// Reading an int8 weight back failed (never for a loaded model).
    pub fn cast(&self, dtype: DType) -> Result<Llama> {
        let dev = &self.device;
        let c = |w: &Weight| -> Result<Weight> { Ok(Weight::Dense(w.dense(dtype, dev)?)) };
        let c1 = |t: &Tensor<1>| t.clone().cast(dtype);
        let embed = c(&self.embed)?;
        Ok(Llama {
            cfg: self.cfg.clone(),
            device: self.device.clone(),
            lm_head: if self.tied {
                embed.clone()
            } else {
                c(&self.lm_head)?
            },
            embed,
            layers: self
                .layers
                .iter()
                .map(|l| {
                    Ok(Layer {
                        attn_norm: c1(&l.attn_norm),
                        wqkv: c(&l.wqkv)?,
                        bqkv: l.bqkv.as_ref().map(c1),
                        wo: c(&l.wo)?,
                        ffn_norm: c1(&l.ffn_norm),
                        w_gate_up: c(&l.w_gate_up)?,
                        w_down: c(&l.w_down)?,
                    })
                })
                .collect::<Result<_>>()?,
            norm: c1(&self.norm),
            tied: self.tied,
            cos: self.cos.clone().cast(dtype),
            sin: self.sin.clone().cast(dtype),
            host: None,
            activations: self.activations,
        })
    }

    /// An empty cache for `batch` sequences.
    pub fn new_cache(&self, batch: usize) -> KvCache {
        if self.host.is_some() {
            let row = Arc::new(cache::HostRow::empty(self.cfg.n_layers));
            return KvCache {
                layers: Vec::new(),
                host: Some(vec![row; batch]),
                len: 0,
                pad: vec![0; batch],
            };
        }
        let hd = self.cfg.head_dim();
        let dtype = self.dtype();
        let empty = || {
            let z = Tensor::<4>::zeros([batch, self.cfg.n_kv_heads, 0, hd], &self.device);
            if dtype == DType::F32 {
                z
            } else {
                z.cast(dtype)
            }
        };
        KvCache {
            layers: (0..self.cfg.n_layers).map(|_| (empty(), empty())).collect(),
            host: None,
            len: 0,
            pad: vec![0; batch],
        }
    }

    /// Runs `tokens` (`[batch][t]`, equal lengths) after what `cache` holds, appends their keys
    /// and values to it, and returns the logits of every new position, `[batch, t, vocab]`.
    ///
    /// # Errors
    /// A token id outside the vocabulary, ragged batches, a batch that does not match the
    /// cache's, or a sequence longer than `max_seq`.
    pub fn forward(&self, tokens: &[Vec<u32>], cache: &mut KvCache) -> Result<Tensor<3>> {
        let t = tokens.first().map_or(0, Vec::len);
        let hidden = self.trunk(tokens, cache, false, None)?;
        Ok(self
            .logits(hidden)?
            .reshape([tokens.len(), t, self.cfg.vocab]))
    }

    /// As [`Llama::forward`], but only the logits of each row's last new position,
    /// `[batch, vocab]`: the output projection (the model's largest matmul) runs on `batch`
    /// positions instead of `batch · t`.
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn forward_last(&self, tokens: &[Vec<u32>], cache: &mut KvCache) -> Result<Tensor<2>> {
        self.logits(self.trunk(tokens, cache, true, None)?)
    }

    /// As [`Llama::forward_last`], also returning each row's last hidden state (after the final
    /// norm), `[batch, d_model]`: the features the critics' heads read.
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn forward_last_hidden(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
    ) -> Result<(Tensor<2>, Tensor<2>)> {
        let hidden = self.trunk(tokens, cache, true, None)?;
        Ok((self.logits(hidden.clone())?, hidden))
    }

    /// The hidden states (after the final norm) of every new position, `[batch · t, d]`, with
    /// optional LoRA adapters in the projections: what training reads log-probabilities from
    /// (apply [`Llama::logits`] to the positions that matter only).
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn hidden_all(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut KvCache,
        lora: Option<Adapters<'_>>,
    ) -> Result<Tensor<2>> {
        self.trunk(tokens, cache, false, lora)
    }

    /// The output projection of hidden states `[rows, d]`: logits `[rows, vocab]`.
    ///
    /// # Errors
    /// Hidden states of the wrong width for int8 weights.
    pub fn logits(&self, hidden: Tensor<2>) -> Result<Tensor<2>> {
        Ok(self.lm_head.apply(hidden)?.transpose())
    }

    /// Greedy decoding: the `n` most likely next tokens after `prompt`, one at a time, stopping
    /// early at `eos`.
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn greedy(&self, prompt: &[u32], n: usize, eos: Option<u32>) -> Result<Vec<u32>> {
        let mut cache = self.new_cache(1);
        let v = self.cfg.vocab;
        let mut logits = self.forward_last(&[prompt.to_vec()], &mut cache)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let next = argmax(logits.reshape([v]))?;
            out.push(next);
            if Some(next) == eos {
                break;
            }
            logits = self.forward_last(&[vec![next]], &mut cache)?;
        }
        Ok(out)
    }

    /// The logits of the last position of `prompt`.
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn last_logits(&self, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut cache = self.new_cache(1);
        let v = self.cfg.vocab;
        to_vec(
            self.forward_last(&[prompt.to_vec()], &mut cache)?
                .reshape([v]),
        )
    }
}

/// Reads a tensor back to the host.
pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("reading a tensor back: {e:?}")))
}

fn argmax(logits: Tensor<1>) -> Result<u32> {
    let v = to_vec(logits)?;
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    Ok(best as u32)
}
