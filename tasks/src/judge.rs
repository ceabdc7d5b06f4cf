//! The self-evaluation prompt: how a model (in process or served) is asked whether the latest
//! step of a solution is correct. No gold solution is ever shown: a judge that peeks at the
//! reference cannot run at test time.

use crate::chat::ChatTemplate;

/// The default judging prompt: `{question}`, `{previous}` (the steps before the latest) and
/// `{step}` (the latest) are filled in.
pub const DEFAULT_PROMPT: &str = "Review one step of a solution to a math problem.\n\n\
Problem: {question}\n\nSteps so far:\n{previous}\n\nLatest step:\n{step}\n\n\
Is the latest step correct? Answer with one letter: (A) incorrect or (B) correct.";

/// What the judge's reply starts with before the letter.
pub const DEFAULT_REPLY_PREFIX: &str = "The answer is (";

/// Settings of the self-evaluation critic.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfEvalConfig {
    /// The judging prompt (see [`DEFAULT_PROMPT`] for the placeholders).
    pub prompt: String,
    /// Text the reply is forced to start with.
    pub reply_prefix: String,
    /// Tokens meaning "correct" (each must encode to one token).
    pub yes: Vec<String>,
    /// Tokens meaning "incorrect".
    pub no: Vec<String>,
    /// Wrap the prompt in the model's chat template (as the user turn); off for few-shot
    /// completion-style prompts.
    pub chat: bool,
}

impl Default for SelfEvalConfig {
    fn default() -> Self {
        SelfEvalConfig {
            prompt: DEFAULT_PROMPT.into(),
            reply_prefix: DEFAULT_REPLY_PREFIX.into(),
            yes: vec!["B".into()],
            no: vec!["A".into()],
            chat: true,
        }
    }
}

/// The judging prompt of `cfg` for a step (wrapped in `chat` as the user turn when given),
/// followed by the reply prefix.
pub fn render_judge(
    cfg: &SelfEvalConfig,
    chat: Option<&ChatTemplate>,
    question: &str,
    previous: &[&str],
    step: &str,
) -> String {
    let previous = if previous.is_empty() {
        "(none)".to_string()
    } else {
        previous
            .iter()
            .map(|s| s.trim())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let body = cfg
        .prompt
        .replace("{question}", question)
        .replace("{previous}", &previous)
        .replace("{step}", step.trim());
    let body = match chat {
        Some(c) => c.render(None, &body),
        None => body,
    };
    format!("{body}{}", cfg.reply_prefix)
}
