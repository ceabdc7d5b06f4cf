//! `ponder generate`: dataset -> pairs, PRM data, SFT traces (JSONL), stats and a manifest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ponder::engine::extract::{self, SCHEMA_VERSION};

use super::run::{load_problems, models, resolve_config, run_problems};
use crate::cli::args::GenerateArgs;

pub(crate) struct Jsonl {
    path: PathBuf,
    w: BufWriter<File>,
    pub(crate) lines: u64,
}

impl Jsonl {
    pub(crate) fn create(dir: &Path, name: &str, force: bool) -> Result<Self> {
        let path = dir.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let f = opts.open(&path).with_context(|| {
            if path.exists() && !force {
                format!("{} exists (use --force to replace it)", path.display())
            } else {
                format!("creating {}", path.display())
            }
        })?;
        Ok(Jsonl {
            path,
            w: BufWriter::new(f),
            lines: 0,
        })
    }

    pub(crate) fn write<T: serde::Serialize>(&mut self, v: &T) -> Result<()> {
        serde_json::to_writer(&mut self.w, v)?;
        self.w
            .write_all(b"\n")
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Every record of a finished tree reaches the file before the next tree is written.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.w
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

pub(crate) fn run(args: GenerateArgs, quiet: bool) -> Result<()> {
    let cfg = resolve_config(&args.flags)?;
    let Some(problems) = load_problems(&args.problems)? else {
        bail!("nothing to generate from: give --dataset FILE or --synthetic N");
    };
    let models = models(&cfg, &problems)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // Refuse before creating anything, so a refused run leaves no empty files behind.
    let mut names = vec![
        "pairs.jsonl",
        "prm.jsonl",
        "sft.jsonl",
        "manifest.json",
        "stats.json",
    ];
    if args.dump_trees {
        names.push("trees.jsonl");
    }
    if let Some(existing) = names
        .iter()
        .map(|n| args.out.join(n))
        .find(|p| !args.force && p.exists())
    {
        bail!("{} exists (use --force to replace it)", existing.display());
    }
    let mut pairs = Jsonl::create(&args.out, "pairs.jsonl", args.force)?;
    let mut prm = Jsonl::create(&args.out, "prm.jsonl", args.force)?;
    let mut sft = Jsonl::create(&args.out, "sft.jsonl", args.force)?;
    let mut trees = if args.dump_trees {
        Some(Jsonl::create(&args.out, "trees.jsonl", args.force)?)
    } else {
        None
    };
    let manifest = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "ponder_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "task": models.task.name(),
        "policy": models.policy.name(),
        "problems": problems.len(),
        "source": args.problems.dataset.as_ref().map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("synthetic level={} seed={}", args.problems.level, args.problems.problem_seed)),
        "started_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "config": &cfg,
    });
    std::fs::write(
        args.out.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest)?,
    )
    .with_context(|| format!("writing {}", args.out.join("manifest.json").display()))?;

    let summary = run_problems(
        &cfg,
        &models,
        &problems,
        args.flags.parallel_trees,
        quiet,
        |_, _, r| {
            let Ok(rep) = r else { return Ok(()) };
            let out = extract::extract(&rep, &cfg.search, &cfg.output);
            for p in &out.pairs {
                pairs.write(p)?;
            }
            for p in &out.prm {
                prm.write(p)?;
            }
            if let Some(s) = &out.sft {
                sft.write(s)?;
            }
            if let Some(t) = trees.as_mut() {
                t.write(&extract::dump(&rep, &cfg.search))?;
                t.flush()?;
            }
            pairs.flush()?;
            prm.flush()?;
            sft.flush()?;
            Ok(())
        },
    )?;
    let stats = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "problems": summary.problems,
        "failed": summary.failed,
        "with_gold": summary.with_gold,
        "correct": summary.correct,
        "solve_rate": summary.accuracy(),
        "pairs": pairs.lines,
        "pairs_per_problem": pairs.lines as f64 / summary.problems.max(1) as f64,
        "prm_paths": prm.lines,
        "sft_traces": sft.lines,
        "wall_seconds": summary.wall_seconds,
        "nodes_per_sec": summary.nodes_per_sec,
        "tokens_per_sec": summary.tokens_per_sec,
        "search": summary.stats,
        "batch": summary.batch,
    });
    std::fs::write(
        args.out.join("stats.json"),
        serde_json::to_vec_pretty(&stats)?,
    )
    .with_context(|| format!("writing {}", args.out.join("stats.json").display()))?;
    if !quiet {
        eprintln!(
            "wrote {} pairs, {} PRM paths, {} SFT traces for {} problems to {} ({:.2}s, solve rate {})",
            pairs.lines,
            prm.lines,
            sft.lines,
            summary.problems,
            args.out.display(),
            summary.wall_seconds,
            summary
                .accuracy()
                .map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a))
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} of {} problems failed (see the log); the others were written",
            summary.failed,
            summary.problems
        );
    }
    Ok(())
}
