//! Helpers shared by the engine's integration tests.

use ponder_engine::config::{Algorithm, AnswerRule, SearchConfig};

/// Every algorithm by number, 0-5: AlphaLLM MCTS, MCTS-DPO, greedy, best-of-N (n = 4),
/// self-consistency (n = 4), beam; `threads` workers, the answer by most visits.
pub(crate) fn algorithm(alg: u8, threads: u32) -> SearchConfig {
    let mut cfg = match alg {
        0 => SearchConfig::alphallm(),
        1 => SearchConfig::mcts_dpo(),
        _ => {
            let mut c = SearchConfig::alphallm();
            c.algorithm = match alg {
                2 => Algorithm::Greedy,
                3 => Algorithm::BestOfN,
                4 => Algorithm::SelfConsistency,
                _ => Algorithm::Beam,
            };
            c.baseline.n = 4;
            c
        }
    };
    cfg.parallel.threads = threads;
    cfg.answer = AnswerRule::MostVisited;
    cfg
}
