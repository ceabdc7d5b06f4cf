//! The methods an evaluation compares, and how each is run at a token budget.

use ponder_engine::SearchConfig;
use ponder_engine::config::Algorithm;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The built-in method names, as `ponder eval --methods` takes them.
pub const BUILTIN: [&str; 7] = [
    "greedy",
    "best-of-n",
    "self-consistency",
    "weighted-vote",
    "beam",
    "mcts:alphallm",
    "mcts:mcts-dpo",
];

/// One method: a name and the search it runs. The budget, seed and thread count of each run are
/// set by [`Method::at`]; everything else comes from `search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Method {
    /// The name in records, tables and plots.
    pub name: String,
    /// The search settings.
    pub search: SearchConfig,
}

impl Method {
    /// A built-in method (see [`BUILTIN`]) over `base`, the shared settings (critic weights,
    /// depth limit, baseline widths...). `mcts:alphallm` and `mcts:mcts-dpo` start from their
    /// presets instead, keeping `base`'s depth limit and scoring weights.
    ///
    /// # Errors
    /// An unknown name (the message lists the known ones).
    pub fn builtin(name: &str, base: &SearchConfig) -> Result<Method> {
        let mut search = base.clone();
        search.algorithm = match name {
            "greedy" => Algorithm::Greedy,
            "best-of-n" => Algorithm::BestOfN,
            "self-consistency" => Algorithm::SelfConsistency,
            "weighted-vote" => {
                search.baseline.weighted_vote = true;
                Algorithm::SelfConsistency
            }
            "beam" => Algorithm::Beam,
            "mcts:alphallm" | "mcts:mcts-dpo" => {
                let mut preset = if name == "mcts:alphallm" {
                    SearchConfig::alphallm()
                } else {
                    SearchConfig::mcts_dpo()
                };
                preset.budget.max_depth = base.budget.max_depth;
                preset.scoring.value_weight = base.scoring.value_weight;
                preset.scoring.prm_weight = base.scoring.prm_weight;
                preset.scoring.orm_weight = base.scoring.orm_weight;
                preset.seed = base.seed;
                search = preset;
                Algorithm::Mcts
            }
            other => {
                return Err(Error::config(
                    "methods",
                    format!(
                        "unknown method `{other}`: use one of {} or a config file (NAME=FILE.toml)",
                        BUILTIN.join(", ")
                    ),
                ));
            }
        };
        Ok(Method {
            name: name.into(),
            search,
        })
    }

    /// A method from a config file's search settings, named `name`.
    pub fn custom(name: &str, search: SearchConfig) -> Method {
        Method {
            name: name.into(),
            search,
        }
    }

    /// The settings of one run: stopped at `budget` generated tokens (hard: see
    /// `budget.max_tokens`), seeded by `seed`, with `threads` workers on its tree. Sampling
    /// baselines keep drawing until the budget is spent (`baseline.fill_budget`), and MCTS runs
    /// up to four simulations per budget token (a simulation that only revisits a finished
    /// solution generates nothing, so the budget, not the count, is what stops it). Any
    /// other limit of the method (wall time, a simulation count below that) stays.
    pub fn at(&self, budget: u64, seed: u64, threads: u32) -> SearchConfig {
        let mut c = self.search.clone();
        c.budget.max_tokens = Some(c.budget.max_tokens.map_or(budget, |m| m.min(budget)));
        c.seed = self.search.seed.wrapping_add(seed);
        c.baseline.fill_budget = true;
        if c.algorithm == Algorithm::Mcts {
            let sims = u32::try_from(budget.saturating_mul(4))
                .unwrap_or(u32::MAX)
                .max(1);
            c.budget.simulations = sims;
        }
        // Several workers only help a tree search; baselines are sequential within a tree.
        c.parallel.threads = if c.algorithm == Algorithm::Mcts {
            threads.max(1)
        } else {
            1
        };
        c
    }

    /// Whether this is a sampling baseline (greedy, best-of-N, self-consistency): what MCTS
    /// must beat.
    pub fn is_baseline(&self) -> bool {
        matches!(
            self.search.algorithm,
            Algorithm::Greedy | Algorithm::BestOfN | Algorithm::SelfConsistency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_budgets() {
        let base = SearchConfig::default();
        for n in BUILTIN {
            let m = Method::builtin(n, &base).expect("builtin");
            let c = m.at(512, 3, 2);
            assert_eq!(c.budget.max_tokens, Some(512));
            c.validate().expect("valid");
        }
        let sc = Method::builtin("self-consistency", &base).unwrap();
        assert!(sc.is_baseline());
        assert!(sc.at(64, 0, 4).baseline.fill_budget);
        assert_eq!(sc.at(64, 0, 4).parallel.threads, 1);
        let wv = Method::builtin("weighted-vote", &base).unwrap();
        assert!(wv.is_baseline() && wv.search.baseline.weighted_vote);
        assert!(!sc.search.baseline.weighted_vote);
        let mcts = Method::builtin("mcts:mcts-dpo", &base).unwrap();
        assert!(!mcts.is_baseline());
        assert_eq!(mcts.at(300, 0, 4).budget.simulations, 1200);
        let err = Method::builtin("mcts", &base).unwrap_err().to_string();
        assert!(err.contains("mcts:alphallm"), "{err}");
    }
}
