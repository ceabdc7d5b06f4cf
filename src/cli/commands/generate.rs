//! `ponder generate`: dataset -> pairs, PRM data, SFT traces (JSONL), stats and a manifest.

use anyhow::{Result, bail};

use super::run::{Reporter, load_problems, resolve_config, searcher};
use crate::cli::args::GenerateArgs;
use ponder::runtime::generate::{GenerateOptions, generate, parse_shard};

pub(crate) fn run(args: GenerateArgs, quiet: bool) -> Result<()> {
    let cfg = resolve_config(&args.flags)?;
    let Some(all) = load_problems(&args.problems)? else {
        bail!("nothing to generate from: give --dataset FILE or --synthetic N");
    };
    let shard = args
        .shard
        .as_deref()
        .map(|s| {
            parse_shard(s).map_err(|_| {
                anyhow::anyhow!("--shard `{s}`: expected i/n with 0 <= i < n (for example 0/8)")
            })
        })
        .transpose()?;
    let searcher = searcher(&cfg, &all)?;
    let opts = GenerateOptions {
        out: args.out.clone(),
        shard,
        dump_trees: args.dump_trees,
        force: args.force,
        fsync: args.fsync,
        parallel_trees: args.flags.parallel_trees,
        source: args
            .problems
            .dataset
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                format!(
                    "synthetic n={} level={} seed={}",
                    all.len(),
                    args.problems.level,
                    args.problems.problem_seed
                )
            }),
        command: std::env::args().collect(),
        control: None,
    };
    let client = searcher.loaded().client.clone();
    let status = move || {
        client.as_ref().map_or(String::new(), |c| {
            let s = c.stats();
            format!(
                " in flight {} retries {} prompt/token {:.0}{}",
                c.in_flight(),
                s.retries,
                s.prompt_per_completion(),
                if s.short_answers > 0 {
                    " (server ignores n)"
                } else {
                    ""
                }
            )
        })
    };
    // The bar covers the problems left to do; the library says how many after reading the
    // journal, so it is sized on the first update.
    let mut reporter: Option<Reporter<'_>> = None;
    let outcome = generate(&searcher, &all, &opts, &mut |p| {
        reporter
            .get_or_insert_with(|| Reporter::new(p.total, quiet, Some(&status)))
            .update(p)
    });
    if let Some(r) = &reporter {
        r.finish();
    }
    let outcome = outcome?;
    let summary = &outcome.summary;
    if !quiet {
        if outcome.done_before > 0 {
            eprintln!(
                "resumed {}: {} of {} problems were done before this run",
                args.out.display(),
                outcome.done_before,
                outcome.problems
            );
        }
        let lines = |n: &str| {
            outcome
                .written
                .iter()
                .find(|(k, _)| k == n)
                .map_or(0, |(_, v)| *v)
        };
        let stats = &outcome.stats;
        eprintln!(
            "wrote {} pairs, {} PRM paths, {} SFT traces for {} problems to {} ({:.2}s, solve rate {}); \
             {} of {} problems of the run done, {} failed",
            lines("pairs.jsonl"),
            lines("prm.jsonl"),
            lines("sft.jsonl"),
            summary.problems,
            args.out.display(),
            summary.wall_seconds,
            summary
                .accuracy()
                .map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a)),
            stats["done"],
            stats["problems"],
            stats["failed"],
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} of {} problems failed (see the log; they are in the journal as failed, and a rerun \
             with the same flags retries them); the others were written",
            summary.failed,
            summary.problems
        );
    }
    Ok(())
}
