//! `ponder train-critic`, `ponder eval-critic` and a search with trained heads, end to end on a
//! tiny random model (no model install needed): the commands run, write what they promise, and
//! bad inputs give errors naming the file.

use crate::common::{ponder, temp_dir, text, tiny_model};

use std::path::{Path, PathBuf};

/// PRM records: two-step paths whose first step is a right or wrong sum.
fn write_data(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    for i in 0..24u32 {
        let (a, b) = (i + 2, 2 * i + 1);
        let ok = i % 2 == 0;
        let c = if ok { a + b } else { a + b + 3 };
        let v = if ok { 1.0 } else { 0.0 };
        lines.push(format!(
            r#"{{"schema_version":1,"problem_id":"p{i}","prompt":"What is {a} plus {b}?","completions":["{a} + {b} = {c}\n","The answer is {c}."],"labels":[{ok},{ok}],"mc_values":[{v},{v}],"label_source":"mc"}}"#
        ));
    }
    let p = dir.join("prm.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn train_eval_and_search_with_trained_heads() {
    let dir = temp_dir("critic-all");
    let model = tiny_model(&dir, 7);
    let data = write_data(&dir);
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let heads = dir.join("heads");
    let h = heads.to_str().unwrap();
    for kind in ["prm", "value", "orm"] {
        let o = ponder(&[
            "train-critic",
            "--kind",
            kind,
            "--model",
            m,
            "--data",
            d,
            "--out",
            h,
            "--epochs",
            "20",
            "--hidden",
            "8",
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{kind}: {err}");
        assert!(
            out.starts_with("head=") && out.contains("val_loss="),
            "{out}"
        );
    }
    for f in ["process", "value", "outcome"] {
        assert!(heads.join(format!("{f}.safetensors")).exists(), "{f}");
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(heads.join(format!("{f}-report.json"))).unwrap(),
        )
        .unwrap();
        assert!(report["report"]["n_train"].as_u64().unwrap() > 0);
    }
    // 24 two-step paths: 48 prefixes for the PRM and value heads, 24 outcomes.
    let o = ponder(&[
        "eval-critic",
        "--model",
        m,
        "--data",
        d,
        "--critic",
        "arithmetic",
        "--critic",
        heads.join("process.safetensors").to_str().unwrap(),
        "--critic",
        heads.join("outcome.safetensors").to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("critic=arithmetic target=step n=48"),
        "{out}"
    );
    // The arithmetic tool gets every first step right (1 or 0); second steps make no claim and
    // score 0.5 whatever their label, which ties them: AUROC = (1 + 1 + 1 + 0.5) / 4.
    assert!(lines[0].contains("auroc=0.875"), "{out}");
    assert!(
        lines[1].contains("target=step n=48") && lines[1].contains("auroc="),
        "{out}"
    );
    assert!(lines[2].contains("target=outcome n=24"), "{out}");
    // A search on the tiny model with the heads and the arithmetic tool.
    let o = ponder(&[
        "search",
        "--policy",
        "llm",
        "--model",
        m,
        "--critic-weights",
        h,
        "--critics",
        "arithmetic",
        "--simulations",
        "3",
        "--max-step-tokens",
        "4",
        "What is 2 plus 3?",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("simulations=3"), "{out}");
    // A head given in the wrong slot, and a corrupt head file, are named.
    let o = ponder(&["eval-critic", "--model", m, "--data", d, "--critic", d]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("prm.jsonl"), "{err}");
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        heads.join("value.safetensors"),
        bad.join("outcome.safetensors"),
    )
    .unwrap();
    let o = ponder(&[
        "search",
        "--policy",
        "llm",
        "--model",
        m,
        "--critic-weights",
        bad.to_str().unwrap(),
        "--simulations",
        "1",
        "What is 2 plus 3?",
    ]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("outcome.safetensors") && err.contains("Value head"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
