//! criterion benchmarks: the tree and search loop on zero-cost models (1 and 2 threads), a
//! synthetic-task search, output extraction, and the batcher's overhead.
//!
//! Run: `cargo bench -p ponder-benches`. CI only builds them (`cargo clippy --all-targets`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ponder_engine::extract::{self, OutputConfig};
use ponder_engine::{BatchConfig, Batcher, Evaluator, SearchConfig, TreeId, search};
use ponder_testkit::{bench, synthetic};

fn tree(c: &mut Criterion) {
    let mut g = c.benchmark_group("tree");
    let sims = 100_000u32;
    g.throughput(Throughput::Elements(u64::from(sims)));
    g.sample_size(10);
    let models = bench::models();
    for threads in [1u32, 2] {
        let cfg = bench::config(threads, sims, bench::Shape::default());
        g.bench_with_input(
            BenchmarkId::new("zero_cost_search", threads),
            &cfg,
            |b, cfg| {
                b.iter(|| {
                    search(
                        ponder_engine::Problem::new("b", "b"),
                        TreeId(0),
                        cfg,
                        Evaluator::direct(&models),
                    )
                    .unwrap()
                })
            },
        );
    }
    g.finish();
}

fn synthetic_search(c: &mut Criterion) {
    let models = synthetic::models(&synthetic::SyntheticSpec::default());
    let problem = synthetic::problems(1, 4, 3).remove(0);
    let mut g = c.benchmark_group("synthetic");
    for (name, mut cfg) in [
        ("alphallm", SearchConfig::alphallm()),
        ("mcts_dpo", SearchConfig::mcts_dpo()),
    ] {
        cfg.budget.simulations = 64;
        g.bench_function(name, |b| {
            b.iter(|| search(problem.clone(), TreeId(0), &cfg, Evaluator::direct(&models)).unwrap())
        });
    }
    g.finish();
}

fn extraction(c: &mut Criterion) {
    let models = synthetic::models(&synthetic::SyntheticSpec::default());
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 256;
    let report = search(
        synthetic::problems(1, 5, 9).remove(0),
        TreeId(0),
        &cfg,
        Evaluator::direct(&models),
    )
    .unwrap();
    let out = OutputConfig::default();
    c.bench_function("extract/all_views", |b| {
        b.iter(|| extract::extract(&report, &cfg, &out))
    });
}

fn batcher(c: &mut Criterion) {
    let models = bench::models();
    let mut cfg = bench::config(4, 2_000, bench::Shape::default());
    cfg.parallel.threads = 4;
    let batch = BatchConfig {
        max_batch: 4,
        max_wait_ms: 0.05,
    };
    let mut g = c.benchmark_group("batcher");
    g.throughput(Throughput::Elements(2_000));
    g.sample_size(10);
    g.bench_function("4_threads_through_batcher", |b| {
        b.iter(|| {
            Batcher::run(&models, &batch, |bt| {
                search(
                    ponder_engine::Problem::new("b", "b"),
                    TreeId(0),
                    &cfg,
                    Evaluator::batched(&models, bt),
                )
                .unwrap()
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, tree, synthetic_search, extraction, batcher);
criterion_main!(benches);
