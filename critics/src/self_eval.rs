//! Step-wise self-evaluation (MCTS-DPO's process signal): the policy itself is asked whether the
//! latest step of a solution is correct, and the critic reads p(correct) from the probabilities
//! of the answer tokens at the first position of its reply.
//!
//! Unlike MCTS-DPO's released code, the prompt never contains the gold solution: a critic that
//! peeks at the reference cannot be used at test time, and its scores overstate what the model
//! knows. The prompt and the answer tokens are configurable.

use std::sync::Arc;

use ponder_engine::{BoxError, Critic, CriticKind, PathRef, ScoreRange};
use ponder_policies::backbone::Backbone;

use crate::error::{Error, Result};

pub use ponder_tasks::judge::{DEFAULT_PROMPT, DEFAULT_REPLY_PREFIX, SelfEvalConfig, render_judge};

/// The policy judging its own latest step.
pub struct SelfEvalCritic {
    policy: Arc<dyn Backbone>,
    cfg: SelfEvalConfig,
    yes: Vec<u32>,
    no: Vec<u32>,
}

impl std::fmt::Debug for SelfEvalCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfEvalCritic")
            .field("yes", &self.yes)
            .field("no", &self.no)
            .finish()
    }
}

impl SelfEvalCritic {
    /// A judge on `policy`'s model.
    ///
    /// # Errors
    /// An answer token that is not exactly one token of the model's vocabulary, an empty token
    /// list, or a prompt without `{step}`.
    pub fn new(policy: Arc<dyn Backbone>, cfg: SelfEvalConfig) -> Result<Self> {
        if !cfg.prompt.contains("{step}") {
            return Err(Error::Config {
                field: "critics.self_eval.prompt".into(),
                message: "the prompt has no `{step}` placeholder".into(),
            });
        }
        let ids = |words: &[String], field: &str| -> Result<Vec<u32>> {
            if words.is_empty() {
                return Err(Error::Config {
                    field: format!("critics.self_eval.{field}"),
                    message: "no answer tokens".into(),
                });
            }
            words
                .iter()
                .map(|w| {
                    let t = policy.encode(w)?;
                    match t[..] {
                        [id] => Ok(id),
                        _ => Err(Error::Config {
                            field: format!("critics.self_eval.{field}"),
                            message: format!("`{w}` is {} tokens, not one", t.len()),
                        }),
                    }
                })
                .collect()
        };
        let yes = ids(&cfg.yes, "yes")?;
        let no = ids(&cfg.no, "no")?;
        Ok(SelfEvalCritic {
            policy,
            cfg,
            yes,
            no,
        })
    }

    /// The judge's input for a path: the prompt (chat-wrapped when the model has a template)
    /// followed by the reply prefix.
    pub fn render(&self, question: &str, previous: &[&str], step: &str) -> String {
        let chat = self.cfg.chat.then(|| self.policy.chat());
        render_judge(&self.cfg, chat, question, previous, step)
    }

    /// p(correct) = Σ p(yes) / (Σ p(yes) + Σ p(no)) at the first reply position.
    ///
    /// # Errors
    /// The text does not tokenise or is longer than the model's context.
    pub fn judge(&self, input: &str) -> Result<f32> {
        let tokens = self.policy.encode(input)?;
        let logits = self.policy.last_logits(&tokens)?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let p = |ids: &[u32]| -> f64 {
            ids.iter()
                .map(|&i| f64::from(logits[i as usize] - max).exp())
                .sum()
        };
        let (y, n) = (p(&self.yes), p(&self.no));
        Ok(if y + n > 0.0 {
            (y / (y + n)) as f32
        } else {
            0.5
        })
    }
}

impl Critic for SelfEvalCritic {
    fn name(&self) -> &str {
        "self-eval"
    }

    fn kind(&self) -> CriticKind {
        CriticKind::Process
    }

    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }

    fn score(&self, paths: &[PathRef<'_>]) -> std::result::Result<Vec<f32>, BoxError> {
        paths
            .iter()
            .map(|p| {
                let steps = p.steps();
                let Some((last, before)) = steps.split_last() else {
                    return Ok(0.5);
                };
                let before: Vec<&str> = before.iter().map(|s| s.text.as_str()).collect();
                let input = self.render(&p.problem().question, &before, &last.text);
                Ok(self.judge(&input)?)
            })
            .collect()
    }
}
