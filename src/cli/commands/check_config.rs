//! `ponder check-config`: validate a config file and print it resolved.

use anyhow::Result;

use crate::cli::args::CheckConfigArgs;
use ponder::runtime::Config;

pub(crate) fn run(args: CheckConfigArgs) -> Result<()> {
    let cfg = Config::load(&args.file, None)?;
    cfg.validate()?;
    print!("{}", toml::to_string(&cfg)?);
    Ok(())
}
