//! The append-only journal that makes `ponder generate` (and anything else that writes
//! training data as it goes) crash-safe.
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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The journal's file name.
pub const JOURNAL: &str = "journal.jsonl";

/// One journal line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The problem.
    pub problem_id: String,
    /// Its index in the (unsharded) input.
    pub index: u64,
    /// `ok` or `failed`.
    pub status: Status,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the search's answer matched the gold answer (none without gold).
    #[serde(default)]
    pub correct: Option<bool>,
    /// Records written per data file.
    #[serde(default)]
    pub records: BTreeMap<String, u64>,
    /// Tree nodes created.
    #[serde(default)]
    pub nodes: u64,
    /// Tokens generated.
    #[serde(default)]
    pub tokens: u64,
    /// Byte length of each data file after this problem's records.
    pub ends: BTreeMap<String, u64>,
}

/// How a problem ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Searched and written.
    Ok,
    /// The search failed (after the client's retries); retried on resume.
    Failed,
}

/// A data file being appended to.
#[derive(Debug)]
pub struct DataFile {
    name: String,
    path: PathBuf,
    w: BufWriter<File>,
    /// Bytes in the file (written through `w`, flushed or not).
    len: u64,
    /// Records written by this process.
    pub lines: u64,
}

impl DataFile {
    /// Appends one JSON record line.
    pub fn write<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let mut line = serde_json::to_vec(v).expect("records serialise");
        line.push(b'\n');
        self.w
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Appends one line as it is (`line` ends with a newline).
    pub fn write_raw(&mut self, line: &[u8]) -> Result<()> {
        self.w
            .write_all(line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    fn flush(&mut self, fsync: bool) -> Result<()> {
        self.w.flush().map_err(|e| Error::io(&self.path, e))?;
        if fsync {
            self.w
                .get_ref()
                .sync_data()
                .map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }
}

/// The journal and the data files of one output folder.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    files: Vec<DataFile>,
    log: DataFile,
    /// Entries already in the journal (from earlier runs and this one).
    pub entries: Vec<Entry>,
    fsync: bool,
}

/// Reads the complete lines of a journal: the entries and the byte length they span (a torn
/// last line is not counted).
///
/// # Errors
/// The file cannot be read, or a complete line is not a valid entry (named with its line).
pub fn read_entries(path: &Path) -> Result<(Vec<Entry>, u64)> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::new(f);
    let mut entries = Vec::new();
    let mut good = 0u64;
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        if buf.last() != Some(&b'\n') {
            // A torn last line: the problem it describes was not complete.
            break;
        }
        let e: Entry = serde_json::from_slice(&buf).map_err(|e| Error::Output {
            at: format!("{}:{n}", path.display()),
            message: format!("not a journal entry: {e}"),
        })?;
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
    pub fn open(dir: &Path, names: &[&str], fresh: bool, fsync: bool) -> Result<Journal> {
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
                .map_err(|e| Error::io(&path, e))?;
            let have = f.metadata().map_err(|e| Error::io(&path, e))?.len();
            if have < keep {
                return Err(Error::Output {
                    at: path.display().to_string(),
                    message: format!(
                        "{have} bytes, but {} says {keep} were written: the folder was changed \
                         or lost data (an OS crash without --fsync); start over with --force",
                        jpath.display()
                    ),
                });
            }
            if have > keep && !fresh {
                tracing::warn!(
                    file = %path.display(),
                    dropped_bytes = have - keep,
                    "dropping records of a problem that was not complete"
                );
            }
            f.set_len(keep).map_err(|e| Error::io(&path, e))?;
            let mut f = f;
            f.seek(std::io::SeekFrom::End(0))
                .map_err(|e| Error::io(&path, e))?;
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
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data file called `name`.
    pub fn file(&mut self, name: &str) -> &mut DataFile {
        self.files
            .iter_mut()
            .find(|f| f.name == name)
            .expect("data files are fixed at open")
    }

    /// Records written to `name` by this process.
    pub fn lines(&self, name: &str) -> u64 {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.lines)
    }

    /// Completes a problem: flushes (and with `fsync`, syncs) its records, then appends and
    /// flushes its journal line. `entry.ends` is filled in here.
    pub fn commit(&mut self, mut entry: Entry) -> Result<()> {
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
    pub fn latest(&self) -> BTreeMap<&str, &Entry> {
        self.entries
            .iter()
            .map(|e| (e.problem_id.as_str(), e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 2] = ["pairs.jsonl", "prm.jsonl"];

    /// Problem `k`'s records: a few lines of each data file, of varying lengths.
    fn records(k: usize) -> Vec<(&'static str, serde_json::Value)> {
        (0..k % 3 + 1)
            .map(|i| {
                (
                    "pairs.jsonl",
                    serde_json::json!({"p": k, "i": i, "pad": "x".repeat(k * 7 % 13)}),
                )
            })
            .chain(std::iter::once((
                "prm.jsonl",
                serde_json::json!({"prm": k}),
            )))
            .collect()
    }

    fn entry(k: usize) -> Entry {
        Entry {
            problem_id: format!("p{k}"),
            index: k as u64,
            status: Status::Ok,
            error: None,
            correct: Some(k.is_multiple_of(2)),
            records: BTreeMap::new(),
            nodes: 3,
            tokens: 10,
            ends: BTreeMap::new(),
        }
    }

    /// Writes problems `from..to` through the journal in `dir`.
    fn write(dir: &Path, from: usize, to: usize, fresh: bool) {
        let mut j = Journal::open(dir, &NAMES, fresh, false).unwrap();
        assert_eq!(j.entries.len(), from, "the complete problems are kept");
        for k in from..to {
            for (f, r) in records(k) {
                j.file(f).write(&r).unwrap();
            }
            j.commit(entry(k)).unwrap();
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ponder-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A process killed at any byte of what it writes — records flushed per problem, then the
    /// problem's journal line — resumes to exactly the files of a run never killed.
    #[test]
    fn a_crash_at_any_byte_resumes_to_the_uninterrupted_files() {
        const N: usize = 6;
        let reference = scratch("reference");
        write(&reference, 0, N, true);
        let content = |dir: &Path, name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
        // The bytes in the order they reach the files: per problem, its records of each data
        // file, then its journal line.
        let mut stream: Vec<(&str, u8)> = Vec::new();
        let journal = content(&reference, JOURNAL);
        let (mut at, mut jat) = (BTreeMap::<&str, u64>::new(), 0usize);
        let (entries, _) = read_entries(&reference.join(JOURNAL)).unwrap();
        for e in &entries {
            for name in NAMES {
                let file = content(&reference, name);
                let from = at.get(name).copied().unwrap_or(0);
                let to = e.ends[name];
                stream.extend(file[from as usize..to as usize].iter().map(|&b| (name, b)));
                at.insert(name, to);
            }
            let end = jat + journal[jat..].iter().position(|&b| b == b'\n').unwrap() + 1;
            stream.extend(journal[jat..end].iter().map(|&b| (JOURNAL, b)));
            jat = end;
        }
        assert_eq!(jat, journal.len());
        let crashed = scratch("crashed");
        eprintln!("{} cut points", stream.len() + 1);
        for cut in 0..=stream.len() {
            for name in NAMES.iter().chain(&[JOURNAL]) {
                let bytes: Vec<u8> = stream[..cut]
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|&(_, b)| b)
                    .collect();
                std::fs::write(crashed.join(name), bytes).unwrap();
            }
            let done = stream[..cut]
                .iter()
                .filter(|&&(n, b)| n == JOURNAL && b == b'\n')
                .count();
            write(&crashed, done, N, false);
            for name in NAMES.iter().chain(&[JOURNAL]) {
                assert!(
                    content(&crashed, name) == content(&reference, name),
                    "crash after byte {cut} of {}: {name} differs after resuming",
                    stream.len()
                );
            }
        }
        std::fs::remove_dir_all(&reference).unwrap();
        std::fs::remove_dir_all(&crashed).unwrap();
    }

    /// Data files shorter than the journal says are refused, not guessed at.
    #[test]
    fn data_lost_behind_the_journal_is_an_error() {
        let dir = scratch("lost");
        write(&dir, 0, 3, true);
        let p = dir.join("pairs.jsonl");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let e = Journal::open(&dir, &NAMES, false, false).unwrap_err();
        assert!(e.to_string().contains("lost data"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
