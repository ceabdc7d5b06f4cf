//! The [`Task`] trait: how a problem becomes a prompt and how an answer is read and checked.

use crate::tree::PathRef;
use crate::types::Problem;

/// A kind of problem: prompt formatting, answer extraction, terminal detection and the gold check.
pub trait Task: Send + Sync {
    /// A short name for logs and manifests.
    fn name(&self) -> &str;

    /// The prompt the policy continues (chat template and few-shot examples included).
    fn prompt(&self, problem: &Problem) -> String;

    /// The final answer in a path's text, if it has one.
    fn extract_answer(&self, path_text: &str) -> Option<String>;

    /// Whether `path` (whose last step is new) is complete. The default: the policy finished the
    /// last step (EOS or answer pattern) or an answer can be extracted from it.
    fn is_terminal(&self, path: &PathRef<'_>) -> bool {
        path.last_step()
            .is_some_and(|s| s.finished || self.extract_answer(&s.text).is_some())
    }

    /// Whether `answer` matches the gold answer.
    fn check(&self, answer: &str, gold: &str) -> bool;
}
