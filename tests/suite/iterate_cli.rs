//! `ponder iterate` end to end on a tiny random model: every round writes its stages and a
//! metrics row, and a rerun resumes from the finished stages instead of redoing them.

use crate::common::{ponder, temp_dir, tiny_model};

#[test]
fn iterate_writes_rounds_and_resumes() {
    let dir = temp_dir("iterate-all");
    let model = tiny_model(&dir, 13);
    let out = dir.join("run");
    let args = |rounds: &'static str| -> Vec<String> {
        [
            "iterate",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--rounds",
            rounds,
            "--level",
            "1",
            "--train-size",
            "3",
            "--test-size",
            "2",
            "--simulations",
            "4",
            "--eval-simulations",
            "2",
            "--sc-n",
            "2",
            "--max-step-tokens",
            "4",
            "--parallel-trees",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |rounds| {
        let a = args(rounds);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = ponder(&refs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = run("1");
    assert_eq!(first.lines().count(), 3, "header + rounds 0 and 1: {first}");
    assert!(
        first.starts_with("round,model,greedy_acc,mcts_acc,sc_acc"),
        "{first}"
    );
    for f in [
        "round-0/eval.json",
        "round-0/gen/stats.json",
        "round-0/gen/pairs.jsonl",
        "round-0/gen/trajectory_pairs.jsonl",
        "round-1/eval.json",
        "metrics.jsonl",
        "metrics.csv",
        "metrics.svg",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("round-0/gen/stats.json")).unwrap())
            .unwrap();
    for k in ["solved_share", "distinct_answers", "pass_at_k", "auroc"] {
        assert!(stats[k].is_number(), "{k}: {stats}");
    }
    let svg = std::fs::read_to_string(out.join("metrics.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    // Resume: finished stages are reused (their files untouched), and one more round is added.
    let stamp = |f: &str| std::fs::metadata(out.join(f)).unwrap().modified().unwrap();
    let before = (stamp("round-0/eval.json"), stamp("round-0/gen/stats.json"));
    let second = run("2");
    assert_eq!(second.lines().count(), 4, "{second}");
    // Round 0 is finished in both runs: the same row (round 1 gains its search figures).
    let head = |t: &str| t.lines().take(2).collect::<Vec<_>>().join("\n");
    assert_eq!(head(&second), head(&first));
    assert_eq!(
        before,
        (stamp("round-0/eval.json"), stamp("round-0/gen/stats.json"))
    );
    assert!(out.join("round-2/eval.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_critics_gives_the_next_round_heads_over_its_own_backbone() {
    let dir = temp_dir("critics");
    let model = tiny_model(&dir, 17);
    let out = dir.join("run");
    let o = ponder(&[
        "iterate",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rounds",
        "1",
        "--level",
        "1",
        "--train-size",
        "4",
        "--test-size",
        "2",
        "--simulations",
        "6",
        "--eval-simulations",
        "2",
        "--sc-n",
        "2",
        "--max-step-tokens",
        "4",
        "--train-critics",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let heads = out.join("round-1/critics");
    if heads.join("value-report.json").exists() {
        // Trained over the policy the next round searches with.
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(heads.join("value-report.json")).unwrap(),
        )
        .unwrap();
        let next = if out.join("round-1/model/dpo-report.json").exists() {
            out.join("round-1/model")
        } else {
            model.clone()
        };
        assert_eq!(
            report["backbone_path"].as_str().unwrap(),
            next.to_str().unwrap(),
            "{report}"
        );
        assert!(out.join("round-1/eval.json").exists());
    } else {
        // A tiny random model may find too few labelled paths to train on: then it says so.
        assert!(err.contains("critic heads not trained"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
