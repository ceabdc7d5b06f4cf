//! A Llama-family decoder on Burn 0.22 (RMSNorm, rotary embeddings in both layouts, grouped-query
//! attention, SwiGLU, tied or untied embeddings) with a per-sequence KV cache, loaded from GGUF.
//!
//! Tensors are plain `Tensor<D>`: the [`Device`] picks the backend at run time (`flex` by default
//! on CPU, `ndarray` selectable).

use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::{silu, softmax};

use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::lora::{Adapters, Target, fused_delta};

mod blocks;
mod cache;
mod config;
mod export;
mod load;

use blocks::*;
pub use cache::KvCache;
use config::hf_config;
pub use config::{LlamaConfig, Rope};

/// The decoder with its weights.
#[derive(Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    device: Device,
    embed: Tensor<2>,
    layers: Vec<Layer>,
    norm: Tensor<1>,
    /// Output projection, `[vocab, d]` (the embedding itself when tied).
    lm_head: Tensor<2>,
    /// Whether the output projection is the embedding.
    tied: bool,
    cos: Tensor<2>,
    sin: Tensor<2>,
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

    /// The floating-point type the weights are stored and run in (F32 unless [`Llama::cast`]).
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// A copy with every weight and the rotary tables stored in `dtype` (F16 or BF16 for
    /// mixed-precision training: activations then run in `dtype`, norms and the adapters'
    /// updates in F32, see [`crate::lora`]). The copy shares nothing with `self`.
    pub fn cast(&self, dtype: DType) -> Llama {
        let c = |t: &Tensor<2>| t.clone().cast(dtype);
        let c1 = |t: &Tensor<1>| t.clone().cast(dtype);
        let embed = c(&self.embed);
        Llama {
            cfg: self.cfg.clone(),
            device: self.device.clone(),
            lm_head: if self.tied {
                embed.clone()
            } else {
                c(&self.lm_head)
            },
            embed,
            layers: self
                .layers
                .iter()
                .map(|l| Layer {
                    attn_norm: c1(&l.attn_norm),
                    wqkv: c(&l.wqkv),
                    bqkv: l.bqkv.as_ref().map(c1),
                    wo: c(&l.wo),
                    ffn_norm: c1(&l.ffn_norm),
                    w_gate_up: c(&l.w_gate_up),
                    w_down: c(&l.w_down),
                })
                .collect(),
            norm: c1(&self.norm),
            tied: self.tied,
            cos: c(&self.cos),
            sin: c(&self.sin),
        }
    }

    /// An empty cache for `batch` sequences.
    pub fn new_cache(&self, batch: usize) -> KvCache {
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
            .logits(hidden)
            .reshape([tokens.len(), t, self.cfg.vocab]))
    }

    /// As [`Llama::forward`], but only the logits of each row's last new position,
    /// `[batch, vocab]`: the output projection (the model's largest matmul) runs on `batch`
    /// positions instead of `batch · t`.
    ///
    /// # Errors
    /// As [`Llama::forward`].
    pub fn forward_last(&self, tokens: &[Vec<u32>], cache: &mut KvCache) -> Result<Tensor<2>> {
        Ok(self.logits(self.trunk(tokens, cache, true, None)?))
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
        Ok((self.logits(hidden.clone()), hidden))
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
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        linear(&self.lm_head, hidden).transpose()
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
