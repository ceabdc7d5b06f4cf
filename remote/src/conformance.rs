//! Conformance of an OpenAI-compatible server with what ponder's remote policy needs, measured
//! against the server itself (`ponder bench remote --endpoint URL`): whether it honours `n` and
//! `stop`, which log-probability shape and finish reasons it sends, how many requests it
//! really serves at once, and — over the trees of a real search — whether every stored node is
//! one step under the step rule and within its token cap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use ponder_engine::policy::StepRule;
use ponder_engine::tree::{NodeId, Tree};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::Result;
use crate::policy::{Api, Client};

/// What the probe requests found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Probe {
    /// Choices in the answer to a request with `n = 3`.
    pub n_answered: usize,
    /// An answer asked to stop at a newline held no newline.
    pub stop_honoured: bool,
    /// The log-probability form: `content` (chat form), `legacy` (`tokens`/`token_logprobs`)
    /// or `none`.
    pub logprobs: String,
    /// Every `finish_reason` seen.
    pub finish_reasons: BTreeSet<String>,
    /// Whether answers say which stop string matched (vLLM's `stop_reason`).
    pub stop_reason: bool,
    /// Seconds for one request alone.
    pub single_secs: f64,
    /// Requests sent at once for the parallelism measurement.
    pub concurrent: usize,
    /// Seconds until all of them were answered.
    pub concurrent_secs: f64,
    /// `concurrent * single_secs / concurrent_secs`: 1 for a server that serves one request at a
    /// time, `concurrent` for one that serves them all at the speed of one.
    pub effective_parallelism: f64,
    /// Prompt tokens the server reported for one request (0 if it does not say).
    pub prompt_tokens: u64,
}

/// Sends the probe requests to the client's first endpoint, with `prompt` rendered as the
/// completions API sends it (or as one user message for the chat API). Each request asks for
/// at most `max_tokens` tokens; the parallelism measurement sends `concurrent` at once.
///
/// # Errors
/// A request that fails after the client's retries.
pub fn probe(
    client: &Arc<Client>,
    prompt: &str,
    max_tokens: u32,
    concurrent: usize,
) -> Result<Probe> {
    let cfg = client.config();
    let chat = cfg.api == Api::Chat;
    let (path, base) = if chat {
        (
            "/chat/completions",
            json!({"model": cfg.model, "messages": [{"role": "user", "content": prompt}],
                   "logprobs": true}),
        )
    } else {
        let rendered = cfg.template.chat().render(cfg.system.as_deref(), prompt);
        (
            "/completions",
            json!({"model": cfg.model, "prompt": rendered, "logprobs": 1}),
        )
    };
    let ask = |extra: Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        client.post(path, &body, |v| Ok(v.clone()))
    };
    let mut out = Probe {
        concurrent,
        ..Probe::default()
    };
    let note = |v: &Value, out: &mut Probe| {
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
                out.finish_reasons.insert(r.to_string());
            }
            out.stop_reason |= c.get("stop_reason").is_some();
            if out.logprobs.is_empty() || out.logprobs == "none" {
                out.logprobs = if c.pointer("/logprobs/content").is_some() {
                    "content".into()
                } else if c.pointer("/logprobs/token_logprobs").is_some() {
                    "legacy".into()
                } else {
                    "none".into()
                };
            }
        }
    };
    // `n`.
    let v = ask(json!({"n": 3, "max_tokens": 8, "temperature": 0.8, "seed": 1}))?;
    out.n_answered = v
        .get("choices")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    note(&v, &mut out);
    // `stop` at a newline, with room for several lines.
    let v = ask(json!({"max_tokens": max_tokens, "temperature": 0.0, "stop": ["\n"]}))?;
    let text = |v: &Value| {
        v.pointer(if chat {
            "/choices/0/message/content"
        } else {
            "/choices/0/text"
        })
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
    };
    out.stop_honoured = !text(&v).contains('\n');
    note(&v, &mut out);
    // One request alone, then `concurrent` at once (the same work each).
    let body = json!({"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": true});
    let t = Instant::now();
    let v = ask(body.clone())?;
    out.single_secs = t.elapsed().as_secs_f64();
    out.prompt_tokens = v
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    note(&v, &mut out);
    let t = Instant::now();
    let answers: Vec<Result<Value>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrent.max(1))
            .map(|_| s.spawn(|| ask(body.clone())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe thread does not panic"))
            .collect()
    });
    out.concurrent_secs = t.elapsed().as_secs_f64();
    for a in answers {
        note(&a?, &mut out);
    }
    out.effective_parallelism = if out.concurrent_secs > 0.0 {
        concurrent as f64 * out.single_secs / out.concurrent_secs
    } else {
        0.0
    };
    Ok(out)
}

/// One stored node that breaks the step rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    /// The node.
    pub node: u32,
    /// What is wrong.
    pub message: String,
}

/// Checks every node of a finished tree: one step under `rule` (one piece of
/// [`StepRule::split`]) and at most `cap` tokens.
pub fn check_tree(tree: &Tree, rule: &StepRule, cap: u32) -> Vec<Violation> {
    let mut out = Vec::new();
    for n in tree.node_ids().filter(|&n| n != NodeId::ROOT) {
        let s = &tree.data(n).step;
        let pieces = rule.split(&s.text);
        if pieces.len() > 1 {
            out.push(Violation {
                node: n.0,
                message: format!("{} steps in one node: {:?}", pieces.len(), clip(&s.text)),
            });
        }
        if s.n_tokens > cap {
            out.push(Violation {
                node: n.0,
                message: format!("{} tokens, over the cap of {cap}", s.n_tokens),
            });
        }
    }
    out
}

fn clip(s: &str) -> String {
    let c: String = s.chars().take(80).collect();
    if c.len() < s.len() { c + "…" } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RemoteConfig;
    use ponder_testkit::mock_server::{Flavor, MockConfig, MockServer};

    #[test]
    fn the_probe_reads_what_a_server_does() {
        let q = "Start with 7. Add 3. Multiply by 2. What is the result?";
        for (flavor, ignore_n) in [(Flavor::Vllm, false), (Flavor::LlamaServer, true)] {
            let server = MockServer::start(MockConfig {
                flavor,
                ignore_n,
                ..MockConfig::default()
            })
            .unwrap();
            let client = Arc::new(
                Client::new(&RemoteConfig {
                    endpoints: vec![server.url()],
                    ..RemoteConfig::default()
                })
                .unwrap(),
            );
            let p = probe(&client, q, 32, 4).unwrap();
            assert_eq!(p.n_answered, if ignore_n { 1 } else { 3 }, "{p:?}");
            assert!(p.stop_honoured, "{p:?}");
            let shape = if flavor == Flavor::Vllm {
                "legacy"
            } else {
                "content"
            };
            assert_eq!(p.logprobs, shape, "{p:?}");
            assert_eq!(p.stop_reason, flavor == Flavor::Vllm, "{p:?}");
            assert!(p.finish_reasons.contains("stop"), "{p:?}");
            assert!(
                p.effective_parallelism > 0.0 && p.prompt_tokens > 0,
                "{p:?}"
            );
        }
    }
}
