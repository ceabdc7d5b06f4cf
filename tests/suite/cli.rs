//! End-to-end tests of the `ponder` binary on the synthetic task.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the binary. `search` and `generate` get `--policy synthetic` unless the test names a
/// policy: these tests exercise the CLI on the synthetic task; `llm_*` tests use the real model.
fn ponder(args: &[&str]) -> Output {
    let mut args: Vec<&str> = args.to_vec();
    if matches!(
        args.first(),
        Some(&"search") | Some(&"generate") | Some(&"eval")
    ) && !args.contains(&"--policy")
    {
        args.insert(1, "--policy");
        args.insert(2, "synthetic");
    }
    Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(&args)
        .env("NO_COLOR", "1")
        .output()
        .expect("ponder runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ponder-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn search_answers_one_question() {
    let o = ponder(&[
        "search",
        "Start with 7. Add 3. Multiply by 2. What is the result?",
        "--gold",
        "20",
        "--simulations",
        "64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("answer: "), "{out}");
    assert!(out.contains("gold: 20"), "{out}");
    assert!(out.contains("simulations=64"), "{out}");
    assert!(
        out.contains("The answer is"),
        "the solution path is printed: {out}"
    );
}

#[test]
fn search_rejects_questions_the_synthetic_task_cannot_read() {
    let o = ponder(&["search", "If Tom has 3 apples and buys 5 more, how many?"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("synthetic task") && err.contains("Tom has 3 apples"),
        "{err}"
    );
}

#[test]
fn search_over_a_dataset_prints_a_summary_and_json() {
    let ds = fixture("synthetic-level3.jsonl");
    let o = ponder(&[
        "search",
        "--dataset",
        ds.to_str().unwrap(),
        "-s",
        "32",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 13, "12 problems and a summary: {out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("problems=12 correct="),
        "{out}"
    );

    let o = ponder(&[
        "search",
        "--dataset",
        ds.to_str().unwrap(),
        "-s",
        "16",
        "-q",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["problem_id"].as_str().unwrap().starts_with("syn-L3-42-"));
        assert!(v["stats"]["simulations"].as_u64().unwrap() >= 16);
    }
}

#[test]
fn dataset_field_mapping_and_gsm8k_answers() {
    let ds = fixture("gsm8k-style.jsonl");
    let o = ponder(&[
        "search",
        "--dataset",
        ds.to_str().unwrap(),
        "--id-field",
        "qid",
        "-s",
        "64",
        "-q",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let golds: Vec<&str> = rows.iter().map(|r| r["gold"].as_str().unwrap()).collect();
    assert_eq!(golds, ["27", "13", "7"]);
    assert_eq!(rows[0]["problem_id"], "g1");
}

#[test]
fn bad_dataset_lines_name_file_and_line() {
    let d = temp_dir("bad-dataset");
    let ds = d.join("bad.jsonl");
    std::fs::write(
        &ds,
        "{\"question\": \"Start with 1. Add 1. What is the result?\", \"answer\": \"2\"}\n{not json\n",
    )
    .unwrap();
    let o = ponder(&["search", "--dataset", ds.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("not valid JSON"),
        "{err}"
    );

    std::fs::write(&ds, "{\"prompt\": \"x\"}\n").unwrap();
    let err = stderr(&ponder(&["search", "--dataset", ds.to_str().unwrap()]));
    assert!(
        err.contains("bad.jsonl:1") && err.contains("`question`"),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_field() {
    let d = temp_dir("config");
    let f = d.join("c.toml");
    std::fs::write(&f, "[search.budget]\nsimulatoins = 3\n").unwrap();
    let err = stderr(&ponder(&["check-config", f.to_str().unwrap()]));
    assert!(err.contains("simulatoins"), "{err}");

    std::fs::write(&f, "[search.expansion.widening]\nc_max = 1\n").unwrap();
    let err = stderr(&ponder(&["check-config", f.to_str().unwrap()]));
    assert!(err.contains("`search.expansion.widening.c_max`"), "{err}");

    std::fs::write(
        &f,
        "preset = \"mcts-dpo\"\n[search.budget]\nsimulations = 5\n",
    )
    .unwrap();
    let o = ponder(&["check-config", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resolved = stdout(&o);
    assert!(resolved.contains("simulations = 5"), "{resolved}");
    assert!(
        resolved.contains("rule = \"puct\""),
        "the preset applies: {resolved}"
    );

    let err = stderr(&ponder(&["search", "--synthetic", "2", "--threads", "0"]));
    assert!(err.contains("`search.parallel.threads`"), "{err}");
}

#[test]
fn generate_writes_every_format_and_never_clobbers() {
    let d = temp_dir("generate");
    let out = d.join("out");
    let args = [
        "generate",
        "--synthetic",
        "16",
        "--level",
        "4",
        "-s",
        "48",
        "-t",
        "4",
        "--parallel-trees",
        "2",
        "--dump-trees",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ponder(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let pairs = read("pairs.jsonl");
    assert!(!pairs.is_empty());
    for p in &pairs {
        for f in [
            "schema_version",
            "problem_id",
            "tree_id",
            "depth",
            "prompt",
            "chosen",
            "rejected",
            "q_chosen",
            "q_rejected",
            "n_chosen",
            "n_rejected",
            "label_smoothing",
            "final_correct",
            "critics",
        ] {
            assert!(p.get(f).is_some(), "pair without `{f}`: {p}");
        }
        assert!(p["q_chosen"].as_f64() > p["q_rejected"].as_f64());
        assert!(p["label_smoothing"].as_f64().unwrap() <= 0.5);
    }
    assert!(!read("prm.jsonl").is_empty());
    assert!(!read("sft.jsonl").is_empty());
    assert_eq!(read("trees.jsonl").len(), 16);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["problems"], 16);
    assert_eq!(stats["pairs"].as_u64().unwrap() as usize, pairs.len());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["search"]["budget"]["simulations"], 48);

    // A second run resumes: every problem is in the journal, so nothing is searched again and
    // the data stay as they were.
    let before = std::fs::read(out.join("pairs.jsonl")).unwrap();
    let o = ponder(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("pairs.jsonl")).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(out.join("journal.jsonl"))
            .unwrap()
            .lines()
            .count(),
        16
    );
    // Output files without a journal (not ponder's, or hand-made) are never overwritten.
    std::fs::remove_file(out.join("journal.jsonl")).unwrap();
    let o = ponder(&args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("pairs.jsonl")).unwrap(), before);
    // A run killed after writing its manifest but before its journal: the same command starts
    // it again (the manifest of these settings is not in the way).
    for f in [
        "pairs.jsonl",
        "prm.jsonl",
        "sft.jsonl",
        "trees.jsonl",
        "stats.json",
    ] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let o = ponder(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    // (Four threads per tree: the records differ from the first run's; the count of problems
    // does not.)
    assert!(!read("pairs.jsonl").is_empty());
    assert_eq!(
        std::fs::read_to_string(out.join("journal.jsonl"))
            .unwrap()
            .lines()
            .count(),
        16
    );
}

#[test]
fn generate_is_deterministic_with_one_thread() {
    let d = temp_dir("determinism");
    let run = |name: &str| {
        let out = d.join(name);
        let o = ponder(&[
            "generate",
            "--synthetic",
            "6",
            "-s",
            "40",
            "--virtual-loss",
            "0",
            "-q",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        ["pairs.jsonl", "prm.jsonl", "sft.jsonl"].map(|f| std::fs::read(out.join(f)).unwrap())
    };
    assert_eq!(run("a"), run("b"));
}

#[test]
fn baselines_run_from_the_cli() {
    for algo in ["greedy", "best-of-n", "self-consistency", "beam"] {
        let o = ponder(&["search", "--synthetic", "4", "--algorithm", algo, "-q"]);
        assert!(o.status.success(), "{algo}: {}", stderr(&o));
        assert!(stdout(&o).contains("problems=4"), "{algo}: {}", stdout(&o));
    }
}

#[test]
fn every_enum_flag_value_parses() {
    for (flag, value) in [
        ("--backup", "q-r-plus-v"),
        ("--backup", "mean-leaf"),
        ("--selection", "ucb2"),
        ("--answer-rule", "weighted-vote"),
        ("--preset", "mcts-dpo"),
    ] {
        let o = ponder(&["search", "--synthetic", "2", "-s", "8", "-q", flag, value]);
        assert!(o.status.success(), "{flag} {value}: {}", stderr(&o));
    }
}

#[test]
fn refused_generate_creates_nothing() {
    let d = temp_dir("refuse");
    std::fs::write(d.join("stats.json"), "{}").unwrap();
    let o = ponder(&[
        "generate",
        "--synthetic",
        "2",
        "-s",
        "8",
        "-q",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        !d.join("pairs.jsonl").exists(),
        "a refused run left files behind"
    );
    assert_eq!(std::fs::read_to_string(d.join("stats.json")).unwrap(), "{}");
}

#[test]
fn tree_dump_and_dot() {
    let d = temp_dir("dump");
    let (json, dot) = (d.join("t.json"), d.join("t.dot"));
    let o = ponder(&[
        "search",
        "Start with 3. Add 4. Multiply by 5. What is the result?",
        "--dump-tree",
        json.to_str().unwrap(),
        "--dot",
        dot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let nodes = v["nodes"].as_array().unwrap().len();
    assert!(nodes > 1);
    let dot = std::fs::read_to_string(&dot).unwrap();
    assert!(dot.starts_with("digraph"));
    assert_eq!(dot.matches(" -> ").count(), nodes - 1);
}

#[test]
fn bench_tree_prints_one_line() {
    let o = ponder(&[
        "bench",
        "tree",
        "--threads",
        "2",
        "--simulations",
        "20000",
        "--repeat",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(fields[0].starts_with("simulations_per_sec="));
    assert!(
        fields[0]["simulations_per_sec=".len()..]
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    assert_eq!(fields[1], "threads=2");
    assert!(fields[2].starts_with("nodes="));
    assert!(fields[3].starts_with("bytes_per_node="));
}

#[test]
fn bench_latency_compares_sequential_and_parallel() {
    let o = ponder(&[
        "bench",
        "latency",
        "--latency-ms",
        "1",
        "--problems",
        "4",
        "--simulations",
        "8",
        "--threads",
        "4",
        "--parallel-trees",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("run=sequential threads=1 parallel_trees=1"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("run=parallel threads=4 parallel_trees=2"),
        "{out}"
    );
    let speedup: f64 = lines[2].strip_prefix("speedup=").unwrap().parse().unwrap();
    // Printed to one decimal: a parallel run stalled by a loaded machine may print 0.0.
    assert!(speedup.is_finite() && speedup >= 0.0, "{speedup}");
}

/// The default policy: the installed SmolLM2 answers a word problem end to end (skipped with a
/// loud message when the model is not installed).
#[test]
fn llm_search_answers_a_word_problem() {
    let model = ponder::policies::models::default_model_path();
    if !model.exists() {
        eprintln!(
            "\n*** SKIPPED: the default model is not installed at {} ***\n",
            model.display()
        );
        return;
    }
    let o = ponder(&[
        "search",
        "--policy",
        "llm",
        "If Tom has 3 apples and buys 5 more, how many?",
        "--gold",
        "8",
        "--simulations",
        "2",
        "--max-step-tokens",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("answer: "), "{out}");
    assert!(
        out.contains("gold: 8") && out.contains("simulations=2"),
        "{out}"
    );
}

#[test]
fn help_is_golden() {
    let mut text = String::new();
    for cmd in [
        &["--help"][..],
        &["search", "--help"],
        &["generate", "--help"],
        &["eval", "--help"],
        &["bench", "tree", "--help"],
    ] {
        let o = ponder(cmd);
        assert!(o.status.success());
        text.push_str(&format!("$ ponder {}\n{}\n", cmd.join(" "), stdout(&o)));
    }
    let path = fixture("help.txt");
    if std::env::var_os("PONDER_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == text,
        "`ponder --help` changed; if intended, rerun with PONDER_BLESS=1 and commit fixtures/help.txt"
    );
}

#[test]
fn eval_compares_methods_at_equal_tokens_and_resumes() {
    let dir = temp_dir("eval");
    let out = dir.join("run");
    let cfg = dir.join("wide.toml");
    std::fs::write(
        &cfg,
        "preset = \"alphallm\"\n[search]\nanswer = \"weighted_vote\"\n[search.expansion]\ndescend_to_terminal = true\n",
    )
    .unwrap();
    let method_file = format!("vote={}", cfg.display());
    let args = [
        "eval",
        "--synthetic",
        "12",
        "--level",
        "3",
        "--methods",
        &format!("greedy,self-consistency,best-of-n,mcts:alphallm,{method_file}"),
        "--budgets",
        "48,160",
        "--seeds",
        "0,1",
        "--parallel-trees",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ponder(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("| vote |") && text.contains("McNemar"),
        "{text}"
    );
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 12 * 5 * 2 * 2);
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            r["tokens"].as_u64().unwrap() <= r["budget"].as_u64().unwrap(),
            "{line}"
        );
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 5 * 2, "{summary}");
    assert!(
        std::fs::read_to_string(out.join("plot.svg"))
            .unwrap()
            .contains("<polyline")
    );
    // A rerun resumes and runs nothing; --report-only rebuilds the tables.
    let again = ponder(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        std::fs::read_to_string(out.join("records.jsonl")).unwrap(),
        records
    );
    let rep = ponder(&["eval", "--report-only", "--out", out.to_str().unwrap()]);
    assert!(rep.status.success(), "{}", stderr(&rep));
    assert!(stdout(&rep).contains("| greedy |"));
    // Bad input is named.
    let bad = ponder(&[
        "eval",
        "--synthetic",
        "2",
        "--methods",
        "mcts",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("unknown method `mcts`"),
        "{}",
        stderr(&bad)
    );
    let bad = ponder(&[
        "eval",
        "--synthetic",
        "2",
        "--budgets",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&bad).contains("budgets"), "{}", stderr(&bad));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn view_draws_a_dumped_tree_as_one_self_contained_page() {
    let dir = temp_dir("view");
    let tree = dir.join("tree.json");
    let o = ponder(&[
        "-q",
        "search",
        "--policy",
        "synthetic",
        "--synthetic",
        "1",
        "--simulations",
        "24",
        "--dump-tree",
        tree.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let html = dir.join("tree.html");
    let o = ponder(&[
        "view",
        tree.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    let dump: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    let question = dump["question"].as_str().unwrap();
    // The data is inline (synthetic questions have nothing the page escapes).
    assert!(page.contains(question), "{question}");
    assert!(!page.contains("https://") && !page.contains("<link"));
    // A tree file that is not one: a clear error naming the field, no page.
    std::fs::write(&tree, r#"{"problem_id": "x", "question": "q"}"#).unwrap();
    let bad = dir.join("bad.html");
    let o = ponder(&[
        "view",
        tree.to_str().unwrap(),
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`nodes`"));
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
