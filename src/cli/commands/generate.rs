//! `ponder generate`: dataset -> pairs, PRM data, SFT traces (JSONL), stats and a manifest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ponder::engine::extract::{self, SCHEMA_VERSION};

use super::journal::{Entry, JOURNAL, Journal, Status};
use super::run::{chain, load_problems, resolve_config, run_problems_with, searcher};
use ponder::runtime::RunSummary;

/// The shared HTTP client of a remote policy.
type RemoteClient = std::sync::Arc<ponder::policies::remote::Client>;
use crate::cli::args::GenerateArgs;
use ponder::engine::Problem;

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

/// `--shard i/n`: `(i, n)` with `i < n`.
pub(crate) fn parse_shard(s: &str) -> Result<(u64, u64)> {
    let bad = || anyhow::anyhow!("--shard `{s}`: expected i/n with 0 <= i < n (for example 0/8)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// What a resumed run must share with the run that started the folder.
fn fingerprint(manifest: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "config": manifest["config"],
        "source": manifest["source"],
        "shard": manifest["shard"],
        "problems_in_input": manifest["problems_in_input"],
        "task": manifest["task"],
        "policy": manifest["policy"],
    })
}

pub(crate) fn run(args: GenerateArgs, quiet: bool) -> Result<()> {
    let cfg = resolve_config(&args.flags)?;
    let Some(all) = load_problems(&args.problems)? else {
        bail!("nothing to generate from: give --dataset FILE or --synthetic N");
    };
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    // The shard's problems, with their index in the whole input (which becomes the tree id,
    // so a record's tree_id is the same in every shard layout and after a resume).
    let mine: Vec<(u64, Problem)> = all
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| (i as u64, p))
        .filter(|(i, _)| shard.is_none_or(|(k, n)| i % n == k))
        .collect();
    let searcher = searcher(&cfg, &all)?;
    let models = searcher.models();
    let client = searcher.loaded().client.clone();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut names = vec!["pairs.jsonl", "prm.jsonl", "sft.jsonl"];
    if args.dump_trees {
        names.push("trees.jsonl");
    }
    let manifest = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "ponder_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "task": models.task.name(),
        "policy": models.policy.name(),
        "problems": mine.len(),
        "problems_in_input": all.len(),
        "shard": shard.map(|(i, n)| format!("{i}/{n}")),
        "source": args.problems.dataset.as_ref().map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("synthetic n={} level={} seed={}", all.len(), args.problems.level, args.problems.problem_seed)),
        "started_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "config": &cfg,
    });
    let manifest_path = args.out.join("manifest.json");
    let journal_path = args.out.join(JOURNAL);
    let resume = !args.force && journal_path.exists();
    let read_manifest = || -> Result<serde_json::Value> {
        serde_json::from_slice(
            &std::fs::read(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?,
        )
        .with_context(|| format!("{}: not valid JSON", manifest_path.display()))
    };
    if resume {
        if fingerprint(&read_manifest()?) != fingerprint(&manifest) {
            bail!(
                "{} holds a run with different settings (config, input, shard, task or policy); \
                 resume it with the same flags, use another --out, or start over with --force",
                args.out.display()
            );
        }
    } else if !args.force {
        // Refuse before creating anything, so a refused run leaves no empty files behind. A
        // manifest of these very settings with no data (a run killed before its journal
        // existed) is not in the way.
        let ours = manifest_path.exists()
            && read_manifest().is_ok_and(|m| fingerprint(&m) == fingerprint(&manifest));
        let blocking = names
            .iter()
            .chain(["stats.json"].iter())
            .map(|n| args.out.join(n))
            .find(|p| p.exists())
            .or_else(|| (manifest_path.exists() && !ours).then(|| manifest_path.clone()));
        if let Some(existing) = blocking {
            bail!("{} exists (use --force to replace it)", existing.display());
        }
    }
    if !resume {
        // The manifest first: a journal never exists without the manifest it belongs to.
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("writing {}", manifest_path.display()))?;
    }
    let mut journal = Journal::open(&args.out, &names, !resume, args.fsync)?;
    let done: std::collections::HashSet<String> = journal
        .latest()
        .into_iter()
        .filter(|(_, e)| e.status == Status::Ok)
        .map(|(id, _)| id.to_string())
        .collect();
    let todo: Vec<(u64, Problem)> = mine
        .iter()
        .filter(|(_, p)| !done.contains(&p.id))
        .cloned()
        .collect();
    if resume {
        tracing::info!(
            done = done.len(),
            remaining = todo.len(),
            "resuming {}",
            args.out.display()
        );
        if !quiet {
            eprintln!(
                "resuming {}: {} of {} problems done, {} to go",
                args.out.display(),
                done.len(),
                mine.len(),
                todo.len()
            );
        }
    }
    let problems: Vec<Problem> = todo.iter().map(|(_, p)| p.clone()).collect();
    let ids: Vec<u32> = todo.iter().map(|(i, _)| *i as u32).collect();
    let status_client = client.clone();
    let status = move || {
        status_client.as_ref().map_or(String::new(), |c| {
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
    let summary = run_problems_with(
        &searcher,
        &problems,
        Some(&ids),
        args.flags.parallel_trees,
        quiet,
        Some(&status),
        &mut |i, p, r| {
            let mut entry = Entry {
                problem_id: p.id.clone(),
                index: u64::from(ids[i]),
                status: Status::Ok,
                error: None,
                correct: None,
                records: Default::default(),
                nodes: 0,
                tokens: 0,
                ends: Default::default(),
            };
            match r {
                Err(e) => {
                    entry.status = Status::Failed;
                    entry.error = Some(chain(&e));
                }
                Ok(rep) => {
                    let out = extract::extract(&rep, &cfg.search, &cfg.output);
                    entry.correct = rep.answer.as_ref().and_then(|a| a.correct);
                    entry.nodes = rep.stats.nodes;
                    entry.tokens = rep.stats.tokens;
                    for p in &out.pairs {
                        journal.file("pairs.jsonl").write(p)?;
                    }
                    for p in &out.prm {
                        journal.file("prm.jsonl").write(p)?;
                    }
                    if let Some(s) = &out.sft {
                        journal.file("sft.jsonl").write(s)?;
                    }
                    if args.dump_trees {
                        journal
                            .file("trees.jsonl")
                            .write(&extract::dump(&rep, &cfg.search))?;
                    }
                    entry.records = [
                        ("pairs.jsonl", out.pairs.len()),
                        ("prm.jsonl", out.prm.len()),
                        ("sft.jsonl", usize::from(out.sft.is_some())),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v as u64))
                    .collect();
                }
            }
            journal.commit(entry)
        },
    )?;
    let stats = write_stats(
        &journal,
        mine.len(),
        Some(&summary),
        client,
        Some(searcher.loaded().cache_counts()),
    )?;
    if !quiet {
        eprintln!(
            "wrote {} pairs, {} PRM paths, {} SFT traces for {} problems to {} ({:.2}s, solve rate {}); \
             {} of {} problems of the run done, {} failed",
            journal.lines("pairs.jsonl"),
            journal.lines("prm.jsonl"),
            journal.lines("sft.jsonl"),
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

/// Writes `stats.json` for the whole folder (every run that added to it, from the journal) and
/// this process's throughput.
pub(crate) fn write_stats(
    journal: &Journal,
    problems: usize,
    run: Option<&RunSummary>,
    client: Option<RemoteClient>,
    critic_cache: Option<(u64, u64)>,
) -> Result<serde_json::Value> {
    let latest = journal.latest();
    let ok: Vec<&&Entry> = latest.values().filter(|e| e.status == Status::Ok).collect();
    let failed = latest
        .values()
        .filter(|e| e.status == Status::Failed)
        .count();
    let count = |name: &str| -> u64 {
        ok.iter()
            .map(|e| e.records.get(name).copied().unwrap_or(0))
            .sum()
    };
    let with_gold = ok.iter().filter(|e| e.correct.is_some()).count();
    let correct = ok.iter().filter(|e| e.correct == Some(true)).count();
    let pairs = count("pairs.jsonl");
    let stats = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "problems": problems,
        "done": ok.len(),
        "failed": failed,
        "pending": problems.saturating_sub(ok.len() + failed),
        "solve_rate": (with_gold > 0).then(|| correct as f64 / with_gold as f64),
        "pairs": pairs,
        "pairs_per_problem": pairs as f64 / ok.len().max(1) as f64,
        "prm_paths": count("prm.jsonl"),
        "sft_traces": count("sft.jsonl"),
        "nodes": ok.iter().map(|e| e.nodes).sum::<u64>(),
        "tokens": ok.iter().map(|e| e.tokens).sum::<u64>(),
        "this_run": run.map(|s| serde_json::json!({
            "problems": s.problems,
            "failed": s.failed,
            "wall_seconds": s.wall_seconds,
            "problems_per_sec": s.problems as f64 / s.wall_seconds.max(1e-9),
            "nodes_per_sec": s.nodes_per_sec,
            "tokens_per_sec": s.tokens_per_sec,
            "search": s.stats,
            "batch": s.batch,
        })),
        "remote": client.map(|c| c.stats()),
        "critic_cache": critic_cache.map(|(hits, misses)| serde_json::json!({
            "hits": hits,
            "misses": misses,
        })),
    });
    let path = journal.dir().join("stats.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&stats)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(stats)
}
