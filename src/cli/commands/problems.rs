//! `ponder problems`: synthetic problems as JSONL.

use std::io::Write;

use anyhow::Result;
use ponder::engine::testing::synthetic;

use crate::cli::args::ProblemsArgs;

pub(crate) fn run(args: ProblemsArgs) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for p in synthetic::problems(args.count, args.level, args.problem_seed) {
        let v = serde_json::json!({"id": p.id, "question": p.question, "answer": p.gold});
        writeln!(out, "{v}")?;
    }
    out.flush()?;
    Ok(())
}
