//! The `ponder` command line: arguments and one module per subcommand.

pub(crate) mod args;
pub(crate) mod commands;
