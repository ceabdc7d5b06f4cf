//! `ponder dpo`: step-level DPO of the policy on preference pairs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::policies::dpo::{DpoConfig, DpoReport, LossKind};
use ponder::policies::models;

use crate::cli::args::{DpoArgs, DpoLoss};
use ponder::runtime::BackendKind;

/// [`ponder::runtime::train::dpo`] with a progress bar.
pub(crate) fn train(
    model_path: &Path,
    backend: BackendKind,
    pairs: &[PathBuf],
    limit: usize,
    cfg: DpoConfig,
    out: &Path,
    quiet: bool,
) -> Result<DpoReport> {
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
    let report = ponder::runtime::train::dpo(
        model_path,
        backend,
        pairs,
        limit,
        cfg,
        out,
        &mut |step, total, loss| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        },
    );
    bar.finish_and_clear();
    Ok(report?)
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
