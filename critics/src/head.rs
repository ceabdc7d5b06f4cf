//! Learned critics: a small MLP head (`d_model → hidden → 1`, ReLU, sigmoid) over the policy
//! backbone's last hidden state, for each of the trio — value (expected outcome of a partial
//! path; AlphaLLM), PRM (correctness of the latest step; Math-Shepherd-style Monte-Carlo
//! labels) and ORM (correctness of a complete path).
//!
//! Training runs on Burn's autodiff (Adam, mini-batches, early stopping on a held-out split of
//! *problems*, so prefixes of one problem never sit on both sides). The value head minimises
//! the squared error of its sigmoid against soft targets (the share of correct outcomes through a
//! prefix, or MCTS Q-values); the PRM and ORM heads minimise binary cross-entropy.
//!
//! # File format
//! A head is one safetensors file: `w1` `[hidden, d]`, `b1` `[hidden]`, `w2` `[1, hidden]`,
//! `b2` `[1]`, and the feature standardisation `mean`, `std` `[d]` (all F32), with metadata
//! `format = "ponder-critic-head"`, `version = "1"`, `kind` (`value`/`process`/`outcome`),
//! `d_model`, and `backbone` (the model the features came from; a head only makes sense on it).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use ponder_engine::rng::Rng;
use ponder_engine::{BoxError, Critic, CriticKind, PathRef, ScoreRange};
use ponder_policies::backbone::Backbone;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};
use crate::metrics::{self, Report};

/// The file format's name and version.
const FORMAT: &str = "ponder-critic-head";
const VERSION: &str = "1";

/// Training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Hidden units.
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Examples per step.
    pub batch: usize,
    /// Most passes over the training split.
    pub max_epochs: usize,
    /// Epochs without a better held-out loss before stopping.
    pub patience: usize,
    /// Share of problems held out.
    pub val_share: f64,
    /// Seed of the initial weights, the split and the shuffles.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: 128,
            lr: 1e-3,
            batch: 64,
            max_epochs: 200,
            patience: 10,
            val_share: 0.2,
            seed: 0,
        }
    }
}

/// One training example: backbone features and a target in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// What the held-out split groups by (the problem id).
    pub group: String,
    /// The features (`d_model` values).
    pub features: Vec<f32>,
    /// The target: a label (0/1) or a soft value.
    pub target: f32,
}

/// How training went.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainReport {
    /// Training / held-out examples.
    pub n_train: usize,
    /// Held-out examples.
    pub n_val: usize,
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Training loss at the kept epoch.
    pub train_loss: f64,
    /// Held-out loss at the kept epoch.
    pub val_loss: f64,
    /// Held-out classification figures (targets > 0.5 as positives).
    pub val: Option<Report>,
}

/// A trained head, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// Which critic it is.
    pub kind: CriticKind,
    /// Feature width.
    pub d_model: usize,
    /// Hidden units.
    pub hidden: usize,
    /// The backbone the features came from.
    pub backbone: String,
    mean: Vec<f32>,
    std: Vec<f32>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: f32,
}

#[derive(Module, Debug)]
struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    /// Seeded initial weights (uniform, Glorot scale), `[in, out]` layout as Burn's `Linear`.
    fn init(d: usize, hidden: usize, seed: u64, device: &Device) -> Self {
        let mut rng = Rng::new(seed);
        let mut uniform = |n: usize, fan_in: usize, fan_out: usize| -> Vec<f32> {
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * a) as f32)
                .collect()
        };
        let lin = |w: Vec<f32>, i: usize, o: usize| Linear {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [i, o]), device)),
            bias: Some(Param::from_tensor(Tensor::zeros([o], device))),
        };
        Mlp {
            l1: lin(uniform(d * hidden, d, hidden), d, hidden),
            l2: lin(uniform(hidden, hidden, 1), hidden, 1),
        }
    }

    /// Logits `[n, 1]`.
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l2.forward(relu(self.l1.forward(x)))
    }
}

/// The training loss of logits `z` against targets `y` (both `[n, 1]`).
fn loss(kind: CriticKind, z: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
    match kind {
        // Squared error of the probability against soft targets.
        CriticKind::Value => (sigmoid(z) - y).powf_scalar(2.0).mean(),
        // Binary cross-entropy with logits, in its stable form:
        // max(z, 0) − z·y + log(1 + e^−|z|).
        CriticKind::Process | CriticKind::Outcome => {
            let stable = z.clone().abs().neg().exp().add_scalar(1.0).log();
            (z.clone().clamp_min(0.0) - z * y + stable).mean()
        }
    }
}

fn read(t: Tensor<1>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Train(format!("reading a tensor back: {e:?}")))
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    Ok(f64::from(read(t)?.first().copied().unwrap_or(f32::NAN)))
}

/// FNV-1a: a stable hash for the split (independent of Rust's randomised hasher).
fn fnv(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Trains a head of `kind` on `examples` (features from `backbone`).
///
/// # Errors
/// No examples, features of different widths, targets outside `[0, 1]`, or a backend failure.
pub fn train(
    kind: CriticKind,
    examples: &[Example],
    cfg: &TrainConfig,
    backbone: &str,
) -> Result<(Head, TrainReport)> {
    let d = examples
        .first()
        .map(|e| e.features.len())
        .ok_or_else(|| Error::Train("no training examples".into()))?;
    if let Some((i, e)) = examples
        .iter()
        .enumerate()
        .find(|(_, e)| e.features.len() != d)
    {
        return Err(Error::Train(format!(
            "example {i} has {} features, the first has {d}",
            e.features.len()
        )));
    }
    if let Some((i, e)) = examples
        .iter()
        .enumerate()
        .find(|(_, e)| !(0.0..=1.0).contains(&e.target))
    {
        return Err(Error::Train(format!(
            "example {i} has target {} outside [0, 1]",
            e.target
        )));
    }
    // Held-out split by problem; with a single problem, by example.
    let by_group: Vec<bool> = examples
        .iter()
        .map(|e| (fnv(&e.group, cfg.seed) % 10_000) as f64 / 10_000.0 < cfg.val_share)
        .collect();
    let mut is_val = by_group;
    if is_val.iter().all(|&v| v) || !is_val.iter().any(|&v| v) {
        is_val = (0..examples.len())
            .map(|i| (fnv(&i.to_string(), cfg.seed) % 10_000) as f64 / 10_000.0 < cfg.val_share)
            .collect();
    }
    let train_idx: Vec<usize> = (0..examples.len()).filter(|&i| !is_val[i]).collect();
    let val_idx: Vec<usize> = (0..examples.len()).filter(|&i| is_val[i]).collect();
    let train_idx = if train_idx.is_empty() {
        val_idx.clone()
    } else {
        train_idx
    };
    // Standardise features with the training split's statistics.
    let n = train_idx.len() as f64;
    let mut mean = vec![0f64; d];
    for &i in &train_idx {
        for (m, &x) in mean.iter_mut().zip(&examples[i].features) {
            *m += f64::from(x) / n;
        }
    }
    let mut var = vec![0f64; d];
    for &i in &train_idx {
        for ((v, &x), m) in var.iter_mut().zip(&examples[i].features).zip(&mean) {
            *v += (f64::from(x) - m).powi(2) / n;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let std: Vec<f32> = var.iter().map(|&v| (v.sqrt() as f32).max(1e-4)).collect();

    let device = Device::flex().autodiff();
    let matrix = |idx: &[usize]| -> (Tensor<2>, Tensor<2>) {
        let mut x = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            x.extend(
                examples[i]
                    .features
                    .iter()
                    .zip(mean.iter().zip(&std))
                    .map(|(&v, (m, s))| (v - m) / s),
            );
        }
        let y: Vec<f32> = idx.iter().map(|&i| examples[i].target).collect();
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), d]), &device),
            Tensor::from_data(TensorData::new(y, [idx.len(), 1]), &device),
        )
    };
    let (x_train, y_train) = matrix(&train_idx);
    let val = (!val_idx.is_empty()).then(|| matrix(&val_idx));

    let mut model = Mlp::init(d, cfg.hidden.max(1), cfg.seed, &device);
    let mut opt = AdamConfig::new().init();
    let mut rng = Rng::new(cfg.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..train_idx.len()).collect();
    let mut best: Option<(f64, usize, f64, Mlp)> = None;
    let mut epochs = 0;
    for epoch in 0..cfg.max_epochs.max(1) {
        epochs = epoch + 1;
        // Fisher-Yates with the seeded stream.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut sum = 0.0;
        for chunk in order.chunks(cfg.batch.max(1)) {
            let ids: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let ids: Tensor<1, Int> =
                Tensor::from_data(TensorData::new(ids, [chunk.len()]), &device);
            let xb = x_train.clone().select(0, ids.clone());
            let yb = y_train.clone().select(0, ids);
            let l = loss(kind, model.forward(xb), yb);
            sum += scalar(l.clone())? * chunk.len() as f64;
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = opt.step(cfg.lr, model, grads);
        }
        let train_loss = sum / order.len().max(1) as f64;
        let val_loss = match &val {
            Some((x, y)) => scalar(loss(kind, model.forward(x.clone()), y.clone()))?,
            None => train_loss,
        };
        if !val_loss.is_finite() {
            return Err(Error::Train(format!("the loss diverged at epoch {epochs}")));
        }
        let better = best.as_ref().is_none_or(|b| val_loss < b.0 - 1e-6);
        if better {
            best = Some((val_loss, epochs, train_loss, model.clone()));
        } else if best
            .as_ref()
            .is_some_and(|b| epochs - b.1 >= cfg.patience.max(1))
        {
            break;
        }
    }
    let (val_loss, best_epoch, train_loss, model) =
        best.ok_or_else(|| Error::Train("no epoch ran".into()))?;
    let w1 = read(
        model
            .l1
            .weight
            .val()
            .transpose()
            .reshape([cfg.hidden.max(1) * d]),
    )?;
    let b1 = read(
        model
            .l1
            .bias
            .as_ref()
            .map(Param::val)
            .ok_or_else(|| Error::Train("layer 1 lost its bias".into()))?,
    )?;
    let w2 = read(model.l2.weight.val().reshape([cfg.hidden.max(1)]))?;
    let b2 = read(
        model
            .l2
            .bias
            .as_ref()
            .map(Param::val)
            .ok_or_else(|| Error::Train("layer 2 lost its bias".into()))?,
    )?[0];
    let head = Head {
        kind,
        d_model: d,
        hidden: cfg.hidden.max(1),
        backbone: backbone.to_string(),
        mean,
        std,
        w1,
        b1,
        w2,
        b2,
    };
    let report_val = if val_idx.is_empty() {
        None
    } else {
        let feats: Vec<Vec<f32>> = val_idx
            .iter()
            .map(|&i| examples[i].features.clone())
            .collect();
        let scores = head.scores(&feats, &Device::flex())?;
        let labels: Vec<bool> = val_idx.iter().map(|&i| examples[i].target > 0.5).collect();
        metrics::report(&scores, &labels, 0.5, 10)
    };
    Ok((
        head,
        TrainReport {
            n_train: train_idx.len(),
            n_val: val_idx.len(),
            epochs,
            best_epoch,
            train_loss,
            val_loss,
            val: report_val,
        },
    ))
}

fn kind_name(k: CriticKind) -> &'static str {
    match k {
        CriticKind::Value => "value",
        CriticKind::Process => "process",
        CriticKind::Outcome => "outcome",
    }
}

impl Head {
    /// Scores feature vectors (probabilities in `[0, 1]`), on `device`.
    ///
    /// # Errors
    /// Features of the wrong width, or a backend failure.
    pub fn scores(&self, features: &[Vec<f32>], device: &Device) -> Result<Vec<f32>> {
        self.on(device).scores(features)
    }

    /// The head's tensors on a device, ready to score.
    pub fn on(&self, device: &Device) -> DeviceHead {
        let t1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        DeviceHead {
            d: self.d_model,
            mean: t1(&self.mean).unsqueeze(),
            inv_std: t1(&self.std).recip().unsqueeze(),
            w1: Tensor::from_data(
                TensorData::new(self.w1.clone(), [self.hidden, self.d_model]),
                device,
            ),
            b1: t1(&self.b1).unsqueeze_dim(1),
            w2: Tensor::from_data(TensorData::new(self.w2.clone(), [1, self.hidden]), device),
            b2: self.b2,
            device: device.clone(),
        }
    }

    /// Writes the head as one safetensors file (see the module docs).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let b2 = [self.b2];
        let parts: Vec<(&str, Vec<u8>, Vec<usize>)> = vec![
            ("w1", bytes(&self.w1), vec![self.hidden, self.d_model]),
            ("b1", bytes(&self.b1), vec![self.hidden]),
            ("w2", bytes(&self.w2), vec![1, self.hidden]),
            ("b2", bytes(&b2), vec![1]),
            ("mean", bytes(&self.mean), vec![self.d_model]),
            ("std", bytes(&self.std), vec![self.d_model]),
        ];
        let bad = |m: String| Error::BadFile {
            path: path.display().to_string(),
            message: m,
        };
        let mut views = Vec::new();
        for (name, data, shape) in &parts {
            views.push((
                *name,
                TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| bad(e.to_string()))?,
            ));
        }
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("kind", kind_name(self.kind).to_string()),
            ("d_model", self.d_model.to_string()),
            ("backbone", self.backbone.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = safetensors::serialize(views, Some(meta)).map_err(|e| bad(e.to_string()))?;
        // Write to a temporary file, then rename: a crash never leaves half a head behind.
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, out).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a head written by [`Head::save`].
    ///
    /// # Errors
    /// [`Error::BadFile`] naming the file and the field for anything malformed: not
    /// safetensors, another format or version, an unknown kind, a missing tensor, a wrong dtype
    /// or shape, non-finite weights.
    pub fn load(path: &Path) -> Result<Head> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |m: String| Error::BadFile {
            path: path.display().to_string(),
            message: m,
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| -> Result<String> {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("metadata field `{k}` is missing")))
        };
        let format = field("format")?;
        if format != FORMAT {
            return Err(bad(format!(
                "metadata `format` is `{format}`, expected `{FORMAT}`"
            )));
        }
        let version = field("version")?;
        if version != VERSION {
            return Err(bad(format!(
                "metadata `version` is `{version}`; this ponder reads version {VERSION}"
            )));
        }
        let kind = match field("kind")?.as_str() {
            "value" => CriticKind::Value,
            "process" => CriticKind::Process,
            "outcome" => CriticKind::Outcome,
            other => {
                return Err(bad(format!(
                    "metadata `kind` is `{other}` (value, process or outcome)"
                )));
            }
        };
        let tensor = |name: &str, shape: Option<&[usize]>| -> Result<(Vec<usize>, Vec<f32>)> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    t.dtype()
                )));
            }
            if let Some(s) = shape
                && t.shape() != s
            {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected {s:?}",
                    t.shape()
                )));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "tensor `{name}` has a non-finite value at {i}"
                )));
            }
            Ok((t.shape().to_vec(), v))
        };
        let (shape, w1) = tensor("w1", None)?;
        let [hidden, d] = shape[..] else {
            return Err(bad(format!(
                "tensor `w1` has shape {shape:?}, expected 2-D"
            )));
        };
        let declared: usize = field("d_model")?
            .parse()
            .map_err(|_| bad("metadata `d_model` is not a number".into()))?;
        if declared != d {
            return Err(bad(format!(
                "metadata `d_model` is {declared} but `w1` is {hidden}x{d}"
            )));
        }
        Ok(Head {
            kind,
            d_model: d,
            hidden,
            backbone: field("backbone")?,
            w1,
            b1: tensor("b1", Some(&[hidden]))?.1,
            w2: tensor("w2", Some(&[1, hidden]))?.1,
            b2: tensor("b2", Some(&[1]))?.1[0],
            mean: tensor("mean", Some(&[d]))?.1,
            std: tensor("std", Some(&[d]))?.1,
        })
    }
}

/// A head's tensors on a device.
#[derive(Debug)]
pub struct DeviceHead {
    d: usize,
    mean: Tensor<2>,
    inv_std: Tensor<2>,
    w1: Tensor<2>,
    b1: Tensor<2>,
    w2: Tensor<2>,
    b2: f32,
    device: Device,
}

impl DeviceHead {
    /// Probabilities for a batch of feature vectors.
    ///
    /// # Errors
    /// Features of the wrong width, or a backend failure.
    pub fn scores(&self, features: &[Vec<f32>]) -> Result<Vec<f32>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(f) = features.iter().find(|f| f.len() != self.d) {
            return Err(Error::Train(format!(
                "a feature vector of {} values for a head over {}",
                f.len(),
                self.d
            )));
        }
        let n = features.len();
        let x: Vec<f32> = features.iter().flatten().copied().collect();
        let x: Tensor<2> = Tensor::from_data(TensorData::new(x, [n, self.d]), &self.device);
        let x = (x - self.mean.clone()) * self.inv_std.clone();
        // Hidden `[hidden, n]` = W1 · xᵀ + b1 (the weight as the long side; see the decoder).
        let h = relu(self.w1.clone().matmul(x.transpose()) + self.b1.clone());
        let z = self.w2.clone().matmul(h).add_scalar(self.b2);
        read(sigmoid(z).reshape([n]))
    }
}

/// A trained head as one of the engine's critics, reading features from the policy's backbone
/// (shared KV cache: a path the policy encoded is not encoded again).
pub struct HeadCritic {
    name: String,
    kind: CriticKind,
    head: DeviceHead,
    policy: Arc<dyn Backbone>,
}

impl std::fmt::Debug for HeadCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadCritic")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

impl HeadCritic {
    /// Wraps a head over `policy`'s backbone.
    ///
    /// # Errors
    /// [`Error::BadFile`] if the head was trained on features of another width.
    pub fn new(head: &Head, policy: Arc<dyn Backbone>, source: &str) -> Result<Self> {
        if head.d_model != policy.feature_dim() {
            return Err(Error::BadFile {
                path: source.to_string(),
                message: format!(
                    "the head reads {} features but the policy's model has {} (trained on `{}`)",
                    head.d_model,
                    policy.feature_dim(),
                    head.backbone
                ),
            });
        }
        Ok(HeadCritic {
            name: format!("{}-head", kind_name(head.kind)),
            kind: head.kind,
            head: head.on(&policy.device()),
            policy,
        })
    }
}

impl Critic for HeadCritic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CriticKind {
        self.kind
    }

    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }

    fn score(&self, paths: &[PathRef<'_>]) -> std::result::Result<Vec<f32>, BoxError> {
        let feats = self.policy.features(paths)?;
        Ok(self.head.scores(&feats)?)
    }
}
