//! `ponder train-critic` and `ponder eval-critic`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::critics::data::{self, LabelledPrefix};
use ponder::critics::head::{self, Example, Head, HeadCritic, TrainConfig};
use ponder::critics::{arith, metrics, self_eval};
use ponder::engine::{Critic, CriticKind, NodeId, PathRef, Problem, Step, Tree, TreeId};
use ponder::policies::step_policy::LlamaPolicy;

use crate::cli::args::{EvalCriticArgs, HeadKind, TrainCriticArgs};
use ponder::runtime::{Config, PolicyKind};

fn bar(len: usize, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} ETA {{eta}}"
        ))
        .expect("static template"),
    );
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

fn load_policy(model: Option<&Path>) -> Result<Arc<LlamaPolicy>> {
    let mut cfg = Config::default();
    cfg.policy.kind = PolicyKind::Llm;
    cfg.policy.model = model.map(Path::to_path_buf);
    Ok(Arc::new(ponder::runtime::models::load_local_policy(
        &cfg.policy,
    )?))
}

fn read_all(files: &[std::path::PathBuf]) -> Result<Vec<LabelledPrefix>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(data::read_jsonl(f)?);
    }
    if out.is_empty() {
        bail!("no labelled paths in {files:?}");
    }
    Ok(out)
}

/// The backbone's features of every prefix, encoding each chain of nested prefixes once.
fn features(
    policy: &LlamaPolicy,
    prefixes: &[&LabelledPrefix],
    quiet: bool,
) -> Result<Vec<Vec<f32>>> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; prefixes.len()];
    let b = bar(prefixes.len(), quiet, "encoding");
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
        let hidden = policy
            .step_features(&longest.prompt, &longest.steps)
            .with_context(|| format!("encoding a path of problem {}", longest.group))?;
        for k in i..j {
            out[k] = Some(hidden[prefixes[k].steps.len() - 1].clone());
        }
        b.inc((j - i) as u64);
        i = j;
    }
    b.finish_and_clear();
    Ok(out
        .into_iter()
        .map(|f| f.expect("every prefix encoded"))
        .collect())
}

fn kind_of(k: HeadKind) -> CriticKind {
    match k {
        HeadKind::Value => CriticKind::Value,
        HeadKind::Prm => CriticKind::Process,
        HeadKind::Orm => CriticKind::Outcome,
    }
}

fn file_stem(k: CriticKind) -> &'static str {
    match k {
        CriticKind::Value => "value",
        CriticKind::Process => "process",
        CriticKind::Outcome => "outcome",
    }
}

/// The examples a head of `kind` learns from, with their targets.
fn select(kind: CriticKind, all: &[LabelledPrefix]) -> Vec<(&LabelledPrefix, f32)> {
    all.iter()
        .filter_map(|p| match kind {
            CriticKind::Value => Some((p, p.value)),
            CriticKind::Process => Some((p, f32::from(u8::from(p.step_ok)))),
            CriticKind::Outcome => p.outcome.map(|o| (p, f32::from(u8::from(o)))),
        })
        .collect()
}

pub(crate) fn train(a: TrainCriticArgs, quiet: bool) -> Result<()> {
    if !(0.0..1.0).contains(&a.val_share) {
        bail!("--val-share must be in [0, 1)");
    }
    let all = read_all(&a.data)?;
    let kinds: Vec<CriticKind> = a.kind.iter().map(|&k| kind_of(k)).collect();
    for &kind in &kinds {
        let n = select(kind, &all).len();
        if n < 2 {
            bail!(
                "only {n} usable examples for a {} head in {:?}",
                file_stem(kind),
                a.data
            );
        }
    }
    let policy = load_policy(a.model.as_deref())?;
    let start = Instant::now();
    // Encode every prefix any of the heads needs, once.
    let needed: Vec<usize> = (0..all.len())
        .filter(|&i| kinds.iter().any(|&k| !select(k, &all[i..=i]).is_empty()))
        .collect();
    let refs: Vec<&LabelledPrefix> = needed.iter().map(|&i| &all[i]).collect();
    let feats = features(&policy, &refs, quiet)?;
    let mut by_index: Vec<Option<Vec<f32>>> = vec![None; all.len()];
    for (&i, f) in needed.iter().zip(feats) {
        by_index[i] = Some(f);
    }
    let encode_s = start.elapsed().as_secs_f64();
    let backbone_path = a
        .model
        .clone()
        .unwrap_or_else(ponder::policies::models::default_model_path);
    let backbone = backbone_path.file_name().map_or_else(
        || backbone_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for kind in kinds {
        let examples: Vec<Example> = all
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
        let cfg = TrainConfig {
            hidden: a.hidden,
            lr: a.lr,
            max_epochs: a.epochs,
            val_share: a.val_share,
            seed: a.seed,
            ..TrainConfig::default()
        };
        let t = Instant::now();
        let (h, report) = head::train(kind, &examples, &cfg, &backbone)?;
        let train_s = t.elapsed().as_secs_f64();
        let file = a.out.join(format!("{}.safetensors", file_stem(kind)));
        h.save(&file)?;
        let report_file = a.out.join(format!("{}-report.json", file_stem(kind)));
        let json = serde_json::json!({
            "kind": file_stem(kind),
            "data": a.data,
            "backbone": backbone,
            "backbone_path": backbone_path,
            "examples": examples.len(),
            "encode_secs": encode_s,
            "train_secs": train_s,
            "config": {"hidden": cfg.hidden, "lr": cfg.lr, "max_epochs": cfg.max_epochs,
                       "val_share": cfg.val_share, "seed": cfg.seed, "batch": cfg.batch,
                       "patience": cfg.patience},
            "report": report,
        });
        std::fs::write(&report_file, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", report_file.display()))?;
        println!(
            "head={} file={} examples={} train={} val={} epochs={} best_epoch={} train_loss={:.4} val_loss={:.4} encode_s={encode_s:.1} train_s={train_s:.1}",
            file_stem(kind),
            file.display(),
            examples.len(),
            report.n_train,
            report.n_val,
            report.epochs,
            report.best_epoch,
            report.train_loss,
            report.val_loss,
        );
        if let Some(v) = report.val {
            println!(
                "val: accuracy={:.3} precision={:.3} recall={:.3} auroc={:.3} ece={:.3} base_rate={:.3}",
                v.accuracy, v.precision, v.recall, v.auroc, v.ece, v.base_rate
            );
        }
    }
    Ok(())
}

/// What a critic is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The latest step is good (every prefix).
    Step,
    /// The path is correct (complete paths only).
    Outcome,
    /// The share of correct outcomes through the prefix is above one half (every prefix).
    Value,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Step => "step",
            Target::Outcome => "outcome",
            Target::Value => "value",
        }
    }

    fn label(self, p: &LabelledPrefix) -> Option<bool> {
        match self {
            Target::Step => Some(p.step_ok),
            Target::Outcome => p.outcome,
            Target::Value => Some(p.value > 0.5),
        }
    }
}

/// The question inside a task prompt (the math task appends its instruction after a blank line).
fn question_of(prompt: &str) -> String {
    let instruction = ponder::critics::math::MathTask::default();
    let probe = ponder::engine::Task::prompt(&instruction, &Problem::new("", ""));
    let suffix = probe.trim_start_matches('\n');
    prompt
        .strip_suffix(suffix)
        .map_or(prompt, |q| q.trim_end())
        .to_string()
}

pub(crate) fn eval(a: EvalCriticArgs, quiet: bool) -> Result<()> {
    let mut all = read_all(&a.data)?;
    if a.limit > 0 {
        all.truncate(a.limit);
    }
    let mut policy: Option<Arc<LlamaPolicy>> = None;
    let mut get_policy = |model: Option<&Path>| -> Result<Arc<LlamaPolicy>> {
        if let Some(p) = &policy {
            return Ok(p.clone());
        }
        let p = load_policy(model)?;
        policy = Some(p.clone());
        Ok(p)
    };
    for name in &a.critics {
        let (critic, target): (Arc<dyn Critic>, Target) = match name.as_str() {
            "arithmetic" => (Arc::new(arith::ArithmeticCritic), Target::Step),
            "self-eval" => (
                Arc::new(self_eval::SelfEvalCritic::new(
                    get_policy(a.model.as_deref())?,
                    self_eval::SelfEvalConfig::default(),
                )?),
                Target::Step,
            ),
            file => {
                let h = Head::load(Path::new(file))?;
                let target = match h.kind {
                    CriticKind::Value => Target::Value,
                    CriticKind::Process => Target::Step,
                    CriticKind::Outcome => Target::Outcome,
                };
                (
                    Arc::new(HeadCritic::new(&h, get_policy(a.model.as_deref())?, file)?),
                    target,
                )
            }
        };
        let items: Vec<(&LabelledPrefix, bool)> = all
            .iter()
            .filter_map(|p| target.label(p).map(|l| (p, l)))
            .collect();
        let b = bar(items.len(), quiet, critic.name());
        let start = Instant::now();
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
            )?;
            let leaf = *ids.last().unwrap_or(&NodeId::ROOT);
            let raw = critic
                .score(&[PathRef::new(&tree, leaf)])
                .map_err(|e| anyhow::anyhow!("critic `{}`: {e}", critic.name()))?;
            critic.release(tree.id());
            let r = critic.range();
            let x = raw.first().copied().unwrap_or(f32::NAN);
            scores.push(r.normalise(x).with_context(|| {
                format!("critic `{}` scored {x}, outside its range", critic.name())
            })?);
            b.inc(1);
        }
        b.finish_and_clear();
        let labels: Vec<bool> = items.iter().map(|(_, l)| *l).collect();
        let Some(r) = metrics::report(&scores, &labels, a.threshold, 10) else {
            println!("critic={} target={} n=0", critic.name(), target.name());
            continue;
        };
        let secs = start.elapsed().as_secs_f64();
        if a.json {
            println!(
                "{}",
                serde_json::json!({"critic": critic.name(), "target": target.name(),
                                   "secs": secs, "report": r})
            );
        } else {
            println!(
                "critic={} target={} n={} base_rate={:.3} accuracy={:.3} precision={:.3} recall={:.3} auroc={:.3} ece={:.3} brier={:.3} secs={secs:.1}",
                critic.name(),
                target.name(),
                r.n,
                r.base_rate,
                r.accuracy,
                r.precision,
                r.recall,
                r.auroc,
                r.ece,
                r.brier
            );
        }
    }
    Ok(())
}
