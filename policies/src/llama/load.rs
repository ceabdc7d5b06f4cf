//! Loading: tensor names of the two formats, dequantised tensors checked against the config,
//! fused projections built once.

use super::*;

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

impl Llama {
    /// Loads a GGUF llama model onto `device`, dequantising every tensor to f32.
    ///
    /// # Errors
    /// Missing tensors or metadata, shapes that disagree with the metadata, unsupported types.
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let load = |name: &str| match g.tensor(name) {
            None => Ok(None),
            Some(_) => Ok(Some(g.tensor_f32(name)?)),
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
        let cfg = LlamaConfig::from_hf_dir(dir)?;
        let files = crate::hf::Safetensors::open_dir(dir)?;
        let load = |name: &str| Ok(files.tensor_f32(name)?);
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
        let stacked = |parts: &[(&str, usize)], inp: usize| -> Result<Weight> {
            let mut w = Vec::new();
            for (name, out) in parts {
                w.extend(load(name, &[*out, inp])?);
            }
            let rows = parts.iter().map(|p| p.1).sum::<usize>();
            Ok(Weight::Dense(Tensor::from_data(
                TensorData::new(w, [rows, inp]),
                device,
            )))
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
        let embed = Weight::Dense(Tensor::from_data(
            TensorData::new(embed_v, [cfg.vocab, d]),
            device,
        ));
        // The head stays `[vocab, d]` (computed as `head · hᵀ`): with the vocabulary as the
        // matmul's long side, the CPU kernels run 2x faster than `h · headᵀ` at batch 1-8.
        // Tied embeddings share the embedding's storage.
        let tied = (src.load)(n.head)?.is_none();
        let lm_head = if !tied {
            Weight::Dense(Tensor::from_data(
                TensorData::new(load(n.head, &[cfg.vocab, d])?, [cfg.vocab, d]),
                device,
            ))
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
            host: None,
            activations: ponder_kernels::Activations::F32,
        })
    }
}
