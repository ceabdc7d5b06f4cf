//! `ponder bench`: engine measurements.

use anyhow::Result;
use ponder::engine::testing::bench;

use crate::cli::args::{BenchCommand, BenchLatencyArgs, BenchTreeArgs};
use crate::cli::config::FileConfig;

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Tree(a) => tree(a),
        BenchCommand::Latency(a) => latency(a),
    }
}

/// Prints one line per run (sequential, then parallel) and the speedup.
fn latency(a: BenchLatencyArgs) -> Result<()> {
    use ponder::engine::testing::{latency, synthetic};
    anyhow::ensure!(
        a.latency_ms.is_finite()
            && a.latency_ms >= 0.0
            && a.per_request_ms.is_finite()
            && a.per_request_ms >= 0.0,
        "latencies must be finite and >= 0"
    );
    let lat = latency::Latency {
        fixed: std::time::Duration::from_secs_f64(a.latency_ms / 1e3),
        per_request: std::time::Duration::from_secs_f64(a.per_request_ms / 1e3),
    };
    let mut cfg = FileConfig::default();
    cfg.search.budget.simulations = a.simulations;
    let models = latency::slow(&synthetic::models(&cfg.synthetic.spec()), lat);
    let problems = synthetic::problems(a.problems, 4, 1);
    let mut wall = [0.0f64; 2];
    for (i, (threads, trees)) in [(1u32, 1u32), (a.threads, a.parallel_trees)]
        .into_iter()
        .enumerate()
    {
        let mut c = cfg.clone();
        c.search.parallel.threads = threads;
        c.batch.max_batch = if i == 0 { 1 } else { a.max_batch };
        c.batch.max_wait_ms = a.max_wait_ms;
        c.validate()?;
        let s = super::run::run_problems(&c, &models, &problems, trees, true, |_, _, r| {
            r.map(|_| ()).map_err(anyhow::Error::from)
        })?;
        wall[i] = s.wall_seconds;
        let fill = s.batch.as_ref().map_or(1.0, |b| b.policy.mean_batch);
        println!(
            "run={} threads={threads} parallel_trees={trees} problems={} simulations={} wall_s={:.2} simulations_per_sec={:.1} mean_policy_batch={:.1} accuracy={:.2}",
            if i == 0 { "sequential" } else { "parallel" },
            s.problems,
            s.stats.simulations,
            s.wall_seconds,
            s.stats.simulations as f64 / s.wall_seconds,
            fill,
            s.accuracy().unwrap_or(0.0)
        );
    }
    println!("speedup={:.1}", wall[0] / wall[1]);
    Ok(())
}

/// Prints `simulations_per_sec=<f> threads=<T> nodes=<n> bytes_per_node=<b>` for the median run.
fn tree(a: BenchTreeArgs) -> Result<()> {
    let mut runs = Vec::with_capacity(a.repeat as usize);
    for _ in 0..a.repeat {
        let shape = bench::Shape {
            width: a.width,
            depth: a.depth,
        };
        runs.push(bench::run(a.threads, a.simulations, shape)?);
    }
    runs.sort_by(|x, y| x.simulations_per_sec.total_cmp(&y.simulations_per_sec));
    let m = runs[runs.len() / 2];
    tracing::debug!(collisions = m.collisions, runs = runs.len(), "bench tree");
    println!(
        "simulations_per_sec={:.0} threads={} nodes={} bytes_per_node={}",
        m.simulations_per_sec, m.threads, m.nodes, m.bytes_per_node
    );
    Ok(())
}
