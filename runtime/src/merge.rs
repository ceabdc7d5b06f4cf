//! Merging (`ponder merge`): combines the output folders of sharded (or repeated) `ponder generate` runs
//! into one, problem by problem, without duplicates.
//!
//! Only complete problems are read: each input's journal says which byte range of each data
//! file belongs to which problem (see [`crate::journal`]), so records of a problem that was
//! being written when a job died are never merged. A problem that several inputs completed is
//! taken from the first input that has it; records that are identical apart from their
//! `problem_id`/`tree_id` (the same question twice in a dataset) are kept once.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::generate::write_stats;
use crate::journal::{Entry, JOURNAL, Journal, Status, read_entries};

const DATA: [&str; 4] = ["pairs.jsonl", "prm.jsonl", "sft.jsonl", "trees.jsonl"];

/// A record's identity for de-duplication: its JSON without the fields that name where it came
/// from, hashed.
fn record_key(line: &[u8], file: &str, at: &Path) -> Result<u128> {
    let mut v: serde_json::Value = serde_json::from_slice(line).map_err(|e| Error::Output {
        at: at.join(file).display().to_string(),
        message: format!("a record that is not valid JSON: {e}"),
    })?;
    if let Some(o) = v.as_object_mut() {
        o.remove("problem_id");
        o.remove("tree_id");
    }
    let text = v.to_string();
    let h = |seed: u64| ponder_engine::rng::hash_bytes(seed, text.as_bytes());
    Ok((u128::from(h(0x6d65)) << 64) | u128::from(h(0x7267)))
}

/// The lines of `file` in `dir` between byte offsets `from..to`.
fn lines_between(dir: &Path, file: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
    if to <= from {
        return Ok(Vec::new());
    }
    let path = dir.join(file);
    let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len < to {
        // Checked before allocating: a journal cannot make us read past the file.
        return Err(Error::Output {
            at: path.display().to_string(),
            message: format!("{len} bytes, shorter than its journal says ({to})"),
        });
    }
    f.seek(SeekFrom::Start(from))
        .map_err(|e| Error::io(&path, e))?;
    let mut buf = vec![0; (to - from) as usize];
    f.read_exact(&mut buf).map_err(|e| Error::io(&path, e))?;
    Ok(buf
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect())
}

/// What [`merge`] did.
#[derive(Clone, Debug)]
pub struct MergeOutcome {
    /// Problems in the merged folder (done or failed).
    pub problems: usize,
    /// Problems taken once though several inputs completed them.
    pub duplicate_problems: u64,
    /// Records identical to one already merged (apart from where they came from).
    pub duplicate_records: u64,
    /// `stats.json` as written.
    pub stats: serde_json::Value,
}

/// Merges the `ponder generate` folders `inputs` into `out` (refusing to replace what `out`
/// holds unless `force`); `command` is recorded in the manifest.
///
/// # Errors
/// No inputs, `out` among them, files in the way, an input that is not a generate folder or
/// whose data files do not match its journal.
pub fn merge(
    inputs: &[PathBuf],
    out_dir: &Path,
    force: bool,
    command: &[String],
) -> Result<MergeOutcome> {
    if inputs.is_empty() {
        return Err(Error::config(
            "inputs",
            "nothing to merge: give the output folders of `ponder generate`",
        ));
    }
    if inputs.iter().any(|i| i == out_dir) {
        return Err(Error::config(
            "out",
            format!("{} is also an input", out_dir.display()),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    if !force
        && let Some(p) = DATA
            .iter()
            .chain(&[JOURNAL, "manifest.json", "stats.json"])
            .map(|n| out_dir.join(n))
            .find(|p| p.exists())
    {
        return Err(Error::Output {
            at: p.display().to_string(),
            message: "exists (use --force to replace it)".into(),
        });
    }
    let with_trees = inputs.iter().all(|d| d.join("trees.jsonl").exists());
    let names: Vec<&str> = DATA
        .iter()
        .copied()
        .filter(|n| *n != "trees.jsonl" || with_trees)
        .collect();
    let mut out = Journal::open(out_dir, &names, true, false)?;
    let mut seen_problems = HashSet::new();
    let mut seen_records: HashSet<u128> = HashSet::new();
    let (mut dup_problems, mut dup_records) = (0u64, 0u64);
    let mut sources = Vec::new();
    let mut failed: Vec<Entry> = Vec::new();
    for dir in inputs {
        let manifest: serde_json::Value = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Output {
                at: dir.display().to_string(),
                message: "no readable manifest.json (not a `ponder generate` folder?)".into(),
            })?;
        sources.push(serde_json::json!({"dir": dir, "manifest": manifest}));
        let (entries, _) = read_entries(&dir.join(JOURNAL))?;
        let mut prev: std::collections::BTreeMap<String, u64> = Default::default();
        for e in entries {
            let ranges: Vec<(&str, u64, u64)> = names
                .iter()
                .map(|n| {
                    let from = prev.get(*n).copied().unwrap_or(0);
                    (*n, from, e.ends.get(*n).copied().unwrap_or(from))
                })
                .collect();
            prev = e.ends.clone();
            if e.status != Status::Ok {
                failed.push(e);
                continue;
            }
            if !seen_problems.insert(e.problem_id.clone()) {
                dup_problems += 1;
                continue;
            }
            let mut records = std::collections::BTreeMap::new();
            for (name, from, to) in ranges {
                let mut kept = 0u64;
                for line in lines_between(dir, name, from, to)? {
                    if name != "trees.jsonl" && !seen_records.insert(record_key(&line, name, dir)?)
                    {
                        dup_records += 1;
                        continue;
                    }
                    if line.last() != Some(&b'\n') {
                        return Err(Error::Output {
                            at: dir.join(name).display().to_string(),
                            message: "a record inside its journal's range has no line end".into(),
                        });
                    }
                    // Byte for byte: the merged lines are the generated lines.
                    out.file(name).write_raw(&line)?;
                    kept += 1;
                }
                records.insert(name.to_string(), kept);
            }
            out.commit(Entry { records, ..e })?;
        }
    }
    // Failures no input recovered from stay visible (a rerun of that shard retries them).
    let mut failed_ids = HashSet::new();
    for e in failed {
        if !seen_problems.contains(&e.problem_id) && failed_ids.insert(e.problem_id.clone()) {
            out.commit(e)?;
        }
    }
    let problems = seen_problems.len() + failed_ids.len();
    let manifest = serde_json::json!({
        "schema_version": ponder_engine::extract::SCHEMA_VERSION,
        "ponder_version": env!("CARGO_PKG_VERSION"),
        "command": command,
        "merged_from": sources,
        "problems": problems,
        "duplicate_problems_dropped": dup_problems,
        "duplicate_records_dropped": dup_records,
    });
    let path = out_dir.join("manifest.json");
    let body = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
    let stats = write_stats(&out, problems, None, None, None)?;
    Ok(MergeOutcome {
        problems,
        duplicate_problems: dup_problems,
        duplicate_records: dup_records,
        stats,
    })
}
