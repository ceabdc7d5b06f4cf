//! `ponder train-critic` and `ponder eval-critic`: flags and printing over
//! `ponder::critics::training`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::critics::data::{self, LabelledPrefix};
use ponder::critics::head::{Head, HeadCritic, TrainConfig};
use ponder::critics::training::{self, Target, file_stem};
use ponder::critics::{arith, self_eval};
use ponder::engine::{Critic, CriticKind};
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

fn kind_of(k: HeadKind) -> CriticKind {
    match k {
        HeadKind::Value => CriticKind::Value,
        HeadKind::Prm => CriticKind::Process,
        HeadKind::Orm => CriticKind::Outcome,
    }
}

pub(crate) fn train(a: TrainCriticArgs, quiet: bool) -> Result<()> {
    if !(0.0..1.0).contains(&a.val_share) {
        bail!("--val-share must be in [0, 1)");
    }
    let all = read_all(&a.data)?;
    let kinds: Vec<CriticKind> = a.kind.iter().map(|&k| kind_of(k)).collect();
    for &kind in &kinds {
        let n = training::select(kind, &all).len();
        if n < 2 {
            bail!(
                "only {n} usable examples for a {} head in {:?}",
                file_stem(kind),
                a.data
            );
        }
    }
    let policy = load_policy(a.model.as_deref())?;
    let backbone_path = a
        .model
        .clone()
        .unwrap_or_else(ponder::policies::models::default_model_path);
    let backbone = backbone_path.file_name().map_or_else(
        || backbone_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let cfg = TrainConfig {
        hidden: a.hidden,
        lr: a.lr,
        max_epochs: a.epochs,
        val_share: a.val_share,
        seed: a.seed,
        ..TrainConfig::default()
    };
    let mut b: Option<ProgressBar> = None;
    let job = training::HeadJob {
        backbone_name: &backbone,
        kinds: &kinds,
        train: &cfg,
        out: &a.out,
        about: serde_json::json!({"data": a.data, "backbone_path": backbone_path}),
    };
    let heads = training::train_heads(&*policy, &all, &job, &mut |done, total| {
        b.get_or_insert_with(|| bar(total, quiet, "encoding"))
            .set_position(done as u64)
    });
    if let Some(b) = &b {
        b.finish_and_clear();
    }
    for h in heads? {
        let report = &h.report;
        println!(
            "head={} file={} examples={} train={} val={} epochs={} best_epoch={} train_loss={:.4} val_loss={:.4} encode_s={:.1} train_s={:.1}",
            file_stem(h.kind),
            h.file.display(),
            h.examples,
            report.n_train,
            report.n_val,
            report.epochs,
            report.best_epoch,
            report.train_loss,
            report.val_loss,
            h.encode_secs,
            h.train_secs,
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
                let target = Target::of(h.kind);
                (
                    Arc::new(HeadCritic::new(&h, get_policy(a.model.as_deref())?, file)?),
                    target,
                )
            }
        };
        let start = Instant::now();
        let mut b: Option<ProgressBar> = None;
        let report = training::evaluate(&critic, target, &all, a.threshold, &mut |done, total| {
            b.get_or_insert_with(|| bar(total, quiet, critic.name()))
                .set_position(done as u64)
        });
        if let Some(b) = &b {
            b.finish_and_clear();
        }
        let Some(r) = report? else {
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
