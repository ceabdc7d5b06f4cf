//! The end-to-end tests of the `ponder` binary as one test binary (each test binary links the
//! library and Burn): the synthetic task, the tiny random model, crash safety and sharding.

mod cli;
mod common;
mod critic_cli;
mod dpo_cli;
mod generate_scale;
mod iterate_cli;
