//! The remote policy and its HTTP client against the local mock server: steps cut by the step
//! rule with priors, retries through injected failures, immediate errors on 4xx, giving up
//! without panicking on endless garbage, load spread over endpoints around a dead one, and a
//! key that never shows in logs.

use std::sync::Arc;
use std::time::Duration;

use ponder_engine::policy::{ExpandRequest, Policy, StepRule};
use ponder_engine::tree::{NodeId, PathRef, Tree, TreeId};
use ponder_engine::{Problem, Step};
use ponder_policies::remote::{Api, Client, RemoteConfig, RemotePolicy, RemoteSampling};
use ponder_testkit::mock_server::{MockConfig, MockServer};

const QUESTION: &str = "Start with 7. Add 3. Multiply by 2. What is the result?";

fn config(endpoints: Vec<String>) -> RemoteConfig {
    RemoteConfig {
        endpoints,
        model: "mock".into(),
        // Generous: a loaded machine must not turn a slow answer into a retry (the counts
        // below are exact). Tests that inject hangs set a short timeout of their own.
        timeout_secs: 30.0,
        retries: 12,
        backoff_ms: 1.0,
        backoff_max_ms: 5.0,
        rest_secs: 0.05,
        ..RemoteConfig::default()
    }
}

fn policy(cfg: &RemoteConfig) -> RemotePolicy {
    RemotePolicy::new(
        Arc::new(Client::new(cfg).unwrap()),
        StepRule::default(),
        RemoteSampling {
            temperature: 0.8,
            top_p: 1.0,
        },
    )
}

/// A tree holding the question and `steps` as one path.
fn tree(steps: &[&str]) -> (Tree, NodeId) {
    let (t, ids) = Tree::chain(
        TreeId(3),
        Problem::new("p", QUESTION).with_gold("20"),
        format!("{QUESTION}\n\nSolve it step by step."),
        steps.iter().map(|s| Step::text(*s)).collect(),
        false,
    )
    .unwrap();
    (t, *ids.last().unwrap())
}

fn expand(p: &RemotePolicy, t: &Tree, node: NodeId, k: u32, to_end: bool) -> Vec<Step> {
    let req = ExpandRequest {
        path: PathRef::new(t, node),
        k,
        seed: 11,
        to_end,
        greedy: false,
        max_tokens: None,
    };
    p.propose(&[req]).unwrap().pop().unwrap()
}

#[test]
fn steps_follow_the_rule_and_carry_priors() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let p = policy(&config(vec![server.url()]));
    let (t, n) = tree(&[]);
    let steps = expand(&p, &t, n, 4, false);
    assert_eq!(steps.len(), 4);
    for s in &steps {
        assert!(s.text.starts_with("7 + 3 = "), "{s:?}");
        assert!(s.text.ends_with('\n'), "the stop string is put back: {s:?}");
        assert!(s.logprob < 0.0 && s.n_tokens > 0 && !s.finished, "{s:?}");
    }
    // After the last operation comes the answer, which finishes the path.
    let (t, n) = tree(&["7 + 3 = 10.\n", "10 * 2 = 20.\n"]);
    let s = &expand(&p, &t, n, 1, false)[0];
    assert_eq!(s.text, "The answer is 20.\n");
    assert!(s.finished);
    // A rollout to the end is one multi-line finished step.
    let (t, n) = tree(&[]);
    let s = &expand(&p, &t, n, 1, true)[0];
    assert!(s.finished && s.text.contains("The answer is"), "{s:?}");
    assert_eq!(s.text.lines().count(), 3, "{s:?}");
    // A server that ignores `n` is asked again until there are k samples, each seeded apart.
    let lazy = MockServer::start(MockConfig {
        ignore_n: true,
        ..MockConfig::default()
    })
    .unwrap();
    let (t, n) = tree(&[]);
    let steps = expand(&policy(&config(vec![lazy.url()])), &t, n, 5, false);
    assert_eq!(steps.len(), 5);
    assert_eq!(
        lazy.stats()
            .served
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    // The chat API gives the same kind of steps.
    let mut cfg = config(vec![server.url()]);
    cfg.api = Api::Chat;
    let (t, n) = tree(&["7 + 3 = 10.\n"]);
    let s = &expand(&policy(&cfg), &t, n, 2, false)[0];
    assert!(
        s.text.starts_with("10 * 2 = ") && s.text.ends_with('\n'),
        "{s:?}"
    );
}

#[test]
fn injected_failures_are_retried_until_every_request_succeeds() {
    let server = MockServer::start(MockConfig {
        fail_rate: 0.4,
        hang: Duration::from_secs(2),
        seed: 7,
        ..MockConfig::default()
    })
    .unwrap();
    let mut cfg = config(vec![server.url()]);
    cfg.timeout_secs = 0.5;
    let p = policy(&cfg);
    let (t, n) = tree(&[]);
    let reqs: Vec<ExpandRequest<'_>> = (0..24)
        .map(|i| ExpandRequest {
            path: PathRef::new(&t, n),
            k: 2,
            seed: i,
            to_end: false,
            greedy: false,
            max_tokens: None,
        })
        .collect();
    let out = p.propose(&reqs).unwrap();
    assert_eq!(out.len(), 24);
    assert!(
        out.iter()
            .all(|s| s.len() == 2 && s[0].text.ends_with('\n'))
    );
    let s = p.client().stats();
    let injected = server
        .stats()
        .failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(injected > 0, "failures were injected");
    // At least one retry per injected failure; more only if a loaded machine made a healthy
    // answer outlast the short timeout.
    assert!(
        s.retries >= injected,
        "each injected failure cost a retry: {s:?}"
    );
    assert_eq!(s.failures, 0);
}

#[test]
fn client_errors_fail_at_once_and_endless_garbage_gives_up_cleanly() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let client = Client::new(&config(vec![server.url()])).unwrap();
    let e = client
        .post("/nowhere", &serde_json::json!({}), |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 400") && e.contains("/nowhere"), "{e}");
    assert_eq!(client.stats().attempts, 1, "a 4xx is not retried");

    let broken = MockServer::start(MockConfig {
        fail_rate: 1.0,
        hang: Duration::from_secs(2),
        ..MockConfig::default()
    })
    .unwrap();
    let mut cfg = config(vec![broken.url()]);
    cfg.retries = 5;
    cfg.timeout_secs = 0.5;
    let p = policy(&cfg);
    let (t, n) = tree(&[]);
    let req = ExpandRequest {
        path: PathRef::new(&t, n),
        k: 1,
        seed: 1,
        to_end: false,
        greedy: false,
        max_tokens: None,
    };
    let e = p.propose(&[req]).unwrap_err().to_string();
    assert!(e.contains("gave up after 6 attempts"), "{e}");
}

#[test]
fn load_is_spread_and_a_dead_endpoint_is_routed_around() {
    let a = MockServer::start(MockConfig {
        latency: Duration::from_millis(20),
        ..MockConfig::default()
    })
    .unwrap();
    let b = MockServer::start(MockConfig {
        latency: Duration::from_millis(20),
        ..MockConfig::default()
    })
    .unwrap();
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let mut cfg = config(vec![a.url(), dead, b.url()]);
    cfg.concurrency = 4;
    let p = policy(&cfg);
    let (t, n) = tree(&[]);
    let reqs: Vec<ExpandRequest<'_>> = (0..40)
        .map(|i| ExpandRequest {
            path: PathRef::new(&t, n),
            k: 1,
            seed: i,
            to_end: false,
            greedy: false,
            max_tokens: None,
        })
        .collect();
    assert_eq!(p.propose(&reqs).unwrap().len(), 40);
    let served = |s: &MockServer| s.stats().served.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        served(&a) >= 10 && served(&b) >= 10,
        "{} / {}",
        served(&a),
        served(&b)
    );
    assert_eq!(served(&a) + served(&b), 40);
}

#[test]
fn the_api_key_is_read_from_the_environment_and_never_printed() {
    let mut cfg = config(vec!["http://127.0.0.1:9/v1".into()]);
    cfg.api_key_env = Some("PONDER_TEST_KEY_UNSET_VARIABLE".into());
    let e = Client::new(&cfg).unwrap_err().to_string();
    assert!(e.contains("PONDER_TEST_KEY_UNSET_VARIABLE"), "{e}");
    // SAFETY-free: tests in this file do not read this variable concurrently.
    cfg.api_key_env = Some("PATH".into());
    let c = Client::new(&cfg).unwrap();
    let shown = format!("{c:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains(&std::env::var("PATH").unwrap()), "{shown}");
    // Bad configs are named.
    let mut bad = config(vec!["ftp://x".into()]);
    assert!(
        Client::new(&bad)
            .unwrap_err()
            .to_string()
            .contains("policy.remote.endpoints")
    );
    bad = config(vec![]);
    assert!(Client::new(&bad).is_err());
}

/// Every stored node of searches through servers that behave as real ones do — `n` ignored,
/// a blank line before each step, `stop` ignored, each server's finish reasons and
/// log-probability shapes — is one step under the rule, within its token cap.
#[test]
fn real_server_behaviours_keep_every_node_one_step() {
    use ponder_engine::config::{Algorithm, SearchConfig};
    use ponder_engine::{Evaluator, Models, search};
    use ponder_testkit::mock_server::Flavor;
    use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

    let rule = StepRule {
        max_tokens: 24,
        ..StepRule::default()
    };
    for flavor in [
        Flavor::Vllm,
        Flavor::LlamaServer,
        Flavor::LlamaCppPython,
        Flavor::Tgi,
    ] {
        for (leading_newline, ignore_n, ignore_stop) in [
            (true, true, false),
            (false, false, true),
            (true, false, true),
        ] {
            let server = MockServer::start(MockConfig {
                flavor,
                leading_newline,
                ignore_n,
                ignore_stop,
                ..MockConfig::default()
            })
            .unwrap();
            let client = Arc::new(Client::new(&config(vec![server.url()])).unwrap());
            let p: Arc<dyn Policy> = Arc::new(RemotePolicy::new(
                client.clone(),
                rule.clone(),
                RemoteSampling {
                    temperature: 0.8,
                    top_p: 1.0,
                },
            ));
            let base = models(&SyntheticSpec::default());
            let m = Models {
                policy: p.clone(),
                rollout: Some(p),
                critics: base.critics.clone(),
                task: base.task.clone(),
            };
            let what =
                format!("{flavor:?} blank {leading_newline} n {ignore_n} stop {ignore_stop}");
            for alg in [Algorithm::Mcts, Algorithm::BestOfN] {
                let mut cfg = SearchConfig::alphallm();
                cfg.algorithm = alg;
                cfg.baseline.n = 3;
                cfg.budget.simulations = 12;
                cfg.budget.max_depth = 3;
                let r = search(
                    problems(1, 4, 9).remove(0),
                    TreeId(0),
                    &cfg,
                    Evaluator::direct(&m),
                )
                .unwrap();
                let t = &*r.tree;
                let nodes: Vec<NodeId> = t.node_ids().filter(|&n| n != NodeId::ROOT).collect();
                assert!(!nodes.is_empty(), "{what}");
                for n in nodes {
                    let s = &t.data(n).step;
                    assert_eq!(
                        rule.split(&s.text).len(),
                        1,
                        "{what} {alg:?}: node {} holds several steps: {:?}",
                        n.0,
                        s.text
                    );
                    assert!(s.n_tokens <= 8 * rule.max_tokens, "{what}: {s:?}");
                }
                assert!(
                    t.node_ids().any(|n| t.data(n).answer.is_some()),
                    "{what} {alg:?}: no answer reached"
                );
            }
            let st = client.stats();
            assert!(
                st.prompt_tokens > 0 && st.completion_tokens > 0,
                "{what}: {st:?}"
            );
            assert_eq!(st.short_answers > 0, ignore_n, "{what}: {st:?}");
        }
    }
}

/// A server that ignores `stop` sends several lines for one step: the step is the first line,
/// and every token the server generated is charged.
#[test]
fn lines_past_the_stop_are_cut_off_and_paid_for() {
    let server = MockServer::start(MockConfig {
        ignore_stop: true,
        ..MockConfig::default()
    })
    .unwrap();
    let p = policy(&config(vec![server.url()]));
    let (t, n) = tree(&[]);
    let s = &expand(&p, &t, n, 1, false)[0];
    assert!(
        s.text.starts_with("7 + 3 = ") && s.text.ends_with('\n'),
        "{s:?}"
    );
    assert_eq!(s.text.lines().count(), 1, "{s:?}");
    assert!(!s.finished, "{s:?}");
    // Three lines of 4-5 tokens each were generated, and the answer line: all are charged.
    assert!(s.n_tokens > 10, "{s:?}");
    // A blank line first: the step is the line after it, as the in-process policy makes it.
    let server = MockServer::start(MockConfig {
        leading_newline: true,
        flavor: ponder_testkit::mock_server::Flavor::LlamaServer,
        ..MockConfig::default()
    })
    .unwrap();
    let p = policy(&config(vec![server.url()]));
    let s = &expand(&p, &t, n, 1, false)[0];
    assert!(
        s.text.starts_with("\n7 + 3 = ") && s.text.ends_with('\n'),
        "{s:?}"
    );
    assert!(
        s.logprob < 0.0,
        "llama.cpp's log-probability shape is read: {s:?}"
    );
}
