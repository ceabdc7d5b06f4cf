//! `ponder-eval` end to end on the synthetic task (test doubles): every run within its budget,
//! resume after a torn write, refusal of a folder made with other problems or other settings,
//! a grown grid, the report files, and failed searches recorded and retried.

use std::path::PathBuf;
use std::sync::Arc;

use ponder_engine::{BoxError, ExpandRequest, Models, Policy, SearchConfig, Step};
use ponder_eval::{EvalSpec, Folder, Method, report, run};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ponder-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn spec(methods: &[&str], budgets: &[u64]) -> EvalSpec {
    let base = SearchConfig::default();
    EvalSpec {
        methods: methods
            .iter()
            .map(|m| Method::builtin(m, &base).expect("builtin"))
            .collect(),
        budgets: budgets.to_vec(),
        seeds: vec![0, 1],
        // One thread per tree: the trees, and the accuracies compared below, do not depend on
        // how a loaded machine interleaves threads.
        threads: 1,
        parallel_trees: 3,
        batch: Some(ponder_engine::BatchConfig::default()),
        source: serde_json::json!({"test": true}),
        settings: serde_json::json!({"model": "synthetic"}),
    }
}

#[test]
fn every_method_stays_in_budget_and_the_report_is_written() {
    let dir = tmp("all");
    let m = models(&SyntheticSpec::default());
    let probs = problems(8, 4, 5);
    let s = spec(&ponder_eval::method::BUILTIN, &[32, 128, 512]);
    let folder = Folder::new(&dir);
    let mut seen = 0;
    let out = run(&m, &probs, &s, &folder, &mut |p| {
        seen += 1;
        assert!(p.done <= p.total && p.correct <= p.runs);
    })
    .expect("run");
    assert_eq!(out.ran, 8 * ponder_eval::method::BUILTIN.len() * 3 * 2);
    assert_eq!(seen, out.ran);
    assert_eq!(out.failed, 0);
    let batch = out.batch.expect("three trees share a batcher");
    assert!(batch.policy.requests > 0 && batch.policy.mean_batch >= 1.0);
    let recs = folder.read_records(false).expect("records");
    assert_eq!(recs.len(), out.ran);
    for r in &recs {
        assert!(r.tokens <= r.budget, "{} over budget: {r:?}", r.method);
        assert!(r.error.is_none());
    }
    // Sampling fills the budget; greedy does not need to.
    let sc512: Vec<_> = recs
        .iter()
        .filter(|r| r.method == "self-consistency" && r.budget == 512)
        .collect();
    let mean = sc512.iter().map(|r| r.tokens).sum::<u64>() as f64 / sc512.len() as f64;
    assert!(mean > 400.0, "self-consistency spent {mean} of 512");
    let rep = report::write(&folder).expect("report");
    let n = ponder_eval::method::BUILTIN.len();
    assert_eq!(rep.rows.len(), n * 3);
    assert!(
        rep.rows
            .iter()
            .all(|r| r.runs == 16 && r.max_tokens <= r.budget)
    );
    // Every non-best method is compared at every budget.
    assert_eq!(rep.comparisons.len(), (n - 1) * 3);
    for f in ["summary.csv", "comparisons.csv", "table.md", "plot.svg"] {
        let body = std::fs::read_to_string(dir.join(f)).expect(f);
        assert!(body.len() > 100, "{f} is too short");
    }
    let svg = std::fs::read_to_string(dir.join("plot.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), n);
    let md = std::fs::read_to_string(dir.join("table.md")).unwrap();
    assert!(
        md.contains("| mcts:alphallm |") && md.contains("McNemar"),
        "{md}"
    );
    // With the oracle critics MCTS has a real edge over greedy on level-4 problems: at the
    // largest budget it should at least not be worse than greedy.
    let acc = |m: &str, b: u64| {
        rep.rows
            .iter()
            .find(|r| r.method == m && r.budget == b)
            .map(|r| r.accuracy)
            .unwrap()
    };
    assert!(acc("mcts:alphallm", 512) >= acc("greedy", 512), "{md}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_torn_run_resumes_and_a_grown_grid_adds_only_new_runs() {
    let dir = tmp("resume");
    let m = models(&SyntheticSpec::default());
    let probs = problems(5, 3, 9);
    let folder = Folder::new(&dir);
    let s = spec(&["greedy", "self-consistency"], &[64]);
    let first = run(&m, &probs, &s, &folder, &mut |_| {}).expect("run");
    assert_eq!(first.ran, 20);
    // A kill in the middle of a write: the last line is torn.
    let path = folder.records();
    let body = std::fs::read(&path).unwrap();
    let cut = body.len() - 25;
    std::fs::write(&path, &body[..cut]).unwrap();
    let again = run(&m, &probs, &s, &folder, &mut |_| {}).expect("resume");
    assert_eq!((again.resumed, again.ran), (19, 1));
    let recs = folder.read_records(false).unwrap();
    assert_eq!(recs.len(), 20);
    // A rerun does nothing.
    let noop = run(&m, &probs, &s, &folder, &mut |_| {}).expect("rerun");
    assert_eq!((noop.resumed, noop.ran), (20, 0));
    // A new method and a new budget: only the new runs.
    let grown = spec(&["greedy", "self-consistency", "mcts:alphallm"], &[64, 128]);
    let more = run(&m, &probs, &grown, &folder, &mut |_| {}).expect("grow");
    assert_eq!(more.total, 5 * 3 * 2 * 2);
    assert_eq!(more.ran, more.total - 20);
    // Corruption before the last line is an error naming the line.
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[2] = "{not json".into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = run(&m, &probs, &grown, &folder, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("records.jsonl:3"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn other_problems_or_changed_settings_are_refused() {
    let dir = tmp("refuse");
    let m = models(&SyntheticSpec::default());
    let folder = Folder::new(&dir);
    let s = spec(&["greedy"], &[64]);
    run(&m, &problems(3, 3, 1), &s, &folder, &mut |_| {}).expect("run");
    let err = run(&m, &problems(3, 3, 2), &s, &folder, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("other problems"), "{err}");
    let mut changed = s.clone();
    changed.methods[0].search.budget.max_depth = 3;
    let err = run(&m, &problems(3, 3, 1), &changed, &folder, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("other settings"), "{err}");
    let mut other_model = s.clone();
    other_model.settings = serde_json::json!({"model": "another"});
    let err = run(&m, &problems(3, 3, 1), &other_model, &folder, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("other shared settings"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A test double that fails every request for one problem.
struct FailsOn(Arc<dyn Policy>, &'static str);
impl Policy for FailsOn {
    fn name(&self) -> &str {
        "fails-on"
    }
    fn propose(&self, r: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        if r.iter().any(|q| q.path.problem().id == self.1) {
            return Err("injected failure".into());
        }
        self.0.propose(r)
    }
    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        self.0.max_step_tokens(to_end)
    }
}

#[test]
fn failed_searches_are_recorded_left_out_and_retried() {
    let dir = tmp("fail");
    let good = models(&SyntheticSpec::default());
    let probs = problems(4, 3, 3);
    let bad = Models {
        policy: Arc::new(FailsOn(
            good.policy.clone(),
            Box::leak(probs[1].id.clone().into_boxed_str()),
        )),
        ..good.clone()
    };
    let folder = Folder::new(&dir);
    let mut s = spec(&["greedy", "best-of-n"], &[64]);
    // Direct calls: through the batcher a failure also fails the other trees of its batch.
    s.batch = None;
    let out = run(&bad, &probs, &s, &folder, &mut |_| {}).expect("run");
    assert_eq!(out.failed, 4, "problem 1 × 2 methods × 2 seeds");
    let rep = report::write(&folder).unwrap();
    assert!(rep.rows.iter().all(|r| r.runs == 6 && r.failed == 2));
    let retry = run(&good, &probs, &s, &folder, &mut |_| {}).expect("retry");
    assert_eq!((retry.ran, retry.failed), (4, 0));
    let rep = report::write(&folder).unwrap();
    assert!(rep.rows.iter().all(|r| r.runs == 8 && r.failed == 0));
    std::fs::remove_dir_all(&dir).ok();
}
