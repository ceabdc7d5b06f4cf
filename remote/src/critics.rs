//! Critics served over HTTP, through the same retrying, load-spreading client as the remote
//! policy ([`crate::policy::Client`]):
//!
//! - [`RemoteCritic`]: a value model, PRM or ORM behind a scoring endpoint, in ponder's simple
//!   JSON shape or vLLM's pooling shape (see [`ScoreFormat`]);
//! - [`RemoteJudge`]: LLM-as-judge self-evaluation — the served policy model asked whether the
//!   latest step is correct, scored from the log-probabilities of its one-token reply.

use std::sync::Arc;

use crate::policy::{Client, Template};
use crate::wire;
use ponder_engine::tree::PathRef;
use ponder_engine::{BoxError, Critic, CriticKind, ScoreRange};
use serde::{Deserialize, Serialize};
use serde_json::json;

use ponder_tasks::judge::SelfEvalConfig;

/// The request and answer shapes of a scoring endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreFormat {
    /// ponder's own: `POST {"model", "kind", "inputs": [{"prompt", "steps": [..]}, ..]}`,
    /// answered with `{"scores": [x, ..]}`, one number per input, in order.
    #[default]
    Ponder,
    /// vLLM's pooling API (reward models served with `--task reward`/`classify`):
    /// `POST {"model", "input": [text, ..]}` answered with `{"data": [{"data": ..}, ..]}`; the
    /// last number of each entry's (possibly nested) data is the score.
    VllmPooling,
}

/// A critic behind an HTTP scoring endpoint.
#[derive(Debug)]
pub struct RemoteCritic {
    client: Arc<Client>,
    kind: CriticKind,
    format: ScoreFormat,
    path: String,
    range: ScoreRange,
    name: String,
}

impl RemoteCritic {
    /// A critic of `kind` posting to `path` (relative to the client's endpoints, for instance
    /// `/score` or `/pooling`), whose raw scores lie in `range`.
    pub fn new(
        client: Arc<Client>,
        kind: CriticKind,
        format: ScoreFormat,
        path: &str,
        range: ScoreRange,
    ) -> Self {
        let name = format!("remote:{}{path}", client.config().model);
        RemoteCritic {
            client,
            kind,
            format,
            path: path.to_string(),
            range,
            name,
        }
    }
}

impl Critic for RemoteCritic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CriticKind {
        self.kind
    }

    fn range(&self) -> ScoreRange {
        self.range
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let n = paths.len();
        let model = self.client.config().model.clone();
        let body = match self.format {
            ScoreFormat::Ponder => json!({
                "model": model,
                "kind": self.kind,
                "inputs": paths.iter().map(|p| json!({
                    "prompt": p.prompt(),
                    "steps": p.steps().iter().map(|s| s.text.as_str()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }),
            ScoreFormat::VllmPooling => json!({
                "model": model,
                "input": paths.iter().map(|p| format!("{}{}", p.prompt(), p.text())).collect::<Vec<_>>(),
            }),
        };
        let range = self.range;
        let format = self.format;
        let scores = self.client.post(&self.path, &body, move |v| {
            wire::scores(v, format, n, range)
        })?;
        Ok(scores)
    }
}

/// LLM-as-judge self-evaluation through the completions API: the judging prompt of
/// [`SelfEvalConfig`] (rendered with the served model's chat format), then the reply prefix;
/// the score is p(yes) / (p(yes) + p(no)) over the reply's first token, read from the top
/// log-probabilities the server returns (0.5 when neither answer is among them).
#[derive(Debug)]
pub struct RemoteJudge {
    client: Arc<Client>,
    cfg: SelfEvalConfig,
    template: Template,
    top: u32,
}

impl RemoteJudge {
    /// A judge asking for the `top` most likely first tokens (20 is what OpenAI allows).
    pub fn new(client: Arc<Client>, cfg: SelfEvalConfig, template: Template, top: u32) -> Self {
        RemoteJudge {
            client,
            cfg,
            template,
            top: top.max(2),
        }
    }

    /// The judge's input for a path.
    pub fn render(&self, question: &str, previous: &[&str], step: &str) -> String {
        let chat = self.template.chat();
        ponder_tasks::judge::render_judge(
            &self.cfg,
            self.cfg.chat.then_some(&chat),
            question,
            previous,
            step,
        )
    }

    fn judge(&self, input: &str) -> crate::Result<f32> {
        let body = json!({
            "model": self.client.config().model,
            "prompt": input,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": self.top,
        });
        let (yes, no) = (self.cfg.yes.clone(), self.cfg.no.clone());
        self.client.post("/completions", &body, move |v| {
            wire::judgement(v, &yes, &no)
        })
    }
}

impl Critic for RemoteJudge {
    fn name(&self) -> &str {
        "remote-judge"
    }

    fn kind(&self) -> CriticKind {
        CriticKind::Process
    }

    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        let inputs: Vec<Option<String>> = paths
            .iter()
            .map(|p| {
                let steps = p.steps();
                let (last, before) = steps.split_last()?;
                let before: Vec<&str> = before.iter().map(|s| s.text.as_str()).collect();
                Some(self.render(&p.problem().question, &before, &last.text))
            })
            .collect();
        // Every path's request in flight at once, up to the client's concurrency.
        let results: Vec<crate::Result<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .iter()
                .map(|i| s.spawn(move || i.as_ref().map_or(Ok(0.5), |i| self.judge(i))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crate::Error::Model("a judge thread panicked".into()))
                    })
                })
                .collect()
        });
        results
            .into_iter()
            .map(|r| r.map_err(|e| Box::new(e) as BoxError))
            .collect()
    }
}
