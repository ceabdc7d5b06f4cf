//! What a server answers, read from its JSON: generated choices with their log-probabilities
//! (completions and chat shapes), scores (ponder's and vLLM's pooling shape) and a judge's
//! yes/no log-probabilities. Each reader takes whatever a server sent — any JSON at all — and
//! returns the values or a message saying what was missing; none panics (fuzzed:
//! `fuzz_targets/remote_answer.rs`).

use ponder_engine::ScoreRange;
use serde_json::Value;

use crate::critics::ScoreFormat;

/// One generated continuation, before the step rule cuts it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Choice {
    /// The generated text.
    pub text: String,
    /// Per-token `(text, logprob)`, when the server sent them.
    pub tokens: Vec<(String, f32)>,
    /// The server stopped at one of the stop strings (which it left out of `text`).
    pub stopped: bool,
    /// The server stopped at end of sequence.
    pub eos: bool,
}

/// The tokens a server says an answer cost (0 where it did not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Generated tokens.
    pub completion: u64,
    /// Prompt tokens.
    pub prompt: u64,
}

/// The body of an answer as JSON, refusing one that carries an `error` object.
///
/// # Errors
/// A message quoting the start of a body that is not JSON, or the server's error.
pub fn answer(text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let head: String = text.chars().take(120).collect();
        format!("malformed JSON ({e}): {head:?}")
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(format!("server error: {err}"));
    }
    Ok(v)
}

/// The `choices` of a completions (`chat` false) or chat completions answer to a request for
/// `want` samples: between one and `want` of them (servers that ignore `n` send one), and the
/// usage the server reported. `has_stops`: stop strings were asked for (a bare `stop` finish
/// reason then means one matched).
///
/// # Errors
/// No `choices` list, too many or none, a choice without text, a non-finite log-probability.
pub fn choices(
    v: &Value,
    want: usize,
    chat: bool,
    has_stops: bool,
) -> Result<(Vec<Choice>, Usage), String> {
    let list = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no `choices` array")?;
    if list.is_empty() || list.len() > want {
        return Err(format!("{} choices for n = {want}", list.len()));
    }
    let choices = list
        .iter()
        .map(|c| choice(c, chat, has_stops))
        .collect::<Result<Vec<_>, String>>()?;
    let used = |k: &str| {
        v.get("usage")
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok((
        choices,
        Usage {
            completion: used("completion_tokens"),
            prompt: used("prompt_tokens"),
        },
    ))
}

/// Reads one entry of `choices`.
fn choice(c: &Value, chat: bool, has_stops: bool) -> Result<Choice, String> {
    let text = if chat {
        c.pointer("/message/content")
    } else {
        c.get("text")
    }
    .and_then(Value::as_str)
    .ok_or("a choice without text")?
    .to_string();
    let reason = c.get("finish_reason").and_then(Value::as_str).unwrap_or("");
    // vLLM says which stop string matched (`stop_reason`: a string) or that the sequence ended
    // (null, or the id of a stop token); TGI says `stop_sequence` or `eos_token`; servers that
    // do not say (llama.cpp, Ollama: `stop` for both) are taken to have matched a stop string
    // when one was asked for. `length` (the token cap) is neither.
    let (stopped, eos) = match (reason, c.get("stop_reason")) {
        ("stop", Some(Value::String(_))) | ("stop_sequence", _) => (true, false),
        ("stop", Some(Value::Null | Value::Number(_))) | ("eos" | "eos_token", _) => (false, true),
        ("stop", _) => (has_stops, !has_stops),
        _ => (false, false),
    };
    let mut tokens = Vec::new();
    // Log-probabilities come in two shapes: the chat form `logprobs.content[{token, logprob}]`
    // (chat answers, and llama.cpp's server for completions too) and the legacy completions
    // form `logprobs.{tokens, token_logprobs}` (vLLM, llama-cpp-python, OpenAI).
    if let Some(list) = c.pointer("/logprobs/content").and_then(Value::as_array) {
        for t in list {
            let s = t.get("token").and_then(Value::as_str).unwrap_or("");
            let lp = t.get("logprob").and_then(Value::as_f64).unwrap_or(0.0);
            tokens.push((s.to_string(), finite(lp)?));
        }
    } else if let (Some(ts), Some(lps)) = (
        c.pointer("/logprobs/tokens").and_then(Value::as_array),
        c.pointer("/logprobs/token_logprobs")
            .and_then(Value::as_array),
    ) {
        for (t, lp) in ts.iter().zip(lps) {
            let lp = finite(lp.as_f64().unwrap_or(0.0))?;
            tokens.push((t.as_str().unwrap_or("").to_string(), lp));
        }
    }
    Ok(Choice {
        text,
        tokens,
        stopped,
        eos,
    })
}

/// A log-probability as `f32`: finite, and finite still after the narrowing (a JSON number
/// such as `-1e300` is a finite `f64` but an infinite `f32`).
fn finite(lp: f64) -> Result<f32, String> {
    let x = lp as f32;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("a log-probability {lp} out of range"))
    }
}

/// The scores of a scoring endpoint's answer for `n` paths, each inside `range`.
///
/// # Errors
/// No scores list, a count other than `n`, a score that is not a number or lies outside the
/// range.
pub fn scores(
    v: &Value,
    format: ScoreFormat,
    n: usize,
    range: ScoreRange,
) -> Result<Vec<f32>, String> {
    let raw: Vec<Option<f64>> = match format {
        ScoreFormat::Ponder => v
            .get("scores")
            .and_then(Value::as_array)
            .ok_or("no `scores` array")?
            .iter()
            .map(Value::as_f64)
            .collect(),
        ScoreFormat::VllmPooling => v
            .get("data")
            .and_then(Value::as_array)
            .ok_or("no `data` array")?
            .iter()
            .map(|d| d.get("data").and_then(last_number))
            .collect(),
    };
    if raw.len() != n {
        return Err(format!("{} scores for {n} paths", raw.len()));
    }
    raw.into_iter()
        .map(|x| match x {
            Some(x) if (x as f32).is_finite() && range.normalise(x as f32).is_some() => {
                Ok(x as f32)
            }
            Some(x) => Err(format!("score {x} outside [{}, {}]", range.lo, range.hi)),
            None => Err("a score that is not a number".to_string()),
        })
        .collect()
}

/// The last number in a JSON value (depth first), for pooling outputs of any nesting (JSON
/// parsed by `serde_json` is at most 128 levels deep, which bounds the recursion).
fn last_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Array(a) => a.iter().rev().find_map(last_number),
        _ => None,
    }
}

/// A judge's verdict from a one-token completion's top log-probabilities: p(yes) / (p(yes) +
/// p(no)) over the tokens that trim to one of `yes` or `no`, 0.5 when neither is there.
///
/// # Errors
/// No `top_logprobs` in the answer.
pub fn judgement(v: &Value, yes: &[String], no: &[String]) -> Result<f32, String> {
    let top = v
        .pointer("/choices/0/logprobs/top_logprobs/0")
        .and_then(Value::as_object)
        .ok_or("no top_logprobs in the answer")?;
    let p = |words: &[String]| -> f64 {
        top.iter()
            .filter(|(t, _)| words.iter().any(|w| w.trim() == t.trim()))
            .filter_map(|(_, lp)| lp.as_f64())
            .filter(|lp| !lp.is_nan())
            .map(|lp| lp.min(0.0).exp())
            .sum()
    };
    let (y, n) = (p(yes), p(no));
    Ok(if y + n > 0.0 && (y / (y + n)).is_finite() {
        (y / (y + n)) as f32
    } else {
        0.5
    })
}
