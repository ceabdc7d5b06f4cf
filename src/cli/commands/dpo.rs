//! `ponder dpo`: step-level DPO of the policy on preference pairs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::policies::dpo::{self, DpoConfig, DpoReport, LossKind};
use ponder::policies::llama::Llama;
use ponder::policies::models;
use ponder::policies::tokenizer::Tokenizer;

use crate::cli::args::{DpoArgs, DpoLoss};
use ponder::runtime::BackendKind;

/// Loads a GGUF file or HF folder onto `device` (the library's one loader).
pub(crate) fn load(path: &Path, device: &Device) -> Result<(Llama, Tokenizer)> {
    Ok(models::load(path, device)?)
}

/// Trains on `pairs` on `backend` and writes the merged checkpoint, the adapters and the report
/// to `out`.
pub(crate) fn train(
    model_path: &Path,
    backend: BackendKind,
    pairs: &[PathBuf],
    limit: usize,
    cfg: DpoConfig,
    out: &Path,
    quiet: bool,
) -> Result<DpoReport> {
    let device = backend.device()?.autodiff();
    let (model, tokenizer) = load(model_path, &device)?;
    let mut all = Vec::new();
    for p in pairs {
        all.extend(dpo::read_pairs(p, &tokenizer, true)?);
    }
    if limit > 0 {
        all.truncate(limit);
    }
    if all.is_empty() {
        bail!("no preference pairs in {pairs:?}");
    }
    let n = all.len();
    let start = Instant::now();
    let mut trainer = dpo::DpoTrainer::new(&model, all, cfg.clone())?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} dpo [{elapsed_precise}] {bar:30} {pos}/{len} steps ETA {eta} {msg}",
            )
            .expect("static template"),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let report = trainer.train(|step, total, loss| {
        bar.set_length(total as u64);
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    model.save_hf(out, &tokenizer, Some(trainer.adapters()))?;
    let lora = trainer.into_lora();
    lora.save(&out.join("adapter.safetensors"), &cfg.lora)?;
    let json = serde_json::json!({
        "base_model": model_path,
        "pairs_files": pairs,
        "pairs": n,
        "secs": secs,
        "config": {
            "beta": cfg.beta, "loss": format!("{:?}", cfg.loss), "length_norm": cfg.length_norm,
            "rank": cfg.lora.rank, "alpha": cfg.lora.alpha, "full": cfg.lora.full,
            "precision": format!("{:?}", cfg.precision),
            "targets": cfg.lora.targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
            "lr": cfg.lr, "epochs": cfg.epochs, "accumulate": cfg.accumulate,
            "warmup": cfg.warmup, "clip": cfg.clip, "seed": cfg.seed,
        },
        "report": report,
    });
    std::fs::write(
        out.join("dpo-report.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )
    .with_context(|| format!("writing {}", out.join("dpo-report.json").display()))?;
    Ok(report)
}

pub(crate) fn run(a: DpoArgs, quiet: bool) -> Result<()> {
    let lora = a.lora.config()?;
    let precision = a.lora.precision.get();
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if a.epochs == 0 || !positive(f64::from(a.beta)) || !positive(a.lr) {
        bail!("--epochs, --beta and --lr must be positive");
    }
    let cfg = DpoConfig {
        beta: a.beta,
        loss: match a.loss {
            DpoLoss::Sigmoid => LossKind::Sigmoid,
            DpoLoss::Ipo => LossKind::Ipo,
        },
        length_norm: a.length_norm,
        lora,
        lr: a.lr,
        epochs: a.epochs,
        accumulate: a.accumulate,
        seed: a.seed,
        precision,
        ..DpoConfig::default()
    };
    let model = a.model.clone().unwrap_or_else(models::default_model_path);
    let start = Instant::now();
    let r = train(&model, a.backend, &a.pairs, a.limit, cfg, &a.out, quiet)?;
    println!(
        "pairs={} steps={} loss_before={:.4} loss_after={:.4} margin_before={:.4} margin_after={:.4} accuracy_after={:.3} secs={:.1} out={}",
        r.pairs,
        r.steps,
        r.before.loss,
        r.after.loss,
        r.before.margin,
        r.after.margin,
        r.after.accuracy,
        start.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
