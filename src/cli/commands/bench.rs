//! `ponder bench`: engine measurements.

use anyhow::Result;
use ponder::engine::testing::bench;

use crate::cli::args::{BenchCommand, BenchTreeArgs};

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Tree(a) => tree(a),
    }
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
