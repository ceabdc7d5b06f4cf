//! One module per subcommand, plus what they share: resolving the config, loading problems and
//! running many trees.

pub(crate) mod bench;
pub(crate) mod check_config;
pub(crate) mod critic;
pub(crate) mod dpo;
pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod iterate;
pub(crate) mod merge;
pub(crate) mod problems;
pub(crate) mod run;
pub(crate) mod search;
pub(crate) mod serve;
pub(crate) mod view;
