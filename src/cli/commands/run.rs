//! Shared machinery: config resolution, problem loading, running many trees with one batcher and
//! a progress bar.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ponder::engine::testing::synthetic;
use ponder::engine::{
    BatchStats, Batcher, Evaluator, Models, Problem, SearchReport, SearchStats, TreeId, search,
};
use serde::Serialize;

use crate::cli::args::{ProblemArgs, SearchFlags};
use crate::cli::config::{BackendKind, FileConfig, PolicyKind};

/// An error and all its sources, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Checks that the synthetic task can read every problem, naming the first it cannot.
pub(crate) fn check_synthetic(problems: &[Problem]) -> Result<()> {
    for p in problems {
        if synthetic::Arithmetic::parse(&p.question).is_none() {
            bail!(
                "problem `{}`: the synthetic task (`--policy synthetic`, a test double) reads \
                 questions like 'Start with 7. Add 3. Multiply by 2. What is the result?', got {:?}; \
                 word problems and GSM8K need the LLM policy (the default)",
                p.id,
                p.question
            );
        }
    }
    Ok(())
}

/// Loads the config file (if any) and applies the flags over it.
pub(crate) fn resolve_config(flags: &SearchFlags) -> Result<FileConfig> {
    let mut cfg = match &flags.config {
        Some(p) => FileConfig::load(p, flags.preset)?,
        None => FileConfig::from_preset(flags.preset.unwrap_or_default()),
    };
    let s = &mut cfg.search;
    if let Some(a) = flags.algorithm {
        s.algorithm = a.into();
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
        s.selection.rule = v.into();
    }
    if let Some(v) = flags.backup {
        s.backup = v.into();
    }
    if let Some(v) = flags.answer_rule {
        s.answer = v.into();
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

/// The models for a resolved config: the LLM policy (in process or served over HTTP) with the
/// math task, or the synthetic test-double world. `problems` are checked against the task first.
pub(crate) fn models(cfg: &FileConfig, problems: &[Problem]) -> Result<Models> {
    Ok(models_with_client(cfg, problems)?.0)
}

/// [`models`], the HTTP client of a remote policy and the critics' score caches (for their
/// counters).
pub(crate) fn models_with_client(
    cfg: &FileConfig,
    problems: &[Problem],
) -> Result<(Models, Option<RemoteClient>, Vec<CriticCache>)> {
    let caches = std::cell::RefCell::new(Vec::new());
    let (m, c) = build_models(cfg, problems, &caches)?;
    Ok((m, c, caches.into_inner()))
}

fn build_models(
    cfg: &FileConfig,
    problems: &[Problem],
    caches: &std::cell::RefCell<Vec<CriticCache>>,
) -> Result<(Models, Option<RemoteClient>)> {
    use std::sync::Arc;
    match cfg.policy.kind {
        PolicyKind::Synthetic => {
            check_synthetic(problems)?;
            Ok((synthetic::models(&cfg.synthetic.spec()), None))
        }
        PolicyKind::Llm => {
            let policy = Arc::new(load_llm(cfg)?);
            Ok((
                Models {
                    policy: policy.clone(),
                    // Fast rollouts (`search.scoring.rollouts`) complete paths with the policy.
                    rollout: Some(policy.clone()),
                    critics: critic_panel(
                        &cfg.critics,
                        Backbone::Local(&policy),
                        &cfg.policy,
                        caches,
                    )?,
                    task: Arc::new(cfg.task.task()),
                },
                None,
            ))
        }
        PolicyKind::Remote => {
            let (policy, client) = remote_policy(cfg)?;
            let policy: Arc<dyn ponder::engine::Policy> = Arc::new(policy);
            Ok((
                Models {
                    policy: policy.clone(),
                    rollout: Some(policy),
                    critics: critic_panel(
                        &cfg.critics,
                        Backbone::Remote(&client),
                        &cfg.policy,
                        caches,
                    )?,
                    task: Arc::new(cfg.task.task()),
                },
                Some(client),
            ))
        }
    }
}

/// The shared HTTP client of a remote policy.
pub(crate) type RemoteClient = std::sync::Arc<ponder::policies::remote::Client>;

/// A score cache in front of a model-backed critic.
pub(crate) type CriticCache = std::sync::Arc<ponder::engine::CachedCritic>;

/// `(hits, misses)` of the critics' score caches, summed.
pub(crate) fn cache_counts(caches: &[CriticCache]) -> (u64, u64) {
    caches
        .iter()
        .map(|c| c.counts())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// The remote policy of `[policy.remote]` and its client.
pub(crate) fn remote_policy(
    cfg: &FileConfig,
) -> Result<(
    ponder::policies::remote::RemotePolicy,
    std::sync::Arc<ponder::policies::remote::Client>,
)> {
    use ponder::policies::remote::{Client, RemotePolicy, RemoteSampling};
    let p = &cfg.policy;
    let client = std::sync::Arc::new(Client::new(&p.remote)?);
    let mut rule = p.step.clone();
    if rule.answer_pattern.is_none() {
        rule.answer_pattern = Some(ponder::critics::math::ANSWER_MARKER.into());
    }
    tracing::info!(endpoints = ?p.remote.endpoints, model = %p.remote.model, "remote policy");
    Ok((
        RemotePolicy::new(
            client.clone(),
            rule,
            RemoteSampling {
                temperature: p.temperature,
                top_p: p.top_p,
            },
        ),
        client,
    ))
}

/// What model-backed critics run on.
pub(crate) enum Backbone<'a> {
    /// The in-process policy (heads read its hidden states, self-evaluation its logits).
    Local(&'a std::sync::Arc<ponder::policies::step_policy::LlamaPolicy>),
    /// The served policy (self-evaluation as LLM-as-judge through its client; no heads).
    Remote(&'a std::sync::Arc<ponder::policies::remote::Client>),
}

/// The critic trio of an LLM search, from `[critics]` (see [`crate::cli::config::CriticsConfig`]),
/// collecting the score caches it puts in front of model-backed critics (for their hit counts).
fn critic_panel(
    c: &crate::cli::config::CriticsConfig,
    backbone: Backbone<'_>,
    policy_cfg: &crate::cli::config::PolicyConfig,
    caches: &std::cell::RefCell<Vec<CriticCache>>,
) -> Result<ponder::engine::CriticPanel> {
    use ponder::critics::{arith, combine, head, remote, self_eval};
    use ponder::engine::{Critic, CriticKind, ScoreRange};
    use std::sync::Arc;
    // Model-backed critics sit behind a score cache keyed by the path's text.
    let cached = |c: Arc<dyn Critic>| -> Arc<dyn Critic> {
        let c = Arc::new(ponder::engine::CachedCritic::new(c, 1 << 18));
        caches.borrow_mut().push(c.clone());
        c
    };
    let head_critic = |path: &std::path::Path, want: CriticKind| -> Result<Arc<dyn Critic>> {
        let Backbone::Local(policy) = backbone else {
            bail!(
                "{}: trained heads read the in-process model's hidden states; with a remote \
                 policy serve the critic over HTTP instead ([[critics.remote]])",
                path.display()
            );
        };
        let h = head::Head::load(path)?;
        if h.kind != want {
            bail!(
                "{}: a {:?} head cannot be the {want:?} critic",
                path.display(),
                h.kind
            );
        }
        Ok(cached(Arc::new(head::HeadCritic::new(
            &h,
            (*policy).clone(),
            &path.display().to_string(),
        )?)))
    };
    let in_dir = |name: &str| {
        c.weights
            .as_ref()
            .map(|d| d.join(format!("{name}.safetensors")))
            .filter(|p| p.exists())
    };
    let mut value: Vec<Arc<dyn Critic>> = Vec::new();
    let mut outcome: Vec<Arc<dyn Critic>> = Vec::new();
    let mut process: Vec<Arc<dyn Critic>> = Vec::new();
    if let Some(p) = c.value.clone().or_else(|| in_dir("value")) {
        value.push(head_critic(&p, CriticKind::Value)?);
    }
    if let Some(p) = c.outcome.clone().or_else(|| in_dir("outcome")) {
        outcome.push(head_critic(&p, CriticKind::Outcome)?);
    }
    for p in &c.process {
        process.push(match (p.as_str(), &backbone) {
            ("arithmetic", _) => Arc::new(arith::ArithmeticCritic),
            ("self-eval", Backbone::Local(policy)) => cached(Arc::new(
                self_eval::SelfEvalCritic::new((*policy).clone(), c.self_eval())?,
            )),
            ("self-eval", Backbone::Remote(client)) => cached(Arc::new(remote::RemoteJudge::new(
                (*client).clone(),
                c.self_eval(),
                policy_cfg.remote.template,
                20,
            ))),
            (file, _) => head_critic(std::path::Path::new(file), CriticKind::Process)?,
        });
    }
    if let Some(p) = in_dir("process") {
        process.push(head_critic(&p, CriticKind::Process)?);
    }
    for (i, r) in c.remote.iter().enumerate() {
        let mut rc = policy_cfg.remote.clone();
        if let Some(e) = &r.endpoints {
            rc.endpoints = e.clone();
        }
        if let Some(m) = &r.model {
            rc.model = m.clone();
        }
        let client = Arc::new(
            ponder::policies::remote::Client::new(&rc)
                .with_context(|| format!("critics.remote[{i}]"))?,
        );
        let critic = cached(Arc::new(remote::RemoteCritic::new(
            client,
            r.kind,
            r.format,
            &r.path,
            ScoreRange { lo: r.lo, hi: r.hi },
        )));
        match r.kind {
            CriticKind::Value => value.push(critic),
            CriticKind::Process => process.push(critic),
            CriticKind::Outcome => outcome.push(critic),
        }
    }
    let mut panel = ponder::engine::CriticPanel::new();
    for mut list in [value, process, outcome] {
        match list.len() {
            0 => {}
            1 => panel = panel.with(list.remove(0))?,
            _ => panel = panel.with(Arc::new(combine::MeanCritic::new(list)?))?,
        }
    }
    for (kind, critic) in [CriticKind::Value, CriticKind::Process, CriticKind::Outcome]
        .into_iter()
        .filter_map(|k| panel.get(k).map(|c| (k, c.name().to_string())))
    {
        tracing::info!(?kind, critic, "critic");
    }
    Ok(panel)
}

/// The Burn device of the configured backend.
pub(crate) fn device(kind: BackendKind) -> Result<burn::prelude::Device> {
    Ok(kind.backend().device()?)
}

/// Loads the configured GGUF model into a step policy.
pub(crate) fn load_llm(cfg: &FileConfig) -> Result<ponder::policies::step_policy::LlamaPolicy> {
    use ponder::policies::{models, step_policy};
    let path = cfg
        .policy
        .model
        .as_deref()
        .map_or_else(models::default_model_path, models::resolve);
    let start = Instant::now();
    let (model, tokenizer) = models::load(&path, &device(cfg.policy.backend)?)?;
    tracing::info!(model = %path.display(), secs = start.elapsed().as_secs_f64(), "model loaded");
    let p = &cfg.policy;
    let mut rule = p.step.clone();
    if rule.answer_pattern.is_none() {
        rule.answer_pattern = Some(ponder::critics::math::ANSWER_MARKER.into());
    }
    Ok(step_policy::LlamaPolicy::new(
        model,
        tokenizer,
        rule,
        step_policy::Sampling {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
        },
        p.chat,
        p.cache_entries,
    )
    .with_cache_bytes(p.cache_mib.saturating_mul(1 << 20)))
}

/// Turns a dataset's answer into a gold answer: GSM8K's `#### N` keeps what follows the marker.
fn gold_of(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    let s = match s.rfind("####") {
        Some(i) => s[i + 4..].trim().to_string(),
        None => s.trim().to_string(),
    };
    Some(s.replace(',', ""))
}

/// Reads a JSONL dataset; every bad line is an error naming the file and line.
pub(crate) fn read_dataset(path: &Path, args: &ProblemArgs) -> Result<Vec<Problem>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("opening dataset {}", path.display()))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("{}:{n}: reading", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{n}: not valid JSON", path.display()))?;
        let obj = v
            .as_object()
            .with_context(|| format!("{}:{n}: expected a JSON object", path.display()))?;
        let question = obj
            .get(&args.question_field)
            .and_then(|q| q.as_str())
            .with_context(|| {
                format!(
                    "{}:{n}: missing string field `{}`",
                    path.display(),
                    args.question_field
                )
            })?;
        let id = match obj.get(&args.id_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            _ => format!("line-{n}"),
        };
        if !seen.insert(id.clone()) {
            bail!("{}:{n}: duplicate problem id `{id}`", path.display());
        }
        let gold = obj.get(&args.answer_field).and_then(gold_of);
        out.push(Problem {
            id,
            question: question.to_string(),
            gold,
        });
    }
    if out.is_empty() {
        bail!("{}: no problems in the dataset", path.display());
    }
    Ok(out)
}

/// The problems named by the arguments.
pub(crate) fn load_problems(args: &ProblemArgs) -> Result<Option<Vec<Problem>>> {
    if let Some(path) = &args.dataset {
        return read_dataset(path, args).map(Some);
    }
    if let Some(n) = args.synthetic {
        if n == 0 {
            bail!("--synthetic needs at least 1 problem");
        }
        return Ok(Some(synthetic::problems(n, args.level, args.problem_seed)));
    }
    Ok(None)
}

/// Totals of a run over many problems.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RunSummary {
    pub(crate) problems: usize,
    pub(crate) with_gold: usize,
    pub(crate) correct: usize,
    pub(crate) failed: usize,
    pub(crate) stats: SearchStats,
    pub(crate) wall_seconds: f64,
    pub(crate) nodes_per_sec: f64,
    pub(crate) tokens_per_sec: f64,
    pub(crate) batch: Option<BatchStats>,
}

impl RunSummary {
    pub(crate) fn accuracy(&self) -> Option<f64> {
        (self.with_gold > 0).then(|| self.correct as f64 / self.with_gold as f64)
    }
}

/// What [`run_problems`] hands each result to.
pub(crate) type ResultSink<'a> =
    dyn FnMut(usize, &Problem, Result<SearchReport, ponder::engine::Error>) -> Result<()> + 'a;

/// Searches every problem, `parallel_trees` at a time, sharing one batcher when batching helps.
/// `on_result` sees results in problem order; an error from it stops the run.
pub(crate) fn run_problems(
    cfg: &FileConfig,
    models: &Models,
    problems: &[Problem],
    parallel_trees: u32,
    quiet: bool,
    mut on_result: impl FnMut(
        usize,
        &Problem,
        Result<SearchReport, ponder::engine::Error>,
    ) -> Result<()>,
) -> Result<RunSummary> {
    run_problems_with(
        cfg,
        models,
        problems,
        None,
        parallel_trees,
        quiet,
        None,
        &mut on_result,
    )
}

/// [`run_problems`] with each problem's tree id (`ids[i]`, default `i`) and extra progress
/// text from `status`. Every ~10 s a progress event is also logged (for `--log-format json`
/// on clusters, where no bar is drawn).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_problems_with(
    cfg: &FileConfig,
    models: &Models,
    problems: &[Problem],
    ids: Option<&[u32]>,
    parallel_trees: u32,
    quiet: bool,
    status: Option<&(dyn Fn() -> String + Sync)>,
    on_result: &mut ResultSink<'_>,
) -> Result<RunSummary> {
    let start = Instant::now();
    let mut last_log = Instant::now();
    let bar = if quiet || problems.len() < 2 {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some(problems.len() as u64),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
            )
            .expect("static template"),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    // Whether calls are batched is the policy's property: a remote policy is called straight
    // from every worker (servers batch on their side) unless `policy.remote.batched` is set.
    let use_batcher = cfg.batch.max_batch > 1
        && (cfg.search.parallel.threads > 1 || parallel_trees > 1)
        && models.policy.wants_batches();
    let mut summary = RunSummary {
        problems: problems.len(),
        ..RunSummary::default()
    };
    let mut body = |eval: Evaluator<'_>| -> Result<()> {
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let (tx, rx) = crossbeam_channel::unbounded();
        let outcome = std::thread::scope(|scope| -> Result<()> {
            for _ in 0..parallel_trees.min(problems.len() as u32) {
                let tx = tx.clone();
                let (next, cancel) = (&next, &cancel);
                scope.spawn(move || {
                    loop {
                        // Relaxed: a work counter and a stop flag.
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(p) = problems.get(i) else { break };
                        let id = ids.and_then(|ids| ids.get(i).copied()).unwrap_or(i as u32);
                        let r = search(p.clone(), TreeId(id), &cfg.search, eval);
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
                        Err(e) => {
                            summary.failed += 1;
                            tracing::error!(problem = %p.id, "search failed: {}", chain(e));
                        }
                    }
                    if let Err(e) = on_result(next_out, p, r) {
                        cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    next_out += 1;
                    bar.inc(1);
                    let secs = start.elapsed().as_secs_f64().max(1e-9);
                    let mut msg = format!(
                        "{:.2} problems/s {:.0} tok/s {:.0} nodes/s",
                        next_out as f64 / secs,
                        summary.stats.tokens as f64 / secs,
                        summary.stats.nodes as f64 / secs
                    );
                    if let Some(a) = summary.accuracy() {
                        msg.push_str(&format!(" acc {:.1}%", 100.0 * a));
                    }
                    if let Some(b) = eval.batcher() {
                        msg.push_str(&format!(
                            " batch fill {:.0}%",
                            100.0 * b.stats().policy.fill
                        ));
                    }
                    if summary.failed > 0 {
                        msg.push_str(&format!(" errors {}", summary.failed));
                    }
                    if let Some(f) = status {
                        msg.push_str(&f());
                    }
                    if last_log.elapsed() >= Duration::from_secs(10) {
                        last_log = Instant::now();
                        let rate = next_out as f64 / secs;
                        tracing::info!(
                            done = next_out,
                            total = problems.len(),
                            problems_per_sec = rate,
                            eta_secs = (problems.len() - next_out) as f64 / rate.max(1e-9),
                            errors = summary.failed,
                            "progress: {msg}"
                        );
                    }
                    bar.set_message(msg);
                }
            }
            Ok(())
        });
        if let Some(b) = eval.batcher() {
            summary.batch = Some(b.stats());
        }
        outcome
    };
    if use_batcher {
        Batcher::run(models, &cfg.batch, |b| body(Evaluator::batched(models, b)))??;
    } else {
        body(Evaluator::direct(models))?;
    }
    bar.finish_and_clear();
    summary.wall_seconds = start.elapsed().as_secs_f64();
    let secs = summary.wall_seconds.max(1e-9);
    summary.nodes_per_sec = summary.stats.nodes as f64 / secs;
    summary.tokens_per_sec = summary.stats.tokens as f64 / secs;
    Ok(summary)
}
