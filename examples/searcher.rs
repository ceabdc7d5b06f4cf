//! Many problems through the library's `Searcher`: a config (a TOML file, or the defaults with
//! the installed SmolLM2-135M-Instruct), the model loaded once, 8 trees in flight over one
//! batcher, results in input order, progress through a callback.
//!
//! ```sh
//! cargo run --release --example searcher -- [CONFIG.toml] [PROBLEMS]
//! cargo run --release --example searcher -- configs/mcts-vote-min.toml 16
//! ```

use std::path::Path;

use ponder::runtime::dataset::ProblemSource;
use ponder::runtime::{Config, ManyOptions, Searcher};
use ponder::tasks::problems::Split;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    let mut n = 8;
    for arg in std::env::args().skip(1) {
        if arg.ends_with(".toml") {
            config = Config::load(Path::new(&arg), None)?;
        } else {
            n = arg.parse()?;
        }
    }
    config.task.shots = 3;
    config.policy.temperature = 0.4;
    config.search.budget.max_tokens = Some(256);
    let problems = ProblemSource::Word {
        n,
        level: 1,
        seed: 1,
        split: Split::Dev,
    }
    .load()?;
    let searcher = Searcher::new(config)?;
    let opts = ManyOptions {
        parallel_trees: 8,
        ..ManyOptions::default()
    };
    let summary = searcher.search_many(
        &problems,
        &opts,
        &mut |p| {
            eprintln!(
                "{}/{} done, {} tokens",
                p.done, p.total, p.summary.stats.tokens
            )
        },
        &mut |_, p, r| {
            let rep = r?;
            let answer = rep.answer.as_ref().and_then(|a| a.answer.clone());
            println!("{}: answer={answer:?} gold={:?}", p.id, p.gold);
            Ok(())
        },
    )?;
    println!(
        "accuracy={:.2} tokens={} wall_s={:.1}",
        summary.accuracy().unwrap_or(0.0),
        summary.stats.tokens,
        summary.wall_seconds
    );
    Ok(())
}
