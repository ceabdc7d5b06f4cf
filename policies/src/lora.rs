//! LoRA adapters for the decoder: for each targeted projection `W` (`[out, in]`), a pair
//! `A` `[rank, in]`, `B` `[out, rank]` so that the layer computes `W·h + (alpha/rank)·B·A·h`.
//! `B` starts at zero, so a fresh adapter leaves the model unchanged; only `A` and `B` train.
//!
//! With [`LoraConfig::full`] an adapter is instead one dense `[out, in]` update `ΔW`, starting at
//! zero: the layer computes `(W + ΔW)·h`, and training `ΔW` is full fine-tuning of that
//! projection (the gradient of `ΔW` is the gradient of `W`). The frozen `W` stays shared with
//! the reference model, so no second copy of the weights is needed. Embeddings and norms are not
//! trained.
//!
//! Adapters are a Burn [`Module`], so Burn's optimisers update them;
//! [`crate::llama::Llama::save_hf`] folds them into the weights for export.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::DType;
use ponder_engine::rng::Rng;

use crate::error::{Error, Result};
use crate::llama::LlamaConfig;

/// A projection an adapter can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Attention query.
    Q,
    /// Attention key.
    K,
    /// Attention value.
    V,
    /// Attention output.
    O,
    /// FFN gate.
    Gate,
    /// FFN up.
    Up,
    /// FFN down.
    Down,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The name used in configs and files (`q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// Parses [`Target::name`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                Error::Model(format!(
                    "unknown LoRA target `{s}` (q, k, v, o, gate, up, down)"
                ))
            })
    }

    /// `(out, in)` of the projection.
    pub fn shape(self, cfg: &LlamaConfig) -> (usize, usize) {
        let kv = cfg.n_kv_heads * cfg.head_dim();
        match self {
            Target::Q | Target::O => (cfg.d_model, cfg.d_model),
            Target::K | Target::V => (kv, cfg.d_model),
            Target::Gate | Target::Up => (cfg.ffn, cfg.d_model),
            Target::Down => (cfg.d_model, cfg.ffn),
        }
    }
}

/// Adapter settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of `B·A`.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / rank)·B·A`.
    pub alpha: f32,
    /// Projections that get an adapter.
    pub targets: Vec<Target>,
    /// Full fine-tuning of the targeted projections: a dense update per projection instead of a
    /// low-rank pair (`rank` and `alpha` are then unused).
    pub full: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: Target::ALL.to_vec(),
            full: false,
        }
    }
}

impl LoraConfig {
    /// `alpha / rank`; 1 for full fine-tuning.
    pub fn scale(&self) -> f32 {
        if self.full {
            1.0
        } else {
            self.alpha / self.rank.max(1) as f32
        }
    }
}

/// One adapter: a low-rank pair `B·A`, or (full fine-tuning) a dense update `B` alone.
#[derive(Module, Debug)]
pub struct Adapter {
    /// `[rank, in]`; `None` for a dense update.
    pub a: Option<Param<Tensor<2>>>,
    /// `[out, rank]`, or the dense update `[out, in]`.
    pub b: Param<Tensor<2>>,
}

impl Adapter {
    /// `B·(A·x)` (or `B·x` for a dense update) for `x` `[in, n]` (the decoder's transposed
    /// activations): `[out, n]`.
    pub fn apply(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.a {
            Some(a) => self.b.val().matmul(a.val().matmul(x)),
            None => self.b.val().matmul(x),
        }
    }

    /// The update of the weight, `B·A` (or `B`), `[out, in]`.
    pub fn product(&self) -> Tensor<2> {
        match &self.a {
            Some(a) => self.b.val().matmul(a.val()),
            None => self.b.val(),
        }
    }
}

/// The adapters of one decoder block.
#[derive(Module, Debug)]
pub struct LayerAdapters {
    /// Query.
    pub q: Option<Adapter>,
    /// Key.
    pub k: Option<Adapter>,
    /// Value.
    pub v: Option<Adapter>,
    /// Attention output.
    pub o: Option<Adapter>,
    /// FFN gate.
    pub gate: Option<Adapter>,
    /// FFN up.
    pub up: Option<Adapter>,
    /// FFN down.
    pub down: Option<Adapter>,
}

impl LayerAdapters {
    /// The adapter of a target.
    pub fn get(&self, t: Target) -> Option<&Adapter> {
        match t {
            Target::Q => self.q.as_ref(),
            Target::K => self.k.as_ref(),
            Target::V => self.v.as_ref(),
            Target::O => self.o.as_ref(),
            Target::Gate => self.gate.as_ref(),
            Target::Up => self.up.as_ref(),
            Target::Down => self.down.as_ref(),
        }
    }
}

/// Adapters for every block of a model.
#[derive(Module, Debug)]
pub struct Lora {
    /// One entry per decoder block.
    pub layers: Vec<LayerAdapters>,
}

/// Adapters with their scale: what the decoder's forward pass takes.
#[derive(Clone, Copy, Debug)]
pub struct Adapters<'a> {
    /// The adapters.
    pub lora: &'a Lora,
    /// `alpha / rank`.
    pub scale: f32,
}

impl Lora {
    /// Fresh adapters for a model of shape `model`: `A` uniform in ±1/√in (seeded), `B` zero;
    /// for full fine-tuning, a zero dense update per targeted projection.
    pub fn new(model: &LlamaConfig, cfg: &LoraConfig, seed: u64, device: &Device) -> Lora {
        let mut rng = Rng::new(seed);
        let r = cfg.rank.max(1);
        let mut make = |t: Target| -> Option<Adapter> {
            if !cfg.targets.contains(&t) {
                return None;
            }
            let (out, inp) = t.shape(model);
            if cfg.full {
                return Some(Adapter {
                    a: None,
                    b: Param::from_tensor(Tensor::zeros([out, inp], device)),
                });
            }
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..r * inp)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            Some(Adapter {
                a: Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(a, [r, inp]),
                    device,
                ))),
                b: Param::from_tensor(Tensor::zeros([out, r], device)),
            })
        };
        let layers = (0..model.n_layers)
            .map(|_| LayerAdapters {
                q: make(Target::Q),
                k: make(Target::K),
                v: make(Target::V),
                o: make(Target::O),
                gate: make(Target::Gate),
                up: make(Target::Up),
                down: make(Target::Down),
            })
            .collect();
        Lora { layers }
    }
}

impl Lora {
    /// Writes the adapters as safetensors (`layers.{i}.{target}.lora_a` `[rank, in]` and
    /// `.lora_b` `[out, rank]`, or `.delta` `[out, in]` for full fine-tuning; F32) with metadata
    /// `format = ponder-lora`, `mode` (`lora` or `full`), `rank`, `alpha`, `targets`, `layers`.
    ///
    /// # Errors
    /// The file cannot be written or a tensor read back.
    pub fn save(&self, path: &std::path::Path, cfg: &LoraConfig) -> Result<()> {
        use safetensors::{Dtype, tensor::TensorView};
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for t in Target::ALL {
                if let Some(ad) = l.get(t) {
                    let parts: Vec<(&str, &Param<Tensor<2>>)> = match &ad.a {
                        Some(a) => vec![("lora_a", a), ("lora_b", &ad.b)],
                        None => vec![("delta", &ad.b)],
                    };
                    for (part, p) in parts {
                        let v = p.val();
                        let dims = v.dims().to_vec();
                        let data: Vec<u8> = v
                            .try_into_vec_as::<f32>()
                            .map_err(|e| Error::Model(format!("reading an adapter: {e:?}")))?
                            .iter()
                            .flat_map(|x| x.to_le_bytes())
                            .collect();
                        tensors.push((format!("layers.{i}.{}.{part}", t.name()), data, dims));
                    }
                }
            }
        }
        let mut views = Vec::new();
        for (n, d, s) in &tensors {
            views.push((
                n.as_str(),
                TensorView::new(Dtype::F32, s.clone(), d)
                    .map_err(|e| Error::Model(format!("adapter {n}: {e}")))?,
            ));
        }
        let meta: std::collections::HashMap<String, String> = [
            ("format", "ponder-lora".to_string()),
            ("mode", if cfg.full { "full" } else { "lora" }.to_string()),
            ("rank", cfg.rank.to_string()),
            ("alpha", cfg.alpha.to_string()),
            (
                "targets",
                cfg.targets
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("layers", self.layers.len().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::Model(format!("serialising adapters: {e}")))?;
        std::fs::write(path, out).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The stacked delta of several targets sharing one fused projection (`parts` in row order,
/// each with its output size), on `x` `[in, n]`: `None` when none of them has an adapter.
/// Adapters stay F32 (master weights) on a half-precision model: `x` is cast up for them and
/// the delta back down.
pub(crate) fn fused_delta(
    layer: &LayerAdapters,
    parts: &[(Target, usize)],
    x: &Tensor<2>,
    scale: f32,
) -> Option<Tensor<2>> {
    if parts.iter().all(|(t, _)| layer.get(*t).is_none()) {
        return None;
    }
    let n = x.dims()[1];
    let device = x.device();
    let dtype = x.dtype();
    let x = if dtype == DType::F32 {
        x.clone()
    } else {
        x.clone().cast(DType::F32)
    };
    let rows: Vec<Tensor<2>> = parts
        .iter()
        .map(|(t, out)| match layer.get(*t) {
            Some(a) => a.apply(x.clone()),
            None => Tensor::zeros([*out, n], &device),
        })
        .collect();
    let delta = Tensor::cat(rows, 0).mul_scalar(scale);
    Some(if dtype == DType::F32 {
        delta
    } else {
        delta.cast(dtype)
    })
}
