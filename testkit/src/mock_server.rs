//! A test double of an OpenAI-compatible server on 127.0.0.1, for tests and `ponder bench
//! remote`: it answers `/v1/completions` (and, when told the judging prompt's marker, one-token
//! judge requests), `/v1/chat/completions` and a `/v1/score` critic endpoint for the engine's synthetic arithmetic problems ("Start with 7. Add 3. ... What is the
//! result?"), with configurable latency and injected failures (500, 429, hangs past the client's
//! timeout, dropped connections, truncated JSON, answers of the wrong shape).
//!
//! Its "model" writes one `x op a = y.` line per operation — right with probability 0.75 per
//! sample (always right when greedy and lucky by the prompt's hash), otherwise off by 1-3 — and
//! then `The answer is y.`. It is a scripted stand-in, never a product default.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::synthetic::{Arithmetic, Op};
use ponder_engine::rng::{Rng, hash_bytes, mix};
use serde_json::{Value, json};

/// What the mock server injects.
#[derive(Clone, Debug, PartialEq)]
pub struct MockConfig {
    /// Delay before every answer.
    pub latency: Duration,
    /// Share of requests that fail (spread evenly over the failure kinds).
    pub fail_rate: f64,
    /// How long a "hang" failure waits before closing the connection (set it above the
    /// client's timeout to inject timeouts).
    pub hang: Duration,
    /// Seed of the failure draws.
    pub seed: u64,
    /// Answer one choice whatever `n` asks for (as llama.cpp's server and Ollama do).
    pub ignore_n: bool,
    /// How answers are shaped: the real servers' finish reasons and log-probability forms.
    pub flavor: Flavor,
    /// Write a blank line before each step (as SmolLM2 does under llama.cpp's server): with
    /// `stop: ["\n"]` the answer is then empty text that stopped at once.
    pub leading_newline: bool,
    /// Ignore `stop` and write to the end of the solution (a misbehaving server).
    pub ignore_stop: bool,
    /// Answer one-token judge requests: a completion with `max_tokens: 1` whose prompt holds
    /// this marker is judged on the line after its last occurrence (`B` when that line's claim
    /// holds, `A` when not, with top log-probabilities). The test names the marker of the
    /// judging prompt it uses; the server knows no critic's prompt. `None`: no judging.
    pub judge_after: Option<String>,
}

/// Which server's answer shapes the mock imitates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    /// vLLM: `finish_reason: "stop"` with `stop_reason` (the matched string, or null at end of
    /// sequence), legacy completions log-probabilities (`tokens`, `token_logprobs`).
    #[default]
    Vllm,
    /// llama.cpp's `llama-server`: `finish_reason: "stop"` for a stop string and end of sequence
    /// alike, no `stop_reason`, log-probabilities as `logprobs.content[{token, logprob}]` for
    /// completions too.
    LlamaServer,
    /// llama-cpp-python's server: `"stop"` for both, no `stop_reason`, legacy log-probabilities
    /// with `text_offset` and `top_logprobs`.
    LlamaCppPython,
    /// Hugging Face TGI: `stop_sequence` / `eos_token` / `length`.
    Tgi,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            latency: Duration::ZERO,
            fail_rate: 0.0,
            hang: Duration::from_millis(500),
            seed: 1,
            ignore_n: false,
            flavor: Flavor::Vllm,
            leading_newline: false,
            ignore_stop: false,
            judge_after: None,
        }
    }
}

/// Counters of a mock server.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Failures injected.
    pub failures: AtomicU64,
    /// Requests answered properly.
    pub served: AtomicU64,
}

/// A running mock server; stops accepting when dropped.
#[derive(Debug)]
pub struct MockServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<MockStats>,
}

impl MockServer {
    /// Starts a server on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MockStats::default());
        let counter = Arc::new(AtomicU64::new(0));
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    // Acquire: pairs with the Release store in `drop`.
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (cfg, stats, counter) = (cfg.clone(), stats.clone(), counter.clone());
                    std::thread::spawn(move || serve(conn, &cfg, &stats, &counter));
                }
            });
        }
        Ok(MockServer { addr, stop, stats })
    }

    /// The base URL, `/v1` included.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The counters.
    pub fn stats(&self) -> &MockStats {
        &self.stats
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Release: the accept loop sees the flag after the wake-up connection below.
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: requests until the client closes it (keep-alive).
fn serve(conn: TcpStream, cfg: &MockConfig, stats: &MockStats, counter: &AtomicU64) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let Some((path, body)) = read_request(&mut reader) else {
            return;
        };
        // Relaxed: statistics and a draw counter.
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let n = counter.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(cfg.latency);
        let mut rng = Rng::new(mix(cfg.seed, n));
        if rng.next_f64() < cfg.fail_rate {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            match rng.below(6) {
                0 => respond(&mut out, 500, "{\"error\":\"injected\"}"),
                1 => respond(&mut out, 429, "{\"error\":\"slow down\"}"),
                2 => {
                    std::thread::sleep(cfg.hang);
                    return;
                }
                3 => return,
                4 => {
                    // Declares more bytes than it sends, then closes: a truncated answer.
                    let _ = out.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"choices\": [{\"te",
                    );
                    return;
                }
                _ => respond(&mut out, 200, "{\"object\": \"list\", \"data\": []}"),
            }
            continue;
        }
        let answer = match serde_json::from_slice::<Value>(&body) {
            Err(e) => {
                respond(&mut out, 400, &json!({"error": e.to_string()}).to_string());
                continue;
            }
            Ok(req) => match path.as_str() {
                "/v1/completions" => complete(&req, false, cfg),
                "/v1/chat/completions" => complete(&req, true, cfg),
                "/v1/score" => score(&req),
                other => Err(format!("no route {other}")),
            },
        };
        match answer {
            Ok(v) => {
                stats.served.fetch_add(1, Ordering::Relaxed);
                respond(&mut out, 200, &v.to_string());
            }
            Err(e) => respond(&mut out, 400, &json!({"error": e}).to_string()),
        }
    }
}

/// Reads one HTTP/1.1 request: `(path, body)`, `None` at end of stream or on garbage.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

fn respond(out: &mut TcpStream, code: u16, body: &str) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let retry = if code == 429 {
        "Retry-After: 0\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = out.flush();
}

/// The problem and the steps so far, read from a prompt: the question is the text from the
/// last `Start with` to `What is the result?`; steps are the `x op a = y` lines after it.
fn state(prompt: &str) -> Result<(Arithmetic, Vec<i64>), String> {
    let from = prompt
        .rfind("Start with")
        .ok_or("no synthetic question in the prompt")?;
    let end = prompt[from..]
        .find("What is the result?")
        .ok_or("no synthetic question in the prompt")?
        + from
        + "What is the result?".len();
    let problem = Arithmetic::parse(&prompt[from..end]).ok_or("unreadable question")?;
    let values = prompt[end..]
        .lines()
        .filter_map(|l| crate::synthetic::parse_line(l).map(|(.., y)| y))
        .collect();
    Ok((problem, values))
}

/// The next line after `values`, right or off by 1-3, and whether it was right.
fn next_line(problem: &Arithmetic, values: &[i64], rng: &mut Rng, right: bool) -> (String, bool) {
    let x = values.last().copied().unwrap_or(problem.start);
    let Some(op) = problem.ops.get(values.len()) else {
        return (format!("The answer is {x}."), true);
    };
    let (c, a) = op.symbol_and_arg();
    let y = op.apply(x);
    let y = if right {
        y
    } else {
        y + 1 + rng.below(3) as i64
    };
    (format!("{x} {c} {a} = {y}."), right)
}

/// Whether a synthetic step line's claim is right (`None` when the text has no claim).
fn claim_right(line: &str) -> Option<bool> {
    let (x, op, a, y) = crate::synthetic::parse_line(line)?;
    Some(Op::from_symbol(op, a)?.apply(x) == y)
}

/// A one-token judge reply: `B` (correct) or `A`, with top log-probabilities that favour the
/// truth of the claim on the line after the last `marker`.
fn judge(prompt: &str, marker: &str) -> Value {
    let latest = prompt
        .rsplit(marker)
        .next()
        .and_then(|s| s.trim_start().lines().next())
        .unwrap_or("");
    let (b, a): (f64, f64) = match claim_right(latest) {
        Some(true) => (-0.1, -2.5),
        Some(false) => (-2.5, -0.1),
        None => (-0.7, -0.7),
    };
    let text = if b >= a { "B" } else { "A" };
    json!({
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": "length",
                     "logprobs": {"tokens": [text], "token_logprobs": [b.max(a)],
                                  "top_logprobs": [{"B": b, "A": a}]}}],
        "usage": {"completion_tokens": 1},
    })
}

fn complete(req: &Value, chat: bool, cfg: &MockConfig) -> Result<Value, String> {
    let prompt = if chat {
        let msgs = req
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("no messages")?;
        msgs.iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        req.get("prompt")
            .and_then(Value::as_str)
            .ok_or("no prompt")?
            .to_string()
    };
    if let Some(marker) = &cfg.judge_after
        && !chat
        && req.get("max_tokens").and_then(Value::as_u64) == Some(1)
        && prompt.contains(marker.as_str())
    {
        return Ok(judge(&prompt, marker));
    }
    let n = if cfg.ignore_n {
        1
    } else {
        req.get("n")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 256)
    };
    let seed = req.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let greedy = req.get("temperature").and_then(Value::as_f64) == Some(0.0);
    let stops: Vec<String> = match req.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let one_line = stops.iter().any(|s| s == "\n") && !cfg.ignore_stop;
    // A blank line first, unless the text so far already ends with one.
    let blank_first = cfg.leading_newline && !prompt.ends_with("\n\n");
    let (problem, values) = state(&prompt)?;
    let mut choices = Vec::new();
    let mut used = 0u64;
    for i in 0..n {
        let mut rng = Rng::new(hash_bytes(
            mix(seed, if greedy { 0 } else { i }),
            prompt.as_bytes(),
        ));
        let mut vals = values.clone();
        let mut text = String::new();
        let mut tokens: Vec<(String, f64)> = Vec::new();
        loop {
            if blank_first && text.is_empty() && tokens.is_empty() {
                tokens.push(("\n".into(), -0.3));
                if one_line {
                    // Stopped at the stop string, which is left out of the text.
                    break;
                }
                text.push('\n');
                continue;
            }
            let right = rng.next_f64() < 0.75;
            let (line, right) = next_line(&problem, &vals, &mut rng, right);
            let done = line.starts_with("The answer");
            if let Some((.., y)) = crate::synthetic::parse_line(&line) {
                vals.push(y);
            }
            let lp = if right { -0.2 } else { -2.0 };
            for w in line.split_inclusive(' ') {
                tokens.push((w.to_string(), lp));
            }
            text.push_str(&line);
            if one_line || done {
                break;
            }
            text.push('\n');
            tokens.push(("\n".into(), -0.05));
        }
        let stopped = one_line;
        if !one_line {
            // Generation to the end: the final newline, then end of sequence.
            text.push('\n');
            tokens.push(("\n".into(), -0.05));
        }
        // The token cap, as a server applies it: the text is cut after `max_tokens` tokens.
        let cap = req
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX) as usize;
        let capped = tokens.len() > cap;
        if capped {
            tokens.truncate(cap);
            text = tokens.iter().map(|t| t.0.as_str()).collect();
        }
        used += tokens.len() as u64;
        choices.push(choice(cfg.flavor, chat, i, &text, &tokens, stopped, capped));
    }
    Ok(json!({
        "object": if chat { "chat.completion" } else { "text_completion" },
        "choices": choices,
        "usage": {"completion_tokens": used, "prompt_tokens": (prompt.len() as u64).div_ceil(4)},
    }))
}

/// One entry of `choices` in the flavor's shape.
fn choice(
    flavor: Flavor,
    chat: bool,
    i: u64,
    text: &str,
    tokens: &[(String, f64)],
    stopped: bool,
    capped: bool,
) -> Value {
    let content = || json!({"content": tokens.iter().map(|t| json!({"token": t.0, "logprob": t.1})).collect::<Vec<_>>()});
    let legacy = |offsets: bool| {
        let mut v = json!({
            "tokens": tokens.iter().map(|t| t.0.clone()).collect::<Vec<_>>(),
            "token_logprobs": tokens.iter().map(|t| t.1).collect::<Vec<_>>(),
        });
        if offsets {
            let mut at = 0;
            let offs: Vec<usize> = tokens
                .iter()
                .map(|t| {
                    let o = at;
                    at += t.0.len();
                    o
                })
                .collect();
            v["text_offset"] = json!(offs);
            v["top_logprobs"] = json!(
                tokens
                    .iter()
                    .map(|t| json!({t.0.clone(): t.1}))
                    .collect::<Vec<_>>()
            );
        }
        v
    };
    let mut c = if chat {
        json!({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": content()})
    } else {
        json!({"index": i, "text": text})
    };
    let reason = match (flavor, capped, stopped) {
        (_, true, _) => "length",
        (Flavor::Tgi, _, true) => "stop_sequence",
        (Flavor::Tgi, _, false) => "eos_token",
        _ => "stop",
    };
    c["finish_reason"] = json!(reason);
    if flavor == Flavor::Vllm && !capped {
        c["stop_reason"] = if stopped { json!("\n") } else { Value::Null };
    }
    if !chat {
        c["logprobs"] = match flavor {
            Flavor::LlamaServer => content(),
            Flavor::LlamaCppPython => legacy(true),
            Flavor::Vllm | Flavor::Tgi => legacy(false),
        };
    }
    c
}

/// `/v1/score`: 1 when the latest step's claim is right, 0 when wrong, 0.5 without a claim
/// (an oracle PRM over the synthetic lines).
fn score(req: &Value) -> Result<Value, String> {
    let inputs = req
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or("no inputs")?;
    let scores = inputs
        .iter()
        .map(|i| {
            let last = i
                .get("steps")
                .and_then(Value::as_array)
                .and_then(|s| s.last())
                .and_then(Value::as_str)
                .unwrap_or("");
            claim_right(last).map_or(0.5, |r| f64::from(u8::from(r)))
        })
        .collect::<Vec<_>>();
    Ok(json!({ "scores": scores }))
}
