//! Training data from a dataset, crash-safe and resumable: every problem searched, its pairs,
//! PRM paths and SFT trace (and, on request, the tree) appended through the [`journal`], a
//! manifest that a resume must match, and `stats.json` for the whole folder. What `ponder
//! generate` runs, as a library call.
//!
//! [`journal`]: crate::journal

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ponder_engine::Problem;
use ponder_engine::extract::{self, SCHEMA_VERSION};

use crate::error::{Error, Result};
use crate::journal::{Entry, JOURNAL, Journal, Status};
use crate::searcher::{ManyOptions, Progress, RunSummary, SearchResult, Searcher};

/// How [`generate`] runs.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// Only the problems with `index % n == i` (`(i, n)`), for many processes on one dataset.
    pub shard: Option<(u64, u64)>,
    /// Also write every tree (`trees.jsonl`).
    pub dump_trees: bool,
    /// Start over, replacing what the folder holds.
    pub force: bool,
    /// Sync data files and journal to disk after every problem (survives OS crashes too).
    pub fsync: bool,
    /// Trees searched at once.
    pub parallel_trees: u32,
    /// Where the problems came from (a dataset path or a generator's settings), recorded in the
    /// manifest; a resume must name the same.
    pub source: String,
    /// The command line (or other description) that started the run, for the manifest.
    pub command: Vec<String>,
    /// Cancels the run from outside (a Ctrl-C): trees in flight stop and are not written (their
    /// problems stay to do, for a resume), no further problem starts.
    pub control: Option<std::sync::Arc<ponder_engine::SearchControl>>,
}

/// What a [`generate`] run did.
#[derive(Clone, Debug)]
pub struct GenerateOutcome {
    /// This run's searches.
    pub summary: RunSummary,
    /// Problems of the shard.
    pub problems: usize,
    /// Of them, done by earlier runs into the same folder.
    pub done_before: usize,
    /// Records written by this run, per data file.
    pub written: Vec<(String, u64)>,
    /// `stats.json` as written (the whole folder).
    pub stats: serde_json::Value,
}

/// Parses `i/n` (a shard: `0 <= i < n`).
///
/// # Errors
/// Anything else, naming the text.
pub fn parse_shard(s: &str) -> Result<(u64, u64)> {
    let bad = || {
        Error::config(
            "shard",
            format!("`{s}`: expected i/n with 0 <= i < n (for example 0/8)"),
        )
    };
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

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Output {
        at: path.display().to_string(),
        message: format!("not valid JSON: {e}"),
    })
}

/// Searches every problem of `all` (of the shard) with `searcher` and writes the training data
/// to `opts.out`; a folder with a journal is resumed (problems done are skipped, failed ones
/// retried) when its manifest matches. `on_progress` sees each problem finish. A search that
/// fails is recorded as failed and the run goes on; [`GenerateOutcome::summary`] counts them.
///
/// # Errors
/// A folder that holds other settings or files in the way (without `force`), I/O, or a journal
/// that cannot be recovered.
pub fn generate(
    searcher: &Searcher,
    all: &[Problem],
    opts: &GenerateOptions,
    on_progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<GenerateOutcome> {
    let cfg = searcher.config();
    let models = searcher.models();
    let shard = opts.shard;
    // The shard's problems, with their index in the whole input (which becomes the tree id,
    // so a record's tree_id is the same in every shard layout and after a resume).
    let mine: Vec<(u64, Problem)> = all
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| (i as u64, p))
        .filter(|(i, _)| shard.is_none_or(|(k, n)| i % n == k))
        .collect();
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut names = vec!["pairs.jsonl", "prm.jsonl", "sft.jsonl"];
    if opts.dump_trees {
        names.push("trees.jsonl");
    }
    let manifest = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "ponder_version": env!("CARGO_PKG_VERSION"),
        "command": opts.command,
        "task": models.task.name(),
        "policy": models.policy.name(),
        "problems": mine.len(),
        "problems_in_input": all.len(),
        "shard": shard.map(|(i, n)| format!("{i}/{n}")),
        "source": opts.source,
        "started_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "config": cfg,
    });
    let manifest_path = out.join("manifest.json");
    let journal_path = out.join(JOURNAL);
    let resume = !opts.force && journal_path.exists();
    if resume {
        if fingerprint(&read_json(&manifest_path)?) != fingerprint(&manifest) {
            return Err(Error::Output {
                at: out.display().to_string(),
                message: "holds a run with different settings (config, input, shard, task or \
                          policy); resume it with the same settings, write elsewhere, or start \
                          over with force"
                    .into(),
            });
        }
    } else if !opts.force {
        // Refuse before creating anything, so a refused run leaves no empty files behind. A
        // manifest of these very settings with no data (a run killed before its journal
        // existed) is not in the way.
        let ours = manifest_path.exists()
            && read_json(&manifest_path).is_ok_and(|m| fingerprint(&m) == fingerprint(&manifest));
        let blocking = names
            .iter()
            .chain(["stats.json"].iter())
            .map(|n| out.join(n))
            .find(|p| p.exists())
            .or_else(|| (manifest_path.exists() && !ours).then(|| manifest_path.clone()));
        if let Some(existing) = blocking {
            return Err(Error::Output {
                at: existing.display().to_string(),
                message: "exists (use --force to replace it)".into(),
            });
        }
    }
    if !resume {
        // The manifest first: a journal never exists without the manifest it belongs to.
        let body = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
        std::fs::write(&manifest_path, body).map_err(|e| Error::io(&manifest_path, e))?;
    }
    let mut journal = Journal::open(out, &names, !resume, opts.fsync)?;
    let done: HashSet<String> = journal
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
            out.display()
        );
    }
    let problems: Vec<Problem> = todo.iter().map(|(_, p)| p.clone()).collect();
    let ids: Vec<u32> = todo.iter().map(|(i, _)| *i as u32).collect();
    let many = ManyOptions {
        parallel_trees: opts.parallel_trees,
        ids: Some(ids.clone()),
        control: opts.control.clone(),
    };
    let mut record = |i: usize, p: &Problem, r: SearchResult| -> Result<()> {
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
                tracing::error!(problem = %p.id, "search failed: {}", chain(&e));
                entry.status = Status::Failed;
                entry.error = Some(chain(&e));
            }
            Ok(rep) if rep.stop == ponder_engine::StopReason::Cancelled => {
                // Cut short from outside: not written, so a resume searches it again.
                return Ok(());
            }
            Ok(rep) => {
                let data = extract::extract(&rep, &cfg.search, &cfg.output);
                entry.correct = rep.answer.as_ref().and_then(|a| a.correct);
                entry.nodes = rep.stats.nodes;
                entry.tokens = rep.stats.tokens;
                for x in &data.pairs {
                    journal.file("pairs.jsonl").write(x)?;
                }
                for x in &data.prm {
                    journal.file("prm.jsonl").write(x)?;
                }
                if let Some(x) = &data.sft {
                    journal.file("sft.jsonl").write(x)?;
                }
                if opts.dump_trees {
                    journal
                        .file("trees.jsonl")
                        .write(&extract::dump(&rep, &cfg.search).with_pairs(&data.pairs))?;
                }
                entry.records = [
                    ("pairs.jsonl", data.pairs.len()),
                    ("prm.jsonl", data.prm.len()),
                    ("sft.jsonl", usize::from(data.sft.is_some())),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v as u64))
                .collect();
            }
        }
        journal.commit(entry)
    };
    let summary = searcher.search_many(&problems, &many, on_progress, &mut |i, p, r| {
        record(i, p, r).map_err(Into::into)
    })?;
    let client = searcher.loaded().client.clone();
    let stats = write_stats(
        &journal,
        mine.len(),
        Some(&summary),
        client.map(|c| c.stats()),
        Some(searcher.loaded().cache_counts()),
    )?;
    let written = names
        .iter()
        .map(|n| (n.to_string(), journal.lines(n)))
        .collect();
    Ok(GenerateOutcome {
        summary,
        problems: mine.len(),
        done_before: done.len(),
        written,
        stats,
    })
}

/// An error and all its sources, `: `-separated (how failures are logged and recorded).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Writes `stats.json` for the whole folder (every run that added to it, from the journal) and
/// this process's throughput; returns what it wrote.
///
/// # Errors
/// The file cannot be written.
pub fn write_stats(
    journal: &Journal,
    problems: usize,
    run: Option<&RunSummary>,
    remote: Option<ponder_remote::policy::ClientStats>,
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
        "remote": remote,
        "critic_cache": critic_cache.map(|(hits, misses)| serde_json::json!({
            "hits": hits,
            "misses": misses,
        })),
    });
    let path = journal.dir().join("stats.json");
    let body = serde_json::to_vec_pretty(&stats).expect("stats serialise");
    std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PolicyKind};
    use crate::dataset::ProblemSource;

    fn setup(sims: u32) -> (Searcher, Vec<Problem>) {
        let mut cfg = Config::default();
        cfg.policy.kind = PolicyKind::Synthetic;
        cfg.search.budget.simulations = sims;
        let problems = ProblemSource::Synthetic {
            n: 6,
            level: 3,
            seed: 2,
        }
        .load()
        .unwrap();
        let loaded = crate::models::load(&cfg, &problems).unwrap();
        (Searcher::with_models(cfg, loaded).unwrap(), problems)
    }

    #[test]
    fn writes_resumes_and_refuses_other_settings() {
        let dir = std::env::temp_dir().join(format!("ponder-runtime-gen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = GenerateOptions {
            out: dir.clone(),
            shard: None,
            dump_trees: false,
            force: false,
            fsync: false,
            parallel_trees: 2,
            source: "synthetic test".into(),
            command: vec![],
            control: None,
        };
        let (searcher, problems) = setup(16);
        let mut seen = 0;
        let first = generate(&searcher, &problems, &opts, &mut |_| seen += 1).unwrap();
        assert_eq!((first.summary.problems, seen, first.done_before), (6, 6, 0));
        assert_eq!(first.stats["done"], 6);
        let pairs = std::fs::read_to_string(dir.join("pairs.jsonl")).unwrap();
        assert_eq!(
            pairs.lines().count() as u64,
            first
                .written
                .iter()
                .find(|(n, _)| n == "pairs.jsonl")
                .unwrap()
                .1
        );
        // A rerun finds everything done.
        let again = generate(&searcher, &problems, &opts, &mut |_| {}).unwrap();
        assert_eq!((again.summary.problems, again.done_before), (0, 6));
        assert_eq!(
            std::fs::read_to_string(dir.join("pairs.jsonl")).unwrap(),
            pairs
        );
        // Other settings into the same folder are refused, naming it.
        let (other, _) = setup(8);
        let e = generate(&other, &problems, &opts, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("different settings"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shards_are_checked() {
        assert_eq!(parse_shard("1/4").unwrap(), (1, 4));
        for bad in ["4/4", "x/2", "1", "0/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
