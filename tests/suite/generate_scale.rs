//! Dataset generation at scale, end to end through the binary: a remote policy behind a local
//! mock server that fails 30% of requests still accounts for every problem; SIGKILL at random
//! moments, 20 times, loses and duplicates nothing; shards merge into exactly the unsharded
//! output.

use crate::common::{ponder, temp_dir, text};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ponder::testkit::mock_server::{MockConfig, MockServer};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Every line of a JSONL file parsed (panics, naming the line, on one that is not JSON).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: {e}: {l:?}", path.display(), i + 1))
        })
        .collect()
}

/// The journal's problem ids with status ok, checking each appears once.
fn done_once(dir: &Path) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for e in json_lines(&dir.join("journal.jsonl")) {
        if e["status"] == "ok" {
            let id = e["problem_id"].as_str().unwrap().to_string();
            assert!(seen.insert(id.clone()), "problem {id} completed twice");
        }
    }
    seen
}

/// The data file's lines, sorted (a multiset to compare runs by).
fn sorted(path: &Path) -> Vec<String> {
    let mut l = lines(path);
    l.sort();
    l
}

#[test]
fn a_remote_run_with_30_percent_failures_accounts_for_every_problem() {
    let server = MockServer::start(MockConfig {
        fail_rate: 0.3,
        hang: Duration::from_millis(1500),
        latency: Duration::from_millis(2),
        seed: 3,
        ..MockConfig::default()
    })
    .unwrap();
    let dir = temp_dir("remote30");
    let cfg = dir.join("remote.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\nkind = \"remote\"\n[policy.step]\nmax_tokens = 32\n\
             [policy.remote]\nendpoints = [\"{}\"]\nmodel = \"mock\"\ntimeout_secs = 1.0\n\
             retries = 30\nbackoff_ms = 1.0\nbackoff_max_ms = 10.0\nrest_secs = 0.01\n",
            server.url()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let o = ponder(&[
        "generate",
        "-c",
        cfg.to_str().unwrap(),
        "--synthetic",
        "16",
        "--level",
        "2",
        "--simulations",
        "8",
        "--parallel-trees",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["problems"], 16, "{stats}");
    assert_eq!(stats["done"], 16, "{stats}");
    assert_eq!(stats["failed"], 0, "{stats}");
    assert!(stats["remote"]["retries"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(done_once(&out).len(), 16);
    let pairs = json_lines(&out.join("pairs.jsonl"));
    assert!(!pairs.is_empty(), "the mock's wrong steps give pairs");
    assert!(
        server
            .stats()
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 10
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["policy"], "remote:mock");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn generate_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "generate",
        "--policy",
        "synthetic",
        "--synthetic",
        "400",
        "--level",
        "4",
        "--simulations",
        "48",
        "--parallel-trees",
        "2",
        "--max-wait-ms",
        "0",
        "--out",
        out,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn sigkill_twenty_times_loses_and_duplicates_nothing() {
    let dir = temp_dir("kill");
    let reference = dir.join("reference");
    let start = Instant::now();
    let o = ponder(&generate_args(reference.to_str().unwrap(), &[]));
    assert!(o.status.success(), "{}", text(&o).1);
    let full = start.elapsed();
    let out = dir.join("killed");
    let out_s = out.to_str().unwrap().to_string();
    // Kill points spread over the run's problems (seeded, so a failure can be replayed).
    let mut rng = ponder::engine::rng::Rng::new(2026);
    let mut kills = 0;
    let mut finished_early = 0;
    // Per kill: problems complete in the journal, and whether a data file or the journal was
    // left with a torn last line (which the next run must cut off).
    let mut complete_after = Vec::new();
    let mut torn = 0;
    while kills < 20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ponder"))
            .args(generate_args(&out_s, &["--quiet"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Somewhere inside what is left of the run, by progress (problems complete in the
        // journal), never by time: a loaded machine only makes the wait longer.
        let lines = || {
            std::fs::read_to_string(out.join("journal.jsonl"))
                .unwrap_or_default()
                .matches('\n')
                .count()
        };
        let before = lines();
        // Kill points end 20 problems before the last, so a run never finishes between two
        // looks at the journal however fast the machine is.
        if before >= 380 {
            // Too little left to land a kill inside: start over.
            child.kill().unwrap();
            child.wait().unwrap();
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        let target = before + 1 + (rng.next_f64() * (380 - before) as f64) as usize;
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if lines() >= target {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        if finished {
            // It finished between two looks at the journal: start over so every kill lands
            // mid-run.
            finished_early += 1;
            assert!(
                finished_early < 50,
                "runs keep finishing before their kill point"
            );
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
        complete_after.push(journal.matches('\n').count());
        // Whatever the kill left: every complete line is valid JSON.
        for f in ["pairs.jsonl", "prm.jsonl", "sft.jsonl", "journal.jsonl"] {
            let p = out.join(f);
            let content = std::fs::read_to_string(&p).unwrap_or_default();
            torn += usize::from(!content.is_empty() && !content.ends_with('\n'));
            for l in content.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("after kill {kills}: {}: {e}: {l:?}", p.display()));
            }
        }
    }
    // Resume to the end.
    let resume = Instant::now();
    let o = ponder(&generate_args(&out_s, &[]));
    eprintln!(
        "kill test: uninterrupted run {:.2}s; 20 SIGKILLs, problems complete after each: \
         {complete_after:?}; files left with a torn last line: {torn}; final resume {:.2}s",
        full.as_secs_f64(),
        resume.elapsed().as_secs_f64()
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let done = done_once(&out);
    assert_eq!(done.len(), 400, "no problem lost");
    assert_eq!(done, done_once(&reference));
    for f in ["pairs.jsonl", "prm.jsonl", "sft.jsonl"] {
        json_lines(&out.join(f));
        assert_eq!(
            sorted(&out.join(f)),
            sorted(&reference.join(f)),
            "{f}: the killed-and-resumed run wrote exactly the uninterrupted run's records"
        );
    }
    // A resume with other settings is refused.
    let o = ponder(&generate_args(&out_s, &["--seed", "9"]));
    assert!(!o.status.success());
    assert!(text(&o).1.contains("different settings"), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_merge_into_the_unsharded_output() {
    let dir = temp_dir("shards");
    let args = |out: &Path, shard: Option<&str>| {
        let mut a: Vec<String> = [
            "generate",
            "--policy",
            "synthetic",
            "--synthetic",
            "30",
            "--level",
            "3",
            "--simulations",
            "24",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(out.to_str().unwrap().into());
        if let Some(s) = shard {
            a.push("--shard".into());
            a.push(s.into());
        }
        a
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = ponder(&a);
        assert!(o.status.success(), "{}", text(&o).1);
    };
    let whole = dir.join("whole");
    run(args(&whole, None));
    let mut parts = Vec::new();
    for (i, s) in ["0/3", "1/3", "2/3", "1/3"].iter().enumerate() {
        let d = dir.join(format!("part{i}"));
        run(args(&d, Some(s)));
        parts.push(d);
    }
    assert_eq!(done_once(&parts[0]).len(), 10);
    let merged = dir.join("merged");
    let mut a = vec![
        "merge".to_string(),
        "--out".into(),
        merged.to_str().unwrap().into(),
    ];
    a.extend(parts.iter().map(|p| p.to_str().unwrap().to_string()));
    run(a);
    assert_eq!(done_once(&merged), done_once(&whole));
    for f in ["pairs.jsonl", "prm.jsonl", "sft.jsonl"] {
        assert_eq!(sorted(&merged.join(f)), sorted(&whole.join(f)), "{f}");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["duplicate_problems_dropped"], 10);
    let stats: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(merged.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["done"], 30);
    // Bad shards are named.
    let o = ponder(&[
        "generate",
        "--policy",
        "synthetic",
        "--synthetic",
        "3",
        "--shard",
        "3/3",
        "--out",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && text(&o).1.contains("--shard `3/3`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_remote_reports_both_runs_and_the_speedup() {
    let o = ponder(&[
        "bench",
        "remote",
        "--latency-ms",
        "5",
        "--problems",
        "2",
        "--level",
        "2",
        "-s",
        "4",
        "--parallel-trees",
        "2",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for run in ["run=sequential", "run=parallel ", "run=parallel-batched"] {
        assert!(stdout.contains(run), "{stdout}");
    }
    assert!(stdout.contains("speedup="), "{stdout}");
}
