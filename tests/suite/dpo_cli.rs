//! pairs.jsonl → `ponder dpo` → `ponder search --model <out>`, end to end on a tiny random
//! model: the trained checkpoint loads and searches, the adapters and the report are written,
//! and bad pair files are named.

use crate::common::{ponder, temp_dir, text, tiny_model};

#[test]
fn dpo_then_search_with_the_trained_model() {
    let dir = temp_dir("dpo-all");
    let model = tiny_model(&dir, 9);
    let m = model.to_str().unwrap();
    // Pairs as `ponder generate` writes them (prefix and token ids included), for the tiny
    // model's byte-level vocabulary (token = 3 + byte), and one TRL-style line.
    let byte_ids = |s: &str| -> Vec<u32> { s.bytes().map(|b| 3 + u32::from(b)).collect() };
    let mut lines = Vec::new();
    for i in 0..6 {
        let prefix = format!("{i} + 1 = {}\n", i + 1);
        let task = format!("What is {i} plus 3?\n\nSolve it.");
        let chosen = format!("{} + 2 = {}\n", i + 1, i + 3);
        let rejected = format!("{} + 2 = {}\n", i + 1, i + 7);
        lines.push(
            serde_json::json!({
                "schema_version": 1, "problem_id": format!("p{i}"), "tree_id": i, "depth": 2,
                "prompt": format!("{task}{prefix}"), "prefix": prefix,
                "prefix_tokens": byte_ids(&prefix), "chosen": chosen, "rejected": rejected,
                "chosen_tokens": byte_ids(&chosen), "rejected_tokens": byte_ids(&rejected),
                "q_chosen": 0.8, "q_rejected": 0.1, "n_chosen": 5, "n_rejected": 2,
                "label_smoothing": 0.2857, "final_correct": true,
            })
            .to_string(),
        );
    }
    lines.push(r#"{"prompt": "What is 1 plus 1?", "chosen": "2", "rejected": "3"}"#.into());
    let pairs = dir.join("pairs.jsonl");
    std::fs::write(&pairs, lines.join("\n") + "\n").unwrap();
    let out = dir.join("trained");
    let o = ponder(&[
        "dpo",
        "--pairs",
        pairs.to_str().unwrap(),
        "--model",
        m,
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--rank",
        "2",
        "--lr",
        "1e-2",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        stdout.starts_with("pairs=") && stdout.contains("loss_after="),
        "{stdout}"
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "adapter.safetensors",
        "dpo-report.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let o = ponder(&[
        "search",
        "--policy",
        "llm",
        "--model",
        out.to_str().unwrap(),
        "--simulations",
        "2",
        "--max-step-tokens",
        "4",
        "What is 2 plus 3?",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout.contains("simulations=2"), "{stdout}");
    // Full fine-tuning in mixed bf16: the same outputs, the report says so, and the
    // checkpoint searches.
    let full = dir.join("full");
    let o = ponder(&[
        "dpo",
        "--pairs",
        pairs.to_str().unwrap(),
        "--model",
        m,
        "--out",
        full.to_str().unwrap(),
        "--epochs",
        "1",
        "--full",
        "--precision",
        "bf16",
        "--lr",
        "1e-3",
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("dpo-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["config"]["full"], true);
    assert_eq!(report["config"]["precision"], "Bf16");
    assert!(
        report["report"]["after"]["loss"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    let o = ponder(&[
        "search",
        "--policy",
        "llm",
        "--model",
        full.to_str().unwrap(),
        "--simulations",
        "2",
        "--max-step-tokens",
        "4",
        "What is 2 plus 3?",
    ]);
    let (stdout, err) = text(&o);
    assert!(
        o.status.success() && stdout.contains("simulations=2"),
        "{err}"
    );
    // A broken pairs file is named with its line.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"x\"}\n").unwrap();
    let o = ponder(&[
        "dpo",
        "--pairs",
        bad.to_str().unwrap(),
        "--model",
        m,
        "--out",
        dir.join("x").to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("bad.jsonl:1") && err.contains("chosen"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
