//! The service on loopback with the synthetic test models: answers on both endpoints, the tree
//! on request, concurrent clients, and every kind of bad request with its status and message.
//! Waits are driven by the server's own gauges (`/health`), never by sleeping for a guess.

use std::sync::Arc;
use std::time::Duration;

use ponder_engine::{BatchConfig, SearchConfig};
use ponder_serve::{App, ServeConfig};
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
    let mut search = SearchConfig::alphallm();
    search.parallel.threads = 2;
    let app: Arc<App> = App::start(cfg, search, BatchConfig::default(), models).unwrap();
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
fn many_clients_at_once_all_get_answers() {
    let s = start(ServeConfig::default(), 0);
    let url = s.url.clone();
    let handles: Vec<_> = (0..16)
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
    }
    assert_eq!(get(&s.url, "/health")["in_flight"], 0);
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
        ("stream", json!(true), "stream"),
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
        ..ServeConfig::default()
    };
    // Every model call takes 20 ms: the first search holds the only slot for a while.
    let s = start(cfg, 20);
    let url = s.url.clone();
    let body =
        json!({"model": "ponder-mcts", "messages": [{"role": "user", "content": question()}],
        "ponder": {"simulations": 12}})
        .to_string();
    let b2 = body.clone();
    let first = std::thread::spawn(move || post(&url, "/v1/chat/completions", &b2, None));
    // Wait until the first search holds the slot (by the server's gauge, not by time).
    while get(&s.url, "/health")["in_flight"] != 1 {
        std::thread::yield_now();
    }
    let (code, v, retry) = post(&s.url, "/v1/chat/completions", &body, None);
    assert_eq!(code, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(retry.as_deref(), Some("1"));
    let (code, v, _) = first.join().unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(get(&s.url, "/health")["rejected"], 1);
}
