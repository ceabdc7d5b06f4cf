//! Policies served over OpenAI-compatible HTTP (vLLM, SGLang, llama.cpp's server, TGI, Ollama).
//!
//! [`Client`] spreads requests over several endpoints (the least busy healthy one first), caps
//! the requests in flight per endpoint, and retries timeouts, 429s, 5xx answers, dropped
//! connections and malformed or truncated JSON with exponential backoff and jitter; any other 4xx
//! is an error at once. [`RemotePolicy`] expands tree nodes through `/v1/completions` (raw
//! continuation of the rendered prompt, the right call for step expansion) or
//! `/v1/chat/completions`, every request of a batch in flight at the same time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ponder_engine::policy::{Boundary, ExpandRequest, Policy, StepRule};
use ponder_engine::rng::{Rng, hash_bytes, mix};
use ponder_engine::{BoxError, Step};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::wire::{self, Choice};
use ponder_tasks::chat::ChatTemplate;

/// Which OpenAI endpoint expands steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// `/completions`: ponder renders the prompt (see [`Template`]) and the server continues it.
    #[default]
    Completions,
    /// `/chat/completions`: the question as the user turn; the steps so far as a final assistant
    /// message the server continues (`continue_final_message`, vLLM and SGLang).
    Chat,
}

/// How the completions prompt is rendered (the served model's chat format).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// The task prompt as is (base models).
    #[default]
    Plain,
    /// ChatML (`<|im_start|>`: Qwen, SmolLM).
    Chatml,
    /// Llama 3.
    Llama3,
    /// Mistral `[INST]`.
    Mistral,
    /// Llama 2 `[INST]` with `<<SYS>>`.
    Llama2,
    /// Zephyr.
    Zephyr,
}

impl Template {
    /// The renderer.
    pub fn chat(self) -> ChatTemplate {
        match self {
            Template::Plain => ChatTemplate::Plain,
            Template::Chatml => ChatTemplate::ChatMl {
                default_system: None,
            },
            Template::Llama3 => ChatTemplate::Llama3,
            Template::Mistral => ChatTemplate::Inst { sys_block: false },
            Template::Llama2 => ChatTemplate::Inst { sys_block: true },
            Template::Zephyr => ChatTemplate::Zephyr,
        }
    }
}

/// Settings of the HTTP client and the remote policy (`[policy.remote]` in ponder's config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Base URLs, each up to and including `/v1` (`http://gpu-1:8000/v1`).
    pub endpoints: Vec<String>,
    /// The `model` field of every request (the served model's name).
    pub model: String,
    /// Completions or chat.
    pub api: Api,
    /// Prompt rendering for the completions API.
    pub template: Template,
    /// An optional system message.
    pub system: Option<String>,
    /// The environment variable holding the API key (sent as a bearer token, never logged).
    pub api_key_env: Option<String>,
    /// Requests in flight per endpoint.
    pub concurrency: usize,
    /// Seconds before a request is abandoned (and retried).
    pub timeout_secs: f64,
    /// Seconds to establish a connection.
    pub connect_timeout_secs: f64,
    /// Retries after the first attempt (timeouts, 429, 5xx, broken or malformed answers).
    pub retries: u32,
    /// First backoff, milliseconds; doubled each retry, with ±50% jitter.
    pub backoff_ms: f64,
    /// Longest backoff, milliseconds.
    pub backoff_max_ms: f64,
    /// Ask for log-probabilities (the steps' priors).
    pub logprobs: bool,
    /// Token cap of a generation to the end of the solution (rollouts, best-of-N).
    pub max_solution_tokens: u32,
    /// Consecutive failures after which an endpoint rests (is tried only when all others rest).
    pub failures_to_rest: u32,
    /// How long a resting endpoint rests, seconds.
    pub rest_secs: f64,
    /// Gather requests into client-side batches (the engine's batcher) instead of sending each
    /// the moment a simulation needs it; servers batch on their side either way.
    pub batched: bool,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            endpoints: vec!["http://127.0.0.1:8000/v1".into()],
            model: "default".into(),
            api: Api::Completions,
            template: Template::Plain,
            system: None,
            api_key_env: None,
            concurrency: 32,
            timeout_secs: 120.0,
            connect_timeout_secs: 10.0,
            retries: 6,
            backoff_ms: 200.0,
            backoff_max_ms: 20_000.0,
            logprobs: true,
            max_solution_tokens: 1024,
            failures_to_rest: 3,
            rest_secs: 10.0,
            batched: false,
        }
    }
}

impl RemoteConfig {
    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: &str| {
            Err(Error::Config {
                field: format!("policy.remote.{field}"),
                message: message.into(),
            })
        };
        if self.endpoints.is_empty() {
            return bad("endpoints", "needs at least one URL");
        }
        if let Some(u) = self
            .endpoints
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return bad(
                "endpoints",
                &format!("`{u}` is not an http:// or https:// URL"),
            );
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return bad("concurrency", "must be between 1 and 4096");
        }
        let secs = |x: f64| x.is_finite() && x > 0.0 && x <= 86_400.0;
        if !secs(self.timeout_secs) {
            return bad("timeout_secs", "must be in (0, 86400]");
        }
        if !secs(self.connect_timeout_secs) {
            return bad("connect_timeout_secs", "must be in (0, 86400]");
        }
        if !(self.backoff_ms.is_finite() && self.backoff_ms >= 0.0) {
            return bad("backoff_ms", "must be at least 0");
        }
        if !(self.backoff_max_ms.is_finite() && self.backoff_max_ms >= self.backoff_ms) {
            return bad("backoff_max_ms", "must be at least backoff_ms");
        }
        if self.retries > 100 {
            return bad("retries", "must be at most 100");
        }
        if self.max_solution_tokens == 0 {
            return bad("max_solution_tokens", "must be at least 1");
        }
        if !(self.rest_secs.is_finite() && self.rest_secs >= 0.0) {
            return bad("rest_secs", "must be at least 0");
        }
        Ok(())
    }
}

/// One endpoint's live state.
#[derive(Debug, Default)]
struct Slot {
    in_flight: usize,
    failures: u32,
    resting_until: Option<Instant>,
}

/// Counters of a client, for stats and progress bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// HTTP requests sent (retries included).
    pub attempts: u64,
    /// Retries after a transient failure.
    pub retries: u64,
    /// Requests that failed for good.
    pub failures: u64,
    /// Completion tokens the servers reported.
    pub completion_tokens: u64,
    /// Prompt tokens the servers reported reading (the whole prompt and path again on every
    /// request: what a server without prefix caching recomputes per generated step).
    pub prompt_tokens: u64,
    /// Answers with fewer choices than the `n` asked for (the server ignores `n`; ponder asks
    /// again for the rest).
    pub short_answers: u64,
}

impl ClientStats {
    /// Prompt tokens sent per completion token (0 before any completion).
    pub fn prompt_per_completion(&self) -> f64 {
        if self.completion_tokens == 0 {
            0.0
        } else {
            self.prompt_tokens as f64 / self.completion_tokens as f64
        }
    }
}

/// An HTTP client over one or more OpenAI-compatible endpoints.
pub struct Client {
    cfg: RemoteConfig,
    agent: ureq::Agent,
    key: Option<String>,
    slots: Mutex<Vec<Slot>>,
    freed: Condvar,
    attempts: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    completion_tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    short_answers: AtomicU64,
    warned_n: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is never printed.
        f.debug_struct("Client")
            .field("endpoints", &self.cfg.endpoints)
            .field("model", &self.cfg.model)
            .field("api_key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why an attempt failed.
enum Attempt {
    /// Worth retrying (timeouts, 429, 5xx, broken or malformed answers).
    Transient(String, Option<Duration>),
    /// Not worth retrying (4xx other than 408 and 429).
    Fatal(String),
}

impl Client {
    /// A client for `cfg` (validated here); reads the API key from `cfg.api_key_env`.
    ///
    /// # Errors
    /// An invalid config, or an API key variable that is not set.
    pub fn new(cfg: &RemoteConfig) -> Result<Client> {
        cfg.validate()?;
        let key = match &cfg.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| Error::Config {
                field: "policy.remote.api_key_env".into(),
                message: format!("the environment variable `{var}` is not set"),
            })?),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs_f64(cfg.connect_timeout_secs))
            .timeout(Duration::from_secs_f64(cfg.timeout_secs))
            .max_idle_connections_per_host(cfg.concurrency)
            .build();
        Ok(Client {
            slots: Mutex::new(cfg.endpoints.iter().map(|_| Slot::default()).collect()),
            cfg: cfg.clone(),
            agent,
            key,
            freed: Condvar::new(),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            short_answers: AtomicU64::new(0),
            warned_n: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The settings.
    pub fn config(&self) -> &RemoteConfig {
        &self.cfg
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        // Relaxed: independent counters read for reports.
        ClientStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            short_answers: self.short_answers.load(Ordering::Relaxed),
        }
    }

    /// Requests in flight now, over all endpoints.
    pub fn in_flight(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.in_flight)
            .sum()
    }

    /// Records the completion and prompt tokens a server reported.
    fn add_tokens(&self, completion: u64, prompt: u64) {
        // Relaxed: statistics counters.
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
    }

    /// Records an answer with `got` of the `want` choices asked for, warning once per client.
    fn short_answer(&self, got: usize, want: usize) {
        // Relaxed: a statistics counter.
        self.short_answers.fetch_add(1, Ordering::Relaxed);
        // Relaxed: a warn-once flag; a second warning in a race would be harmless.
        if !self.warned_n.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the server answered {got} of the {want} samples asked for in one request (it \
                 ignores `n`): ponder asks again for the rest, one request per sample. Requests \
                 are served one at a time unless the server has parallel slots (llama.cpp: \
                 `--parallel N` with `--cont-batching`); see `ponder bench remote`"
            );
        }
    }

    /// Takes a request slot: the least busy endpoint that is not resting (a resting one only
    /// when all rest), waiting while every endpoint is at its concurrency cap. `avoid` is the
    /// endpoint that just failed this request, skipped when another is free.
    fn acquire(&self, avoid: Option<usize>) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let free = |i: &usize| slots[*i].in_flight < self.cfg.concurrency;
            let awake = |i: &usize| slots[*i].resting_until.is_none_or(|t| t <= now);
            let all: Vec<usize> = (0..slots.len()).filter(free).collect();
            let pick =
                |set: &mut dyn Iterator<Item = usize>| set.min_by_key(|&i| (slots[i].in_flight, i));
            let best = pick(
                &mut all
                    .iter()
                    .copied()
                    .filter(|i| awake(i) && Some(*i) != avoid),
            )
            .or_else(|| pick(&mut all.iter().copied().filter(awake)))
            .or_else(|| {
                // Every free endpoint rests: use one only if none is awake at all.
                (!(0..slots.len()).any(|i| awake(&i)))
                    .then(|| pick(&mut all.iter().copied()))
                    .flatten()
            });
            if let Some(i) = best {
                slots[i].in_flight += 1;
                return i;
            }
            slots = self
                .freed
                .wait_timeout(slots, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Returns a slot, recording the endpoint's health.
    fn release(&self, i: usize, ok: bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut slots[i];
        s.in_flight -= 1;
        if ok {
            s.failures = 0;
            s.resting_until = None;
        } else {
            s.failures += 1;
            if s.failures >= self.cfg.failures_to_rest {
                s.resting_until =
                    Some(Instant::now() + Duration::from_secs_f64(self.cfg.rest_secs));
                tracing::warn!(
                    endpoint = %self.cfg.endpoints[i],
                    failures = s.failures,
                    "endpoint resting after consecutive failures"
                );
            }
        }
        drop(slots);
        self.freed.notify_all();
    }

    /// POSTs `body` to `path` (relative to the endpoint's base URL) and hands the JSON answer to
    /// `parse`, retrying transient failures — a `parse` error (a well-formed answer of the
    /// wrong shape) counts as one.
    ///
    /// # Errors
    /// [`Error::Remote`] after the last retry, or at once for a 4xx other than 408/429.
    pub fn post<T>(
        &self,
        path: &str,
        body: &Value,
        parse: impl Fn(&Value) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let text = body.to_string();
        // Jitter differs between processes and calls (it only spreads retries out).
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut rng = Rng::new(hash_bytes(
            clock ^ u64::from(std::process::id()),
            text.as_bytes(),
        ));
        let mut avoid = None;
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if attempt > 0 {
                // Relaxed: a statistics counter.
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            let i = self.acquire(avoid);
            let url = format!("{}{path}", self.cfg.endpoints[i].trim_end_matches('/'));
            // Relaxed: a statistics counter.
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(&url, &text, &parse);
            self.release(i, !matches!(outcome, Err(Attempt::Transient(..))));
            let wait = match outcome {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(m)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Remote {
                        endpoint: url,
                        message: m,
                    });
                }
                Err(Attempt::Transient(m, after)) => {
                    tracing::debug!(endpoint = %url, attempt, "retrying: {m}");
                    last = format!("{url}: {m}");
                    avoid = Some(i);
                    after
                }
            };
            if attempt < self.cfg.retries {
                let base = (self.cfg.backoff_ms * 2f64.powi(attempt.min(30) as i32))
                    .min(self.cfg.backoff_max_ms);
                let jittered = base * (0.5 + rng.next_f64());
                let ms = wait.map_or(jittered, |w| (w.as_secs_f64() * 1e3).max(jittered));
                std::thread::sleep(Duration::from_secs_f64(
                    ms.min(self.cfg.backoff_max_ms) / 1e3,
                ));
            }
        }
        // Relaxed: a statistics counter.
        self.failures.fetch_add(1, Ordering::Relaxed);
        Err(Error::Remote {
            endpoint: self.cfg.endpoints.join(", "),
            message: format!(
                "gave up after {} attempts; last: {last}",
                self.cfg.retries + 1
            ),
        })
    }

    fn attempt<T>(
        &self,
        url: &str,
        body: &str,
        parse: &impl Fn(&Value) -> std::result::Result<T, String>,
    ) -> std::result::Result<T, Attempt> {
        let mut req = self.agent.post(url).set("Content-Type", "application/json");
        if let Some(k) = &self.key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        let resp = match req.send_string(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let after = r
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| Duration::from_secs_f64(s.min(300.0)));
                let snippet: String = r
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let m = format!("HTTP {code}: {snippet}");
                return Err(if code == 408 || code == 429 || code >= 500 {
                    Attempt::Transient(m, after)
                } else {
                    Attempt::Fatal(m)
                });
            }
            Err(ureq::Error::Transport(t)) => return Err(Attempt::Transient(t.to_string(), None)),
        };
        let text = resp
            .into_string()
            .map_err(|e| Attempt::Transient(format!("reading the answer: {e}"), None))?;
        let v = crate::wire::answer(&text).map_err(|m| Attempt::Transient(m, None))?;
        parse(&v).map_err(|m| Attempt::Transient(format!("unexpected answer: {m}"), None))
    }
}

/// Sampling settings of a remote policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RemoteSampling {
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
}

/// One sampling request: `n` continuations of `prefix` after the problem prompt `prompt`.
#[derive(Clone, Copy, Debug)]
struct Ask<'a> {
    prompt: &'a str,
    prefix: &'a str,
    n: u32,
    seed: u64,
    greedy: bool,
    to_end: bool,
    max_tokens: u32,
}

/// A policy served over HTTP: each expansion request becomes one request with `n = k` samples;
/// a batch's requests are all in flight together (up to the endpoints' concurrency), siblings
/// that share a prefix sent next to each other so servers with prefix caching hit their cache.
#[derive(Debug)]
pub struct RemotePolicy {
    client: Arc<Client>,
    rule: StepRule,
    sampling: RemoteSampling,
    name: String,
}

impl RemotePolicy {
    /// A policy cutting steps by `rule`.
    pub fn new(client: Arc<Client>, rule: StepRule, sampling: RemoteSampling) -> Self {
        let name = format!("remote:{}", client.config().model);
        RemotePolicy {
            client,
            rule,
            sampling,
            name,
        }
    }

    /// The client.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The stop strings of the step rule (none for a generation to the end).
    fn stops(&self, to_end: bool) -> Vec<&'static str> {
        if to_end {
            return Vec::new();
        }
        match self.rule.boundary {
            Boundary::Newline => vec!["\n"],
            Boundary::BlankLine | Boundary::BlankLineFormula => vec!["\n\n"],
            Boundary::None => Vec::new(),
        }
    }

    /// Samples `ask.n` continuations of `ask.prefix` (the steps so far) for the problem prompt.
    fn sample(&self, ask: &Ask<'_>) -> Result<Vec<Choice>> {
        let &Ask {
            prompt,
            prefix,
            n,
            seed,
            greedy,
            to_end,
            max_tokens,
        } = ask;
        let cfg = self.client.config();
        let stops = self.stops(to_end);
        let temperature = if greedy {
            0.0
        } else {
            self.sampling.temperature
        };
        let mut body = json!({
            "model": cfg.model,
            "n": n,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": self.sampling.top_p,
            "seed": seed & 0x7fff_ffff_ffff_ffff,
        });
        if !stops.is_empty() {
            body["stop"] = json!(stops);
        }
        let stop_len = stops.len();
        let (path, chat) = match cfg.api {
            Api::Completions => {
                // The solution starts on its own line (chat templates end with the assistant
                // header's newline; a plain prompt gets one).
                let mut head = cfg.template.chat().render(cfg.system.as_deref(), prompt);
                if !head.ends_with('\n') {
                    head.push('\n');
                }
                body["prompt"] = json!(format!("{head}{prefix}"));
                if cfg.logprobs {
                    body["logprobs"] = json!(1);
                }
                ("/completions", false)
            }
            Api::Chat => {
                let mut messages = Vec::new();
                if let Some(s) = &cfg.system {
                    messages.push(json!({"role": "system", "content": s}));
                }
                messages.push(json!({"role": "user", "content": prompt}));
                if !prefix.is_empty() {
                    messages.push(json!({"role": "assistant", "content": prefix}));
                    body["continue_final_message"] = json!(true);
                    body["add_generation_prompt"] = json!(false);
                }
                body["messages"] = json!(messages);
                if cfg.logprobs {
                    body["logprobs"] = json!(true);
                }
                ("/chat/completions", true)
            }
        };
        // One request for `want` samples, with the seed of sample `first`.
        let ask = |want: usize, first: usize| -> Result<Vec<Choice>> {
            let mut body = body.clone();
            body["n"] = json!(want);
            body["seed"] = json!(mix(seed, first as u64) & 0x7fff_ffff_ffff_ffff);
            let (got, usage) = self
                .client
                .post(path, &body, |v| wire::choices(v, want, chat, stop_len > 0))?;
            self.client.add_tokens(usage.completion, usage.prompt);
            if got.len() < want {
                self.client.short_answer(got.len(), want);
            }
            Ok(got)
        };
        let n = n as usize;
        let mut choices: Vec<Choice> = ask(n, 0)?;
        // Servers that ignore `n` (llama.cpp's server, Ollama) answer with fewer choices: the
        // rest go as one-sample requests with seeds of their own, all in flight at once (a
        // server with parallel slots serves them together; one that serialises is no slower).
        if choices.len() < n {
            let rest: Vec<Result<Vec<Choice>>> = std::thread::scope(|s| {
                let ask = &ask;
                let handles: Vec<_> = (choices.len()..n)
                    .map(|j| s.spawn(move || ask(1, j)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::Model("a request thread panicked".into()))
                        })
                    })
                    .collect()
            });
            for r in rest {
                choices.extend(r?);
            }
        }
        Ok(choices)
    }

    /// Turns one continuation into a step: applies the step rule to the text (with the stop
    /// string the server left out put back), keeping the log-probabilities of the tokens inside
    /// the step. A stop that does not end a step under the rule — blank lines before any
    /// content, a [`Boundary::BlankLineFormula`] paragraph without a formula — is generated
    /// past, up to the token cap.
    fn to_step(&self, req: &ExpandRequest<'_>, prefix: &str, mut c: Choice) -> Result<Step> {
        let max = self.rule.max_tokens.min(req.max_tokens.unwrap_or(u32::MAX)) as usize;
        if let (false, Some(stop)) = (req.to_end, self.stops(false).first().copied()) {
            while c.stopped
                && c.tokens.len() < max
                && self.rule.cut(&format!("{}{stop}", c.text)).is_none()
            {
                let sofar = format!("{prefix}{}{stop}", c.text);
                let more = self
                    .sample(&Ask {
                        prompt: req.path.prompt(),
                        prefix: &sofar,
                        n: 1,
                        seed: req.seed ^ c.text.len() as u64,
                        greedy: req.greedy,
                        to_end: false,
                        max_tokens: (max - c.tokens.len()).max(1) as u32,
                    })?
                    .pop()
                    .unwrap_or_default();
                c.text.push_str(stop);
                c.text.push_str(&more.text);
                c.tokens.push((stop.into(), 0.0));
                c.tokens.extend(more.tokens);
                c.stopped = more.stopped;
                c.eos = more.eos;
            }
        }
        // Every token generated for this candidate is paid for, including any past the step's
        // end that a server sent although asked to stop (the cut below throws them away).
        let generated = if c.tokens.is_empty() {
            (c.text.len() as u32).div_ceil(4).max(1)
        } else {
            c.tokens.len() as u32
        };
        let mut text = c.text;
        if c.stopped && !req.to_end {
            text.push_str(self.stops(false).first().copied().unwrap_or(""));
        }
        // A whole solution is returned whole (the search stores it step by step); a step is cut
        // by the rule wherever the server stopped, so it is one step from any server.
        let (len, finished) = if req.to_end {
            (text.len(), true)
        } else {
            match self.rule.cut(&text) {
                Some(cut) => (cut.len, cut.finished || (c.eos && cut.len == text.len())),
                None => (text.len(), c.eos),
            }
        };
        text.truncate(len);
        // Log-probabilities of the tokens that fall inside the step.
        let mut at = 0;
        let mut logprob = 0.0;
        for (t, lp) in &c.tokens {
            if at >= len {
                break;
            }
            at += t.len();
            logprob += lp;
        }
        // No token information: about four characters a token. The server was asked for at most
        // the request's cap (an estimate above it is wrong).
        let cap = self
            .max_step_tokens(req.to_end)
            .unwrap_or(u32::MAX)
            .min(req.max_tokens.unwrap_or(u32::MAX));
        let n_tokens = generated.min(cap);
        Ok(Step {
            text,
            tokens: None,
            logprob,
            n_tokens,
            reused_tokens: 0,
            finished,
        })
    }

    fn expand(&self, req: &ExpandRequest<'_>) -> Result<Vec<Step>> {
        if req.k == 0 {
            return Ok(Vec::new());
        }
        let prefix = req.path.text();
        let max = self
            .max_step_tokens(req.to_end)
            .unwrap_or(u32::MAX)
            .min(req.max_tokens.unwrap_or(u32::MAX))
            .max(1);
        let choices = self.sample(&Ask {
            prompt: req.path.prompt(),
            prefix: &prefix,
            n: req.k,
            seed: req.seed,
            greedy: req.greedy,
            to_end: req.to_end,
            max_tokens: max,
        })?;
        choices
            .into_iter()
            .map(|c| self.to_step(req, &prefix, c))
            .collect()
    }
}

impl Policy for RemotePolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn propose(
        &self,
        requests: &[ExpandRequest<'_>],
    ) -> std::result::Result<Vec<Vec<Step>>, BoxError> {
        if let [one] = requests {
            // A worker's own request (the default, unbatched path): no threads needed.
            return Ok(vec![self.expand(one)?]);
        }
        // Requests of the same tree and prefix next to each other (ordered by tree, then text).
        let keys: Vec<(u32, String)> = requests
            .iter()
            .map(|r| (r.path.tree().id().0, r.path.text()))
            .collect();
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        let cfg = self.client.config();
        let workers = requests
            .len()
            .min(cfg.concurrency.saturating_mul(cfg.endpoints.len()))
            .max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<Vec<Step>>>>> =
            requests.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        // Relaxed: a work counter; results are published by the scope's join.
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(j) else { break };
                        let r = self.expand(&requests[i]);
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(requests.len());
        for r in results {
            let r = r
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(Error::Model("a request was not served".into())));
            out.push(r?);
        }
        Ok(out)
    }

    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        Some(if to_end {
            self.client.config().max_solution_tokens
        } else {
            self.rule.max_tokens
        })
    }

    fn step_rule(&self) -> Option<&StepRule> {
        Some(&self.rule)
    }

    fn wants_batches(&self) -> bool {
        // `policy.remote.batched` keeps the client-side batcher.
        self.client.config().batched
    }
}
