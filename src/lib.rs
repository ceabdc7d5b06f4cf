//! # ponder
//!
//! Monte Carlo tree search over reasoning steps for language models. This facade re-exports the
//! workspace crates: [`engine`] (traits, tree, search, batching, extraction), [`runtime`] (the
//! [`Config`], one model loader, the critic panel, datasets, and the [`Searcher`]), [`eval`]
//! (methods side by side at equal generated tokens), [`tasks`] (the math task, the arithmetic
//! checker, problem generators, chat templates; no model), and by feature: `remote` (models
//! served over HTTP, no Burn) and `local` (the in-process model on Burn: `policies`, `critics`).
//! The default feature `cli` (the binary) takes both.
//!
//! The README's library example, kept compiling here:
//!
//! ```
//! use ponder::engine::{search, Evaluator, SearchConfig, TreeId, extract};
//! use ponder::testkit::synthetic::{models, problems, SyntheticSpec};
//!
//! # fn main() -> Result<(), ponder::engine::Error> {
//! let models = models(&SyntheticSpec::default());   // your Policy / Critic / Task impls go here
//! let cfg = SearchConfig::mcts_dpo();
//! let report = search(problems(1, 4, 7).remove(0), TreeId(0), &cfg, Evaluator::direct(&models))?;
//! let data = extract::extract(&report, &cfg, &Default::default());
//! assert!(report.answer.is_some());
//! assert!(data.pairs.iter().all(|p| p.q_chosen > p.q_rejected));
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "local")]
pub use ponder_critics as critics;
pub use ponder_engine as engine;
pub use ponder_eval as eval;
#[cfg(feature = "local")]
pub use ponder_kernels as kernels;
#[cfg(feature = "local")]
pub use ponder_policies as policies;
#[cfg(feature = "remote")]
pub use ponder_remote as remote;
pub use ponder_runtime as runtime;
pub use ponder_runtime::{Config, Searcher};
#[cfg(feature = "serve")]
pub use ponder_serve as serve;
pub use ponder_tasks as tasks;
#[cfg(feature = "testkit")]
pub use ponder_testkit as testkit;
