//! The [`Policy`] trait (who proposes next steps) and the [`StepRule`] that decides where a step ends.

use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::tree::{PathRef, TreeId};
use crate::types::Step;

/// One expansion request: propose `k` candidate next steps after `path`.
#[derive(Clone, Copy, Debug)]
pub struct ExpandRequest<'a> {
    /// The path to extend.
    pub path: PathRef<'a>,
    /// How many candidates to return (exactly this many).
    pub k: u32,
    /// Seed for this request's sampling; candidate `i` should use a stream derived from it.
    pub seed: u64,
    /// Generate to the end of the solution instead of one step (fast rollouts, the last step at
    /// the depth limit, best-of-N samples).
    pub to_end: bool,
    /// Decode greedily (temperature 0) instead of sampling.
    pub greedy: bool,
    /// A hard cap on the tokens generated for each candidate, set when the search has a token
    /// budget (`budget.max_tokens`): the policy stops a candidate there and returns it as it is
    /// (unfinished unless it finished). A step longer than this is a contract violation. `None`:
    /// only the policy's own caps apply.
    pub max_tokens: Option<u32>,
}

/// A language model (or a test double) that proposes next reasoning steps.
///
/// Batch first: one call receives every pending request the batcher gathered, possibly from many
/// trees, and returns one `Vec<Step>` of exactly `k` candidates per request, in request order.
/// Implementations are shared by all worker threads (`Send + Sync`, `&self`).
pub trait Policy: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// Proposes `requests[i].k` candidate steps for each request.
    ///
    /// # Errors
    /// Whatever the model reports (I/O, HTTP, out of memory); the search stops with it.
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError>;

    /// The most tokens one candidate can take (one step, or a whole solution when `to_end`) under
    /// the policy's own caps. The search reserves this much per candidate against its token
    /// budget (and gives back what is not used), so a known cap lets several requests of one
    /// tree run at once near the end of a budget. The default, `None`, means unknown: a request
    /// may then be given the whole remaining budget.
    fn max_step_tokens(&self, _to_end: bool) -> Option<u32> {
        None
    }

    /// Whether the search should gather this policy's calls into batches ([`crate::Batcher`]).
    /// The default, `true`, suits a model that decodes a batch at once; a policy served by a
    /// server that batches on its side answers `false`, so each request goes out the moment a
    /// simulation needs it instead of waiting for the slowest of a client-side batch.
    fn wants_batches(&self) -> bool {
        true
    }

    /// The rule this policy ends its steps by. When it says one, the search holds every step to
    /// it whatever the policy returns: a step that runs past its first boundary is cut there, and
    /// a whole solution (`to_end`) is stored as its chain of steps, one node each
    /// ([`StepRule::split`]). The default, `None`, trusts the policy's steps as they are.
    fn step_rule(&self) -> Option<&StepRule> {
        None
    }

    /// The policy's own split of a whole solution (a `to_end` candidate) into its steps, each
    /// with the exact token ids it was generated with, the token counts adding up to the
    /// candidate's. The search uses it when every piece it returns is one step under the rule
    /// and the counts add up, and otherwise splits the text itself (token counts shared out by
    /// bytes, token ids dropped). The default, `None`, leaves it to the search.
    fn split_steps(&self, _step: &Step) -> Option<Vec<Step>> {
        None
    }

    /// Called when a tree is finished, so per-path state keyed by [`crate::PathKey`] (KV blocks,
    /// hidden states) can be dropped. The default keeps nothing and does nothing.
    fn release(&self, _tree: TreeId) {}
}

/// Where a step ends inside generated text (the option termination rule β of AlphaLLM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Boundary {
    /// One line per step (AlphaLLM on GSM8K).
    #[default]
    Newline,
    /// One paragraph (ends at a blank line).
    #[serde(alias = "blank_line")]
    BlankLine,
    /// One paragraph that contains a formula: a blank line ends the step only if the text so far
    /// has a formula (`=`, `$`, `<<`, or `digit op digit`), otherwise generation continues to the
    /// next blank line (AlphaLLM on MATH).
    #[serde(alias = "blank_line_formula")]
    BlankLineFormula,
    /// No boundary: the step runs to EOS, the answer pattern or the token cap.
    None,
}

/// The step termination rule: a boundary, an answer pattern that finishes the whole path, and a
/// token cap. EOS always finishes the path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepRule {
    /// Where a step ends.
    pub boundary: Boundary,
    /// A marker whose line ends the whole solution (for instance `The answer is` or `####`).
    pub answer_pattern: Option<String>,
    /// Hard cap on tokens per step.
    pub max_tokens: u32,
}

impl Default for StepRule {
    fn default() -> Self {
        StepRule {
            boundary: Boundary::Newline,
            answer_pattern: Some("The answer is".into()),
            max_tokens: 128,
        }
    }
}

/// One step of a text cut by [`StepRule::split`]: the byte range `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// The answer pattern fired in this piece: the path is complete.
    pub finished: bool,
}

/// Where [`StepRule::cut`] ends a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Byte length of the step inside the generated text (terminator included).
    pub len: usize,
    /// The answer pattern fired: the path is complete.
    pub finished: bool,
}

impl StepRule {
    /// Decides whether `text` (generated so far for this step) already contains a complete step.
    /// Policies call it as tokens arrive; leading blank lines never end a step.
    pub fn cut(&self, text: &str) -> Option<Cut> {
        let content_start = text.len() - text.trim_start().len();
        let body = &text[content_start..];
        // The line holding the answer pattern ends the whole solution, unless a boundary comes
        // first (text generated past a boundary, as a server that ignores `stop` sends it).
        let answer = self
            .answer_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .and_then(|pat| body.find(pat))
            .and_then(|at| body[at..].find('\n').map(|nl| at + nl + 1));
        let boundary = match self.boundary {
            Boundary::None => None,
            Boundary::Newline => body.find('\n').map(|i| i + 1),
            Boundary::BlankLine => body.find("\n\n").map(|i| i + 2),
            Boundary::BlankLineFormula => {
                let mut from = 0;
                let mut found = None;
                while let Some(i) = body[from..].find("\n\n") {
                    let end = from + i + 2;
                    if has_formula(&body[..end]) {
                        found = Some(end);
                        break;
                    }
                    from = end;
                }
                found
            }
        };
        let (len, finished) = match (answer, boundary) {
            (Some(a), Some(b)) if b < a => (b, false),
            (Some(a), _) => (a, true),
            (None, Some(b)) => (b, false),
            (None, None) => return None,
        };
        Some(Cut {
            len: content_start + len,
            finished,
        })
    }

    /// Splits generated text into the steps this rule makes of it, in order: each piece ends
    /// where [`StepRule::cut`] ends a step on the text left. The first piece whose cut fires the
    /// answer pattern is the last (what follows the answer line is not part of the solution);
    /// text after the last boundary is a final piece of its own, or joins the piece before it
    /// when it is only whitespace. Every piece is non-empty and the pieces concatenate to a
    /// prefix of `text` (all of it unless the answer pattern cut the tail off).
    pub fn split(&self, text: &str) -> Vec<Piece> {
        let mut out: Vec<Piece> = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let rest = &text[at..];
            match self.cut(rest) {
                Some(cut) if cut.len > 0 => {
                    out.push(Piece {
                        start: at,
                        end: at + cut.len,
                        finished: cut.finished,
                    });
                    at += cut.len;
                    if cut.finished {
                        break;
                    }
                }
                _ => {
                    match out.last_mut() {
                        Some(last) if rest.trim().is_empty() => last.end = text.len(),
                        _ => out.push(Piece {
                            start: at,
                            end: text.len(),
                            finished: false,
                        }),
                    }
                    break;
                }
            }
        }
        out
    }

    /// Where the solution in `text` ends: just after the first complete line holding the answer
    /// pattern (`None` until such a line is complete). A policy generating a whole solution
    /// (`to_end`) stops there: [`StepRule::cut`] ends at the first step boundary, which a whole
    /// solution runs past.
    pub fn answer_end(&self, text: &str) -> Option<usize> {
        let pat = self.answer_pattern.as_deref().filter(|p| !p.is_empty())?;
        let at = text.find(pat)?;
        text[at..].find('\n').map(|nl| at + nl + 1)
    }

    /// Whether a finished line of text hits the answer pattern.
    pub fn is_answer(&self, text: &str) -> bool {
        self.answer_pattern
            .as_deref()
            .is_some_and(|p| !p.is_empty() && text.contains(p))
    }
}

/// A formula, for [`Boundary::BlankLineFormula`]: `=`, LaTeX `$`, a GSM8K `<<` annotation, or a
/// digit, an operator and a digit.
pub fn has_formula(text: &str) -> bool {
    if text.contains('=') || text.contains('$') || text.contains("<<") {
        return true;
    }
    let b: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    b.windows(3).any(|w| {
        w[0].is_ascii_digit()
            && matches!(w[1], b'+' | b'-' | b'*' | b'/' | b'x')
            && w[2].is_ascii_digit()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(b: Boundary) -> StepRule {
        StepRule {
            boundary: b,
            ..StepRule::default()
        }
    }

    #[test]
    fn newline_rule_skips_leading_blank_lines() {
        let r = rule(Boundary::Newline);
        assert_eq!(r.cut("abc"), None);
        assert_eq!(
            r.cut("\n\nabc\ndef"),
            Some(Cut {
                len: 6,
                finished: false
            })
        );
    }

    #[test]
    fn blank_line_formula_waits_for_a_formula() {
        let r = rule(Boundary::BlankLineFormula);
        assert_eq!(r.cut("Let us think.\n\nSo"), None);
        let t = "Let us think.\n\nWe get 3 + 4 = 7.\n\nNext";
        assert_eq!(
            r.cut(t),
            Some(Cut {
                len: 34,
                finished: false
            })
        );
        assert_eq!(
            rule(Boundary::BlankLine).cut(t),
            Some(Cut {
                len: 15,
                finished: false
            })
        );
    }

    #[test]
    fn answer_pattern_finishes_the_path_at_end_of_line() {
        let r = rule(Boundary::BlankLine);
        assert_eq!(r.cut("So The answer is 4"), None);
        assert_eq!(
            r.cut("So The answer is 4.\nmore"),
            Some(Cut {
                len: 20,
                finished: true
            })
        );
        assert!(r.is_answer("The answer is 4"));
    }

    #[test]
    fn a_whole_solution_ends_after_its_answer_line() {
        let r = rule(Boundary::Newline);
        let text = "Tom has 5.\nHe buys 3: 5 + 3 = 8.\nThe answer is 8.\n\nProblem: next";
        let end = r.answer_end(text).unwrap();
        assert_eq!(
            &text[..end],
            "Tom has 5.\nHe buys 3: 5 + 3 = 8.\nThe answer is 8.\n"
        );
        assert_eq!(
            r.answer_end("Tom has 5.\nThe answer is 8."),
            None,
            "line not complete"
        );
        // `cut` ends at the first boundary: a whole solution must not stop there.
        assert_eq!(r.cut(text).map(|c| (c.len, c.finished)), Some((11, false)));
    }

    #[test]
    fn formulas_are_recognised() {
        assert!(has_formula("3 * 4"));
        assert!(has_formula("x = 2"));
        assert!(!has_formula("three apples"));
    }
}
