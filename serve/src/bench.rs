//! Load generation against a running service (`ponder bench serve`): `clients` connections,
//! each sending its requests one after another over keep-alive HTTP/1.1, until `requests` are
//! answered; requests per second, latency quantiles and tokens per second come out.
//!
//! The client is hyper's (no hand-written HTTP); it measures from sending a request to having
//! its whole answer, so a figure includes queueing in the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::Value;

use ponder_engine::extract::OutputConfig;
use ponder_engine::{BatchConfig, Models, SearchConfig};
use ponder_runtime::Loaded;

use crate::metrics::quantile;
use crate::{App, Error, Extras, Result, ServeConfig};

/// One load level.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The server, `host:port` (loopback or anywhere reachable).
    pub addr: String,
    /// The path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// The JSON bodies; request `i` sends `bodies[i % len]`.
    pub bodies: Vec<Value>,
    /// Connections sending at once.
    pub clients: usize,
    /// Requests in all.
    pub requests: u64,
}

/// What one load level measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Connections.
    pub clients: usize,
    /// Requests sent.
    pub requests: u64,
    /// Answered with 200.
    pub ok: u64,
    /// Any other status (`statuses` says which).
    pub errors: u64,
    /// Status codes of the errors, with counts.
    pub statuses: Vec<(u16, u64)>,
    /// Wall time of the level, seconds.
    pub seconds: f64,
    /// Answered requests per second.
    pub requests_per_second: f64,
    /// Median latency, seconds.
    pub p50: f64,
    /// 99th-percentile latency, seconds.
    pub p99: f64,
    /// Generated tokens (the answers' `usage.completion_tokens`) per second.
    pub tokens_per_second: f64,
}

/// Sends the level's requests and measures them.
///
/// # Errors
/// The server cannot be reached, or a connection breaks.
pub async fn load(spec: &LoadSpec) -> Result<LoadReport> {
    if spec.clients == 0 || spec.requests == 0 || spec.bodies.is_empty() {
        return Err(Error::Config {
            field: "bench",
            message: "clients, requests and bodies must be at least 1".into(),
        });
    }
    let body: Arc<Vec<Bytes>> = Arc::new(
        spec.bodies
            .iter()
            .map(|b| Bytes::from(b.to_string()))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        let (spec, body, next) = (spec.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(
            async move { client(&spec, body, &next).await },
        ));
    }
    let mut lat = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    let mut tokens = 0u64;
    for t in tasks {
        let done = t.await.map_err(|e| Error::Io {
            addr: spec.addr.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
        for (status, secs, tok) in done {
            *statuses.entry(status).or_default() += 1;
            if status == 200 {
                lat.push(secs);
                tokens += tok;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    Ok(LoadReport {
        clients: spec.clients,
        requests: spec.requests,
        ok,
        errors: spec.requests - ok,
        statuses: statuses.into_iter().filter(|(s, _)| *s != 200).collect(),
        seconds,
        requests_per_second: ok as f64 / seconds,
        p50: quantile(&mut lat, 0.5),
        p99: quantile(&mut lat, 0.99),
        tokens_per_second: tokens as f64 / seconds,
    })
}

/// One connection's requests: `(status, seconds, completion tokens)` each.
async fn client(
    spec: &LoadSpec,
    bodies: Arc<Vec<Bytes>>,
    next: &AtomicU64,
) -> Result<Vec<(u16, f64, u64)>> {
    let io_err = |e: &dyn std::fmt::Display| Error::Io {
        addr: spec.addr.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let stream = tokio::net::TcpStream::connect(&spec.addr)
        .await
        .map_err(|source| Error::Io {
            addr: spec.addr.clone(),
            source,
        })?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| io_err(&e))?;
    let driver = tokio::spawn(conn);
    let mut out = Vec::new();
    // Relaxed: a ticket counter; only uniqueness matters.
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= spec.requests {
            break;
        }
        let body = bodies[(i % bodies.len() as u64) as usize].clone();
        let mut req = hyper::Request::post(spec.path.as_str())
            .header("host", spec.addr.as_str())
            .header("content-type", "application/json");
        if let Some(k) = &spec.api_key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| io_err(&e))?;
        let t = Instant::now();
        send.ready().await.map_err(|e| io_err(&e))?;
        let resp = send.send_request(req).await.map_err(|e| io_err(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| io_err(&e))?
            .to_bytes();
        let secs = t.elapsed().as_secs_f64();
        let tokens = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["usage"]["completion_tokens"].as_u64())
            .unwrap_or(0);
        out.push((status, secs, tokens));
    }
    drop(send);
    driver.abort();
    Ok(out)
}

/// Where the load goes.
#[derive(Debug)]
pub enum Target {
    /// A server already running at `addr` (`host:port`).
    Running {
        /// Its address.
        addr: String,
        /// Its bearer token.
        api_key: Option<String>,
    },
    /// A fresh server per level on loopback, over these models (so each level's batch fill
    /// is its own).
    InProcess(Box<InProcess>),
}

/// What an in-process server runs.
#[derive(Debug)]
pub struct InProcess {
    /// The search every profile starts from.
    pub base: SearchConfig,
    /// The batcher's settings.
    pub batch: BatchConfig,
    /// The models.
    pub models: Models,
    /// Their handles (prompt token counts).
    pub loaded: Option<Loaded>,
}

/// One level's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Level {
    /// The load.
    #[serde(flatten)]
    pub load: LoadReport,
    /// Mean rows per policy model call during the level (in-process servers only).
    pub batch_size: Option<f64>,
}

/// Runs one level per entry of `clients`, `requests(clients)` requests each, with `bodies`
/// sent to `path`; `on_level` sees each level as it ends.
///
/// # Errors
/// A server that cannot be started or reached.
pub fn run(
    target: Target,
    path: &str,
    bodies: Vec<Value>,
    clients: &[usize],
    requests: &dyn Fn(usize) -> u64,
    on_level: &mut dyn FnMut(&Level),
) -> Result<Vec<Level>> {
    let rt = tokio::runtime::Runtime::new().map_err(|source| Error::Io {
        addr: "the async runtime".into(),
        source,
    })?;
    let mut out = Vec::new();
    for &n in clients {
        let mut spec = LoadSpec {
            addr: String::new(),
            path: path.to_string(),
            api_key: None,
            bodies: bodies.clone(),
            clients: n,
            requests: requests(n),
        };
        let level = match &target {
            Target::Running { addr, api_key } => {
                spec.addr = addr.clone();
                spec.api_key = api_key.clone();
                Level {
                    load: rt.block_on(load(&spec))?,
                    batch_size: None,
                }
            }
            Target::InProcess(p) => {
                let InProcess {
                    base,
                    batch,
                    models,
                    loaded,
                } = &**p;
                let cfg = ServeConfig {
                    max_concurrent: n,
                    max_queue: n,
                    max_simulations: u32::MAX,
                    ..ServeConfig::default()
                };
                let app = App::start_with(
                    cfg,
                    base.clone(),
                    batch.clone(),
                    models.clone(),
                    Extras {
                        loaded: loaded.clone(),
                        recorder: None,
                        output: OutputConfig::default(),
                    },
                )?;
                rt.block_on(async {
                    let listener =
                        tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .map_err(|source| Error::Io {
                                addr: "127.0.0.1:0".into(),
                                source,
                            })?;
                    spec.addr = listener
                        .local_addr()
                        .map_err(|source| Error::Io {
                            addr: "127.0.0.1:0".into(),
                            source,
                        })?
                        .to_string();
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    let server = tokio::spawn(crate::serve(listener, app.clone(), async {
                        let _ = stopped.await;
                    }));
                    let measured = load(&spec).await;
                    let _ = stop.send(());
                    let _ = server.await;
                    // Relaxed: the executor stored it before answering the last request.
                    let rows =
                        app.counters().batch_rows_milli.load(Ordering::Relaxed) as f64 / 1000.0;
                    Ok::<_, Error>(Level {
                        load: measured?,
                        batch_size: Some(rows),
                    })
                })?
            }
        };
        on_level(&level);
        out.push(level);
    }
    Ok(out)
}
