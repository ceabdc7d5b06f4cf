//! The service on loopback with the synthetic test models: answers on both endpoints, the tree
//! on request, concurrent clients, and every kind of bad request with its status and message.
//! Waits are driven by the server's own gauges (`/health`), never by sleeping for a guess.

use std::sync::Arc;
use std::time::Duration;

use ponder_engine::batcher::Models;
use ponder_engine::{BatchConfig, SearchConfig};
use ponder_serve::{App, Extras, ServeConfig};
use ponder_testkit::{latency, synthetic};
use serde_json::{Value, json};

struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(cfg: ServeConfig, slow_ms: u64) -> Server {
    start_with(cfg, slow_ms, Extras::default())
}

/// A server whose model calls wait until the returned gate opens: its first search stays in
/// flight for as long as a test needs, however loaded the machine.
fn start_gated(cfg: ServeConfig) -> (Server, Arc<latency::Gate>) {
    let gate = latency::Gate::shut();
    let models = latency::gated(
        &synthetic::models(&synthetic::SyntheticSpec::default()),
        gate.clone(),
    );
    (start_models(cfg, models, Extras::default()), gate)
}

/// Polls the server's `/health` until `field` is `want` (a hang guard of 60 s, never a
/// timing assumption).
fn wait_for(s: &Server, field: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(&s.url, "/health")[field] != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{field} never reached {want}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn start_with(cfg: ServeConfig, slow_ms: u64, extras: Extras) -> Server {
    let mut models = synthetic::models(&synthetic::SyntheticSpec::default());
    if slow_ms > 0 {
        models = latency::slow(
            &models,
            latency::Latency {
                fixed: Duration::from_millis(slow_ms),
                per_request: Duration::ZERO,
            },
        );
    }
    start_models(cfg, models, extras)
}

fn start_models(cfg: ServeConfig, models: Models, extras: Extras) -> Server {
    let mut search = SearchConfig::alphallm();
    search.parallel.threads = 2;
    let app: Arc<App> =
        App::start_with(cfg, search, BatchConfig::default(), models, extras).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        rt.block_on(ponder_serve::serve(listener, app, async {
            let _ = stopped.await;
        }))
        .unwrap();
    });
    Server {
        url,
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// POSTs `body` (raw text) and returns the status and the JSON answer.
fn post(url: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = ureq::post(&format!("{url}{path}")).set("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let (code, resp) = match req.send_string(body) {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("{e}"),
    };
    let retry = resp.header("Retry-After").map(str::to_string);
    let v = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    (code, v, retry)
}

fn get(url: &str, path: &str) -> Value {
    serde_json::from_str(
        &ureq::get(&format!("{url}{path}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap()
}

fn question() -> String {
    synthetic::problems(1, 3, 7).remove(0).question
}

#[test]
fn chat_and_completions_answer_with_the_chosen_solution() {
    let s = start(ServeConfig::default(), 0);
    let body = json!({
        "model": "ponder-mcts",
        "messages": [{"role": "system", "content": "Be careful."}, {"role": "user", "content": question()}],
        "ponder": {"simulations": 24, "return_tree": true},
    });
    let (code, v, _) = post(&s.url, "/v1/chat/completions", &body.to_string(), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "ponder-mcts");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("The answer is"), "{content}");
    assert_eq!(v["ponder"]["stats"]["simulations"], 24);
    let answer = v["ponder"]["answer"].as_str().unwrap();
    assert!(content.contains(answer));
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(v["ponder"]["tree"]["nodes"].as_array().unwrap().len() > 1);
    // The plain-completions shape, self-consistency at low effort (4 samples), no tree.
    let body = json!({"model": "ponder-sc", "prompt": question(), "reasoning_effort": "low"});
    let (code, v, _) = post(&s.url, "/v1/completions", &body.to_string(), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .contains("The answer is")
    );
    assert_eq!(v["ponder"]["algorithm"], "self-consistency");
    assert!(v["ponder"].get("tree").is_none());
    let models = get(&s.url, "/v1/models");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ponder-mcts", "ponder-sc", "ponder-greedy"]);
    assert_eq!(get(&s.url, "/health")["status"], "ok");
}

#[test]
fn many_clients_at_once_all_get_answers_batched_together() {
    // Every model call takes 2 ms, so calls of concurrent searches meet in the batcher.
    let s = start(ServeConfig::default(), 2);
    let url = s.url.clone();
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let q = synthetic::problems(1, 2, i).remove(0).question;
                let body = json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": q}],
                    "ponder": {"simulations": 16}});
                post(&url, "/v1/chat/completions", &body.to_string(), None)
            })
        })
        .collect();
    for h in handles {
        let (code, v, _) = h.join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert!(v["ponder"]["answer"].is_string(), "{v}");
        assert_eq!(v["ponder"]["stats"]["simulations"], 16, "{v}");
    }
    assert_eq!(get(&s.url, "/health")["in_flight"], 0);
    let m = metrics(&s.url);
    let rows = metric(&m, "ponder_policy_batch_size");
    assert!(
        rows > 1.0,
        "the searches were not batched together: {rows} rows per call\n{m}"
    );
    assert_eq!(metric(&m, "ponder_request_seconds_count"), 32.0, "{m}");
    let p50 = metric(&m, "ponder_request_seconds{quantile=\"0.5\"}");
    let p99 = metric(&m, "ponder_request_seconds{quantile=\"0.99\"}");
    assert!(p50 > 0.0 && p99 >= p50, "{m}");
    assert!(metric(&m, "ponder_generated_tokens_total") > 0.0, "{m}");
}

fn metrics(url: &str) -> String {
    ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// The value of the line `name value` in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn bad_requests_get_openai_shaped_errors() {
    let cfg = ServeConfig {
        api_key: Some("s3cret".into()),
        max_body_bytes: 4096,
        ..ServeConfig::default()
    };
    let s = start(cfg, 0);
    let ok =
        json!({"model": "ponder-greedy", "messages": [{"role": "user", "content": question()}]});
    let call = |body: &str, token: Option<&str>| post(&s.url, "/v1/chat/completions", body, token);
    let (code, v, _) = call(&ok.to_string(), None);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (code, _, _) = call(&ok.to_string(), Some("wrong!"));
    assert_eq!(code, 401);
    let (code, v, _) = call(&ok.to_string(), Some("s3cret"));
    assert_eq!(code, 200, "{v}");
    let key = Some("s3cret");
    let (code, v, _) = call("{not json", key);
    assert_eq!(
        (code, v["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("not JSON"));
    let mut b = ok.clone();
    b["model"] = "gpt-5".into();
    let (code, v, _) = call(&b.to_string(), key);
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    for (field, value, param) in [
        ("ponder", json!({"simulations": 0}), "ponder.simulations"),
        (
            "ponder",
            json!({"simulations": 100000}),
            "ponder.simulations",
        ),
        ("ponder", json!({"algorithm": "astar"}), "ponder.algorithm"),
        ("ponder", json!({"colour": 1}), "ponder.colour"),
        ("reasoning_effort", json!("extreme"), "reasoning_effort"),
        ("messages", json!([]), "messages"),
        (
            "messages",
            json!([{"role": "assistant", "content": "hi"}]),
            "messages",
        ),
        ("stream", json!("yes"), "stream"),
    ] {
        let mut b = ok.clone();
        b[field] = value.clone();
        let (code, v, _) = call(&b.to_string(), key);
        assert_eq!(code, 400, "{field}={value}: {v}");
        assert_eq!(v["error"]["param"], param, "{field}={value}: {v}");
    }
    let big = json!({"model": "ponder-greedy", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let (code, v, _) = call(&big.to_string(), key);
    assert_eq!(code, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
}

#[test]
fn a_full_server_says_429_with_retry_after_and_never_hangs() {
    let cfg = ServeConfig {
        max_concurrent: 1,
        max_queue: 0,
        ..ServeConfig::default()
    };
    // The first search holds the only slot until the gate opens.
    let (s, gate) = start_gated(cfg);
    let url = s.url.clone();
    let body =
        json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": question()}],
        "ponder": {"simulations": 12}})
        .to_string();
    let b2 = body.clone();
    let first = std::thread::spawn(move || post(&url, "/v1/chat/completions", &b2, None));
    // Wait until the first search holds the slot (by the server's gauge, not by time).
    wait_for(&s, "in_flight", 1);
    let (code, v, retry) = post(&s.url, "/v1/chat/completions", &body, None);
    assert_eq!(code, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(retry.as_deref(), Some("1"));
    gate.open();
    let (code, v, _) = first.join().unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(get(&s.url, "/health")["rejected"], 1);
}

#[test]
fn streaming_sends_progress_then_the_answer_in_chunks() {
    let s = start(ServeConfig::default(), 5);
    let body = json!({"model": "ponder-mcts", "stream": true,
        "messages": [{"role": "user", "content": question()}], "ponder": {"simulations": 40}});
    let resp = ureq::post(&format!("{}/v1/chat/completions", s.url))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    assert_eq!(resp.header("Content-Type"), Some("text/event-stream"));
    let text = resp.into_string().unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(content.contains("The answer is"), "{content}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["ponder"]["stats"]["simulations"], 40);
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn a_client_that_goes_away_cancels_its_search() {
    use std::io::{Read, Write};
    // Every model call takes 20 ms and the budget is 100,000 simulations: only cancelling
    // ends this search soon.
    let s = start(
        ServeConfig {
            max_simulations: 100_000,
            ..ServeConfig::default()
        },
        20,
    );
    let body = json!({"model": "ponder-mcts", "stream": true,
        "messages": [{"role": "user", "content": question()}], "ponder": {"simulations": 100000}})
    .to_string();
    let addr = s.url.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until the first chunk arrives: the search is running.
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the stream");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        assert!(
            !text.contains("\r\n\r\n") || text.starts_with("HTTP/1.1 200"),
            "{text}"
        );
    }
    while get(&s.url, "/health")["searching"] != 1 {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(sock);
    // The search stops (by the server's gauge), cancelled rather than finished.
    while get(&s.url, "/health")["searching"] != 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let h = get(&s.url, "/health");
    assert_eq!(h["cancelled"], 1, "{h}");
    assert_eq!(h["in_flight"], 0, "{h}");
    assert_eq!(metric(&metrics(&s.url), "ponder_cancelled_total"), 1.0);
}

#[test]
fn a_full_slot_queues_the_next_request_and_refuses_beyond_the_queue() {
    let cfg = ServeConfig {
        max_concurrent: 1,
        max_queue: 1,
        ..ServeConfig::default()
    };
    let (s, gate) = start_gated(cfg);
    let body =
        json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": question()}],
        "ponder": {"simulations": 8}})
        .to_string();
    let send = |s: &Server| {
        let (url, b) = (s.url.clone(), body.clone());
        std::thread::spawn(move || post(&url, "/v1/chat/completions", &b, None))
    };
    let first = send(&s);
    wait_for(&s, "in_flight", 1);
    let second = send(&s);
    wait_for(&s, "queued", 1);
    let (code, v, retry) = post(&s.url, "/v1/chat/completions", &body, None);
    assert_eq!((code, retry.as_deref()), (429, Some("1")), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 waiting"),
        "{v}"
    );
    gate.open();
    for h in [first, second] {
        let (code, v, _) = h.join().unwrap();
        assert_eq!(code, 200, "{v}");
    }
    let h = get(&s.url, "/health");
    assert_eq!(
        (h["in_flight"].as_u64(), h["queued"].as_u64()),
        (Some(0), Some(0)),
        "{h}"
    );
    assert_eq!(metric(&metrics(&s.url), "ponder_queue_depth"), 0.0);
}

#[test]
fn completions_stream_text_chunks() {
    let s = start(ServeConfig::default(), 0);
    let body = json!({"model": "ponder-greedy", "stream": true, "prompt": question()});
    let text = ureq::post(&format!("{}/v1/completions", s.url))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap()
        .into_string()
        .unwrap();
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c["object"] == "text_completion"),
        "{text}"
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert!(content.contains("The answer is"), "{content}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn a_returned_tree_is_served_as_the_view_page() {
    let s = start(ServeConfig::default(), 0);
    let body = json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": question()}],
        "ponder": {"simulations": 12, "return_tree": true}});
    let (code, v, _) = post(&s.url, "/v1/chat/completions", &body.to_string(), None);
    assert_eq!(code, 200, "{v}");
    let url = v["ponder"]["tree_url"].as_str().unwrap();
    assert_eq!(url, format!("/v1/trees/{}", v["id"].as_str().unwrap()));
    let page = ureq::get(&format!("{}{url}", s.url)).call().unwrap();
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.into_string().unwrap();
    assert!(
        html.contains("<html") && html.contains(question().as_str()),
        "{}",
        &html[..200]
    );
    let missing = ureq::get(&format!("{}/v1/trees/chatcmpl-999999", s.url)).call();
    match missing {
        Err(ureq::Error::Status(404, r)) => {
            let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
            assert_eq!(v["error"]["code"], "tree_not_found");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_drain_deadline_cancels_searches_still_running() {
    // 20 ms per model call and 100,000 simulations: the search would run for ages.
    let mut s = start(
        ServeConfig {
            max_simulations: 100_000,
            drain_seconds: 0.0,
            ..ServeConfig::default()
        },
        20,
    );
    let (url, body) = (
        s.url.clone(),
        json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": question()}],
            "ponder": {"simulations": 100000}})
        .to_string(),
    );
    let client = std::thread::spawn(move || post(&url, "/v1/chat/completions", &body, None));
    while get(&s.url, "/health")["searching"] != 1 {
        std::thread::sleep(Duration::from_millis(2));
    }
    // Stop: the deadline (zero) cancels the search, which answers with what its tree holds,
    // and the server returns.
    drop(s.stop.take());
    s.thread.take().unwrap().join().unwrap();
    let (code, v, _) = client.join().unwrap();
    assert_eq!(code, 200, "{v}");
    assert!(
        v["ponder"]["stats"]["simulations"].as_u64().unwrap() < 100_000,
        "{v}"
    );
}

#[test]
fn record_appends_every_finished_tree_to_a_journal_folder() {
    use ponder_engine::extract::OutputConfig;
    use ponder_runtime::journal::read_entries;
    use ponder_runtime::record::Recorder;
    let dir = std::env::temp_dir().join(format!("ponder-serve-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        Arc::new(
            Recorder::open(
                &dir,
                &OutputConfig::default(),
                true,
                false,
                json!({"test": true}),
            )
            .unwrap(),
        )
    };
    for round in 1..=2u64 {
        let rec = open();
        let s = start_with(
            ServeConfig::default(),
            0,
            Extras {
                recorder: Some(rec.clone()),
                ..Extras::default()
            },
        );
        for i in 0..3 {
            let q = synthetic::problems(1, 3, i).remove(0).question;
            let body = json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": q}],
                "ponder": {"simulations": 16}});
            let (code, v, _) = post(&s.url, "/v1/chat/completions", &body.to_string(), None);
            assert_eq!(code, 200, "{v}");
        }
        assert_eq!(rec.recorded(), 3);
        assert_eq!(metric(&metrics(&s.url), "ponder_recorded_trees_total"), 3.0);
        drop(s);
        // A restart appends after what is there (the same folder, three more trees).
        let (entries, _) = read_entries(&dir.join("journal.jsonl")).unwrap();
        assert_eq!(entries.len() as u64, 3 * round);
        let trees = std::fs::read_to_string(dir.join("trees.jsonl")).unwrap();
        assert_eq!(trees.lines().count() as u64, 3 * round);
        let pairs: u64 = entries.iter().map(|e| e.records["pairs.jsonl"]).sum();
        let lines = std::fs::read_to_string(dir.join("pairs.jsonl")).unwrap();
        assert_eq!(lines.lines().count() as u64, pairs);
        assert!(entries.iter().all(|e| e.tokens > 0));
    }
    // A folder holding another command's run is refused, named.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("manifest.json"), r#"{"command": "generate"}"#).unwrap();
    let e = Recorder::open(&other, &OutputConfig::default(), false, false, json!({})).unwrap_err();
    assert!(e.to_string().contains("`generate` run"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
