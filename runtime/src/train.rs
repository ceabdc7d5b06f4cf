//! Training the policy: step-level DPO on preference pairs, loading the model once on the
//! chosen backend and writing the merged checkpoint, the adapters and a report. What `ponder
//! dpo` and each round of `ponder iterate` run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ponder_policies::dpo::{self, DpoConfig, DpoReport};
use ponder_policies::models;

use crate::config::BackendKind;
use crate::error::{Error, Result};

/// Trains `model_path` by DPO on the pairs of `pairs` (the first `limit` when `limit > 0`) on
/// `backend`, and writes the merged HF checkpoint, `adapter.safetensors` and `dpo-report.json`
/// to `out`. `progress` gets `(step, steps, loss)`.
///
/// # Errors
/// A model or pairs file that cannot be read, no pairs, training that cannot run, files that
/// cannot be written.
pub fn dpo(
    model_path: &Path,
    backend: BackendKind,
    pairs: &[PathBuf],
    limit: usize,
    cfg: DpoConfig,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<DpoReport> {
    let device = backend.device()?.autodiff();
    let (model, tokenizer) = models::load(model_path, &device)?;
    let mut all = Vec::new();
    for p in pairs {
        all.extend(dpo::read_pairs(p, &tokenizer, true).map_err(ponder_policies::Error::from)?);
    }
    if limit > 0 {
        all.truncate(limit);
    }
    if all.is_empty() {
        return Err(Error::dataset(format!("{pairs:?}"), "no preference pairs"));
    }
    let n = all.len();
    let start = Instant::now();
    let mut trainer = dpo::DpoTrainer::new(&model, all, cfg.clone())?;
    let report = trainer.train(progress)?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
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
    let path = out.join("dpo-report.json");
    let body = serde_json::to_string_pretty(&json).expect("reports serialise") + "\n";
    std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
    Ok(report)
}
