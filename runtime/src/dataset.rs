//! Problems: JSONL datasets (GSM8K and the like) and the built-in generators, as one
//! [`ProblemSource`].

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use ponder_engine::Problem;
use ponder_tasks::problems::Split;
use ponder_testkit::synthetic;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which JSON fields of a dataset line hold the question, the gold answer and the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetFields {
    /// The question (a string; required on every line).
    pub question: String,
    /// The gold answer (string or number; GSM8K's `... #### 42` keeps what follows `####`).
    pub answer: String,
    /// The id (string or number; `line-N` when absent). Ids must be unique.
    pub id: String,
}

impl Default for DatasetFields {
    fn default() -> Self {
        DatasetFields {
            question: "question".into(),
            answer: "answer".into(),
            id: "id".into(),
        }
    }
}

/// Where problems come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemSource {
    /// A JSONL file, one problem per line.
    Dataset {
        /// The file.
        path: PathBuf,
        /// Its field names.
        fields: DatasetFields,
    },
    /// Grade-school word problems with `level` operations, from one split of the generator.
    Word {
        /// How many.
        n: usize,
        /// Operations per problem.
        level: u32,
        /// Generator seed.
        seed: u64,
        /// Which split (never overlapping).
        split: Split,
    },
    /// The synthetic task's arithmetic chains (a test double's problems).
    Synthetic {
        /// How many.
        n: usize,
        /// Operations per problem.
        level: u32,
        /// Generator seed.
        seed: u64,
    },
}

impl ProblemSource {
    /// The problems, in order.
    ///
    /// # Errors
    /// An unreadable or malformed dataset (naming file and line), or zero problems asked for.
    pub fn load(&self) -> Result<Vec<Problem>> {
        match self {
            ProblemSource::Dataset { path, fields } => read_dataset(path, fields),
            ProblemSource::Word {
                n,
                level,
                seed,
                split,
            } => {
                nonzero(*n, "word")?;
                Ok(ponder_tasks::problems::word_problems(
                    *n, *level, *seed, *split,
                ))
            }
            ProblemSource::Synthetic { n, level, seed } => {
                nonzero(*n, "synthetic")?;
                Ok(synthetic::problems(*n, *level, *seed))
            }
        }
    }
}

fn nonzero(n: usize, what: &str) -> Result<()> {
    if n == 0 {
        return Err(Error::config(what, "needs at least 1 problem"));
    }
    Ok(())
}

/// Turns a dataset's answer into a gold answer: GSM8K's `#### N` keeps what follows the marker;
/// thousands separators are dropped.
pub fn gold_of(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    let s = match s.rfind("####") {
        Some(i) => s[i + 4..].trim().to_string(),
        None => s.trim().to_string(),
    };
    Some(s.replace(',', ""))
}

/// Reads a JSONL dataset; every bad line is an error naming the file and line.
///
/// # Errors
/// An unreadable file, a line that is not a JSON object with a string question, a duplicate
/// id, or no problems at all.
pub fn read_dataset(path: &Path, fields: &DatasetFields) -> Result<Vec<Problem>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let at = |n: usize| format!("{}:{n}", path.display());
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::dataset(at(n), format!("reading: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| Error::dataset(at(n), format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::dataset(at(n), "expected a JSON object"))?;
        let question = obj
            .get(&fields.question)
            .and_then(|q| q.as_str())
            .ok_or_else(|| {
                Error::dataset(at(n), format!("missing string field `{}`", fields.question))
            })?;
        let id = match obj.get(&fields.id) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            _ => format!("line-{n}"),
        };
        if !seen.insert(id.clone()) {
            return Err(Error::dataset(
                at(n),
                format!("duplicate problem id `{id}`"),
            ));
        }
        let gold = obj.get(&fields.answer).and_then(gold_of);
        out.push(Problem {
            id,
            question: question.to_string(),
            gold,
        });
    }
    if out.is_empty() {
        return Err(Error::dataset(
            path.display().to_string(),
            "no problems in the dataset",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_answers_and_numbers() {
        assert_eq!(
            gold_of(&serde_json::json!("so 3+4 = 7\n#### 1,007")).as_deref(),
            Some("1007")
        );
        assert_eq!(gold_of(&serde_json::json!(42)).as_deref(), Some("42"));
        assert_eq!(gold_of(&serde_json::Value::Null), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("ponder-runtime-ds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.jsonl");
        std::fs::write(&path, "{\"question\": \"q1\", \"answer\": 3}\n\n[1]\n").unwrap();
        let e = read_dataset(&path, &DatasetFields::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl:3") && e.contains("JSON object"), "{e}");
        std::fs::write(
            &path,
            "{\"id\": 1, \"question\": \"a\"}\n{\"id\": 1, \"question\": \"b\"}\n",
        )
        .unwrap();
        let e = read_dataset(&path, &DatasetFields::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.jsonl:2") && e.contains("duplicate"), "{e}");
        std::fs::write(&path, "{\"q\": \"a\", \"a\": \"#### 5\"}\n").unwrap();
        let fields = DatasetFields {
            question: "q".into(),
            answer: "a".into(),
            id: "id".into(),
        };
        let ps = read_dataset(&path, &fields).unwrap();
        assert_eq!(
            (ps[0].id.as_str(), ps[0].gold.as_deref()),
            ("line-1", Some("5"))
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn zero_problems_is_an_error() {
        let e = ProblemSource::Word {
            n: 0,
            level: 1,
            seed: 1,
            split: Split::Dev,
        }
        .load()
        .unwrap_err();
        assert!(e.to_string().contains("`word`"), "{e}");
    }
}
