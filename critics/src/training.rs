//! Critic heads from labelled paths, and critics measured against labels: what `ponder
//! train-critic` and `ponder eval-critic` run, as library calls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ponder_engine::{Critic, CriticKind, NodeId, PathRef, Problem, Step, Tree, TreeId};
use ponder_policies::backbone::Backbone;
use ponder_tasks::data::LabelledPrefix;
use ponder_tasks::metrics::{self, Report};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::head::{self, Example, TrainConfig, TrainReport};

/// The file stem of a head of `kind` (`value`, `process`, `outcome`).
pub fn file_stem(kind: CriticKind) -> &'static str {
    match kind {
        CriticKind::Value => "value",
        CriticKind::Process => "process",
        CriticKind::Outcome => "outcome",
    }
}

/// The examples a head of `kind` learns from, with their targets.
pub fn select(kind: CriticKind, all: &[LabelledPrefix]) -> Vec<(&LabelledPrefix, f32)> {
    all.iter()
        .filter_map(|p| match kind {
            CriticKind::Value => Some((p, p.value)),
            CriticKind::Process => Some((p, f32::from(u8::from(p.step_ok)))),
            CriticKind::Outcome => p.outcome.map(|o| (p, f32::from(u8::from(o)))),
        })
        .collect()
}

/// The backbone's features of every prefix, encoding each chain of nested prefixes once;
/// `progress` gets the number of prefixes done after each chain.
///
/// # Errors
/// A path the backbone cannot encode (named by its problem).
pub fn features(
    backbone: &dyn Backbone,
    prefixes: &[&LabelledPrefix],
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<f32>>> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; prefixes.len()];
    let mut i = 0;
    while i < prefixes.len() {
        // Extend the chain while the next prefix continues this one.
        let mut j = i + 1;
        while j < prefixes.len()
            && prefixes[j].prompt == prefixes[j - 1].prompt
            && prefixes[j].steps.starts_with(&prefixes[j - 1].steps)
        {
            j += 1;
        }
        let longest = prefixes[j - 1];
        let hidden = backbone
            .prefix_features(&longest.prompt, &longest.steps)
            .map_err(|e| {
                Error::Train(format!("encoding a path of problem {}: {e}", longest.group))
            })?;
        for k in i..j {
            out[k] = Some(hidden[prefixes[k].steps.len() - 1].clone());
        }
        progress(j);
        i = j;
    }
    Ok(out
        .into_iter()
        .map(|f| f.expect("every prefix encoded"))
        .collect())
}

/// One trained head.
#[derive(Clone, Debug, Serialize)]
pub struct TrainedHead {
    /// Its kind.
    pub kind: CriticKind,
    /// The safetensors file written.
    pub file: PathBuf,
    /// The JSON report written next to it.
    pub report_file: PathBuf,
    /// Examples it learned from (train and validation).
    pub examples: usize,
    /// Seconds spent encoding (shared by the heads of one call).
    pub encode_secs: f64,
    /// Seconds spent training this head.
    pub train_secs: f64,
    /// Losses and held-out metrics.
    pub report: TrainReport,
}

/// What [`train_heads`] trains and where it writes.
#[derive(Clone, Debug)]
pub struct HeadJob<'a> {
    /// Recorded in the heads (a head refuses another model's features).
    pub backbone_name: &'a str,
    /// One head per kind.
    pub kinds: &'a [CriticKind],
    /// Training settings.
    pub train: &'a TrainConfig,
    /// The folder `{kind}.safetensors` and `{kind}-report.json` go to.
    pub out: &'a Path,
    /// Fields added to each report (a JSON object: where the data and the model came from).
    pub about: serde_json::Value,
}

/// Trains the heads of `job` on `data` over `backbone` (every prefix encoded once) and writes
/// them with their reports; `progress` gets `(prefixes encoded, total)`.
///
/// # Errors
/// Fewer than 2 usable examples for a kind, a path that cannot be encoded, training that
/// cannot run, files that cannot be written.
pub fn train_heads(
    backbone: &dyn Backbone,
    data: &[LabelledPrefix],
    job: &HeadJob<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<TrainedHead>> {
    let (kinds, cfg, out) = (job.kinds, job.train, job.out);
    let backbone_name = job.backbone_name;
    for &kind in kinds {
        let n = select(kind, data).len();
        if n < 2 {
            return Err(Error::Train(format!(
                "only {n} usable examples for a {} head",
                file_stem(kind)
            )));
        }
    }
    let start = Instant::now();
    // Encode every prefix any of the heads needs, once.
    let needed: Vec<usize> = (0..data.len())
        .filter(|&i| kinds.iter().any(|&k| !select(k, &data[i..=i]).is_empty()))
        .collect();
    let refs: Vec<&LabelledPrefix> = needed.iter().map(|&i| &data[i]).collect();
    let total = refs.len();
    let feats = features(backbone, &refs, &mut |done| progress(done, total))?;
    let mut by_index: Vec<Option<Vec<f32>>> = vec![None; data.len()];
    for (&i, f) in needed.iter().zip(feats) {
        by_index[i] = Some(f);
    }
    let encode_secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut trained = Vec::new();
    for &kind in kinds {
        let examples: Vec<Example> = data
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (_, t) = select(kind, std::slice::from_ref(p)).pop()?;
                Some(Example {
                    group: p.group.clone(),
                    features: by_index[i].clone()?,
                    target: t,
                })
            })
            .collect();
        let t = Instant::now();
        let (h, report) = head::train(kind, &examples, cfg, backbone_name)?;
        let train_secs = t.elapsed().as_secs_f64();
        let file = out.join(format!("{}.safetensors", file_stem(kind)));
        h.save(&file)?;
        let report_file = out.join(format!("{}-report.json", file_stem(kind)));
        let mut json = serde_json::json!({
            "kind": file_stem(kind),
            "backbone": backbone_name,
            "examples": examples.len(),
            "encode_secs": encode_secs,
            "train_secs": train_secs,
            "config": {"hidden": cfg.hidden, "lr": cfg.lr, "max_epochs": cfg.max_epochs,
                       "val_share": cfg.val_share, "seed": cfg.seed, "batch": cfg.batch,
                       "patience": cfg.patience},
            "report": report,
        });
        if let (Some(obj), Some(extra)) = (json.as_object_mut(), job.about.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let body = serde_json::to_string_pretty(&json).expect("reports serialise") + "\n";
        std::fs::write(&report_file, body).map_err(|source| Error::Io {
            path: report_file.clone(),
            source,
        })?;
        trained.push(TrainedHead {
            kind,
            file,
            report_file,
            examples: examples.len(),
            encode_secs,
            train_secs,
            report,
        });
    }
    Ok(trained)
}

/// What a critic is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The latest step is good (every prefix).
    Step,
    /// The path is correct (complete paths only).
    Outcome,
    /// The share of correct outcomes through the prefix is above one half (every prefix).
    Value,
}

impl Target {
    /// `step`, `outcome` or `value`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Step => "step",
            Target::Outcome => "outcome",
            Target::Value => "value",
        }
    }

    /// What a critic of `kind` is measured against.
    pub fn of(kind: CriticKind) -> Target {
        match kind {
            CriticKind::Value => Target::Value,
            CriticKind::Process => Target::Step,
            CriticKind::Outcome => Target::Outcome,
        }
    }

    /// The label of `p` for this target (none: `p` does not count).
    pub fn label(self, p: &LabelledPrefix) -> Option<bool> {
        match self {
            Target::Step => Some(p.step_ok),
            Target::Outcome => p.outcome,
            Target::Value => Some(p.value > 0.5),
        }
    }
}

/// The question inside a task prompt (the math task appends its instruction after a blank line).
fn question_of(prompt: &str) -> String {
    let task = ponder_tasks::math::MathTask::default();
    let probe = ponder_engine::Task::prompt(&task, &Problem::new("", ""));
    let suffix = probe.trim_start_matches('\n');
    prompt
        .strip_suffix(suffix)
        .map_or(prompt, |q| q.trim_end())
        .to_string()
}

/// Scores every labelled prefix of `data` that `target` labels with `critic` (one path at a
/// time, normalised to `[0, 1]`) and reports accuracy at `threshold`, AUROC, ECE and the rest
/// (`None` when nothing is labelled); `progress` gets the count done.
///
/// # Errors
/// A critic failure, or a score outside the critic's declared range.
pub fn evaluate(
    critic: &Arc<dyn Critic>,
    target: Target,
    data: &[LabelledPrefix],
    threshold: f32,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Report>> {
    let items: Vec<(&LabelledPrefix, bool)> = data
        .iter()
        .filter_map(|p| target.label(p).map(|l| (p, l)))
        .collect();
    let mut scores = Vec::with_capacity(items.len());
    for (i, (p, _)) in items.iter().enumerate() {
        let steps: Vec<Step> = p
            .steps
            .iter()
            .map(|s| Step {
                text: s.clone(),
                ..Step::default()
            })
            .collect();
        let (tree, ids) = Tree::chain(
            TreeId(i as u32),
            Problem::new(&p.group, question_of(&p.prompt)),
            p.prompt.clone(),
            steps,
            p.outcome.is_some(),
        )
        .map_err(|e| Error::Train(format!("problem {}: {e}", p.group)))?;
        let leaf = *ids.last().unwrap_or(&NodeId::ROOT);
        let raw = critic
            .score(&[PathRef::new(&tree, leaf)])
            .map_err(|e| Error::Train(format!("critic `{}`: {e}", critic.name())))?;
        critic.release(tree.id());
        let x = raw.first().copied().unwrap_or(f32::NAN);
        scores.push(critic.range().normalise(x).ok_or_else(|| {
            Error::Train(format!(
                "critic `{}` scored {x}, outside its range",
                critic.name()
            ))
        })?);
        progress(i + 1, items.len());
    }
    let labels: Vec<bool> = items.iter().map(|(_, l)| *l).collect();
    Ok(metrics::report(&scores, &labels, threshold, 10))
}
