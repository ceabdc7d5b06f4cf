//! `ponder check-config`: validate a config file and print it resolved.

use anyhow::Result;

use crate::cli::args::CheckConfigArgs;
use crate::cli::config::FileConfig;

pub(crate) fn run(args: CheckConfigArgs) -> Result<()> {
    let cfg = FileConfig::load(&args.file, None)?;
    cfg.validate()?;
    print!("{}", toml::to_string(&cfg)?);
    Ok(())
}
