//! Remote critics against the local mock server: a PRM behind ponder's scoring endpoint and
//! LLM-as-judge self-evaluation through the completions API both tell a right step from a
//! wrong one, and a request the server rejects is reported with its answer.

use std::sync::Arc;

use ponder_critics::remote::{RemoteCritic, RemoteJudge, ScoreFormat};
use ponder_critics::self_eval::SelfEvalConfig;
use ponder_engine::tree::{PathRef, Tree, TreeId};
use ponder_engine::{Critic, CriticKind, Problem, ScoreRange, Step};
use ponder_policies::remote::{Client, RemoteConfig, Template};
use ponder_testkit::mock_server::{MockConfig, MockServer};

const QUESTION: &str = "Start with 7. Add 3. Multiply by 2. What is the result?";

fn chain(steps: &[&str]) -> Tree {
    Tree::chain(
        TreeId(0),
        Problem::new("p", QUESTION),
        QUESTION.into(),
        steps.iter().map(|s| Step::text(*s)).collect(),
        false,
    )
    .unwrap()
    .0
}

fn client(url: String) -> Arc<Client> {
    Arc::new(
        Client::new(&RemoteConfig {
            endpoints: vec![url],
            retries: 2,
            backoff_ms: 1.0,
            backoff_max_ms: 2.0,
            ..RemoteConfig::default()
        })
        .unwrap(),
    )
}

fn last(t: &Tree) -> PathRef<'_> {
    PathRef::new(t, ponder_engine::tree::NodeId(t.len() as u32 - 1))
}

#[test]
fn remote_prm_and_judge_separate_right_from_wrong_steps() {
    // The judging prompt's marker: the server is told it, it does not know critics' prompts.
    let server = MockServer::start(MockConfig {
        judge_after: Some("Latest step:".into()),
        ..MockConfig::default()
    })
    .unwrap();
    assert!(SelfEvalConfig::default().prompt.contains("Latest step:"));
    let right = chain(&["7 + 3 = 10.\n", "10 * 2 = 20.\n"]);
    let wrong = chain(&["7 + 3 = 10.\n", "10 * 2 = 23.\n"]);
    let prm = RemoteCritic::new(
        client(server.url()),
        CriticKind::Process,
        ScoreFormat::Ponder,
        "/score",
        ScoreRange::UNIT,
    );
    let s = prm.score(&[last(&right), last(&wrong)]).unwrap();
    assert_eq!(s, vec![1.0, 0.0]);
    let judge = RemoteJudge::new(
        client(server.url()),
        SelfEvalConfig::default(),
        Template::Chatml,
        20,
    );
    let s = judge.score(&[last(&right), last(&wrong)]).unwrap();
    assert!(s[0] > 0.8 && s[1] < 0.2, "{s:?}");
    // The judge's prompt carries the question and the latest step, in the chat format.
    let text = judge.render(QUESTION, &["7 + 3 = 10."], "10 * 2 = 20.");
    assert!(text.starts_with("<|im_start|>user\n") && text.contains("10 * 2 = 20."));
    // A request the server rejects (4xx) is reported at once, with the server's words.
    let odd = RemoteCritic::new(
        client(server.url()),
        CriticKind::Process,
        ScoreFormat::VllmPooling,
        "/score",
        ScoreRange::UNIT,
    );
    let e = odd.score(&[last(&right)]).unwrap_err().to_string();
    assert!(e.contains("HTTP 400") && e.contains("no inputs"), "{e}");
}
