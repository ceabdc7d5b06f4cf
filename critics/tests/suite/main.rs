//! The critics' integration tests as one test binary (each binary links Burn): learned heads,
//! self-evaluation and the remote critics.

mod heads;
mod remote;
mod self_eval;
