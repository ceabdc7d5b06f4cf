//! criterion benchmarks for ponder; see `benches/bench_main.rs`.
