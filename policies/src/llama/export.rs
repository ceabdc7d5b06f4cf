//! Export: the model (with merged adapters) as an HF checkpoint folder.

use super::*;

impl Llama {
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
        let merged = |w: &Weight,
                      l: Option<&crate::lora::LayerAdapters>,
                      parts: &[(Target, usize)]|
         -> Result<Vec<f32>> {
            let [_, cols] = w.dims();
            let mut v = w.to_host()?;
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
            self.embed.to_host()?,
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
                self.lm_head.to_host()?,
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
        Ok(tokenizer.save_hf(dir)?)
    }
}
