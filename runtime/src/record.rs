//! Training data from searches run one at a time, as they finish (a server's requests): each
//! finished tree's pairs, PRM and SFT records go through the crash-safe [`Journal`] that
//! `ponder generate` uses, so the folder reads like a `generate` output (`ponder merge`,
//! `ponder dpo`) and a crash loses at most the tree being written.
//!
//! The folder is appended to across restarts: an existing journal is recovered (a torn last
//! entry and its records are dropped) and new entries follow it. Problem ids are made unique
//! per process (`<session>-<id>`), since request ids restart with the process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::extract::{self, OutputConfig, SCHEMA_VERSION};
use ponder_engine::{Problem, SearchConfig, SearchReport};

use crate::error::{Error, Result};
use crate::journal::{Entry, JOURNAL, Journal, Status};

/// The `command` a recording folder's manifest names.
pub const RECORD_COMMAND: &str = "record";

/// Appends finished searches' training data to one folder; shared by many threads.
#[derive(Debug)]
pub struct Recorder {
    journal: Mutex<Journal>,
    output: OutputConfig,
    trees: bool,
    session: String,
    recorded: AtomicU64,
    /// Set by a failed write: the data files may hold part of an uncommitted tree, so nothing
    /// more is appended in this process (the next open drops that part).
    broken: std::sync::atomic::AtomicBool,
}

const FILES: [&str; 3] = ["pairs.jsonl", "prm.jsonl", "sft.jsonl"];

impl Recorder {
    /// Opens (creating or recovering) the folder `dir`. `output` says which pairs and PRM
    /// records to extract, `trees` adds `trees.jsonl` (the dumps `ponder view` draws),
    /// `fsync` syncs every tree to disk before its journal line. `describe` goes into a new
    /// folder's `manifest.json` (the task, policy and config, for whoever reads the data).
    ///
    /// # Errors
    /// A folder holding another command's output (a `generate` run), or files that cannot be
    /// read, written or recovered.
    pub fn open(
        dir: &Path,
        output: &OutputConfig,
        trees: bool,
        fsync: bool,
        describe: serde_json::Value,
    ) -> Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let manifest = dir.join("manifest.json");
        if manifest.exists() {
            let bytes = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
            let m: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Output {
                    at: manifest.display().to_string(),
                    message: format!("not valid JSON: {e}"),
                })?;
            if m["command"] != RECORD_COMMAND {
                return Err(Error::Output {
                    at: manifest.display().to_string(),
                    message: format!(
                        "this folder holds a `{}` run, not recorded searches; record elsewhere",
                        m["command"].as_str().unwrap_or("?")
                    ),
                });
            }
        } else {
            if dir.join(JOURNAL).exists() {
                return Err(Error::Output {
                    at: dir.join(JOURNAL).display().to_string(),
                    message: "a journal without its manifest.json; record elsewhere".into(),
                });
            }
            let body = serde_json::json!({
                "schema_version": SCHEMA_VERSION,
                "ponder_version": env!("CARGO_PKG_VERSION"),
                "command": RECORD_COMMAND,
                "started_unix": unix_now(),
                "about": describe,
            });
            let text = serde_json::to_vec_pretty(&body).expect("a manifest serialises");
            std::fs::write(&manifest, text).map_err(|e| Error::io(&manifest, e))?;
        }
        let mut names = FILES.to_vec();
        if trees {
            names.push("trees.jsonl");
        }
        let journal = Journal::open(dir, &names, false, fsync)?;
        Ok(Recorder {
            journal: Mutex::new(journal),
            output: output.clone(),
            trees,
            session: format!("s{}", unix_now()),
            recorded: AtomicU64::new(0),
            broken: Default::default(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> PathBuf {
        self.lock().dir().to_path_buf()
    }

    /// Trees recorded by this process.
    pub fn recorded(&self) -> u64 {
        // Relaxed: a counter for reports.
        self.recorded.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        // A panic while holding the lock cannot leave a half-committed entry on disk (the
        // journal line is written last), so the state is usable after poisoning.
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one finished search's records and its journal line.
    ///
    /// # Errors
    /// Writing failed; the entry is then not committed, and the next open drops its records.
    pub fn record(
        &self,
        problem: &Problem,
        search: &SearchConfig,
        report: &SearchReport,
    ) -> Result<()> {
        let data = extract::extract(report, search, &self.output);
        let mut j = self.lock();
        // Relaxed: read and written under the journal's lock.
        if self.broken.load(Ordering::Relaxed) {
            return Err(Error::Output {
                at: j.dir().display().to_string(),
                message: "recording stopped after a failed write (restart to recover)".into(),
            });
        }
        let r = self.append(&mut j, problem, search, report, &data);
        if r.is_err() {
            // Relaxed: under the journal's lock.
            self.broken.store(true, Ordering::Relaxed);
        }
        r
    }

    fn append(
        &self,
        j: &mut Journal,
        problem: &Problem,
        search: &SearchConfig,
        report: &SearchReport,
        data: &extract::TreeOutputs,
    ) -> Result<()> {
        let index = j.entries.len() as u64;
        for x in &data.pairs {
            j.file("pairs.jsonl").write(x)?;
        }
        for x in &data.prm {
            j.file("prm.jsonl").write(x)?;
        }
        if let Some(x) = &data.sft {
            j.file("sft.jsonl").write(x)?;
        }
        if self.trees {
            j.file("trees.jsonl")
                .write(&extract::dump(report, search).with_pairs(&data.pairs))?;
        }
        j.commit(Entry {
            problem_id: format!("{}-{}", self.session, problem.id),
            index,
            status: Status::Ok,
            error: None,
            correct: report.answer.as_ref().and_then(|a| a.correct),
            records: [
                ("pairs.jsonl", data.pairs.len()),
                ("prm.jsonl", data.prm.len()),
                ("sft.jsonl", usize::from(data.sft.is_some())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v as u64))
            .collect(),
            nodes: report.stats.nodes,
            tokens: report.stats.tokens,
            ends: Default::default(),
        })?;
        // Relaxed: a counter.
        self.recorded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
