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

/// Tensor names of one checkpoint layout.
struct Names {
    layer: &'static str,
    attn_norm: &'static str,
    q: &'static str,
    k: &'static str,
    v: &'static str,
    o: &'static str,
    ffn_norm: &'static str,
    gate: &'static str,
    up: &'static str,
    down: &'static str,
    embed: &'static str,
    head: &'static str,
    norm: &'static str,
}

impl Names {
    const GGUF: Names = Names {
        layer: "blk.",
        attn_norm: "attn_norm",
        q: "attn_q",
        k: "attn_k",
        v: "attn_v",
        o: "attn_output",
        ffn_norm: "ffn_norm",
        gate: "ffn_gate",
        up: "ffn_up",
        down: "ffn_down",
        embed: "token_embd.weight",
        head: "output.weight",
        norm: "output_norm.weight",
    };
    const HF: Names = Names {
        layer: "model.layers.",
        attn_norm: "input_layernorm",
        q: "self_attn.q_proj",
        k: "self_attn.k_proj",
        v: "self_attn.v_proj",
        o: "self_attn.o_proj",
        ffn_norm: "post_attention_layernorm",
        gate: "mlp.gate_proj",
        up: "mlp.up_proj",
        down: "mlp.down_proj",
        embed: "model.embed_tokens.weight",
        head: "lm_head.weight",
        norm: "model.norm.weight",
    };
}

/// A tensor as loaded: row-major shape and f32 values.
type Loaded = (Vec<usize>, Vec<f32>);

/// Where weights come from: a name → tensor lookup, `None` if absent.
struct Source<'a> {
    path: &'a Path,
    names: Names,
    load: &'a dyn Fn(&str) -> Result<Option<Loaded>>,
}

/// Reads an HF `config.json` (Llama, Mistral, Qwen2).
fn hf_config(dir: &Path) -> Result<LlamaConfig> {
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

/// One decoder block. Linear weights keep the checkpoint's `[out, in]` layout and run as
/// `W · hᵀ` (see [`linear`]); Q/K/V are one fused matrix, and so are gate/up.
#[derive(Clone, Debug)]
struct Layer {
    attn_norm: Tensor<1>,
    /// Q, K and V stacked: `[d + 2·kv, d]`.
    wqkv: Tensor<2>,
    /// Their biases (Qwen2), stacked the same way.
    bqkv: Option<Tensor<1>>,
    wo: Tensor<2>,
    ffn_norm: Tensor<1>,
    /// Gate and up stacked: `[2·ffn, d]`.
    w_gate_up: Tensor<2>,
    w_down: Tensor<2>,
}

/// Keys and values of every layer for one batch of sequences: `[batch, kv_heads, len, head_dim]`.
///
/// Rows may hold sequences of different lengths: a shorter one is padded on the left, and
/// `pad[r]` says how many of row `r`'s leading positions are padding (masked out of attention and
/// skipped by the rotary positions). `len` counts padding too.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<(Tensor<4>, Tensor<4>)>,
    len: usize,
    pad: Vec<usize>,
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
    /// Loads a GGUF llama model onto `device`, dequantising every tensor to f32.
    ///
    /// # Errors
    /// Missing tensors or metadata, shapes that disagree with the metadata, unsupported types.
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let load = |name: &str| match g.tensor(name) {
            None => Ok(None),
            Some(_) => g.tensor_f32(name).map(Some),
        };
        let source = Source {
            path: g.path(),
            names: Names::GGUF,
            load: &load,
        };
        Self::build(cfg, &source, device)
    }

    /// Loads an HF checkpoint folder (`config.json` + `*.safetensors`, Llama, Mistral or Qwen2
    /// layout) onto `device`; its Q/K weights use the rotate-half rotary layout.
    ///
    /// # Errors
    /// A missing or malformed `config.json`, unsupported `model_type`, unreadable or malformed
    /// safetensors, missing tensors, wrong shapes.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = hf_config(dir)?;
        let files = crate::hf::Safetensors::open_dir(dir)?;
        let load = |name: &str| files.tensor_f32(name);
        let source = Source {
            path: dir,
            names: Names::HF,
            load: &load,
        };
        Self::build(cfg, &source, device)
    }

    fn build(cfg: LlamaConfig, src: &Source<'_>, device: &Device) -> Result<Self> {
        let load = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let (s, v) = (src.load)(name)?.ok_or_else(|| Error::Tensor {
                path: src.path.to_path_buf(),
                name: name.into(),
                message: "not in the checkpoint".into(),
            })?;
            if s != shape {
                return Err(Error::Tensor {
                    path: src.path.to_path_buf(),
                    name: name.into(),
                    message: format!("shape {s:?}, expected {shape:?}"),
                });
            }
            Ok(v)
        };
        let t1 = |name: &str, n: usize| -> Result<Tensor<1>> {
            Ok(Tensor::from_data(
                TensorData::new(load(name, &[n])?, [n]),
                device,
            ))
        };
        // Linear weights stay `[out, in]` as checkpoints store them (see `linear`); fused
        // projections are their rows stacked.
        let stacked = |parts: &[(&str, usize)], inp: usize| -> Result<Tensor<2>> {
            let mut w = Vec::new();
            for (name, out) in parts {
                w.extend(load(name, &[*out, inp])?);
            }
            let rows = parts.iter().map(|p| p.1).sum::<usize>();
            Ok(Tensor::from_data(TensorData::new(w, [rows, inp]), device))
        };
        let (d, hd) = (cfg.d_model, cfg.head_dim());
        let kv = cfg.n_kv_heads * hd;
        let n = &src.names;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let w = |part: &str| format!("{}{i}.{part}.weight", n.layer);
            let b = |part: &str| format!("{}{i}.{part}.bias", n.layer);
            // Q/K/V biases (Qwen2): all or none; a missing one of a partial set is zero.
            let biases = [(b(n.q), d), (b(n.k), kv), (b(n.v), kv)];
            let mut bqkv = Vec::new();
            let mut any = false;
            for (name, len) in &biases {
                match (src.load)(name)? {
                    Some(_) => {
                        any = true;
                        bqkv.extend(load(name, &[*len])?);
                    }
                    None => bqkv.extend(std::iter::repeat_n(0.0, *len)),
                }
            }
            layers.push(Layer {
                attn_norm: t1(&w(n.attn_norm), d)?,
                wqkv: stacked(&[(&w(n.q), d), (&w(n.k), kv), (&w(n.v), kv)], d)?,
                bqkv: any.then(|| Tensor::from_data(TensorData::new(bqkv, [d + 2 * kv]), device)),
                wo: stacked(&[(&w(n.o), d)], d)?,
                ffn_norm: t1(&w(n.ffn_norm), d)?,
                w_gate_up: stacked(&[(&w(n.gate), cfg.ffn), (&w(n.up), cfg.ffn)], d)?,
                w_down: stacked(&[(&w(n.down), d)], cfg.ffn)?,
            });
        }
        let embed_v = load(n.embed, &[cfg.vocab, d])?;
        let embed: Tensor<2> = Tensor::from_data(TensorData::new(embed_v, [cfg.vocab, d]), device);
        // The head stays `[vocab, d]` (computed as `head · hᵀ`): with the vocabulary as the
        // matmul's long side, the CPU kernels run 2x faster than `h · headᵀ` at batch 1-8.
        // Tied embeddings share the embedding's storage.
        let tied = (src.load)(n.head)?.is_none();
        let lm_head = if !tied {
            Tensor::from_data(
                TensorData::new(load(n.head, &[cfg.vocab, d])?, [cfg.vocab, d]),
                device,
            )
        } else {
            embed.clone()
        };
        let norm = t1(n.norm, d)?;
        let (cos, sin) = rope_tables(&cfg, device);
        Ok(Llama {
            cfg,
            device: device.clone(),
            embed,
            layers,
            norm,
            lm_head,
            tied,
            cos,
            sin,
        })
    }

    /// Writes the model, with `lora` merged into its weights when given, as an HF checkpoint
    /// folder (`config.json`, `model.safetensors` in F32, and the tokenizer files) that
    /// [`Llama::from_hf_dir`] — and HF `transformers` — read back. Weights loaded from GGUF are
    /// written in HF's layout: the query and key rows that llama.cpp permuted for its
    /// interleaved rotary embedding are put back in rotate-half order.
    ///
    /// # Errors
    /// The folder cannot be written, or a tensor cannot be read back from the device.
    pub fn save_hf(
        &self,
        dir: &Path,
        tokenizer: &crate::tokenizer::Tokenizer,
        lora: Option<Adapters<'_>>,
    ) -> Result<()> {
        use safetensors::{Dtype, tensor::TensorView};
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (d, hd) = (self.cfg.d_model, self.cfg.head_dim());
        let kv = self.cfg.n_kv_heads * hd;
        let ffn = self.cfg.ffn;
        // Rows of `[rows, cols]` row-major data.
        let rows = |v: &[f32], from: usize, n: usize, cols: usize| -> Vec<f32> {
            v[from * cols..(from + n) * cols].to_vec()
        };
        // GGUF row order within a head is (pair i, element j) -> 2i + j; HF's is j·half + i.
        let unpermute = |v: Vec<f32>, heads: usize, cols: usize| -> Vec<f32> {
            if self.cfg.rope != Rope::Interleaved {
                return v;
            }
            let half = hd / 2;
            let mut out = vec![0f32; v.len()];
            for h in 0..heads {
                for i in 0..half {
                    for j in 0..2 {
                        let src = (h * hd + 2 * i + j) * cols;
                        let dst = (h * hd + j * half + i) * cols;
                        out[dst..dst + cols].copy_from_slice(&v[src..src + cols]);
                    }
                }
            }
            out
        };
        let merged = |w: &Tensor<2>,
                      l: Option<&crate::lora::LayerAdapters>,
                      parts: &[(Target, usize)]|
         -> Result<Vec<f32>> {
            let [_, cols] = w.dims();
            let mut v = to_vec(w.clone().reshape([w.dims()[0] * cols]))?;
            if let (Some(l), Some(a)) = (l, lora) {
                let mut row = 0;
                for (t, n) in parts {
                    if let Some(ad) = l.get(*t) {
                        let delta = to_vec(ad.product().mul_scalar(a.scale).reshape([n * cols]))?;
                        for (x, dx) in v[row * cols..(row + n) * cols].iter_mut().zip(delta) {
                            *x += dx;
                        }
                    }
                    row += n;
                }
            }
            Ok(v)
        };
        let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = Vec::new();
        let mut put = |name: String, v: Vec<f32>, shape: Vec<usize>| tensors.push((name, v, shape));
        put(
            "model.embed_tokens.weight".into(),
            to_vec(self.embed.clone().reshape([self.cfg.vocab * d]))?,
            vec![self.cfg.vocab, d],
        );
        put(
            "model.norm.weight".into(),
            to_vec(self.norm.clone())?,
            vec![d],
        );
        if !self.tied {
            put(
                "lm_head.weight".into(),
                to_vec(self.lm_head.clone().reshape([self.cfg.vocab * d]))?,
                vec![self.cfg.vocab, d],
            );
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let l = lora.map(|a| &a.lora.layers[i]);
            let p = format!("model.layers.{i}.");
            let qkv = merged(
                &layer.wqkv,
                l,
                &[(Target::Q, d), (Target::K, kv), (Target::V, kv)],
            )?;
            put(
                format!("{p}self_attn.q_proj.weight"),
                unpermute(rows(&qkv, 0, d, d), self.cfg.n_heads, d),
                vec![d, d],
            );
            put(
                format!("{p}self_attn.k_proj.weight"),
                unpermute(rows(&qkv, d, kv, d), self.cfg.n_kv_heads, d),
                vec![kv, d],
            );
            put(
                format!("{p}self_attn.v_proj.weight"),
                rows(&qkv, d + kv, kv, d),
                vec![kv, d],
            );
            if let Some(b) = &layer.bqkv {
                let b = to_vec(b.clone())?;
                put(
                    format!("{p}self_attn.q_proj.bias"),
                    unpermute(b[..d].to_vec(), self.cfg.n_heads, 1),
                    vec![d],
                );
                put(
                    format!("{p}self_attn.k_proj.bias"),
                    unpermute(b[d..d + kv].to_vec(), self.cfg.n_kv_heads, 1),
                    vec![kv],
                );
                put(
                    format!("{p}self_attn.v_proj.bias"),
                    b[d + kv..].to_vec(),
                    vec![kv],
                );
            }
            put(
                format!("{p}self_attn.o_proj.weight"),
                merged(&layer.wo, l, &[(Target::O, d)])?,
                vec![d, d],
            );
            let gu = merged(
                &layer.w_gate_up,
                l,
                &[(Target::Gate, ffn), (Target::Up, ffn)],
            )?;
            put(
                format!("{p}mlp.gate_proj.weight"),
                rows(&gu, 0, ffn, d),
                vec![ffn, d],
            );
            put(
                format!("{p}mlp.up_proj.weight"),
                rows(&gu, ffn, ffn, d),
                vec![ffn, d],
            );
            put(
                format!("{p}mlp.down_proj.weight"),
                merged(&layer.w_down, l, &[(Target::Down, d)])?,
                vec![d, ffn],
            );
            put(
                format!("{p}input_layernorm.weight"),
                to_vec(layer.attn_norm.clone())?,
                vec![d],
            );
            put(
                format!("{p}post_attention_layernorm.weight"),
                to_vec(layer.ffn_norm.clone())?,
                vec![d],
            );
        }
        let qwen2 = self.layers.iter().any(|l| l.bqkv.is_some());
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(n, v, s)| (n, v.iter().flat_map(|x| x.to_le_bytes()).collect(), s))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, data, shape) in &bytes {
            let view = TensorView::new(Dtype::F32, shape.clone(), data)
                .map_err(|e| Error::Model(format!("tensor {name}: {e}")))?;
            views.push((name.as_str(), view));
        }
        let out = safetensors::serialize(views, None)
            .map_err(|e| Error::Model(format!("serialising the weights: {e}")))?;
        let write = |name: &str, data: &[u8]| -> Result<()> {
            // Temporary name, then rename: a crash never leaves a half-written file under the
            // final name.
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, data).map_err(|source| Error::Io {
                path: tmp.clone(),
                source,
            })?;
            std::fs::rename(&tmp, dir.join(name)).map_err(|source| Error::Io {
                path: dir.join(name),
                source,
            })
        };
        write("model.safetensors", &out)?;
        let config = serde_json::json!({
            // Q/K/V biases make it a Qwen2 for HF transformers (Llama's `attention_bias` would
            // also add one to the output projection).
            "architectures": [if qwen2 { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": if qwen2 { "qwen2" } else { "llama" },
            "hidden_size": d,
            "intermediate_size": ffn,
            "num_attention_heads": self.cfg.n_heads,
            "num_key_value_heads": self.cfg.n_kv_heads,
            "num_hidden_layers": self.cfg.n_layers,
            "vocab_size": self.cfg.vocab,
            "rms_norm_eps": self.cfg.rms_eps,
            "rope_theta": self.cfg.rope_base,
            "max_position_embeddings": self.cfg.max_seq,
            "tie_word_embeddings": self.tied,
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "bos_token_id": tokenizer.bos(),
            "eos_token_id": tokenizer.eos(),
        });
        write("config.json", config.to_string().as_bytes())?;
        tokenizer.save_hf(dir)
    }

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

    /// The decoder up to the final norm: hidden states `[batch · t, d]`, or `[batch, d]` with
    /// `last_only`.
    fn trunk(
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
        let b = tokens.len();
        let t = tokens.first().map_or(0, Vec::len);
        let bad = Error::Model;
        if b == 0 || t == 0 || tokens.iter().any(|s| s.len() != t) {
            return Err(bad(
                "forward needs a non-empty batch of equal-length sequences".into(),
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
        let start = cache.len;
        let longest = (0..b).map(|r| cache.row_len(r)).max().unwrap_or(0) + t;
        if longest > self.cfg.max_seq {
            return Err(bad(format!(
                "sequence of {longest} tokens is longer than the model's {}",
                self.cfg.max_seq
            )));
        }
        let (d, hd, nh, nkv) = (
            self.cfg.d_model,
            self.cfg.head_dim(),
            self.cfg.n_heads,
            self.cfg.n_kv_heads,
        );
        let rep = nh / nkv;
        let total = start + t;
        let ids: Vec<i64> = tokens.iter().flatten().map(|&i| i64::from(i)).collect();
        let ids: Tensor<1, Int> = Tensor::from_data(TensorData::new(ids, [b * t]), &self.device);
        let mut x: Tensor<3> = self.embed.clone().select(0, ids).reshape([b, t, d]);
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
        // Attention mask `[rows, 1, rep·t, total]`, true where masked: query i of row r sees
        // keys pad[r]..=start+i. The query heads sharing a key head are stacked along the
        // query axis (`rep` groups of `t`), so grouped-query attention needs no copies of K/V.
        let mask = (padded || t > 1).then(|| {
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
        });
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
            let qkv = linear(&layer.wqkv, h);
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
            let o = linear(&layer.wo, attn);
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
            let gu = linear(&layer.w_gate_up, h);
            let gu = match delta {
                Some(dl) => gu + dl,
                None => gu,
            };
            let act = silu(gu.clone().narrow(0, 0, ffn)) * gu.narrow(0, ffn, ffn);
            let delta = ad.and_then(|(l, scale)| fused_delta(l, &[(Target::Down, d)], &act, scale));
            let down = layer.w_down.clone().matmul(act);
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

    /// Applies rotary embeddings to `[batch, heads, t, head_dim]` for positions given by the
    /// `[batch or 1, 1, t, head_dim/2]` tables.
    fn rotate(&self, x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
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

/// A linear layer with the weight in the checkpoint's `[out, in]` layout, on `h` `[n, in]`,
/// returning the output transposed, `[out, n]` = `W · hᵀ`. With the weight as the matmul's
/// left side, the CPU kernels stream it without repacking: at batch 8 the 30 layers of
/// SmolLM2 run in 47 ms this way against 91 ms as `h · W[in, out]` (weights out of cache).
fn linear(w: &Tensor<2>, h: Tensor<2>) -> Tensor<2> {
    w.clone().matmul(h.transpose())
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

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
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
