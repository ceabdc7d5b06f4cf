//! criterion benchmarks: the tree and search loop on zero-cost models (1 and 2 threads), a
//! synthetic-task search, output extraction, the batcher's overhead, and the quantised matrix
//! kernels.
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

/// The quantised matrix kernels on SmolLM2-135M's MLP up/gate projection (3072 x 576): one
/// decoding step (batch 1) and a batch of 8, int8 and 4-bit, with the bytes each reads.
fn kernels(c: &mut Criterion) {
    use ponder_kernels::{Format, QMatrix};
    let (rows, cols) = (3072usize, 576usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut g = c.benchmark_group("kernels");
    g.sample_size(20);
    for format in [Format::Q8, Format::Q4] {
        let m = QMatrix::quantize(rows, cols, &w, format).unwrap();
        for n in [1usize, 8] {
            let x = vec![0.25f32; n * cols];
            g.throughput(Throughput::Bytes(m.bytes() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{}_matmul", format.name()), n),
                &x,
                |b, x| b.iter(|| m.matmul_t(x, n).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    tree,
    synthetic_search,
    extraction,
    batcher,
    kernels
);
criterion_main!(benches);
