//! DPO pairs files as tokens: the pairs `ponder generate` writes, or TRL-style
//! `{prompt, chosen, rejected}` lines, read into what the trainer feeds the model.

use std::io::BufRead;
use std::path::Path;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// One pair as tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPair {
    /// The prompt and shared prefix, exactly as the policy conditions on them.
    pub context: Vec<u32>,
    /// The chosen step's tokens.
    pub chosen: Vec<u32>,
    /// The rejected step's tokens.
    pub rejected: Vec<u32>,
    /// Conservative label smoothing ε in `[0, 0.5]`.
    pub label_smoothing: f32,
}

/// Reads pairs JSONL: the pairs `ponder generate` writes (`prompt` = task prompt + shared
/// prefix, `prefix` = the prefix part, `chosen`/`rejected` with their token ids, and
/// `label_smoothing`) or TRL-style `{prompt, chosen, rejected}` lines. The task prompt is
/// wrapped in the tokenizer's chat template when `chat` is set, as the step policy does.
///
/// # Errors
/// A line that is not JSON or lacks a field (named with `file:line`), an empty step, or text
/// that does not tokenise.
pub fn read_pairs(path: &Path, tokenizer: &Tokenizer, chat: bool) -> Result<Vec<TokenPair>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pairs(path, std::io::BufReader::new(file), tokenizer, chat)
}

/// [`read_pairs`] over any reader (`path` only names it in errors).
///
/// # Errors
/// As [`read_pairs`].
pub fn parse_pairs(
    path: &Path,
    reader: impl BufRead,
    tokenizer: &Tokenizer,
    chat: bool,
) -> Result<Vec<TokenPair>> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::Record {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Record {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let text = |k: &str| -> Result<String> {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("field `{k}` is missing or not a string")))
        };
        let ids = |k: &str, fallback: &str| -> Result<Vec<u32>> {
            match v.get(k).and_then(|x| x.as_array()) {
                Some(a) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .and_then(|x| u32::try_from(x).ok())
                            .ok_or_else(|| bad(format!("`{k}` holds a non-token")))
                    })
                    .collect(),
                None => tokenizer.encode(&text(fallback)?),
            }
        };
        let prompt = text("prompt")?;
        let prefix = v
            .get("prefix")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let task = prompt
            .strip_suffix(prefix.as_str())
            .ok_or_else(|| bad("`prompt` does not end with `prefix`".into()))?;
        let rendered = if chat {
            tokenizer.chat().render(None, task)
        } else {
            task.to_string()
        };
        let mut context = tokenizer.encode(&rendered)?;
        if v.get("prefix_tokens").is_some() {
            context.extend(ids("prefix_tokens", "prefix")?);
        } else if !prefix.is_empty() {
            context.extend(tokenizer.encode(&prefix)?);
        }
        let pair = TokenPair {
            context,
            chosen: ids("chosen_tokens", "chosen")?,
            rejected: ids("rejected_tokens", "rejected")?,
            label_smoothing: v
                .get("label_smoothing")
                .and_then(|x| x.as_f64())
                .unwrap_or(0.0)
                .clamp(0.0, 0.5) as f32,
        };
        if pair.chosen.is_empty() || pair.rejected.is_empty() {
            return Err(bad("an empty chosen or rejected step".into()));
        }
        out.push(pair);
    }
    Ok(out)
}
