//! What the end-to-end tests on a tiny model share: running the binary quietly, its output as
//! text, a fresh temporary folder, and the tiny random model written to a file.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `ponder` binary with `--quiet`.
pub(crate) fn ponder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(args)
        .arg("--quiet")
        .env("NO_COLOR", "1")
        .output()
        .expect("ponder runs")
}

/// (stdout, stderr).
pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An empty folder under the system temp folder, unique to the test and process.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ponder-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The tiny random Llama (seeded) as `dir/tiny.gguf`.
pub(crate) fn tiny_model(dir: &std::path::Path, seed: u64) -> PathBuf {
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, ponder::testkit::tiny_llama::tiny_llama_gguf(seed)).unwrap();
    p
}
