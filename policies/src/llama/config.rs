//! The model's shape: [`LlamaConfig`] from GGUF metadata or an HF `config.json`, and the
//! two rotary-embedding layouts.

use super::*;

/// Reads an HF `config.json` (Llama, Mistral, Qwen2).
pub(super) fn hf_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Tensor {
        path: path.clone(),
        name: "config.json".into(),
        message: format!("not valid JSON: {e}"),
    })?;
    let model_type = v["model_type"].as_str().unwrap_or_default();
    if !matches!(model_type, "llama" | "mistral" | "qwen2") {
        return Err(Error::Tensor {
            path,
            name: "model_type".into(),
            message: format!("`{model_type}` is not supported (llama, mistral, qwen2)"),
        });
    }
    let u = |k: &str| -> Result<usize> {
        v[k].as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| Error::MissingMetadata {
                path: path.clone(),
                key: k.into(),
            })
    };
    let n_heads = u("num_attention_heads")?;
    Ok(LlamaConfig {
        vocab: u("vocab_size")?,
        d_model: u("hidden_size")?,
        n_layers: u("num_hidden_layers")?,
        n_heads,
        n_kv_heads: v["num_key_value_heads"]
            .as_u64()
            .map_or(n_heads, |x| x as usize),
        ffn: u("intermediate_size")?,
        rope_base: v["rope_theta"].as_f64().unwrap_or(10_000.0) as f32,
        rms_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
        rope: Rope::Half,
        max_seq: v["max_position_embeddings"]
            .as_u64()
            .map_or(4096, |x| x as usize)
            .min(8192),
    })
}

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
        let cfg = LlamaConfig {
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
        };
        if cfg.n_heads == 0
            || cfg.n_kv_heads == 0
            || !cfg.d_model.is_multiple_of(cfg.n_heads)
            || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads)
            || !cfg.head_dim().is_multiple_of(2)
        {
            return Err(Error::Tensor {
                path: g.path().to_path_buf(),
                name: key("attention"),
                message: format!(
                    "inconsistent heads: d_model {} heads {} kv heads {}",
                    cfg.d_model, cfg.n_heads, cfg.n_kv_heads
                ),
            });
        }
        Ok(cfg)
    }
}
