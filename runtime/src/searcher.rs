//! [`Searcher`]: models loaded once, then one problem or many searched with them — many trees
//! in flight over one batcher, results handed back in input order, progress through a callback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ponder_engine::{
    BatchStats, Batcher, Evaluator, Models, Problem, SearchControl, SearchReport, SearchStats,
    TreeId, search_with,
};
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::models::{self, Loaded};

/// Searches problems with the models of one [`Config`], loaded once.
///
/// ```no_run
/// use ponder_runtime::{Config, Searcher};
/// use ponder_engine::Problem;
///
/// # fn main() -> Result<(), ponder_runtime::Error> {
/// let searcher = Searcher::new(Config::default())?; // the installed SmolLM2-135M-Instruct
/// let problem = Problem {
///     id: "apples".into(),
///     question: "Tom has 5 apples and buys 3 more. How many apples does he have?".into(),
///     gold: Some("8".into()),
/// };
/// let report = searcher.search(&problem)?;
/// println!("{:?}", report.answer.map(|a| a.answer));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Searcher {
    config: Config,
    loaded: Loaded,
}

/// Counters of a run over many problems.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// Problems searched.
    pub problems: usize,
    /// Of them, with a gold answer.
    pub with_gold: usize,
    /// Of them, answered correctly.
    pub correct: usize,
    /// Searches that failed.
    pub failed: usize,
    /// The searches' counters, summed.
    pub stats: SearchStats,
    /// Wall time of the whole run.
    pub wall_seconds: f64,
    /// Nodes created per second.
    pub nodes_per_sec: f64,
    /// Tokens generated per second.
    pub tokens_per_sec: f64,
    /// The batcher's statistics, when one ran.
    pub batch: Option<BatchStats>,
}

impl RunSummary {
    /// Correct answers over problems with a gold answer (`None` without any).
    pub fn accuracy(&self) -> Option<f64> {
        (self.with_gold > 0).then(|| self.correct as f64 / self.with_gold as f64)
    }
}

/// Where a run over many problems stands, after each result (in input order).
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Results handed out so far.
    pub done: usize,
    /// Problems in the run.
    pub total: usize,
    /// The counters so far.
    pub summary: &'a RunSummary,
    /// Time since the run started.
    pub elapsed: Duration,
    /// The policy batcher's mean fill so far, when one runs.
    pub batch_fill: Option<f64>,
}

/// How [`Searcher::search_many`] runs.
#[derive(Clone, Debug)]
pub struct ManyOptions {
    /// Trees searched at once (sharing one batcher when the policy wants batches).
    pub parallel_trees: u32,
    /// Tree id of each problem (`ids[i]` for problem `i`; `i` when absent). The tree id seeds
    /// the search, so a problem keeps its tree whatever else is in the run.
    pub ids: Option<Vec<u32>>,
    /// Observes and cancels every tree of the run (a caller's Ctrl-C): cancelled searches end
    /// with what their trees hold, and no further problem is started.
    pub control: Option<Arc<SearchControl>>,
}

impl Default for ManyOptions {
    fn default() -> Self {
        ManyOptions {
            parallel_trees: 1,
            ids: None,
            control: None,
        }
    }
}

/// A search result as [`Searcher::search_many`] hands it out.
pub type SearchResult = std::result::Result<SearchReport, ponder_engine::Error>;

/// What a result handler may fail with (stopping the run).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

impl Searcher {
    /// Validates `config` and loads its models.
    ///
    /// # Errors
    /// An invalid config (the field named), or models that cannot be loaded.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let loaded = models::load(&config, &[])?;
        Ok(Searcher { config, loaded })
    }

    /// A searcher over models already loaded (your own `Policy`, `Critic` and `Task`, or
    /// [`models::load`]'s result).
    ///
    /// # Errors
    /// An invalid config.
    pub fn with_models(config: Config, loaded: Loaded) -> Result<Self> {
        config.validate()?;
        Ok(Searcher { config, loaded })
    }

    /// A searcher over bare [`Models`].
    ///
    /// # Errors
    /// An invalid config.
    pub fn from_models(config: Config, models: Models) -> Result<Self> {
        Self::with_models(
            config,
            Loaded {
                models,
                client: None,
                caches: Vec::new(),
                #[cfg(feature = "local")]
                local: None,
            },
        )
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The models and their handles.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// The models.
    pub fn models(&self) -> &Models {
        &self.loaded.models
    }

    /// Checks that the task can read every problem (the synthetic task reads only its own).
    ///
    /// # Errors
    /// The first problem it cannot read.
    pub fn check(&self, problems: &[Problem]) -> Result<()> {
        if self.config.policy.kind == crate::config::PolicyKind::Synthetic {
            models::check_synthetic(problems)?;
        }
        Ok(())
    }

    /// Searches one problem (tree id 0) with the configured threads.
    ///
    /// # Errors
    /// A problem the task cannot read, or a policy or critic failure.
    pub fn search(&self, problem: &Problem) -> Result<SearchReport> {
        self.search_with(problem, None)
    }

    /// As [`Searcher::search`], observed and cancellable through `control`.
    ///
    /// # Errors
    /// As [`Searcher::search`].
    pub fn search_with(
        &self,
        problem: &Problem,
        control: Option<Arc<SearchControl>>,
    ) -> Result<SearchReport> {
        self.check(std::slice::from_ref(problem))?;
        let models = &self.loaded.models;
        let cfg = &self.config;
        if self.uses_batcher(1) {
            Ok(Batcher::run(models, &cfg.batch, |b| {
                search_with(
                    problem.clone(),
                    TreeId(0),
                    &cfg.search,
                    Evaluator::batched(models, b),
                    control.clone(),
                )
            })??)
        } else {
            Ok(search_with(
                problem.clone(),
                TreeId(0),
                &cfg.search,
                Evaluator::direct(models),
                control,
            )?)
        }
    }

    /// Whether calls go through a batcher: the policy's property (a served policy batches on
    /// the server's side unless `policy.remote.batched` says otherwise), and only when more
    /// than one caller can fill a batch.
    fn uses_batcher(&self, parallel_trees: u32) -> bool {
        let cfg = &self.config;
        cfg.batch.max_batch > 1
            && (cfg.search.parallel.threads > 1 || parallel_trees > 1)
            && self.loaded.models.policy.wants_batches()
    }

    /// Searches every problem, `opts.parallel_trees` at a time over one batcher. `on_result`
    /// gets each result in problem order (a failed search is a result, not an error of the
    /// run); `on_progress` is called after it. An error from `on_result` stops the run.
    ///
    /// # Errors
    /// A problem the task cannot read, the batcher failing, or `on_result`'s error.
    pub fn search_many(
        &self,
        problems: &[Problem],
        opts: &ManyOptions,
        on_progress: &mut dyn FnMut(&Progress<'_>),
        on_result: &mut dyn FnMut(usize, &Problem, SearchResult) -> Result<(), HandlerError>,
    ) -> Result<RunSummary> {
        self.check(problems)?;
        let start = Instant::now();
        let cfg = &self.config;
        let models = &self.loaded.models;
        let ids = opts.ids.as_deref();
        let control = opts.control.as_ref();
        let mut summary = RunSummary {
            problems: problems.len(),
            ..RunSummary::default()
        };
        let trees = opts.parallel_trees.max(1);
        let mut body = |eval: Evaluator<'_>| -> Result<()> {
            let next = AtomicUsize::new(0);
            let cancel = AtomicBool::new(false);
            let (tx, rx) = crossbeam_channel::unbounded();
            let outcome = std::thread::scope(|scope| -> Result<()> {
                for _ in 0..trees.min(problems.len() as u32) {
                    let tx = tx.clone();
                    let (next, cancel) = (&next, &cancel);
                    scope.spawn(move || {
                        loop {
                            // Relaxed: a work counter and a stop flag; results travel by channel.
                            if cancel.load(Ordering::Relaxed)
                                || control.is_some_and(|c| c.is_cancelled())
                            {
                                break;
                            }
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(p) = problems.get(i) else { break };
                            let id = ids.and_then(|ids| ids.get(i).copied()).unwrap_or(i as u32);
                            let r = search_with(
                                p.clone(),
                                TreeId(id),
                                &cfg.search,
                                eval,
                                control.cloned(),
                            );
                            if tx.send((i, r)).is_err() {
                                break;
                            }
                        }
                    });
                }
                drop(tx);
                let mut pending = BTreeMap::new();
                let mut next_out = 0;
                for (i, r) in rx.iter() {
                    pending.insert(i, r);
                    while let Some(r) = pending.remove(&next_out) {
                        let p = &problems[next_out];
                        if p.gold.is_some() {
                            summary.with_gold += 1;
                        }
                        match &r {
                            Ok(rep) => {
                                summary.stats += rep.stats;
                                if rep.answer.as_ref().and_then(|a| a.correct) == Some(true) {
                                    summary.correct += 1;
                                }
                            }
                            Err(_) => summary.failed += 1,
                        }
                        if let Err(e) = on_result(next_out, p, r) {
                            // Relaxed: the workers stop taking problems; joined below.
                            cancel.store(true, Ordering::Relaxed);
                            return Err(Error::Handler(e));
                        }
                        next_out += 1;
                        on_progress(&Progress {
                            done: next_out,
                            total: problems.len(),
                            summary: &summary,
                            elapsed: start.elapsed(),
                            batch_fill: eval.batcher().map(|b| b.stats().policy.fill),
                        });
                    }
                }
                Ok(())
            });
            if let Some(b) = eval.batcher() {
                summary.batch = Some(b.stats());
            }
            outcome
        };
        if self.uses_batcher(trees) {
            Batcher::run(models, &cfg.batch, |b| body(Evaluator::batched(models, b)))??;
        } else {
            body(Evaluator::direct(models))?;
        }
        summary.wall_seconds = start.elapsed().as_secs_f64();
        let secs = summary.wall_seconds.max(1e-9);
        summary.nodes_per_sec = summary.stats.nodes as f64 / secs;
        summary.tokens_per_sec = summary.stats.tokens as f64 / secs;
        Ok(summary)
    }
}
