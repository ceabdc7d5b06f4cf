//! Step-level DPO on Burn (MCTS-DPO): for a pair (prompt + shared prefix, chosen step, rejected
//! step), the policy's log-probability of each step is summed over the step's own tokens only,
//! conditioned on the prompt and prefix; the loss pushes the chosen step's log-ratio against the
//! frozen reference above the rejected one's:
//!
//! `z = β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]`,
//! `loss = −(1−ε)·log σ(z) − ε·log σ(−z)` with the pair's conservative label smoothing `ε`
//! (MCTS-DPO's `label_smoothing` field), or IPO's `(z/β − 1/(2β))²`. Optionally each
//! log-probability is divided by its token count.
//!
//! Training updates LoRA adapters ([`crate::lora`]) with AdamW, linear warm-up then cosine decay,
//! gradient accumulation and clipping. The reference is the model without adapters, so its
//! log-probabilities are computed once per pair, before training, and cached.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::log_softmax;
use ponder_engine::rng::Rng;

use crate::error::{Error, Result};
use crate::llama::Llama;
use crate::lora::{Adapters, Lora, LoraConfig};
pub use ponder_formats::pairs::{TokenPair, read_pairs};

/// The preference loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// DPO's sigmoid loss, with per-pair conservative label smoothing.
    Sigmoid,
    /// IPO's squared loss.
    Ipo,
}

/// DPO settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DpoConfig {
    /// β (MCTS-DPO: 0.1).
    pub beta: f32,
    /// The loss.
    pub loss: LossKind,
    /// Divide each step's log-probability by its token count.
    pub length_norm: bool,
    /// The adapters.
    pub lora: LoraConfig,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the pairs.
    pub epochs: usize,
    /// Pairs per optimiser step (gradient accumulation).
    pub accumulate: usize,
    /// Share of the steps spent warming up linearly.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Gradient norm clip (0 = off).
    pub clip: f32,
    /// Seed of the adapters' initial values and the pair order.
    pub seed: u64,
    /// The type the frozen weights and activations run in during training.
    pub precision: Precision,
}

/// Training precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything in F32.
    #[default]
    F32,
    /// Mixed: frozen weights and activations in F16; norms, log-softmax, the loss and the
    /// trained parameters (with their optimiser state) in F32.
    F16,
    /// Mixed, as `F16` but in BF16.
    Bf16,
}

impl Precision {
    /// The Burn type of the frozen weights.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.1,
            loss: LossKind::Sigmoid,
            length_norm: false,
            lora: LoraConfig::default(),
            lr: 5e-4,
            epochs: 2,
            accumulate: 4,
            warmup: 0.1,
            weight_decay: 0.0,
            clip: 1.0,
            seed: 0,
            precision: Precision::F32,
        }
    }
}

/// log π(completion | context), summed over the completion's tokens (divided by their count
/// with `length_norm`), as a one-element tensor that carries gradients to the adapters.
///
/// # Errors
/// Empty sequences or a sequence longer than the model's context.
pub fn sequence_logprob(
    model: &Llama,
    adapters: Option<Adapters<'_>>,
    context: &[u32],
    completion: &[u32],
    length_norm: bool,
) -> Result<Tensor<1>> {
    if context.is_empty() || completion.is_empty() {
        return Err(Error::Model("log-prob of an empty sequence".into()));
    }
    let mut seq = context.to_vec();
    seq.extend_from_slice(completion);
    let hidden = model.hidden_all(&[seq], &mut model.new_cache(1), adapters)?;
    // Position p predicts token p + 1: the completion's tokens are predicted from positions
    // context.len() - 1 .. context.len() + completion.len() - 1.
    let c = completion.len();
    let h = hidden.narrow(0, context.len() - 1, c);
    let logits = model.logits(h)?;
    let logits = if logits.dtype() == DType::F32 {
        logits
    } else {
        logits.cast(DType::F32)
    };
    let logp = log_softmax(logits, 1);
    let ids: Vec<i64> = completion.iter().map(|&t| i64::from(t)).collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(ids, [c, 1]), &logp.device());
    let sum = logp.gather(1, ids).sum();
    Ok(if length_norm {
        sum.div_scalar(c as f32)
    } else {
        sum
    })
}

/// The preference loss of one pair from the four log-probabilities (`chosen`, `rejected` carry
/// gradients; the reference values are constants).
pub fn pair_loss(
    chosen: Tensor<1>,
    rejected: Tensor<1>,
    ref_chosen: f32,
    ref_rejected: f32,
    label_smoothing: f32,
    beta: f32,
    kind: LossKind,
) -> Tensor<1> {
    let z = (chosen - rejected)
        .sub_scalar(ref_chosen - ref_rejected)
        .mul_scalar(beta);
    match kind {
        LossKind::Sigmoid => {
            // −log σ(x) = softplus(−x) = max(−x, 0) + log(1 + e^−|x|).
            let softplus_neg = |x: Tensor<1>| {
                x.clone().neg().clamp_min(0.0) + x.abs().neg().exp().add_scalar(1.0).log()
            };
            softplus_neg(z.clone()).mul_scalar(1.0 - label_smoothing)
                + softplus_neg(z.neg()).mul_scalar(label_smoothing)
        }
        LossKind::Ipo => z
            .div_scalar(beta)
            .sub_scalar(1.0 / (2.0 * beta))
            .powf_scalar(2.0),
    }
}

fn scalar(t: Tensor<1>) -> Result<f32> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("reading a tensor back: {e:?}")))?
        .first()
        .copied()
        .ok_or_else(|| Error::Model("an empty tensor".into()))
}

/// Figures of one pass over pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PassStats {
    /// Mean loss.
    pub loss: f64,
    /// Mean implicit-reward margin `z / β`.
    pub margin: f64,
    /// Share of pairs with `z > 0`.
    pub accuracy: f64,
}

/// How a training run went.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DpoReport {
    /// Pairs trained on.
    pub pairs: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Before training (loss = log 2 for the sigmoid loss, margin 0).
    pub before: PassStats,
    /// Each epoch, measured over the pairs during training.
    pub epochs: Vec<PassStats>,
    /// After training, measured without updates.
    pub after: PassStats,
}

/// A DPO run: the model on an autodiff device, its adapters, and the cached reference
/// log-probabilities.
pub struct DpoTrainer<'m> {
    model: &'m Llama,
    /// The half-precision copy training runs on, for mixed precision.
    half: Option<Llama>,
    cfg: DpoConfig,
    lora: Lora,
    refs: Vec<(f32, f32)>,
    pairs: Vec<TokenPair>,
}

impl std::fmt::Debug for DpoTrainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpoTrainer")
            .field("cfg", &self.cfg)
            .field("pairs", &self.pairs.len())
            .finish()
    }
}

impl<'m> DpoTrainer<'m> {
    /// Prepares a run: fresh adapters, and the reference log-probabilities of every pair
    /// (computed once, here). `model` must live on an autodiff device
    /// (`Device::flex().autodiff()`).
    ///
    /// # Errors
    /// No pairs, or a pair the model cannot run.
    pub fn new(model: &'m Llama, pairs: Vec<TokenPair>, cfg: DpoConfig) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::Model("no preference pairs to train on".into()));
        }
        let lora = Lora::new(model.config(), &cfg.lora, cfg.seed, model.device());
        let half = match cfg.precision {
            Precision::F32 => None,
            p => Some(model.cast(p.dtype())?),
        };
        let net = half.as_ref().unwrap_or(model);
        let mut refs = Vec::with_capacity(pairs.len());
        for p in &pairs {
            let c = scalar(sequence_logprob(
                net,
                None,
                &p.context,
                &p.chosen,
                cfg.length_norm,
            )?)?;
            let r = scalar(sequence_logprob(
                net,
                None,
                &p.context,
                &p.rejected,
                cfg.length_norm,
            )?)?;
            refs.push((c, r));
        }
        Ok(DpoTrainer {
            model,
            half,
            cfg,
            lora,
            refs,
            pairs,
        })
    }

    /// The adapters as they are now.
    pub fn adapters(&self) -> Adapters<'_> {
        Adapters {
            lora: &self.lora,
            scale: self.cfg.lora.scale(),
        }
    }

    /// The loss of pair `i` under `lora`, and its `z / β`.
    fn loss_of(&self, lora: &Lora, i: usize) -> Result<(Tensor<1>, f32)> {
        let p = &self.pairs[i];
        let a = Some(Adapters {
            lora,
            scale: self.cfg.lora.scale(),
        });
        let net = self.half.as_ref().unwrap_or(self.model);
        let c = sequence_logprob(net, a, &p.context, &p.chosen, self.cfg.length_norm)?;
        let r = sequence_logprob(net, a, &p.context, &p.rejected, self.cfg.length_norm)?;
        let (rc, rr) = self.refs[i];
        let margin = scalar(c.clone())? - scalar(r.clone())? - (rc - rr);
        let loss = pair_loss(
            c,
            r,
            rc,
            rr,
            p.label_smoothing,
            self.cfg.beta,
            self.cfg.loss,
        );
        Ok((loss, margin))
    }

    /// Loss, margin and accuracy over every pair, without updating.
    ///
    /// # Errors
    /// A pair the model cannot run.
    pub fn evaluate(&self) -> Result<PassStats> {
        let mut s = PassStats::default();
        // A copy that records no autodiff graph: a graph that is never back-propagated would
        // stay alive (gigabytes over a pair set).
        let frozen = self.lora.clone().no_grad();
        for i in 0..self.pairs.len() {
            let (l, m) = self.loss_of(&frozen, i)?;
            s.loss += f64::from(scalar(l)?);
            s.margin += f64::from(m);
            s.accuracy += f64::from(u8::from(m > 0.0));
        }
        let n = self.pairs.len() as f64;
        s.loss /= n;
        s.margin /= n;
        s.accuracy /= n;
        Ok(s)
    }

    /// The learning rate at optimiser step `t` of `total`: linear warm-up, then cosine to 0.
    pub fn lr_at(&self, t: usize, total: usize) -> f64 {
        let warm = ((total as f64) * self.cfg.warmup).ceil().max(1.0) as usize;
        if t < warm {
            return self.cfg.lr * (t + 1) as f64 / warm as f64;
        }
        let span = total.saturating_sub(warm).max(1) as f64;
        let progress = ((t - warm) as f64 / span).min(1.0);
        self.cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Trains for the configured epochs, calling `on_step(step, total, loss)` after each
    /// optimiser step.
    ///
    /// # Errors
    /// A pair the model cannot run, or a non-finite loss.
    pub fn train(&mut self, mut on_step: impl FnMut(usize, usize, f64)) -> Result<DpoReport> {
        let before = self.evaluate()?;
        let accum = self.cfg.accumulate.max(1);
        let per_epoch = self.pairs.len().div_ceil(accum);
        let total = per_epoch * self.cfg.epochs;
        let mut opt = AdamWConfig::new()
            .with_weight_decay(self.cfg.weight_decay)
            .with_grad_clipping(
                (self.cfg.clip > 0.0).then_some(GradientClippingConfig::Norm(self.cfg.clip)),
            )
            .init();
        let mut rng = Rng::new(self.cfg.seed ^ 0xd0);
        let mut order: Vec<usize> = (0..self.pairs.len()).collect();
        let mut step = 0;
        let mut epochs = Vec::new();
        for _ in 0..self.cfg.epochs {
            for i in (1..order.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let mut stats = PassStats::default();
            for chunk in order.clone().chunks(accum) {
                let mut acc = GradientsAccumulator::<Lora>::new();
                let mut chunk_loss = 0.0;
                for &i in chunk {
                    let (loss, margin) = self.loss_of(&self.lora, i)?;
                    let l = scalar(loss.clone())?;
                    if !l.is_finite() {
                        return Err(Error::Model(format!("the DPO loss is {l} at pair {i}")));
                    }
                    chunk_loss += f64::from(l);
                    stats.loss += f64::from(l);
                    stats.margin += f64::from(margin);
                    stats.accuracy += f64::from(u8::from(margin > 0.0));
                    let grads = loss.div_scalar(chunk.len() as f32).backward();
                    acc.accumulate(&self.lora, GradientsParams::from_grads(grads, &self.lora));
                }
                let lora = std::mem::replace(&mut self.lora, Lora { layers: Vec::new() });
                self.lora = opt.step(self.lr_at(step, total), lora, acc.grads());
                step += 1;
                on_step(step, total, chunk_loss / chunk.len() as f64);
            }
            let n = self.pairs.len() as f64;
            stats.loss /= n;
            stats.margin /= n;
            stats.accuracy /= n;
            epochs.push(stats);
        }
        Ok(DpoReport {
            pairs: self.pairs.len(),
            steps: step,
            before,
            epochs,
            after: self.evaluate()?,
        })
    }

    /// The trained adapters.
    pub fn into_lora(self) -> Lora {
        self.lora
    }
}
