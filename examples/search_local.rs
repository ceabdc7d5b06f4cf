//! Search one problem with the installed default model (SmolLM2-135M-Instruct, `scripts/setup.sh`)
//! through the library: load the GGUF, build the step policy, the arithmetic-checking process
//! critic and the math task, run MCTS, print the answer and the tree's size.
//!
//! ```sh
//! cargo run --release --example search_local -- [MODEL.gguf] ["question"]
//! ```

use std::sync::Arc;

use ponder::critics::arith::ArithmeticCritic;
use ponder::critics::math::{ANSWER_MARKER, MathTask};
use ponder::engine::{
    CriticPanel, Evaluator, Models, Problem, SearchConfig, StepRule, TreeId, search,
};
use ponder::policies::gguf::Gguf;
use ponder::policies::llama::Llama;
use ponder::policies::models::default_model_path;
use ponder::policies::step_policy::{LlamaPolicy, Sampling};
use ponder::policies::tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().map_or_else(default_model_path, Into::into);
    let question = args.next().unwrap_or_else(|| {
        "Tom has 3 apples and buys 5 more. How many apples does he have?".into()
    });
    if !path.exists() {
        return Err(format!("no model at {} (run scripts/setup.sh)", path.display()).into());
    }
    // The model and its tokenizer from one GGUF file, on the CPU backend.
    let gguf = Gguf::open(&path)?;
    let model = Llama::from_gguf(&gguf, &burn::prelude::Device::flex())?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    // One line per step; the answer line ends the solution.
    let rule = StepRule {
        answer_pattern: Some(ANSWER_MARKER.into()),
        max_tokens: 64,
        ..StepRule::default()
    };
    let sampling = Sampling {
        temperature: 0.4,
        ..Sampling::default()
    };
    let policy = Arc::new(LlamaPolicy::new(
        model, tokenizer, rule, sampling, true, 4096,
    ));
    let models = Models {
        policy: policy.clone(),
        rollout: Some(policy),
        critics: CriticPanel::new().with(Arc::new(ArithmeticCritic))?,
        task: Arc::new(MathTask::few_shot(3)),
    };
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 16;
    let problem = Problem::new("example", question);
    let report = search(problem, TreeId(0), &cfg, Evaluator::direct(&models))?;
    let answer = report.answer.as_ref().and_then(|a| a.answer.clone());
    println!(
        "answer={} nodes={} tokens={}",
        answer.as_deref().unwrap_or("-"),
        report.stats.nodes,
        report.stats.tokens
    );
    Ok(())
}
