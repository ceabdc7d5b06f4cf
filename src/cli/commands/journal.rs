//! The append-only journal that makes `ponder generate` crash-safe.
//!
//! An output folder holds data files (`pairs.jsonl`, `prm.jsonl`, `sft.jsonl`, optionally
//! `trees.jsonl`) and `journal.jsonl`. For each finished problem, its records are appended to the
//! data files and flushed, and only then one journal line is appended and flushed: the problem's
//! id, status and counts, and the byte length of every data file after its records (`ends`).
//! A problem is complete exactly when its journal line is complete (ends with `\n` and parses).
//!
//! On restart the journal is cut after its last complete line and every data file is cut to the
//! `ends` of that line: records of a problem that was being written when the process died are
//! dropped (it is searched again), and no line is ever half-written. Problems with an `ok`
//! line are skipped. Data files shorter than the journal says mean the folder was edited or
//! lost data (an OS crash without `--fsync`): that is an error, not a guess.
//!
//! Invariant (enforced by [`Journal::commit`], the only writer): the journal's entries are in
//! write order and their `ends` never decrease, so entry `k`'s records are the byte range
//! `ends[k-1]..ends[k]` of each data file — what `ponder merge` reads.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The journal's file name.
pub(crate) const JOURNAL: &str = "journal.jsonl";

/// One journal line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The problem.
    pub(crate) problem_id: String,
    /// Its index in the (unsharded) input.
    pub(crate) index: u64,
    /// `ok` or `failed`.
    pub(crate) status: Status,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Whether the search's answer matched the gold answer (none without gold).
    #[serde(default)]
    pub(crate) correct: Option<bool>,
    /// Records written per data file.
    #[serde(default)]
    pub(crate) records: BTreeMap<String, u64>,
    /// Tree nodes created.
    #[serde(default)]
    pub(crate) nodes: u64,
    /// Tokens generated.
    #[serde(default)]
    pub(crate) tokens: u64,
    /// Byte length of each data file after this problem's records.
    pub(crate) ends: BTreeMap<String, u64>,
}

/// How a problem ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Searched and written.
    Ok,
    /// The search failed (after the client's retries); retried on resume.
    Failed,
}

/// A data file being appended to.
pub(crate) struct DataFile {
    name: String,
    path: PathBuf,
    w: BufWriter<File>,
    /// Bytes in the file (written through `w`, flushed or not).
    len: u64,
    /// Records written by this process.
    pub(crate) lines: u64,
}

impl DataFile {
    /// Appends one JSON record line.
    pub(crate) fn write<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        self.w
            .write_all(&line)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Appends one line as it is (`line` ends with a newline).
    pub(crate) fn write_raw(&mut self, line: &[u8]) -> Result<()> {
        self.w
            .write_all(line)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    fn flush(&mut self, fsync: bool) -> Result<()> {
        self.w
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))?;
        if fsync {
            self.w
                .get_ref()
                .sync_data()
                .with_context(|| format!("syncing {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// The journal and the data files of one output folder.
pub(crate) struct Journal {
    dir: PathBuf,
    files: Vec<DataFile>,
    log: DataFile,
    /// Entries already in the journal (from earlier runs and this one).
    pub(crate) entries: Vec<Entry>,
    fsync: bool,
}

/// Reads the complete lines of a journal: the entries and the byte length they span (a torn
/// last line is not counted).
///
/// # Errors
/// The file cannot be read, or a complete line is not a valid entry (named with its line).
pub(crate) fn read_entries(path: &Path) -> Result<(Vec<Entry>, u64)> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::new(f);
    let mut entries = Vec::new();
    let mut good = 0u64;
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = r
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        if buf.last() != Some(&b'\n') {
            // A torn last line: the problem it describes was not complete.
            break;
        }
        let e: Entry = serde_json::from_slice(&buf)
            .with_context(|| format!("{}:{n}: not a journal entry", path.display()))?;
        entries.push(e);
        good += read as u64;
    }
    Ok((entries, good))
}

impl Journal {
    /// Opens `dir` for appending: creates the files fresh when `fresh`, otherwise recovers them
    /// as described in the module docs. `names` are the data files.
    ///
    /// # Errors
    /// Unreadable or inconsistent files.
    pub(crate) fn open(dir: &Path, names: &[&str], fresh: bool, fsync: bool) -> Result<Journal> {
        let jpath = dir.join(JOURNAL);
        let (entries, jlen) = if fresh || !jpath.exists() {
            (Vec::new(), 0)
        } else {
            read_entries(&jpath)?
        };
        let last_ends = entries.last().map(|e| e.ends.clone()).unwrap_or_default();
        let open = |name: &str, keep: u64| -> Result<DataFile> {
            let path = dir.join(name);
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let have = f
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            if have < keep {
                bail!(
                    "{} has {have} bytes but {} says {keep} were written: the folder was changed \
                     or lost data (an OS crash without --fsync); start over with --force",
                    path.display(),
                    jpath.display()
                );
            }
            if have > keep && !fresh {
                tracing::warn!(
                    file = %path.display(),
                    dropped_bytes = have - keep,
                    "dropping records of a problem that was not complete"
                );
            }
            f.set_len(keep)
                .with_context(|| format!("truncating {}", path.display()))?;
            let mut f = f;
            f.seek(std::io::SeekFrom::End(0))
                .with_context(|| format!("seeking {}", path.display()))?;
            Ok(DataFile {
                name: name.to_string(),
                path,
                w: BufWriter::new(f),
                len: keep,
                lines: 0,
            })
        };
        let files = names
            .iter()
            .map(|n| open(n, last_ends.get(*n).copied().unwrap_or(0)))
            .collect::<Result<Vec<_>>>()?;
        let log = open(JOURNAL, jlen)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            files,
            log,
            entries,
            fsync,
        })
    }

    /// The output folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data file called `name`.
    pub(crate) fn file(&mut self, name: &str) -> &mut DataFile {
        self.files
            .iter_mut()
            .find(|f| f.name == name)
            .expect("data files are fixed at open")
    }

    /// Records written to `name` by this process.
    pub(crate) fn lines(&self, name: &str) -> u64 {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.lines)
    }

    /// Completes a problem: flushes (and with `fsync`, syncs) its records, then appends and
    /// flushes its journal line. `entry.ends` is filled in here.
    pub(crate) fn commit(&mut self, mut entry: Entry) -> Result<()> {
        for f in &mut self.files {
            f.flush(self.fsync)?;
        }
        entry.ends = self.files.iter().map(|f| (f.name.clone(), f.len)).collect();
        self.log.write(&entry)?;
        self.log.flush(self.fsync)?;
        self.entries.push(entry);
        Ok(())
    }

    /// The latest entry of each problem.
    pub(crate) fn latest(&self) -> BTreeMap<&str, &Entry> {
        self.entries
            .iter()
            .map(|e| (e.problem_id.as_str(), e))
            .collect()
    }
}
