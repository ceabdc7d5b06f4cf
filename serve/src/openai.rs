//! The OpenAI-shaped routes: request parsing and validation, search profiles, responses and
//! errors.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ponder_engine::config::Algorithm;
use ponder_engine::extract::{self, TreeDump};
use ponder_engine::{Problem, SearchConfig, SearchControl, SearchReport, TreeId};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot::error::RecvError;

use crate::App;
use crate::executor::Job;
use crate::stream::{self, Shape};

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

impl ApiError {
    /// The OpenAI error object.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
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
    // The budget is simulations for MCTS and samples (or beam width) for the baselines.
    if s.algorithm == Algorithm::Mcts {
        s.budget.simulations = budget;
    } else {
        s.baseline.n = budget;
    }
    let cap = app.cfg.max_wall_seconds;
    s.budget.wall_seconds = Some(s.budget.wall_seconds.map_or(cap, |w| w.min(cap)));
    s.validate()
        .map_err(|e| ApiError::invalid("ponder", e.to_string()))?;
    Ok((s, tree))
}

/// A request's hold on a search slot: counts it as in flight and, dropped before the search
/// ends (the client went away), cancels the search.
pub(crate) struct InFlight {
    app: Arc<App>,
    id: u64,
    control: Arc<SearchControl>,
    arrived: Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl InFlight {
    /// Simulations the search has finished.
    pub(crate) fn simulations(&self) -> u64 {
        self.control.simulations()
    }

    /// Notes the answer for `/metrics`: latency from arrival (queueing included), tokens.
    pub(crate) fn answered(&self, report: &SearchReport) {
        self.app
            .counters
            .answered(self.arrived.elapsed().as_secs_f64(), report.stats.tokens);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Harmless after the search ended; stops it when the client left mid-search.
        self.control.cancel();
        self.app.live_map().remove(&self.id);
        // Relaxed: a gauge.
        self.app.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request waiting for a slot (counted in the queue gauge until it gets one or goes away).
struct Queued<'a>(&'a App);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        // Relaxed: a gauge.
        self.0.counters.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

fn server_error(message: String) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
        kind: "server_error",
        param: None,
        code: None,
    }
}

fn stopping() -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the server is stopping".into(),
        kind: "server_error",
        param: None,
        code: None,
    }
}

/// Takes a search slot: at once, or after waiting in the bounded queue; refuses with 429 when
/// every slot is taken and the queue is full.
pub(crate) async fn admit(app: &Arc<App>) -> Result<InFlight, ApiError> {
    // Relaxed (every load here): gauges and a flag; an off-by-one admission under a race is
    // harmless, the semaphore itself bounds the searches.
    if app.stopping.load(Ordering::Relaxed) {
        return Err(stopping());
    }
    let permit = match app.slots.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if app.counters.queued.fetch_add(1, Ordering::Relaxed) >= app.cfg.max_queue {
                app.counters.queued.fetch_sub(1, Ordering::Relaxed);
                app.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: format!(
                        "{} searches are running and {} waiting, the server's limits; retry \
                         shortly",
                        app.cfg.max_concurrent, app.cfg.max_queue
                    ),
                    kind: "rate_limit_error",
                    param: None,
                    code: Some("rate_limit_exceeded"),
                });
            }
            let waiting = Queued(app);
            let p = app
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| stopping())?;
            drop(waiting);
            p
        }
    };
    if app.stopping.load(Ordering::Relaxed) {
        return Err(stopping());
    }
    app.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let id = app.next_id();
    let control = Arc::new(SearchControl::default());
    app.live_map().insert(id, control.clone());
    Ok(InFlight {
        app: app.clone(),
        id,
        control,
        arrived: Instant::now(),
        _permit: permit,
    })
}

/// Where a submitted search's result arrives.
pub(crate) type ReplyHandle = tokio::sync::oneshot::Receiver<Result<SearchReport, String>>;

/// Hands one search to the executor.
pub(crate) fn submit(
    app: &App,
    slot: &InFlight,
    question: String,
    search: SearchConfig,
) -> Result<ReplyHandle, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    app.jobs
        .send(Job {
            problem: Problem::new(format!("req-{}", slot.id), question),
            search,
            tree: TreeId(slot.id as u32),
            control: slot.control.clone(),
            reply,
        })
        .map_err(|_| server_error("the search executor has stopped".into()))?;
    Ok(answer)
}

pub(crate) fn report_of(
    r: Result<Result<SearchReport, String>, RecvError>,
) -> Result<SearchReport, ApiError> {
    r.map_err(|_| server_error("the search was lost".into()))?
        .map_err(|e| server_error(format!("the search failed: {e}")))
}

/// Runs one search to its end (or until the request is dropped, which cancels it).
async fn run(
    app: &Arc<App>,
    question: String,
    search: SearchConfig,
) -> Result<SearchReport, ApiError> {
    let slot = admit(app).await?;
    let answer = submit(app, &slot, question, search)?;
    let report = report_of(answer.await)?;
    slot.answered(&report);
    Ok(report)
}

/// The chosen solution's text (its steps from the root) and the `ponder` extension field;
/// with `tree`, the dump goes in the field and is kept for `GET /v1/trees/{id}`.
pub(crate) fn solution(
    app: &App,
    id: &str,
    report: &SearchReport,
    search: &SearchConfig,
    profile: Profile,
    tree: bool,
) -> (String, Value) {
    let dump: TreeDump = if tree {
        let pairs = extract::pairs(report, search, &app.extras.output.pairs);
        extract::dump(report, search).with_pairs(&pairs)
    } else {
        extract::dump(report, search)
    };
    let path = dump.answer_path();
    let score = path.last().map(|n| n.critics.score);
    let text = path
        .iter()
        .map(|n| n.text.as_str())
        .collect::<String>()
        .trim()
        .to_string();
    let mut ext = json!({
        "profile": profile.id(),
        "algorithm": search.algorithm,
        "answer": report.answer.as_ref().and_then(|a| a.answer.clone()),
        "score": score,
        "stats": report.stats,
    });
    if tree {
        let dump = Arc::new(serde_json::to_value(&dump).unwrap_or(Value::Null));
        ext["tree"] = (*dump).clone();
        ext["tree_url"] = format!("/v1/trees/{id}").into();
        app.keep_tree(id.to_string(), dump);
    }
    (text, ext)
}

/// `usage`: every token the search generated (all its steps, not only the answer's), and the
/// question's prompt as the policy reads it (0 when the policy cannot count it: a remote or
/// synthetic one).
pub(crate) fn usage(report: &SearchReport, prompt_tokens: u64) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": report.stats.tokens,
        "total_tokens": report.stats.tokens + prompt_tokens,
    })
}

/// The question's prompt tokens, as the in-process policy encodes it.
pub(crate) fn prompt_tokens(app: &App, question: &str) -> u64 {
    app.extras
        .loaded
        .as_ref()
        .and_then(|l| l.prompt_tokens(question))
        .unwrap_or(0)
}

/// Whether the request asks for a stream (`stream` must be a boolean).
fn streams(body: &Map<String, Value>) -> Result<bool, ApiError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid("stream", "must be true or false")),
    }
}

pub(crate) fn now() -> u64 {
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
    app: &Arc<App>,
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
    let (search, tree) = request_search(app, profile, &body)?;
    if streams(&body)? {
        return stream::respond(app, Shape::Chat, question, search, profile, tree).await;
    }
    let prompt_tokens = prompt_tokens(app, &question);
    let report = run(app, question, search.clone()).await?;
    let id = format!("chatcmpl-{}", app.next_id());
    let (text, ext) = solution(app, &id, &report, &search, profile, tree);
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": profile.id(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": usage(&report, prompt_tokens),
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
    app: &Arc<App>,
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
    let (search, tree) = request_search(app, profile, &body)?;
    if streams(&body)? {
        return stream::respond(app, Shape::Completion, question, search, profile, tree).await;
    }
    let prompt_tokens = prompt_tokens(app, &question);
    let report = run(app, question, search.clone()).await?;
    let id = format!("cmpl-{}", app.next_id());
    let (text, ext) = solution(app, &id, &report, &search, profile, tree);
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": now(),
        "model": profile.id(),
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage(&report, prompt_tokens),
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
        "queued": app.counters.queued.load(Ordering::Relaxed),
        "searching": app.counters.searching.load(Ordering::Relaxed),
        "cancelled": app.counters.cancelled.load(Ordering::Relaxed),
        "requests": app.counters.requests.load(Ordering::Relaxed),
        "rejected": app.counters.rejected.load(Ordering::Relaxed),
    }))
    .into_response()
}

/// `GET /health`'s sibling for monitoring: Prometheus text.
pub(crate) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let c = &app.counters;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: f64| {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    // Relaxed (every load): counters and gauges.
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let g = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as f64;
    put(
        "ponder_requests_total",
        "counter",
        "Requests received (any status).",
        l(&c.requests),
    );
    put(
        "ponder_in_flight",
        "gauge",
        "Searches holding a slot.",
        g(&c.in_flight),
    );
    put(
        "ponder_queue_depth",
        "gauge",
        "Requests waiting for a slot.",
        g(&c.queued),
    );
    put(
        "ponder_searching",
        "gauge",
        "Searches running in the executor.",
        g(&c.searching),
    );
    put(
        "ponder_rejected_total",
        "counter",
        "Requests refused with 429.",
        l(&c.rejected),
    );
    put(
        "ponder_cancelled_total",
        "counter",
        "Searches cancelled (client gone or drain deadline).",
        l(&c.cancelled),
    );
    put(
        "ponder_generated_tokens_total",
        "counter",
        "Tokens generated by finished searches.",
        l(&c.tokens),
    );
    put(
        "ponder_policy_batch_size",
        "gauge",
        "Mean rows per policy model call so far.",
        l(&c.batch_rows_milli) / 1000.0,
    );
    put(
        "ponder_policy_batch_fill",
        "gauge",
        "Mean rows per policy call over the largest batch.",
        l(&c.batch_fill_milli) / 1000.0,
    );
    put(
        "ponder_record_errors_total",
        "counter",
        "Finished trees that could not be recorded.",
        l(&c.record_errors),
    );
    if let Some(r) = &app.extras.recorder {
        put(
            "ponder_recorded_trees_total",
            "counter",
            "Trees recorded by --record.",
            r.recorded() as f64,
        );
    }
    let s = c.recent();
    put(
        "ponder_generated_tokens_per_second",
        "gauge",
        "Tokens per second of the answers of the last minute.",
        s.tokens_per_second,
    );
    if let Some(loaded) = &app.extras.loaded {
        for m in loaded.metrics() {
            put(
                &format!("ponder_{}", m.name),
                if m.counter { "counter" } else { "gauge" },
                m.help,
                m.value,
            );
        }
    }
    {
        use std::fmt::Write;
        let _ = write!(
            out,
            "# HELP ponder_request_seconds Latency of answered searches, queueing included (quantiles of the last 2048).\n\
             # TYPE ponder_request_seconds summary\n\
             ponder_request_seconds{{quantile=\"0.5\"}} {}\n\
             ponder_request_seconds{{quantile=\"0.99\"}} {}\n\
             ponder_request_seconds_sum {}\nponder_request_seconds_count {}\n",
            s.p50, s.p99, s.seconds_sum, s.count
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /v1/trees/{id}`: the tree of a recent `return_tree` answer as the `ponder view` page.
pub(crate) async fn tree_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Err(e) = authorise(&app, &headers) {
        return e.into_response();
    }
    let Some(tree) = app.tree(&id) else {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "no tree `{id}`: ask with `\"ponder\": {{\"return_tree\": true}}`; the server \
                 keeps the latest {}",
                crate::KEPT_TREES
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("tree_not_found"),
        }
        .into_response();
    };
    match ponder_runtime::view::render(&tree) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => server_error(format!("drawing the tree: {e}")).into_response(),
    }
}
