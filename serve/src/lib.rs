//! ponder as an OpenAI-compatible service: `POST /v1/chat/completions` and `/v1/completions`
//! (with `stream: true`, server-sent events: progress comments while searching, then the
//! answer in OpenAI chunks and `[DONE]`; a client that goes away cancels its search)
//! answer with the solution a search chose, every request searching on one shared set of
//! models and one batcher, so concurrent requests batch together.
//!
//! The request's `model` names a search profile ([`Profile`]: `ponder-mcts`,
//! `ponder-sc`, `ponder-greedy`); `reasoning_effort` (`low|medium|high`) picks its budget; a
//! `ponder` object in the body overrides the algorithm and budget and asks for the tree
//! (`{"algorithm": "mcts", "simulations": 32, "return_tree": true}`), validated like the config
//! file. The answer carries `usage` (generated tokens: all of the search's) and a `ponder`
//! field: the extracted answer, the chosen node's score, the search's statistics and, on
//! request, the tree dump `ponder view` draws.
//!
//! Errors are OpenAI-shaped (`{"error": {"message", "type", "param", "code"}}`) with their
//! status: 400 bad JSON or field (named in `param`), 401 without the bearer token, 404 unknown
//! model, 413 body too large, 429 with `Retry-After` when the concurrent-search limit is
//! reached (never a hang).

pub mod bench;
mod executor;
pub mod metrics;
mod openai;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use ponder_engine::extract::OutputConfig;
use ponder_engine::{BatchConfig, Models, SearchConfig, SearchControl};
use ponder_runtime::Loaded;
use ponder_runtime::record::Recorder;
use serde_json::Value;

pub use openai::Profile;

/// Result alias for the serve crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting out of range (named).
    #[error("invalid serve setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Binding or serving failed.
    #[error("serving on {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The bearer token clients must send (`Authorization: Bearer …`); none: no check.
    pub api_key: Option<String>,
    /// Searches running at once; a request beyond them gets 429.
    pub max_concurrent: usize,
    /// Largest request body, bytes (413 above).
    pub max_body_bytes: usize,
    /// Most simulations (or samples) one request may ask for.
    pub max_simulations: u32,
    /// Wall-time cap of one search, seconds.
    pub max_wall_seconds: f64,
    /// The name `GET /v1/models` lists for plain model access and `usage` reports.
    pub model_name: String,
    /// Requests waiting for a search slot; a request beyond them gets 429.
    pub max_queue: usize,
    /// After a stop signal, how long searches in flight may go on; then they are cancelled
    /// (each answers with the best its tree holds) and the server stops.
    pub drain_seconds: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            api_key: None,
            max_concurrent: 64,
            max_body_bytes: 1 << 20,
            max_simulations: 1024,
            max_wall_seconds: 300.0,
            model_name: "ponder".into(),
            max_queue: 64,
            drain_seconds: 30.0,
        }
    }
}

impl ServeConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// A zero limit or a non-positive wall-time cap, named.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.into(),
            })
        };
        if self.max_concurrent == 0 {
            return bad("max_concurrent", "must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024");
        }
        if self.max_simulations == 0 {
            return bad("max_simulations", "must be at least 1");
        }
        if !(self.max_wall_seconds.is_finite() && self.max_wall_seconds > 0.0) {
            return bad("max_wall_seconds", "must be a positive number of seconds");
        }
        if !(self.drain_seconds.is_finite() && self.drain_seconds >= 0.0) {
            return bad(
                "drain_seconds",
                "must be zero or a positive number of seconds",
            );
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            return bad("api_key", "must not be empty");
        }
        Ok(())
    }
}

/// Counters of the running service.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Searches holding a slot now.
    pub in_flight: AtomicUsize,
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Requests turned away with 429.
    pub rejected: AtomicU64,
    /// Tokens generated by finished searches.
    pub tokens: AtomicU64,
    /// Searches running in the executor (a cancelled request's search until it stops).
    pub searching: AtomicUsize,
    /// Searches stopped because their client went away.
    pub cancelled: AtomicU64,
    /// The policy batcher's mean fill so far (rows per call over the largest batch), in
    /// thousandths (0 without a batcher).
    pub batch_fill_milli: AtomicU64,
    /// The policy batcher's mean rows per model call so far, in thousandths.
    pub batch_rows_milli: AtomicU64,
    /// Finished trees whose records could not be written (`--record`).
    pub record_errors: AtomicU64,
    /// Latencies and tokens of recent answers.
    latency: std::sync::Mutex<metrics::Recent>,
}

impl Counters {
    /// Notes an answered search: its latency (from arrival, queueing included) and tokens.
    pub(crate) fn answered(&self, seconds: f64, tokens: u64) {
        self.latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(seconds, tokens);
    }

    /// The latency quantiles and throughput of recent answers.
    pub fn recent(&self) -> metrics::Summary {
        self.latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .summary()
    }
}

/// What a server may carry besides its models.
#[derive(Debug, Default)]
pub struct Extras {
    /// The loaded models' handles, for `/metrics` (KV and critic cache counters, the remote
    /// client's requests) and prompt token counts.
    pub loaded: Option<Loaded>,
    /// Appends every finished tree's training data to a folder (`ponder serve --record DIR`).
    pub recorder: Option<Arc<Recorder>>,
    /// Which pairs a returned tree shows (the config's `[output]`).
    pub output: OutputConfig,
}

/// The service's shared state.
#[derive(Debug)]
pub struct App {
    cfg: ServeConfig,
    base: SearchConfig,
    jobs: crossbeam_channel::Sender<executor::Job>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    /// Search slots: `max_concurrent` permits.
    slots: Arc<tokio::sync::Semaphore>,
    /// The searches holding a slot, by request, so a drain deadline can cancel them.
    live: std::sync::Mutex<std::collections::HashMap<u64, Arc<SearchControl>>>,
    /// Set when the drain deadline passed: new searches are refused.
    stopping: std::sync::atomic::AtomicBool,
    /// The latest trees asked for with `return_tree`, by response id (`GET /v1/trees/{id}`).
    trees: std::sync::Mutex<std::collections::VecDeque<(String, Arc<Value>)>>,
    extras: Extras,
}

/// Trees kept for `GET /v1/trees/{id}`.
const KEPT_TREES: usize = 32;

impl App {
    /// Starts the search executor (a thread holding the models and, when the policy batches,
    /// one batcher for every request) and returns the state the routes share. `base` is the
    /// search every profile starts from (its preset, critics' use, budgets).
    ///
    /// # Errors
    /// An invalid setting, or a `base` search config that does not validate.
    pub fn start(
        cfg: ServeConfig,
        base: SearchConfig,
        batch: BatchConfig,
        models: Models,
    ) -> Result<Arc<App>> {
        App::start_with(cfg, base, batch, models, Extras::default())
    }

    /// As [`App::start`], with the loaded models' handles and a recorder.
    ///
    /// # Errors
    /// As [`App::start`].
    pub fn start_with(
        cfg: ServeConfig,
        base: SearchConfig,
        batch: BatchConfig,
        models: Models,
        extras: Extras,
    ) -> Result<Arc<App>> {
        cfg.validate()?;
        base.validate().map_err(|e| Error::Config {
            field: "search",
            message: e.to_string(),
        })?;
        let counters = Arc::new(Counters::default());
        let jobs = executor::spawn(models, batch, counters.clone(), extras.recorder.clone())
            .map_err(|source| Error::Io {
                addr: "the search executor thread".into(),
                source,
            })?;
        Ok(Arc::new(App {
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent)),
            cfg,
            base,
            jobs,
            counters,
            next_id: AtomicU64::new(1),
            live: Default::default(),
            stopping: Default::default(),
            trees: Default::default(),
            extras,
        }))
    }

    /// Cancels every search in flight and refuses new ones (the drain deadline).
    pub fn cancel_all(&self) {
        // Relaxed: a flag checked at admission; a request admitted in the race is cancelled
        // below or finishes normally.
        self.stopping.store(true, Ordering::Relaxed);
        for c in self.live_map().values() {
            c.cancel();
        }
    }

    fn live_map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<SearchControl>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep_tree(&self, id: String, tree: Arc<Value>) {
        let mut t = self
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if t.len() == KEPT_TREES {
            t.pop_front();
        }
        t.push_back((id, tree));
    }

    fn tree(&self, id: &str) -> Option<Arc<Value>> {
        self.trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, t)| t.clone())
    }

    /// The live counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn next_id(&self) -> u64 {
        // Relaxed: ids only need to be unique.
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The routes: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/v1/trees/{id}`,
/// `/health`, `/metrics`.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.cfg.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completion))
        .route("/v1/models", get(openai::models))
        .route("/health", get(openai::health))
        .route("/metrics", get(openai::metrics))
        .route("/v1/trees/{id}", get(openai::tree_page))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Serves `app` on `listener` until `shutdown` resolves; searches in flight then finish
/// before this returns (axum's graceful shutdown waits for open requests), or, past
/// [`ServeConfig::drain_seconds`], are cancelled and answer with what their trees hold.
///
/// # Errors
/// The listener failing.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let drained = app.clone();
    // The drain deadline's timer, stopped when the server has stopped on its own before it.
    let timer: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let slot = timer.clone();
    let signal = async move {
        shutdown.await;
        let wait = Duration::from_secs_f64(drained.cfg.drain_seconds);
        tracing::info!(
            // Relaxed: a gauge for the log.
            in_flight = drained.counters.in_flight.load(Ordering::Relaxed),
            "stopping: draining searches in flight for up to {wait:?}"
        );
        let t = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            tracing::warn!("drain deadline passed: cancelling the searches still running");
            drained.cancel_all();
        });
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(t);
    };
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(signal)
        .await
        .map_err(|source| Error::Io { addr, source });
    if let Some(t) = timer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        t.abort();
    }
    served
}
