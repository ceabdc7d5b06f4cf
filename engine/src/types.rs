//! Plain data shared by the traits: problems and steps.

use serde::{Deserialize, Serialize};

/// A problem to reason about: a question and, when known, its gold answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable identifier, carried into every output record.
    pub id: String,
    /// The question text, before the task's prompt formatting.
    pub question: String,
    /// The gold final answer, when known (training data generation); `None` at test time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<String>,
}

impl Problem {
    /// A problem without a gold answer.
    pub fn new(id: impl Into<String>, question: impl Into<String>) -> Self {
        Problem {
            id: id.into(),
            question: question.into(),
            gold: None,
        }
    }

    /// The same problem with a gold answer.
    pub fn with_gold(mut self, gold: impl Into<String>) -> Self {
        self.gold = Some(gold.into());
        self
    }
}

/// One reasoning step (an AlphaLLM "option"): what a policy proposes as the next edge of the tree.
///
/// `text` includes the step's own terminator (for instance its trailing newline), so the text of a
/// path is the plain concatenation of its steps' texts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The step as text, terminator included.
    pub text: String,
    /// The exact token ids the policy generated, when the policy is token-based. Kept so that KV
    /// caches, critic heads and step-level DPO see the same tokens (re-tokenising text changes them).
    pub tokens: Option<Vec<u32>>,
    /// Sum of the log-probabilities of the step's tokens under the policy (0 when unknown).
    pub logprob: f32,
    /// Number of tokens in the step (for length-normalised priors and token budgets).
    pub n_tokens: u32,
    /// Tokens of the prompt and prefix whose KV state the policy reused from its cache instead of
    /// recomputing (0 when the policy has no cache or does not say).
    pub reused_tokens: u32,
    /// Generation ended for good (EOS or the answer pattern): the path is complete.
    pub finished: bool,
}

impl Step {
    /// A text-only step with no token information.
    pub fn text(text: impl Into<String>) -> Self {
        Step {
            text: text.into(),
            ..Step::default()
        }
    }
}
