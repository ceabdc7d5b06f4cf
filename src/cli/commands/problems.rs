//! `ponder problems`: generated problems as JSONL.

use std::io::Write;

use anyhow::Result;
use ponder::testkit::synthetic;

use crate::cli::args::{ProblemKind, ProblemsArgs};

pub(crate) fn run(args: ProblemsArgs) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let problems = match args.kind {
        ProblemKind::Arithmetic => synthetic::problems(args.count, args.level, args.problem_seed),
        ProblemKind::Word => ponder::critics::problems::word_problems(
            args.count,
            args.level,
            args.problem_seed,
            args.split.split(),
        ),
    };
    for p in problems {
        let v = serde_json::json!({"id": p.id, "question": p.question, "answer": p.gold});
        writeln!(out, "{v}")?;
    }
    out.flush()?;
    Ok(())
}
