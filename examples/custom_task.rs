//! Your own task and critic around the installed default model: a unit-conversion task (its
//! prompt, answer extraction and gold check) and an outcome critic that prefers short finished
//! solutions with a readable answer, next to the arithmetic checker as the process critic.
//! Best-of-N (ranked by the outcome critic) and MCTS then run on it.
//!
//! ```sh
//! cargo run --release --example custom_task -- [MODEL.gguf]
//! ```

use std::sync::Arc;

use ponder::critics::arith::ArithmeticCritic;
use ponder::engine::config::{Algorithm, AnswerRule};
use ponder::engine::{
    BoxError, Critic, CriticKind, CriticPanel, Evaluator, Models, PathRef, PrmAggregate, Problem,
    ScoreRange, SearchConfig, StepRule, Task, TreeId, search,
};
use ponder::policies::models::{default_model_path, load};
use ponder::policies::step_policy::{LlamaPolicy, Sampling};

/// Unit conversions: "How many centimetres are in 3 metres?", answered `The answer is N.`
#[derive(Debug)]
struct Conversions;

impl Task for Conversions {
    fn name(&self) -> &str {
        "conversions"
    }
    fn prompt(&self, problem: &Problem) -> String {
        format!(
            "Convert step by step, one short step per line, then end with \"The answer is N.\"\n\n{}",
            problem.question
        )
    }
    fn extract_answer(&self, text: &str) -> Option<String> {
        let at = text.rfind("The answer is")?;
        let number: String = text[at + "The answer is".len()..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
            .filter(|c| *c != ',')
            .collect();
        let number = number.trim_end_matches('.');
        (!number.is_empty()).then(|| number.to_string())
    }
    fn check(&self, answer: &str, gold: &str) -> bool {
        match (answer.parse::<f64>(), gold.parse::<f64>()) {
            (Ok(a), Ok(g)) => (a - g).abs() <= 1e-9 * g.abs().max(1.0),
            _ => false,
        }
    }
}

/// An outcome critic (it scores finished solutions, batched): 0 without a readable answer,
/// else 1 for a solution of at most six lines, falling off with length.
#[derive(Debug)]
struct TidyOutcome;

impl Critic for TidyOutcome {
    fn name(&self) -> &str {
        "tidy-outcome"
    }
    fn kind(&self) -> CriticKind {
        CriticKind::Outcome
    }
    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }
    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Ok(paths
            .iter()
            .map(|p| {
                let text = p.text();
                if Conversions.extract_answer(&text).is_none() {
                    return 0.0;
                }
                let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as f32;
                (6.0 / lines.max(6.0)).clamp(0.0, 1.0)
            })
            .collect())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(default_model_path, Into::into);
    let (model, tokenizer) = load(&path, &burn::prelude::Device::flex())?;
    let rule = StepRule {
        max_tokens: 48,
        ..StepRule::default()
    };
    let sampling = Sampling {
        temperature: 0.4,
        ..Sampling::default()
    };
    let policy = Arc::new(LlamaPolicy::new(
        model, tokenizer, rule, sampling, true, 4096,
    ));
    // One critic per kind: the arithmetic checker judges steps, ours judges finished solutions.
    let critics = CriticPanel::new()
        .with(Arc::new(ArithmeticCritic))?
        .with(Arc::new(TidyOutcome))?;
    let models = Models {
        policy: policy.clone(),
        rollout: Some(policy),
        critics,
        task: Arc::new(Conversions),
    };
    let problem = Problem::new("cm", "How many centimetres are in 3 metres?").with_gold("300");
    for algorithm in [Algorithm::BestOfN, Algorithm::Mcts] {
        // MCTS as `configs/mcts-vote-min.toml` sets it up for small budgets: every simulation
        // runs to a finished solution, paths are judged by their weakest step, the answer is
        // the weighted vote of the finished solutions.
        let mut cfg = SearchConfig::alphallm();
        cfg.algorithm = algorithm;
        cfg.budget.simulations = 64;
        cfg.budget.max_tokens = Some(256);
        cfg.baseline.fill_budget = true;
        cfg.expansion.descend_to_terminal = true;
        cfg.expansion.greedy_first_child = true;
        cfg.expansion.widening.c_min_root = 4;
        cfg.expansion.widening.c_max_root = 8;
        cfg.expansion.widening.c_min = 2;
        cfg.expansion.widening.c_max = 4;
        cfg.scoring.prm_aggregate = PrmAggregate::Min;
        if algorithm == Algorithm::Mcts {
            cfg.answer = AnswerRule::WeightedVote;
        }
        let r = search(problem.clone(), TreeId(0), &cfg, Evaluator::direct(&models))?;
        let a = r.answer.as_ref();
        println!(
            "{algorithm:?}: answer={} correct={} tokens={} nodes={}",
            a.and_then(|a| a.answer.clone())
                .unwrap_or_else(|| "-".into()),
            a.and_then(|a| a.correct)
                .map_or("-".into(), |c| c.to_string()),
            r.stats.tokens,
            r.stats.nodes
        );
    }
    Ok(())
}
