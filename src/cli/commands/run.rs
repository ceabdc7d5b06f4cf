//! The CLI's side of running searches: flags over the config file, the problems the flags
//! name, and a progress bar (and periodic log events) over [`Searcher::search_many`]. The
//! logic itself lives in `ponder::runtime`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::engine::Problem;
use ponder::runtime::dataset::{DatasetFields, ProblemSource};
use ponder::runtime::searcher::{ManyOptions, SearchResult};
use ponder::runtime::{Config, PolicyKind, RunSummary, Searcher};

use crate::cli::args::{ProblemArgs, SearchFlags};

pub(crate) use ponder::runtime::generate::chain;

/// Loads the config file (if any) and applies the flags over it.
pub(crate) fn resolve_config(flags: &SearchFlags) -> Result<Config> {
    let mut cfg = match &flags.config {
        Some(p) => Config::load(p, flags.preset)?,
        None => Config::from_preset(flags.preset.unwrap_or_default()),
    };
    let s = &mut cfg.search;
    if let Some(a) = flags.algorithm {
        s.algorithm = a;
    }
    if let Some(v) = flags.simulations {
        s.budget.simulations = v;
    }
    if let Some(v) = flags.threads {
        s.parallel.threads = v;
    }
    if let Some(v) = flags.seed {
        s.seed = v;
    }
    if let Some(v) = flags.selection {
        s.selection.rule = v;
    }
    if let Some(v) = flags.backup {
        s.backup = v;
    }
    if let Some(v) = flags.answer_rule {
        s.answer = v;
    }
    if let Some(v) = flags.virtual_loss {
        s.parallel.virtual_loss = v;
    }
    if let Some(v) = flags.max_depth {
        s.budget.max_depth = v;
    }
    if let Some(v) = flags.wall_seconds {
        s.budget.wall_seconds = Some(v);
    }
    if let Some(v) = flags.max_tokens {
        s.budget.max_tokens = Some(v);
    }
    if let Some(v) = flags.n {
        s.baseline.n = v;
    }
    if let Some(v) = flags.max_batch {
        cfg.batch.max_batch = v;
    }
    if let Some(v) = flags.max_wait_ms {
        cfg.batch.max_wait_ms = v;
    }
    if let Some(v) = flags.policy {
        cfg.policy.kind = v;
    }
    if let Some(v) = &flags.model {
        cfg.policy.model = Some(v.clone());
    }
    if let Some(v) = flags.weights {
        cfg.policy.weights = v;
    }
    if let Some(v) = flags.backend {
        cfg.policy.backend = v;
    }
    if let Some(v) = &flags.endpoints {
        cfg.policy.remote.endpoints = v.clone();
        // Naming a server implies the remote policy unless another was chosen.
        if flags.policy.is_none() {
            cfg.policy.kind = PolicyKind::Remote;
        }
    }
    if let Some(v) = &flags.remote_model {
        cfg.policy.remote.model = v.clone();
    }
    if let Some(v) = flags.temperature {
        cfg.policy.temperature = v;
    }
    if let Some(v) = flags.shots {
        cfg.task.shots = v;
    }
    if let Some(v) = flags.max_step_tokens {
        cfg.policy.step.max_tokens = v;
    }
    if let Some(v) = &flags.critics {
        // `--critics none`: no process critic.
        cfg.critics.process = v.iter().filter(|c| *c != "none").cloned().collect();
    }
    if let Some(v) = &flags.critic_weights {
        cfg.critics.weights = Some(v.clone());
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The problems named by the arguments (`None`: none named).
pub(crate) fn load_problems(args: &ProblemArgs) -> Result<Option<Vec<Problem>>> {
    let fields = DatasetFields {
        question: args.question_field.clone(),
        answer: args.answer_field.clone(),
        id: args.id_field.clone(),
    };
    let source = if let Some(path) = &args.dataset {
        ProblemSource::Dataset {
            path: path.clone(),
            fields,
        }
    } else if let Some(n) = args.synthetic {
        if n == 0 {
            bail!("--synthetic needs at least 1 problem");
        }
        ProblemSource::Synthetic {
            n,
            level: args.level,
            seed: args.problem_seed,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(source.load()?))
}

/// [`Searcher::search_many`] with a progress bar (unless `quiet` or a single problem): see
/// [`run_problems_with`].
pub(crate) fn run_problems(
    searcher: &Searcher,
    problems: &[Problem],
    parallel_trees: u32,
    quiet: bool,
    mut on_result: impl FnMut(usize, &Problem, SearchResult) -> Result<()>,
) -> Result<RunSummary> {
    run_problems_with(
        searcher,
        problems,
        None,
        parallel_trees,
        quiet,
        None,
        &mut on_result,
    )
}

/// What [`run_problems_with`] hands each result to.
pub(crate) type ResultSink<'a> = dyn FnMut(usize, &Problem, SearchResult) -> Result<()> + 'a;

/// The progress bar (unless `quiet` or a single problem) and the periodic progress log events
/// (every ~10 s, for `--log-format json` on clusters, where no bar is drawn) of a run over
/// `total` problems; `status` adds text to each update.
pub(crate) struct Reporter<'a> {
    bar: ProgressBar,
    last_log: Instant,
    status: Option<&'a (dyn Fn() -> String + Sync)>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(
        total: usize,
        quiet: bool,
        status: Option<&'a (dyn Fn() -> String + Sync)>,
    ) -> Self {
        let bar = if quiet || total < 2 {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
                )
                .expect("static template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        };
        Reporter {
            bar,
            last_log: Instant::now(),
            status,
        }
    }

    /// One problem finished.
    pub(crate) fn update(&mut self, p: &ponder::runtime::Progress<'_>) {
        let s = p.summary;
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let mut msg = format!(
            "{:.2} problems/s {:.0} tok/s {:.0} nodes/s",
            p.done as f64 / secs,
            s.stats.tokens as f64 / secs,
            s.stats.nodes as f64 / secs
        );
        if let Some(a) = s.accuracy() {
            msg.push_str(&format!(" acc {:.1}%", 100.0 * a));
        }
        if let Some(f) = p.batch_fill {
            msg.push_str(&format!(" batch fill {:.0}%", 100.0 * f));
        }
        if s.failed > 0 {
            msg.push_str(&format!(" errors {}", s.failed));
        }
        if let Some(f) = self.status {
            msg.push_str(&f());
        }
        if self.last_log.elapsed() >= Duration::from_secs(10) {
            self.last_log = Instant::now();
            let rate = p.done as f64 / secs;
            tracing::info!(
                done = p.done,
                total = p.total,
                problems_per_sec = rate,
                eta_secs = (p.total - p.done) as f64 / rate.max(1e-9),
                errors = s.failed,
                "progress: {msg}"
            );
        }
        self.bar.inc(1);
        self.bar.set_message(msg);
    }

    /// The run ended.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Searches every problem through the library, with each problem's tree id (`ids[i]`, default
/// `i`), a [`Reporter`], and failed searches logged.
pub(crate) fn run_problems_with(
    searcher: &Searcher,
    problems: &[Problem],
    ids: Option<&[u32]>,
    parallel_trees: u32,
    quiet: bool,
    status: Option<&(dyn Fn() -> String + Sync)>,
    on_result: &mut ResultSink<'_>,
) -> Result<RunSummary> {
    let mut reporter = Reporter::new(problems.len(), quiet, status);
    let opts = ManyOptions {
        parallel_trees,
        ids: ids.map(<[u32]>::to_vec),
        control: None,
    };
    let mut sink = |i: usize, p: &Problem, r: SearchResult| {
        if let Err(e) = &r {
            tracing::error!(problem = %p.id, "search failed: {}", chain(e));
        }
        on_result(i, p, r).map_err(Into::into)
    };
    let summary = searcher.search_many(problems, &opts, &mut |p| reporter.update(p), &mut sink);
    reporter.finish();
    Ok(summary?)
}

/// A searcher over the models `cfg` names, checked against `problems`.
pub(crate) fn searcher(cfg: &Config, problems: &[Problem]) -> Result<Searcher> {
    let loaded = ponder::runtime::models::load(cfg, problems)?;
    Ok(Searcher::with_models(cfg.clone(), loaded)?)
}
