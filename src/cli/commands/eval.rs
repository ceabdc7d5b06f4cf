//! `ponder eval`: flags → an [`ponder::eval::EvalSpec`] → the library's runner → the tables.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::eval::{EvalSpec, Folder, Method, report};

use super::run::{load_problems, resolve_config};
use crate::cli::args::EvalArgs;
use ponder::runtime::{Config, PolicyKind};

pub(crate) fn run(args: EvalArgs, quiet: bool) -> Result<()> {
    let folder = Folder::new(&args.out);
    if args.report_only {
        return print_report(&folder);
    }
    let cfg = resolve_config(&args.flags)?;
    let mut problems = match (args.word, load_problems(&args.problems)?) {
        (Some(n), _) => {
            if n == 0 {
                bail!("--word needs at least 1 problem");
            }
            ponder::critics::problems::word_problems(
                n,
                args.problems.level,
                args.problems.problem_seed,
                args.split.split(),
            )
        }
        (None, Some(ps)) => ps,
        (None, None) => {
            bail!("nothing to evaluate: give --dataset FILE, --word N or --synthetic N")
        }
    };
    if let Some(n) = args.limit {
        problems.truncate(n);
    }
    if problems.iter().all(|p| p.gold.is_none()) {
        bail!("the problems have no gold answers: evaluation needs them (--answer-field)");
    }
    let methods = args
        .methods
        .iter()
        .map(|m| method(m, &cfg))
        .collect::<Result<Vec<_>>>()?;
    let remote_direct = cfg.policy.kind == PolicyKind::Remote && !cfg.policy.remote.batched;
    let source = serde_json::json!({
        "dataset": args.problems.dataset,
        "word": args.word.map(|n| serde_json::json!({
            "n": n, "level": args.problems.level, "seed": args.problems.problem_seed,
            "split": format!("{:?}", args.split).to_lowercase(),
        })),
        "synthetic": args.problems.synthetic.map(|n| serde_json::json!({
            "n": n, "level": args.problems.level, "seed": args.problems.problem_seed,
        })),
        "limit": args.limit,
    });
    let settings = serde_json::json!({
        "policy": cfg.policy,
        "critics": cfg.critics,
        "task": cfg.task,
    });
    let spec = EvalSpec {
        methods,
        budgets: args.budgets.clone(),
        seeds: args.seeds.clone(),
        threads: cfg.search.parallel.threads,
        parallel_trees: args.flags.parallel_trees,
        batch: (!remote_direct).then(|| cfg.batch.clone()),
        source,
        settings,
    };
    spec.validate()?;
    let models = ponder::runtime::models::load(&cfg, &problems)?.models;
    let total =
        (problems.len() * spec.methods.len() * spec.budgets.len() * spec.seeds.len()) as u64;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
            )
            .expect("static template"),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let mut last_log = std::time::Instant::now();
    let outcome = ponder::eval::run(&models, &problems, &spec, &folder, &mut |p| {
        let msg = format!(
            "{}@{}: {:.1}% ({}/{}) {:.0} tok/s batch {:.1}{}",
            p.record.method,
            p.record.budget,
            100.0 * p.correct as f64 / p.runs.max(1) as f64,
            p.correct,
            p.runs,
            p.tokens_per_sec,
            p.policy_batch,
            if p.failed > 0 {
                format!(" errors {}", p.failed)
            } else {
                String::new()
            }
        );
        bar.set_position(p.done as u64);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = std::time::Instant::now();
            tracing::info!(done = p.done, total = p.total, "progress: {msg}");
        }
        bar.set_message(msg);
    })?;
    bar.finish_and_clear();
    tracing::info!(
        ran = outcome.ran,
        resumed = outcome.resumed,
        failed = outcome.failed,
        wall_s = outcome.wall_seconds,
        tokens = outcome.tokens,
        tokens_per_sec = outcome.tokens as f64 / outcome.wall_seconds.max(1e-9),
        policy_mean_batch = outcome.batch.as_ref().map_or(0.0, |b| b.policy.mean_batch),
        policy_mean_wait_ms = outcome
            .batch
            .as_ref()
            .map_or(0.0, |b| b.policy.mean_wait_ms),
        "evaluation done"
    );
    print_report(&folder)
}

/// A method name: built-in, or `NAME=FILE.toml` / `FILE.toml` (the file's search settings).
fn method(spec: &str, cfg: &Config) -> Result<Method> {
    let (name, file) = match spec.split_once('=') {
        Some((n, f)) => (n.to_string(), Some(f)),
        None if spec.ends_with(".toml") => (
            Path::new(spec)
                .file_stem()
                .map_or_else(|| spec.to_string(), |s| s.to_string_lossy().into_owned()),
            Some(spec),
        ),
        None => (spec.to_string(), None),
    };
    match file {
        Some(f) => {
            let file_cfg =
                Config::load(Path::new(f), None).with_context(|| format!("method `{name}`"))?;
            Ok(Method::custom(&name, file_cfg.search))
        }
        None => Ok(Method::builtin(&name, &cfg.search)?),
    }
}

fn print_report(folder: &Folder) -> Result<()> {
    let rep = report::write(folder)?;
    let manifest = folder
        .read_manifest()?
        .context("the folder has no manifest")?;
    print!("{}", report::markdown(&manifest, &rep));
    println!(
        "\nwritten: {}/{{summary.csv, comparisons.csv, table.md, plot.svg}}",
        folder.dir.display()
    );
    Ok(())
}
