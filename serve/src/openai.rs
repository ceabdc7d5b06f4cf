//! The OpenAI-shaped routes: request parsing and validation, search profiles, responses and
//! errors.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ponder_engine::config::Algorithm;
use ponder_engine::extract::{self, TreeDump};
use ponder_engine::{Problem, SearchConfig, SearchReport, TreeId};
use serde_json::{Map, Value, json};

use crate::App;
use crate::executor::Job;

/// A served search: what the request's `model` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// `ponder-mcts`: MCTS with the server's search settings.
    Mcts,
    /// `ponder-sc`: self-consistency (majority answer of `n` samples).
    SelfConsistency,
    /// `ponder-greedy`: one greedy solution.
    Greedy,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Mcts, Profile::SelfConsistency, Profile::Greedy];

    /// The `model` id.
    pub fn id(self) -> &'static str {
        match self {
            Profile::Mcts => "ponder-mcts",
            Profile::SelfConsistency => "ponder-sc",
            Profile::Greedy => "ponder-greedy",
        }
    }

    fn from_id(id: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.id() == id)
    }

    /// Simulations (MCTS) or samples (self-consistency) for a `reasoning_effort`.
    pub fn budget(self, effort: &str) -> Option<u32> {
        let i = ["low", "medium", "high"]
            .iter()
            .position(|e| *e == effort)?;
        Some(match self {
            Profile::Mcts => [8, 32, 128][i],
            Profile::SelfConsistency => [4, 8, 16][i],
            Profile::Greedy => 1,
        })
    }
}

/// An error as OpenAI sends it.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Equal in time whatever the contents (a length difference is still visible).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorise(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &app.cfg.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_secret(given.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key (Authorization: Bearer …)".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        })
    }
}

fn parse(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        ApiError {
            status,
            message: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request body too large".into()
            } else {
                e.body_text()
            },
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    })?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: format!("the body is not JSON: {e}"),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid("body", "the body must be a JSON object")),
    }
}

/// The profile a request names.
fn profile(body: &Map<String, Value>) -> Result<Profile, ApiError> {
    let id = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("model", "`model` is required (a string)"))?;
    Profile::from_id(id).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "the model `{id}` does not exist; served: {}",
            Profile::ALL.map(Profile::id).join(", ")
        ),
        kind: "invalid_request_error",
        param: Some("model".into()),
        code: Some("model_not_found"),
    })
}

/// The search a request asks for: the profile's algorithm at the budget of its
/// `reasoning_effort`, then the `ponder` object's overrides, within the server's caps.
fn request_search(
    app: &App,
    profile: Profile,
    body: &Map<String, Value>,
) -> Result<(SearchConfig, bool), ApiError> {
    let mut s = app.base.clone();
    s.algorithm = match profile {
        Profile::Mcts => Algorithm::Mcts,
        Profile::SelfConsistency => Algorithm::SelfConsistency,
        Profile::Greedy => Algorithm::Greedy,
    };
    let effort = match body.get("reasoning_effort") {
        None | Some(Value::Null) => "medium",
        Some(Value::String(e)) => e.as_str(),
        Some(_) => return Err(ApiError::invalid("reasoning_effort", "must be a string")),
    };
    let mut budget = profile.budget(effort).ok_or_else(|| {
        ApiError::invalid("reasoning_effort", "must be `low`, `medium` or `high`")
    })?;
    let mut tree = false;
    match body.get("ponder") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for (k, v) in ext {
                let at = format!("ponder.{k}");
                match k.as_str() {
                    "algorithm" => {
                        s.algorithm = serde_json::from_value(v.clone()).map_err(|_| {
                            ApiError::invalid(
                                at,
                                "must be mcts, greedy, self-consistency, best-of-n or beam",
                            )
                        })?;
                    }
                    "simulations" => {
                        budget = v
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|&n| n > 0)
                            .ok_or_else(|| ApiError::invalid(at, "must be a positive integer"))?;
                    }
                    "return_tree" => {
                        tree = v
                            .as_bool()
                            .ok_or_else(|| ApiError::invalid(at, "must be true or false"))?;
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            at,
                            "unknown field (algorithm, simulations, return_tree)",
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(ApiError::invalid("ponder", "must be an object")),
    }
    if budget > app.cfg.max_simulations {
        return Err(ApiError::invalid(
            "ponder.simulations",
            format!("at most {} on this server", app.cfg.max_simulations),
        ));
    }
    s.budget.simulations = budget;
    s.baseline.n = budget;
    let cap = app.cfg.max_wall_seconds;
    s.budget.wall_seconds = Some(s.budget.wall_seconds.map_or(cap, |w| w.min(cap)));
    s.validate()
        .map_err(|e| ApiError::invalid("ponder", e.to_string()))?;
    Ok((s, tree))
}

/// Counts a search as running for as long as it lives.
struct InFlight<'a>(&'a App);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Relaxed: a gauge.
        self.0.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one search through the executor, or refuses it with 429 at the concurrency limit.
async fn run(app: &App, question: String, search: SearchConfig) -> Result<SearchReport, ApiError> {
    // Relaxed: an admission gauge; an occasional extra admission under a race is harmless.
    if app.counters.in_flight.fetch_add(1, Ordering::Relaxed) >= app.cfg.max_concurrent {
        app.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        app.counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "{} searches are running, the server's limit; retry shortly",
                app.cfg.max_concurrent
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        });
    }
    let _guard = InFlight(app);
    let id = app.next_id();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let server_error = |message: String| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
        kind: "server_error",
        param: None,
        code: None,
    };
    app.jobs
        .send(Job {
            problem: Problem::new(format!("req-{id}"), question),
            search,
            tree: TreeId(id as u32),
            reply,
        })
        .map_err(|_| server_error("the search executor has stopped".into()))?;
    let report = answer
        .await
        .map_err(|_| server_error("the search was lost".into()))?
        .map_err(|e| server_error(format!("the search failed: {e}")))?;
    // Relaxed: a counter.
    app.counters
        .tokens
        .fetch_add(report.stats.tokens, Ordering::Relaxed);
    Ok(report)
}

/// The chosen solution's text (its steps from the root) and the `ponder` extension field.
fn solution(
    report: &SearchReport,
    search: &SearchConfig,
    profile: Profile,
    tree: bool,
) -> (String, Value) {
    let dump: TreeDump = extract::dump(report, search);
    let by_id: std::collections::HashMap<u32, &extract::DumpNode> =
        dump.nodes.iter().map(|n| (n.id, n)).collect();
    let mut steps = Vec::new();
    let mut score = None;
    if let Some(a) = &report.answer {
        let mut at = by_id.get(&a.node.0).copied();
        score = at.map(|n| n.critics.score);
        while let Some(n) = at {
            steps.push(n.text.as_str());
            at = n.parent.and_then(|p| by_id.get(&p).copied());
        }
    }
    steps.reverse();
    let text = steps.concat().trim().to_string();
    let mut ext = json!({
        "profile": profile.id(),
        "algorithm": search.algorithm,
        "answer": report.answer.as_ref().and_then(|a| a.answer.clone()),
        "score": score,
        "stats": report.stats,
    });
    if tree {
        ext["tree"] = serde_json::to_value(&dump).unwrap_or(Value::Null);
    }
    (text, ext)
}

fn usage(report: &SearchReport) -> Value {
    // Every token the search generated; the prompt is not counted (the engine's policies do
    // not report it), so `prompt_tokens` is 0.
    json!({
        "prompt_tokens": 0,
        "completion_tokens": report.stats.tokens,
        "total_tokens": report.stats.tokens,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        // Content parts: the text ones, joined.
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// `POST /v1/chat/completions`: the last user message is the question.
pub(crate) async fn chat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Relaxed: a counter.
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    match chat_inner(&app, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorise(app, headers)?;
    let body = parse(body)?;
    let profile = profile(&body)?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "`messages` must be a non-empty list"))?;
    let question = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| text_of(&m["content"]))
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "no user message with text content"))?;
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            "stream",
            "streaming is not supported by this server yet; send `stream: false`",
        ));
    }
    let (search, tree) = request_search(app, profile, &body)?;
    let report = run(app, question, search.clone()).await?;
    let (text, ext) = solution(&report, &search, profile, tree);
    Ok(Json(json!({
        "id": format!("chatcmpl-{}", app.next_id()),
        "object": "chat.completion",
        "created": now(),
        "model": profile.id(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": usage(&report),
        "ponder": ext,
    }))
    .into_response())
}

/// `POST /v1/completions`: the prompt is the question.
pub(crate) async fn completion(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Relaxed: a counter.
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    match completion_inner(&app, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completion_inner(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorise(app, headers)?;
    let body = parse(body)?;
    let profile = profile(&body)?;
    let question = match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` must be a string (or a list of one)",
            ));
        }
    };
    if question.trim().is_empty() {
        return Err(ApiError::invalid("prompt", "`prompt` is empty"));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::invalid(
            "stream",
            "streaming is not supported by this server yet; send `stream: false`",
        ));
    }
    let (search, tree) = request_search(app, profile, &body)?;
    let report = run(app, question, search.clone()).await?;
    let (text, ext) = solution(&report, &search, profile, tree);
    Ok(Json(json!({
        "id": format!("cmpl-{}", app.next_id()),
        "object": "text_completion",
        "created": now(),
        "model": profile.id(),
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(&report),
        "ponder": ext,
    }))
    .into_response())
}

/// `GET /v1/models`.
pub(crate) async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorise(&app, &headers) {
        return e.into_response();
    }
    let data: Vec<Value> = Profile::ALL
        .iter()
        .map(|p| json!({"id": p.id(), "object": "model", "created": 0, "owned_by": app.cfg.model_name}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`.
pub(crate) async fn health(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "status": "ok",
        // Relaxed: gauges.
        "in_flight": app.counters.in_flight.load(Ordering::Relaxed),
        "requests": app.counters.requests.load(Ordering::Relaxed),
        "rejected": app.counters.rejected.load(Ordering::Relaxed),
    }))
    .into_response()
}
