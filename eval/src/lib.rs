//! # ponder-eval
//!
//! Search methods side by side at equal cost. Every method (greedy, best-of-N,
//! self-consistency, beam, MCTS presets, any config) runs on every problem at every budget of
//! generated tokens, stopped there by the engine's hard token budget, so each point of a
//! comparison costs the same. Results are graded by the task's own check (the grader `search`
//! and `iterate` use), appended to `records.jsonl` as they arrive (a killed run resumes), and
//! summarised as Wilson intervals, paired comparisons against the best sampling baseline (paired
//! bootstrap and exact McNemar), a Markdown table and an SVG plot.
//!
//! ```
//! use ponder_engine::SearchConfig;
//! use ponder_testkit::synthetic::{models, problems, SyntheticSpec};
//! use ponder_eval::{EvalSpec, Folder, Method, report, run};
//!
//! # fn main() -> Result<(), ponder_eval::Error> {
//! let dir = std::env::temp_dir().join(format!("ponder-eval-doc-{}", std::process::id()));
//! let base = SearchConfig::default();
//! let spec = EvalSpec {
//!     methods: vec![
//!         Method::builtin("self-consistency", &base)?,
//!         Method::builtin("mcts:alphallm", &base)?,
//!     ],
//!     budgets: vec![64, 256],
//!     seeds: vec![0],
//!     threads: 1,
//!     parallel_trees: 2,
//!     batch: None,
//!     source: serde_json::json!({"problems": "synthetic"}),
//!     settings: serde_json::json!({"model": "synthetic"}),
//! };
//! let folder = Folder::new(&dir);
//! let m = models(&SyntheticSpec::default()); // your Policy / Critic / Task impls go here
//! let outcome = run(&m, &problems(6, 3, 1), &spec, &folder, &mut |_| {})?;
//! assert_eq!(outcome.ran, 6 * 2 * 2);
//! let rep = report::write(&folder)?;
//! assert!(rep.rows.iter().all(|r| r.max_tokens <= r.budget));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

mod error;
pub mod method;
pub mod report;
pub mod run;
pub mod stats;

pub use error::{Error, Result};
pub use method::Method;
pub use report::Report;
pub use run::{EvalSpec, Folder, Manifest, Progress, Record, RunOutcome, run};
