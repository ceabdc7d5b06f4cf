//! `ponder iterate`: flags over `ponder::runtime::iterate` (the self-improvement loop), its
//! messages on stderr and the metrics table on stdout.

use anyhow::Result;
use ponder::policies::dpo::{DpoConfig, LossKind};
use ponder::runtime::iterate::{self, IterateOptions};

use crate::cli::args::IterateArgs;

pub(crate) fn run(a: IterateArgs, quiet: bool) -> Result<()> {
    let opts = IterateOptions {
        out: a.out.clone(),
        rounds: a.rounds,
        model: a.model.clone(),
        level: a.level,
        train_size: a.train_size,
        test_size: a.test_size,
        problem_seed: a.problem_seed,
        simulations: a.simulations,
        eval_simulations: a.eval_simulations,
        sc_n: a.sc_n,
        max_step_tokens: a.max_step_tokens,
        pairs: a.pairs,
        max_pairs: a.max_pairs,
        dpo: DpoConfig {
            beta: a.beta,
            loss: LossKind::Sigmoid,
            lora: a.lora.config()?,
            lr: a.lr,
            epochs: a.dpo_epochs,
            accumulate: a.accumulate,
            seed: a.seed,
            precision: a.lora.precision.get(),
            ..DpoConfig::default()
        },
        parallel_trees: a.parallel_trees,
        threads: a.threads,
        seed: a.seed,
        train_critics: a.train_critics,
    };
    let rows = iterate::run(&opts, &mut |m| {
        if !quiet {
            eprintln!("{m}");
        }
    })?;
    println!("{}", iterate::csv(&rows).trim_end());
    Ok(())
}
