//! The `ponder` command line: arguments, the config file, and one module per subcommand.

pub(crate) mod args;
pub(crate) mod commands;
pub(crate) mod config;
