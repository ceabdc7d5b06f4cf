//! `ponder merge`: flags and the summary line over `ponder::runtime::merge`.

use anyhow::Result;

use crate::cli::args::MergeArgs;

pub(crate) fn run(a: MergeArgs, quiet: bool) -> Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let m = ponder::runtime::merge::merge(&a.inputs, &a.out, a.force, &command).map_err(
        |e| match e {
            ponder::runtime::Error::Config { field, message } if field == "out" => {
                anyhow::anyhow!("--out {message}")
            }
            other => other.into(),
        },
    )?;
    if !quiet {
        eprintln!(
            "merged {} folders into {}: {} problems ({} failed), {} pairs; dropped {} duplicate problems and {} duplicate records",
            a.inputs.len(),
            a.out.display(),
            m.stats["done"],
            m.stats["failed"],
            m.stats["pairs"],
            m.duplicate_problems,
            m.duplicate_records
        );
    }
    Ok(())
}
