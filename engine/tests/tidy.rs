//! Repository rules checked as tests (rust-analyzer's tidy): the engine stays free of Burn.

use std::collections::{HashMap, HashSet};
use std::process::Command;

/// The engine's whole dependency closure (normal, build and dev) holds no Burn or CubeCL crate:
/// Burn belongs to `ponder-policies` and `ponder-critics` only.
#[test]
fn engine_has_no_burn_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Not `--offline`: metadata lists every platform's crates, which may not be downloaded yet.
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), deps)
        })
        .collect();
    let engine = names
        .iter()
        .find(|(_, n)| **n == "ponder-engine")
        .map(|(id, _)| *id)
        .expect("ponder-engine in the workspace");
    let mut seen = HashSet::new();
    let mut stack = vec![engine];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        stack.extend(nodes.get(id).into_iter().flatten().copied());
    }
    let bad: Vec<&str> = seen
        .iter()
        .map(|id| names[id])
        .filter(|n| n.starts_with("burn") || n.starts_with("cubecl"))
        .collect();
    assert!(bad.is_empty(), "ponder-engine depends on {bad:?}");
    assert!(
        seen.len() > 5,
        "the closure was computed ({} crates)",
        seen.len()
    );
}
