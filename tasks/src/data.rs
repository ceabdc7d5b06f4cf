//! Labelled paths for training and evaluating critics, read from JSONL.
//!
//! Two record shapes are understood, line by line:
//! - the PRM records `ponder generate` writes (`prm.jsonl`): `problem_id`, `prompt`,
//!   `completions` (the steps of a root-to-terminal path), `labels` and `mc_values` (per step:
//!   the share of the terminals below it that are correct);
//! - a plain labelled path: `prompt`, `steps` (list of strings), `label` (a number in `[0, 1]`
//!   or a boolean: is the path, or its latest step, good), and optionally `id`.
//!
//! Prefixes shared by several paths (every path of one tree starts alike) are kept once.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// One labelled prefix: the path's text up to a step, and what the critics should say there.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledPrefix {
    /// The problem (for held-out splits by problem).
    pub group: String,
    /// The task prompt.
    pub prompt: String,
    /// The steps up to and including the judged one.
    pub steps: Vec<String>,
    /// Soft target for a value critic: the share of correct outcomes through this prefix.
    pub value: f32,
    /// Whether the latest step is good (for a PRM).
    pub step_ok: bool,
    /// Whether this prefix is a complete path (only these train an ORM), and if so whether it
    /// is correct.
    pub outcome: Option<bool>,
}

/// Reads every labelled prefix of a JSONL file.
///
/// # Errors
/// [`Error::BadFile`] naming `file:line` and the field for a malformed record; [`Error::Io`]
/// when the file cannot be read.
pub fn read_jsonl(path: &Path) -> Result<Vec<LabelledPrefix>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let bad = |m: String| Error::BadFile {
            path: at.clone(),
            message: m,
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        for p in record(&v, i).map_err(bad)? {
            let key = (p.prompt.clone(), p.steps.clone());
            if seen.insert(key) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn string(v: &Value, field: &str) -> Result<String, String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("field `{field}` is missing or not a string"))
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, String> {
    let arr = v
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("field `{field}` is missing or not a list"))?;
    arr.iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("`{field}[{i}]` is not a string"))
        })
        .collect()
}

fn unit(x: &Value, field: &str) -> Result<f32, String> {
    let f = match x {
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        _ => return Err(format!("`{field}` is not a number or boolean")),
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("`{field}` is {f}, outside [0, 1]"));
    }
    Ok(f as f32)
}

/// The prefixes of one record.
fn record(v: &Value, line: usize) -> Result<Vec<LabelledPrefix>, String> {
    let prompt = string(v, "prompt")?;
    if v.get("completions").is_some() {
        let steps = strings(v, "completions")?;
        let values = v
            .get("mc_values")
            .and_then(Value::as_array)
            .ok_or("field `mc_values` is missing or not a list")?;
        let labels = v
            .get("labels")
            .and_then(Value::as_array)
            .ok_or("field `labels` is missing or not a list")?;
        if values.len() != steps.len() || labels.len() != steps.len() {
            return Err(format!(
                "{} completions but {} mc_values and {} labels",
                steps.len(),
                values.len(),
                labels.len()
            ));
        }
        let group = string(v, "problem_id").unwrap_or_else(|_| format!("line-{line}"));
        let exact = v.get("label_source").and_then(Value::as_str) != Some("q");
        (0..steps.len())
            .map(|i| {
                let value = unit(&values[i], &format!("mc_values[{i}]"))?;
                let ok = labels[i]
                    .as_bool()
                    .ok_or_else(|| format!("`labels[{i}]` is not a boolean"))?;
                let last = i + 1 == steps.len();
                Ok(LabelledPrefix {
                    group: group.clone(),
                    prompt: prompt.clone(),
                    steps: steps[..=i].to_vec(),
                    value,
                    step_ok: ok,
                    // A terminal's MC value is its own correctness when labels come from gold.
                    outcome: (last && exact).then_some(value > 0.5),
                })
            })
            .collect()
    } else {
        let steps = strings(v, "steps")?;
        if steps.is_empty() {
            return Err("field `steps` is empty".into());
        }
        let label = unit(v.get("label").ok_or("field `label` is missing")?, "label")?;
        let group = v
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("line-{line}"), str::to_string);
        Ok(vec![LabelledPrefix {
            group,
            prompt,
            steps,
            value: label,
            step_ok: label > 0.5,
            outcome: Some(label > 0.5),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSONL file under the system temp folder, removed on drop.
    struct Tmp(std::path::PathBuf);

    impl Tmp {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write(lines: &[&str]) -> Tmp {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        // Relaxed: only uniqueness matters.
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ponder-data-{}-{n}.jsonl", std::process::id()));
        std::fs::write(&p, lines.join("\n")).unwrap();
        Tmp(p)
    }

    #[test]
    fn reads_prm_records_and_plain_paths_deduplicating_prefixes() {
        let f = write(&[
            r#"{"schema_version":1,"problem_id":"p1","prompt":"Q","completions":["a","b"],"labels":[true,false],"mc_values":[0.5,0.0],"label_source":"mc"}"#,
            r#"{"schema_version":1,"problem_id":"p1","prompt":"Q","completions":["a","c"],"labels":[true,true],"mc_values":[0.5,1.0],"label_source":"mc"}"#,
            "",
            r#"{"prompt":"R","steps":["x","y"],"label":true,"id":"p2"}"#,
        ]);
        let v = read_jsonl(f.path()).unwrap();
        assert_eq!(v.len(), 4, "the shared prefix [a] is kept once: {v:?}");
        assert_eq!(v[0].steps, ["a"]);
        assert_eq!(v[0].outcome, None);
        assert_eq!(v[1].outcome, Some(false));
        assert_eq!(v[2].outcome, Some(true));
        assert_eq!(v[3].group, "p2");
        assert_eq!(v[3].value, 1.0);
    }

    #[test]
    fn bad_records_name_line_and_field() {
        let f = write(&[
            r#"{"prompt":"R","steps":["x"],"label":0.3}"#,
            r#"{"prompt":"R","steps":["x"],"label":3}"#,
        ]);
        let e = read_jsonl(f.path()).unwrap_err().to_string();
        assert!(e.contains(":2:") || e.contains(":2"), "{e}");
        assert!(e.contains("`label`") && e.contains("outside"), "{e}");
        let f = write(&[r#"{"prompt":"R","completions":["x"],"labels":[true]}"#]);
        let e = read_jsonl(f.path()).unwrap_err().to_string();
        assert!(e.contains("mc_values"), "{e}");
        let f = write(&["{not json"]);
        let e = read_jsonl(f.path()).unwrap_err().to_string();
        assert!(e.contains(":1") && e.contains("not JSON"), "{e}");
    }
}
