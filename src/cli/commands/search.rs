//! `ponder search`: one question, or every problem of a dataset.

use std::io::Write;

use anyhow::{Context, Result, bail};
use ponder::engine::{Problem, SearchReport, extract};

use super::run::{chain, load_problems, resolve_config, run_problems, searcher};
use crate::cli::args::SearchArgs;

pub(crate) fn run(args: SearchArgs, quiet: bool) -> Result<()> {
    let cfg = resolve_config(&args.flags)?;
    let problems = match (&args.question, load_problems(&args.problems)?) {
        (Some(_), Some(_)) => bail!("give either a question or --dataset/--synthetic, not both"),
        (Some(q), None) => {
            let mut p = Problem::new("question", q.clone());
            p.gold = args.gold.clone();
            vec![p]
        }
        (None, Some(ps)) => ps,
        (None, None) => {
            bail!("nothing to search: give a question, --dataset FILE or --synthetic N")
        }
    };
    let searcher = searcher(&cfg, &problems)?;
    let client = searcher.loaded().client.clone();
    let single = problems.len() == 1;
    if !single && (args.dump_tree.is_some() || args.dot.is_some()) {
        bail!("--dump-tree and --dot need a single problem");
    }
    let stdout = std::io::stdout();
    let summary = run_problems(
        &searcher,
        &problems,
        args.flags.parallel_trees,
        quiet,
        |_, p, r| {
            let mut out = stdout.lock();
            match r {
                Ok(rep) => {
                    if args.json {
                        writeln!(out, "{}", serde_json::to_string(&json_line(p, &rep))?)?;
                    } else if single {
                        print_single(&mut out, p, &rep)?;
                    } else {
                        let a = rep.answer.as_ref();
                        writeln!(
                            out,
                            "{}\tanswer={}\tgold={}\tcorrect={}\tsimulations={}\tnodes={}\tms={:.1}",
                            p.id,
                            a.and_then(|a| a.answer.clone())
                                .unwrap_or_else(|| "-".into()),
                            p.gold.as_deref().unwrap_or("-"),
                            a.and_then(|a| a.correct)
                                .map_or("-".to_string(), |c| c.to_string()),
                            rep.stats.simulations,
                            rep.stats.nodes,
                            rep.stats.wall_ms
                        )?;
                    }
                    if let Some(path) = &args.dump_tree {
                        // With the pairs `generate` would take from it, for `ponder view`.
                        let pairs = extract::pairs(&rep, &cfg.search, &cfg.output.pairs);
                        let dump = extract::dump(&rep, &cfg.search).with_pairs(&pairs);
                        std::fs::write(path, serde_json::to_vec_pretty(&dump)?)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    if let Some(path) = &args.dot {
                        std::fs::write(path, extract::to_dot(&rep, &cfg.search))
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                }
                Err(e) => {
                    if args.json {
                        let v = serde_json::json!({"problem_id": p.id, "error": chain(&e)});
                        writeln!(out, "{v}")?;
                    } else {
                        writeln!(out, "{}\terror: {}", p.id, chain(&e))?;
                    }
                }
            }
            Ok(())
        },
    )?;
    if !single && !args.json {
        let acc = summary
            .accuracy()
            .map_or("-".to_string(), |a| format!("{:.1}%", 100.0 * a));
        println!(
            "problems={} correct={}/{} accuracy={} failed={} simulations={} nodes={} tokens={} wall_s={:.2} nodes_per_s={:.0}",
            summary.problems,
            summary.correct,
            summary.with_gold,
            acc,
            summary.failed,
            summary.stats.simulations,
            summary.stats.nodes,
            summary.stats.tokens,
            summary.wall_seconds,
            summary.nodes_per_sec
        );
    }
    if let (Some(c), false) = (&client, args.json) {
        // What limits a run against a server: requests, what it re-reads per generated token,
        // and whether it ignores `n` (one request per sample then).
        let st = c.stats();
        println!(
            "remote: requests={} retries={} generated_tokens={} prompt_tokens_per_generated={:.1} n_ignored={}",
            st.attempts,
            st.retries,
            st.completion_tokens,
            st.prompt_per_completion(),
            st.short_answers > 0
        );
    }
    if summary.failed > 0 {
        bail!(
            "{} of {} problems failed (see the log)",
            summary.failed,
            summary.problems
        );
    }
    Ok(())
}

fn json_line(p: &Problem, rep: &SearchReport) -> serde_json::Value {
    serde_json::json!({
        "problem_id": p.id,
        "answer": rep.answer.as_ref().and_then(|a| a.answer.clone()),
        "gold": p.gold,
        "correct": rep.answer.as_ref().and_then(|a| a.correct),
        "solution": rep.answer.as_ref().map(|a| rep.tree.path_text(a.node)),
        "stop": rep.stop,
        "stats": rep.stats,
    })
}

fn print_single(out: &mut impl Write, p: &Problem, rep: &SearchReport) -> Result<()> {
    match &rep.answer {
        Some(a) => {
            let verdict = match a.correct {
                Some(true) => " (correct)",
                Some(false) => " (wrong)",
                None => "",
            };
            writeln!(
                out,
                "answer: {}{verdict}",
                a.answer.as_deref().unwrap_or("(none)")
            )?;
            writeln!(out, "solution:")?;
            for line in rep.tree.path_text(a.node).lines() {
                writeln!(out, "  {line}")?;
            }
        }
        None => writeln!(out, "answer: (none)")?,
    }
    if let Some(g) = &p.gold {
        writeln!(out, "gold: {g}")?;
    }
    let s = &rep.stats;
    writeln!(
        out,
        "stats: simulations={} nodes={} terminals={} max_depth={} tokens={} policy_requests={} critic_requests={} collisions={} duplicates={} wall_ms={:.1} stop={:?}",
        s.simulations,
        s.nodes,
        s.terminals,
        s.max_depth,
        s.tokens,
        s.policy_requests,
        s.critic_requests,
        s.collisions,
        s.duplicates,
        s.wall_ms,
        rep.stop
    )?;
    if s.cut_steps > 0 || s.split_steps > 0 {
        // Steps the policy returned past the step rule were cut; whole solutions were stored
        // one step per node (INV-7).
        writeln!(
            out,
            "steps: cut_to_rule={} chain_nodes={}",
            s.cut_steps, s.split_steps
        )?;
    }
    Ok(())
}
