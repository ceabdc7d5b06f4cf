//! `ponder view`: flags over `ponder::runtime::view`.

use anyhow::{Context, Result};

use crate::cli::args::ViewArgs;

pub(crate) fn run(a: ViewArgs, quiet: bool) -> Result<()> {
    let tree = ponder::runtime::view::read_tree(&a.input, a.problem.as_deref())?;
    let html = ponder::runtime::view::render(&tree)?;
    std::fs::write(&a.out, html).with_context(|| format!("writing {}", a.out.display()))?;
    if !quiet {
        eprintln!(
            "wrote {} ({} nodes of problem {})",
            a.out.display(),
            tree["nodes"].as_array().map_or(0, Vec::len),
            tree["problem_id"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
