//! `ponder view`: a search tree (a `--dump-tree` file, or one tree of a `trees.jsonl`) as ONE
//! self-contained HTML page — the script, styles and data inline, nothing fetched — that draws
//! the tree: nodes sized by visits and coloured by their mean score, the answer path
//! highlighted, terminals marked right/wrong; a click shows a node's step, the path so far,
//! visits, Q and every critic's score; subtrees collapse and expand; a search box finds step
//! text. It works offline and can be attached to a bug report.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

const PAGE: &str = include_str!("view/page.html");

/// Reads one tree: the file is either a single tree (what `ponder search --dump-tree` writes)
/// or JSONL with one tree per line (`ponder generate --dump-trees`), where `problem` picks the
/// tree by problem id (needed when there are several).
///
/// # Errors
/// An unreadable file, a line that is not JSON (named `path:line`), a tree missing a field the
/// page needs (named), no tree for `problem` or several without one (the ids are listed).
pub fn read_tree(path: &Path, problem: Option<&str>) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |at: String, message: String| Error::Dataset { at, message };
    let trees: Vec<(String, Value)> = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.is_object() => vec![(path.display().to_string(), v)],
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let at = format!("{}:{}", path.display(), i + 1);
                serde_json::from_str::<Value>(l)
                    .map_err(|e| bad(at.clone(), format!("not a JSON tree: {e}")))
                    .map(|v| (at, v))
            })
            .collect::<Result<_>>()?,
    };
    let id_of = |v: &Value| v["problem_id"].as_str().unwrap_or("").to_string();
    let mut chosen: Vec<(String, Value)> = match problem {
        Some(p) => trees.into_iter().filter(|(_, v)| id_of(v) == p).collect(),
        None => trees,
    };
    match chosen.len() {
        1 => {
            let (at, tree) = chosen.remove(0);
            check(&tree).map_err(|m| bad(at, m))?;
            Ok(tree)
        }
        0 => Err(bad(
            path.display().to_string(),
            match problem {
                Some(p) => format!("no tree for problem `{p}`"),
                None => "no tree in the file".into(),
            },
        )),
        n => {
            let ids: Vec<String> = chosen.iter().take(10).map(|(_, v)| id_of(v)).collect();
            Err(bad(
                path.display().to_string(),
                format!(
                    "{n} trees; pick one with --problem (ids: {}{})",
                    ids.join(", "),
                    if n > 10 { ", …" } else { "" }
                ),
            ))
        }
    }
}

/// What the page reads of a tree, checked: named fields, one root, parents that exist.
fn check(tree: &Value) -> std::result::Result<(), String> {
    let nodes = tree["nodes"]
        .as_array()
        .ok_or("field `nodes` is missing or not a list")?;
    for key in ["problem_id", "question"] {
        if !tree[key].is_string() {
            return Err(format!("field `{key}` is missing or not a string"));
        }
    }
    let mut ids = std::collections::HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = n["id"]
            .as_u64()
            .ok_or_else(|| format!("nodes[{i}].id is missing or not a number"))?;
        ids.insert(id);
        for key in ["visits", "depth"] {
            if !n[key].is_u64() {
                return Err(format!("nodes[{i}].{key} is missing or not a count"));
            }
        }
        if !n["text"].is_string() {
            return Err(format!("nodes[{i}].text is missing or not a string"));
        }
        if !n["critics"]["score"].is_number() {
            return Err(format!(
                "nodes[{i}].critics.score is missing or not a number"
            ));
        }
    }
    let mut roots = 0;
    for (i, n) in nodes.iter().enumerate() {
        match &n["parent"] {
            Value::Null => roots += 1,
            Value::Number(p) if p.as_u64().is_some_and(|p| ids.contains(&p)) => {}
            p => return Err(format!("nodes[{i}].parent {p} is not a node of the tree")),
        }
    }
    if roots != 1 {
        return Err(format!(
            "{roots} nodes without a parent (one root expected)"
        ));
    }
    Ok(())
}

/// The page for `tree` (checked by [`read_tree`]).
///
/// # Errors
/// A tree missing a field the page needs.
pub fn render(tree: &Value) -> Result<String> {
    check(tree).map_err(|message| Error::Dataset {
        at: "tree".into(),
        message,
    })?;
    // Inside <script>: no `<`, `>` or `&` that could end or confuse it (step text is model
    // output), nor the two line separators old JavaScript parsers choke on.
    let data = serde_json::to_string(tree)
        .map_err(|e| Error::Dataset {
            at: "tree".into(),
            message: e.to_string(),
        })?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let title: String = tree["problem_id"]
        .as_str()
        .unwrap_or("")
        .chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect();
    Ok(PAGE
        .replacen("__TITLE__", &title, 1)
        .replacen("__DATA__", &data, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Value {
        serde_json::json!({
            "schema_version": 3, "problem_id": "p<1>", "tree_id": 0,
            "question": "2+2?", "gold": "4", "prompt": "2+2?",
            "answer": {"node": 2, "answer": "4", "correct": true},
            "stats": {"simulations": 3},
            "nodes": [
                {"id": 0, "parent": null, "depth": 0, "text": "", "visits": 3, "mean": 0.6, "q": 0.6,
                 "critics": {"score": 0.0}, "reward": 0.0, "logprob": 0.0, "n_tokens": 0,
                 "terminal": false, "answer": null, "correct": null},
                {"id": 1, "parent": 0, "depth": 1, "text": "</script><b>x</b>", "visits": 1, "mean": 0.0,
                 "q": 0.0, "critics": {"score": 0.0}, "reward": 0.0, "logprob": -1.0, "n_tokens": 3,
                 "terminal": true, "answer": "5", "correct": false},
                {"id": 2, "parent": 0, "depth": 1, "text": "The answer is 4", "visits": 2, "mean": 1.0,
                 "q": 1.0, "critics": {"score": 1.0}, "reward": 0.0, "logprob": -0.5, "n_tokens": 4,
                 "terminal": true, "answer": "4", "correct": true}
            ]
        })
    }

    #[test]
    fn the_page_is_self_contained_and_step_text_cannot_escape_its_script() {
        let html = render(&tree()).unwrap();
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("src=") && !html.contains("<link"));
        // The model's text stays data: its `</script>` is escaped.
        assert_eq!(html.matches("</script>").count(), 2);
        assert!(html.contains("\\u003c/script\\u003e\\u003cb\\u003ex"));
        assert!(html.contains("<title>ponder tree: p&lt;1&gt;</title>"));
        assert!(!html.contains("__DATA__") && !html.contains("__TITLE__"));
    }

    #[test]
    fn bad_trees_are_named_errors() {
        let mut t = tree();
        t["nodes"][1]["parent"] = serde_json::json!(9);
        let e = render(&t).unwrap_err().to_string();
        assert!(e.contains("nodes[1].parent 9"), "{e}");
        let mut t = tree();
        t["nodes"][2]["critics"] = serde_json::json!({});
        assert!(
            render(&t)
                .unwrap_err()
                .to_string()
                .contains("nodes[2].critics.score")
        );
        let mut t = tree();
        t["nodes"][1]["parent"] = Value::Null;
        assert!(
            render(&t)
                .unwrap_err()
                .to_string()
                .contains("2 nodes without a parent")
        );
    }

    #[test]
    fn trees_are_picked_from_jsonl_by_problem() {
        let dir = std::env::temp_dir().join(format!("ponder-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = dir.join("tree.json");
        std::fs::write(&one, serde_json::to_string_pretty(&tree()).unwrap()).unwrap();
        assert_eq!(read_tree(&one, None).unwrap()["problem_id"], "p<1>");
        let many = dir.join("trees.jsonl");
        let mut b = tree();
        b["problem_id"] = "b".into();
        std::fs::write(&many, format!("{}\n{}\n", tree(), b)).unwrap();
        assert_eq!(read_tree(&many, Some("b")).unwrap()["problem_id"], "b");
        let e = read_tree(&many, None).unwrap_err().to_string();
        assert!(e.contains("2 trees") && e.contains("p<1>, b"), "{e}");
        assert!(
            read_tree(&many, Some("zz"))
                .unwrap_err()
                .to_string()
                .contains("`zz`")
        );
        std::fs::write(&many, format!("{}\n{{oops\n", tree())).unwrap();
        let e = read_tree(&many, None).unwrap_err().to_string();
        assert!(e.contains("trees.jsonl:2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
