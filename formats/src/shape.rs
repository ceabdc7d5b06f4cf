//! The model's shape: [`LlamaConfig`] from GGUF metadata or an HF `config.json`, and the
//! two rotary-embedding layouts.
//!
//! A shape read from a file is checked before anything is sized by it: heads divide the
//! hidden size, and every dimension is at most its cap ([`LlamaConfig::validate`]; the caps
//! are a few times the largest released Llama-family model's), so a 100-byte file claiming a
//! 2^40-wide model is an error, not an allocation.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// How rotary embeddings pair up the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rope {
    /// Adjacent pairs `(x[2i], x[2i+1])`: GGUF llama weights (llama.cpp permutes Q and K).
    Interleaved,
    /// Halves `(x[i], x[i + d/2])`: HF safetensors checkpoints.
    Half,
}

/// The shape of a Llama-family model.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden size.
    pub d_model: usize,
    /// Decoder layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// SwiGLU hidden size.
    pub ffn: usize,
    /// RoPE base θ.
    pub rope_base: f32,
    /// RMSNorm ε.
    pub rms_eps: f32,
    /// Rotary layout.
    pub rope: Rope,
    /// Longest sequence (rotary table size).
    pub max_seq: usize,
}

impl LlamaConfig {
    /// Size of one head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Reads the shape from GGUF metadata: `general.architecture` `llama` (Llama, Mistral,
    /// SmolLM; llama.cpp stores their Q/K rows permuted for interleaved rotary pairs) or `qwen2`
    /// (Q/K/V biases, rotate-half rotary, rope base from `qwen2.rope.freq_base`).
    ///
    /// # Errors
    /// [`Error::MissingMetadata`] naming the first missing key; [`Error::Gguf`]-style message for
    /// an unsupported architecture or inconsistent shapes.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g
            .require("general.architecture")?
            .as_str()
            .unwrap_or_default()
            .to_string();
        // llama.cpp permutes Q/K rows only for the `llama` architecture; Qwen2 keeps HF's
        // rotate-half layout (its rope type is NEOX).
        let rope = match arch.as_str() {
            "llama" => Rope::Interleaved,
            "qwen2" => Rope::Half,
            _ => {
                return Err(Error::Tensor {
                    path: g.path().to_path_buf(),
                    name: "general.architecture".into(),
                    message: format!("architecture `{arch}` is not supported (llama, qwen2)"),
                });
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<usize> {
            g.require(&key(k))?
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::MissingMetadata {
                    path: g.path().to_path_buf(),
                    key: key(k),
                })
        };
        let f = |k: &str, default: f64| -> f32 {
            g.get(&key(k)).and_then(|v| v.as_f64()).unwrap_or(default) as f32
        };
        let vocab = match g.get(&key("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => g
                .require("tokenizer.ggml.tokens")?
                .as_array()
                .map_or(0, <[_]>::len),
        };
        LlamaConfig {
            vocab,
            d_model: u("embedding_length")?,
            n_layers: u("block_count")?,
            n_heads: u("attention.head_count")?,
            n_kv_heads: g
                .get(&key("attention.head_count_kv"))
                .and_then(|v| v.as_u64())
                .map_or(u("attention.head_count")?, |v| v as usize),
            ffn: u("feed_forward_length")?,
            rope_base: f("rope.freq_base", 10_000.0),
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            rope,
            max_seq: u("context_length").unwrap_or(4096).min(8192),
        }
        .validate(g.path(), &key("attention"))
    }

    /// Reads an HF `config.json` (Llama, Mistral, Qwen2) in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; otherwise as [`LlamaConfig::from_hf_json`].
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_hf_json(&path, &text)
    }

    /// Parses the text of an HF `config.json` (`path` only names it in errors).
    ///
    /// # Errors
    /// [`Error::Tensor`] for text that is not JSON, an unsupported `model_type` or an
    /// inconsistent or oversized shape; [`Error::MissingMetadata`] naming a missing field.
    pub fn from_hf_json(path: &Path, text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Tensor {
            path: path.to_path_buf(),
            name: "config.json".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        let model_type = v["model_type"].as_str().unwrap_or_default();
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                name: "model_type".into(),
                message: format!("`{model_type}` is not supported (llama, mistral, qwen2)"),
            });
        }
        let u = |k: &str| -> Result<usize> {
            v[k].as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| Error::MissingMetadata {
                    path: path.to_path_buf(),
                    key: k.into(),
                })
        };
        let n_heads = u("num_attention_heads")?;
        LlamaConfig {
            vocab: u("vocab_size")?,
            d_model: u("hidden_size")?,
            n_layers: u("num_hidden_layers")?,
            n_heads,
            n_kv_heads: v["num_key_value_heads"]
                .as_u64()
                .map_or(n_heads, |x| usize::try_from(x).unwrap_or(usize::MAX)),
            ffn: u("intermediate_size")?,
            rope_base: v["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
            rms_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            rope: Rope::Half,
            max_seq: v["max_position_embeddings"]
                .as_u64()
                .map_or(4096, |x| x.min(8192) as usize),
        }
        .validate(path, "config.json")
    }

    /// Checks a shape read from a file: at least one head, heads dividing the hidden size and
    /// key/value heads dividing heads, an even head size, a finite positive RMSNorm ε and rope
    /// base, and every dimension within [`MAX_DIM`] ([`MAX_VOCAB`] for the vocabulary,
    /// [`MAX_LAYERS`] for the depth).
    ///
    /// # Errors
    /// [`Error::Tensor`] naming `field` and the first thing wrong.
    pub fn validate(self, path: &Path, field: &str) -> Result<Self> {
        let bad = |message: String| Error::Tensor {
            path: path.to_path_buf(),
            name: field.into(),
            message,
        };
        for (name, v, cap) in [
            ("vocabulary", self.vocab, MAX_VOCAB),
            ("hidden size", self.d_model, MAX_DIM),
            ("layers", self.n_layers, MAX_LAYERS),
            ("heads", self.n_heads, MAX_DIM),
            ("key/value heads", self.n_kv_heads, MAX_DIM),
            ("feed-forward size", self.ffn, MAX_DIM),
        ] {
            if v == 0 || v > cap {
                return Err(bad(format!("{name} {v} is outside 1..={cap}")));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads)
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
            || !self.head_dim().is_multiple_of(2)
        {
            return Err(bad(format!(
                "inconsistent heads: d_model {} heads {} kv heads {}",
                self.d_model, self.n_heads, self.n_kv_heads
            )));
        }
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if !(positive(self.rms_eps) && positive(self.rope_base)) {
            return Err(bad(format!(
                "RMSNorm epsilon {} and rope base {} must be finite and positive",
                self.rms_eps, self.rope_base
            )));
        }
        Ok(self)
    }
}

/// The widest hidden, feed-forward or head dimension a file may claim (Llama 3.1 405B: hidden
/// 16384, feed-forward 53248).
pub const MAX_DIM: usize = 1 << 18;
/// The largest vocabulary a file may claim (today's largest are about 256k).
pub const MAX_VOCAB: usize = 1 << 22;
/// The deepest model a file may claim (Llama 3.1 405B: 126 layers).
pub const MAX_LAYERS: usize = 1024;
