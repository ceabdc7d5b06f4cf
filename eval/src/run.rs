//! Running an evaluation: every (problem, budget, method, seed) once, many trees in flight over
//! one batcher, each result appended to `records.jsonl` as it arrives, so a killed run resumes
//! where it stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use ponder_engine::rng::hash_bytes;
use ponder_engine::{
    BatchConfig, Batcher, Evaluator, Models, NodeId, Problem, SearchReport, StopReason, TreeId,
    search,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::method::Method;

/// The version of `records.jsonl` and `manifest.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    /// The methods, in table order.
    pub methods: Vec<Method>,
    /// Generated tokens per problem (one run of every method at each).
    pub budgets: Vec<u64>,
    /// Seeds (each method runs once per seed; pairs are per problem and seed).
    pub seeds: Vec<u64>,
    /// Worker threads on each MCTS tree.
    pub threads: u32,
    /// Trees searched at once.
    pub parallel_trees: u32,
    /// Batch the models' calls across trees (`None`: every worker calls the models itself, as a
    /// remote policy wants).
    pub batch: Option<BatchConfig>,
    /// Where the problems and the model come from, for the manifest (free-form).
    pub source: serde_json::Value,
    /// What every method shares and a resume must not change: the model, the task's prompt,
    /// the critics (free-form; compared as a whole).
    pub settings: serde_json::Value,
}

impl EvalSpec {
    /// Checks the grid.
    ///
    /// # Errors
    /// An empty grid, a zero budget, duplicate names.
    pub fn validate(&self) -> Result<()> {
        if self.methods.is_empty() {
            return Err(Error::config("methods", "name at least one method"));
        }
        if self.budgets.is_empty() || self.budgets.contains(&0) {
            return Err(Error::config(
                "budgets",
                "give one or more budgets, each at least 1 token",
            ));
        }
        if self.seeds.is_empty() {
            return Err(Error::config("seeds", "give at least one seed"));
        }
        if self.parallel_trees == 0 || self.threads == 0 {
            return Err(Error::config(
                "parallel_trees",
                "threads and trees must be at least 1",
            ));
        }
        let mut names = BTreeSet::new();
        for m in &self.methods {
            if m.name.is_empty() || m.name.contains([',', '\n', '"']) {
                return Err(Error::config(
                    "methods",
                    format!(
                        "method name {:?} must be non-empty, without commas or quotes",
                        m.name
                    ),
                ));
            }
            if !names.insert(&m.name) {
                return Err(Error::config(
                    "methods",
                    format!("`{}` is named twice", m.name),
                ));
            }
            m.search
                .validate()
                .map_err(|e| Error::config("methods", format!("method `{}`: {e}", m.name)))?;
        }
        Ok(())
    }
}

/// One run of one method on one problem at one budget and seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The problem's position in the input.
    pub index: usize,
    /// The problem id.
    pub problem: String,
    /// The method name.
    pub method: String,
    /// The token budget.
    pub budget: u64,
    /// The seed.
    pub seed: u64,
    /// The chosen answer.
    pub answer: Option<String>,
    /// The gold answer.
    pub gold: Option<String>,
    /// Whether the chosen answer matches the gold one (by the task's check, the grader `search`
    /// and `iterate` use); false without an answer.
    pub correct: bool,
    /// Whether some terminal of the tree had the correct answer (chosen or not).
    pub correct_in_tree: bool,
    /// Distinct answers among the tree's terminals.
    pub distinct_answers: u32,
    /// Generated tokens: every token the policy and rollout policy produced for this problem.
    pub tokens: u64,
    /// Prompt/prefix tokens taken from the KV cache instead of being encoded again.
    pub tokens_reused: u64,
    /// Completed simulations (MCTS).
    pub simulations: u64,
    /// Nodes in the tree.
    pub nodes: u64,
    /// Terminal nodes.
    pub terminals: u64,
    /// Why the search stopped.
    pub stop: StopReason,
    /// Wall time of the search, milliseconds (with other trees sharing the machine).
    pub wall_ms: f64,
    /// The search's error, if it failed (retried on resume; left out of the tables).
    pub error: Option<String>,
}

impl Record {
    fn key(&self) -> Key {
        (self.index, self.method.clone(), self.budget, self.seed)
    }

    /// A record of `job` with nothing found yet.
    fn empty(job: &Job, p: &Problem, wall_ms: f64) -> Record {
        Record {
            schema_version: SCHEMA_VERSION,
            index: job.index,
            problem: p.id.clone(),
            method: job.method_name.clone(),
            budget: job.budget,
            seed: job.seed,
            answer: None,
            gold: p.gold.clone(),
            correct: false,
            correct_in_tree: false,
            distinct_answers: 0,
            tokens: 0,
            tokens_reused: 0,
            simulations: 0,
            nodes: 0,
            terminals: 0,
            stop: StopReason::Budget,
            wall_ms,
            error: None,
        }
    }

    fn from_report(job: &Job, p: &Problem, rep: &SearchReport, wall_ms: f64) -> Record {
        let tree = &rep.tree;
        let terms: Vec<NodeId> = tree.node_ids().filter(|&n| tree.data(n).terminal).collect();
        let answers: BTreeSet<&str> = terms
            .iter()
            .filter_map(|&n| tree.data(n).answer.as_deref())
            .collect();
        Record {
            answer: rep.answer.as_ref().and_then(|a| a.answer.clone()),
            correct: rep.answer.as_ref().and_then(|a| a.correct) == Some(true),
            correct_in_tree: terms
                .iter()
                .any(|&n| tree.eval(n).and_then(|e| e.correct) == Some(true)),
            distinct_answers: answers.len() as u32,
            tokens: rep.stats.tokens,
            tokens_reused: rep.stats.tokens_reused,
            simulations: rep.stats.simulations,
            nodes: rep.stats.nodes,
            terminals: rep.stats.terminals,
            stop: rep.stop,
            ..Record::empty(job, p, wall_ms)
        }
    }
}

type Key = (usize, String, u64, u64);

/// The settings a run folder was made with; a resume must agree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Problems in the input.
    pub problems: usize,
    /// A hash of every problem's id, question and gold answer.
    pub problems_digest: String,
    /// Every method ever run in this folder, by name (a name keeps its settings).
    pub methods: BTreeMap<String, ponder_engine::SearchConfig>,
    /// Methods, in the order of the latest run (the tables' order).
    pub order: Vec<String>,
    /// Budgets of the latest run.
    pub budgets: Vec<u64>,
    /// Seeds of the latest run.
    pub seeds: Vec<u64>,
    /// Where the problems and the model come from.
    pub source: serde_json::Value,
    /// The shared settings ([`EvalSpec::settings`]); a folder written before this field
    /// existed takes the next run's.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// A hash of the problem set (ids, questions, gold answers).
pub fn problems_digest(problems: &[Problem]) -> String {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for p in problems {
        for part in [
            p.id.as_str(),
            p.question.as_str(),
            p.gold.as_deref().unwrap_or("\u{0}"),
        ] {
            h = hash_bytes(h, part.as_bytes());
            h = hash_bytes(h, &[0xFF]);
        }
    }
    format!("{h:016x}")
}

/// The files of an evaluation folder.
#[derive(Clone, Debug)]
pub struct Folder {
    /// The folder.
    pub dir: PathBuf,
}

impl Folder {
    /// `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Folder { dir: dir.into() }
    }
    /// `manifest.json`.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    /// `records.jsonl`.
    pub fn records(&self) -> PathBuf {
        self.dir.join("records.jsonl")
    }

    /// Reads the manifest, if the folder has one.
    ///
    /// # Errors
    /// An unreadable or malformed manifest.
    pub fn read_manifest(&self) -> Result<Option<Manifest>> {
        let path = self.manifest();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::BadFile {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.manifest();
        let tmp = self.dir.join("manifest.json.tmp");
        let body = serde_json::to_vec_pretty(m).expect("manifest serialises");
        std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Every record, the latest per key. A torn last line (a run killed mid-write) is cut off
    /// the file when `repair` is set, else ignored; a malformed line elsewhere is an error
    /// naming its line.
    ///
    /// # Errors
    /// I/O, or a malformed record before the last line.
    pub fn read_records(&self, repair: bool) -> Result<Vec<Record>> {
        let path = self.records();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut reader = std::io::BufReader::new(file);
        let mut latest: HashMap<Key, (usize, Record)> = HashMap::new();
        let mut good_len = 0u64;
        let mut line = Vec::new();
        let mut no = 0usize;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            no += 1;
            let complete = line.last() == Some(&b'\n');
            match serde_json::from_slice::<Record>(&line) {
                Ok(r) if complete => {
                    good_len += n as u64;
                    latest.insert(r.key(), (no, r));
                }
                parsed => {
                    // Only the last line may be torn.
                    let mut rest = Vec::new();
                    let more = reader
                        .read_until(b'\n', &mut rest)
                        .map_err(|e| Error::io(&path, e))?;
                    if more > 0 || (complete && parsed.is_err() && !line.trim_ascii().is_empty()) {
                        let why = parsed
                            .err()
                            .map_or("incomplete line".to_string(), |e| e.to_string());
                        return Err(Error::BadFile {
                            path: format!("{}:{no}", path.display()),
                            message: why,
                        });
                    }
                    if repair {
                        let f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(|e| Error::io(&path, e))?;
                        f.set_len(good_len).map_err(|e| Error::io(&path, e))?;
                        tracing::warn!(line = no, "records: cut a torn last line");
                    }
                    break;
                }
            }
        }
        let mut v: Vec<(usize, Record)> = latest.into_values().collect();
        v.sort_by_key(|(no, _)| *no);
        Ok(v.into_iter().map(|(_, r)| r).collect())
    }
}

/// What the progress callback sees after each record.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Runs finished (this session and earlier ones).
    pub done: usize,
    /// Runs in the grid.
    pub total: usize,
    /// The record just written.
    pub record: &'a Record,
    /// Correct / finished so far for the record's method and budget.
    pub correct: usize,
    /// Finished so far for the record's method and budget.
    pub runs: usize,
    /// Tokens generated per second this session.
    pub tokens_per_sec: f64,
    /// Failed runs this session.
    pub failed: usize,
    /// Mean policy batch so far (0 without a batcher).
    pub policy_batch: f64,
}

/// The totals of one run of [`run`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunOutcome {
    /// Runs in the grid.
    pub total: usize,
    /// Runs already in the folder when it started.
    pub resumed: usize,
    /// Runs done now.
    pub ran: usize,
    /// Of those, failed.
    pub failed: usize,
    /// Seconds.
    pub wall_seconds: f64,
    /// Tokens generated now.
    pub tokens: u64,
    /// The batcher's figures (mean policy batch, fill, waits), when one was used.
    pub batch: Option<ponder_engine::BatchStats>,
}

struct Job {
    index: usize,
    method: usize,
    method_name: String,
    budget: u64,
    seed: u64,
}

/// Runs every (problem, budget, method, seed) of `spec` not yet in `out`, writing records as
/// they finish. Jobs go out problem by problem (every method and budget of a problem
/// together), so a stopped run leaves paired results. A folder made with other problems, or with
/// a method of the same name but other settings, is refused; new methods, budgets or seeds are
/// added to it.
///
/// # Errors
/// Invalid settings, a folder that does not match, I/O; a failed search is recorded, not
/// returned.
pub fn run(
    models: &Models,
    problems: &[Problem],
    spec: &EvalSpec,
    out: &Folder,
    on_progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<RunOutcome> {
    spec.validate()?;
    if problems.is_empty() {
        return Err(Error::config("problems", "no problems to evaluate"));
    }
    std::fs::create_dir_all(&out.dir).map_err(|e| Error::io(&out.dir, e))?;
    let digest = problems_digest(problems);
    let mut manifest = match out.read_manifest()? {
        Some(m) => {
            if m.problems_digest != digest || m.problems != problems.len() {
                return Err(Error::Mismatch(format!(
                    "{} holds an evaluation of other problems ({} problems, digest {}; now {}, {}): \
                     use another folder",
                    out.dir.display(),
                    m.problems,
                    m.problems_digest,
                    problems.len(),
                    digest
                )));
            }
            if !m.settings.is_null() && m.settings != spec.settings {
                return Err(Error::Mismatch(format!(
                    "{} was evaluated with other shared settings (model, prompt or critics): \
                     use another folder\n  then: {}\n  now:  {}",
                    out.dir.display(),
                    m.settings,
                    spec.settings
                )));
            }
            for meth in &spec.methods {
                if let Some(old) = m.methods.get(&meth.name)
                    && *old != meth.search
                {
                    return Err(Error::Mismatch(format!(
                        "method `{}` ran in {} with other settings: give the new settings another \
                         name (NAME=FILE.toml)",
                        meth.name,
                        out.dir.display()
                    )));
                }
            }
            m
        }
        None => Manifest {
            schema_version: SCHEMA_VERSION,
            problems: problems.len(),
            problems_digest: digest,
            methods: BTreeMap::new(),
            order: Vec::new(),
            budgets: Vec::new(),
            seeds: Vec::new(),
            source: serde_json::Value::Null,
            settings: serde_json::Value::Null,
        },
    };
    for meth in &spec.methods {
        manifest
            .methods
            .insert(meth.name.clone(), meth.search.clone());
    }
    manifest.order = spec.methods.iter().map(|m| m.name.clone()).collect();
    manifest.budgets = spec.budgets.clone();
    manifest.seeds = spec.seeds.clone();
    manifest.source = spec.source.clone();
    manifest.settings = spec.settings.clone();
    out.write_manifest(&manifest)?;

    let existing = out.read_records(true)?;
    for r in &existing {
        if let Some(p) = problems.get(r.index)
            && p.id != r.problem
        {
            return Err(Error::BadFile {
                path: out.records().display().to_string(),
                message: format!(
                    "record for problem {} says id `{}`, the input says `{}`",
                    r.index, r.problem, p.id
                ),
            });
        }
    }
    let done: BTreeSet<Key> = existing
        .iter()
        .filter(|r| r.error.is_none())
        .map(Record::key)
        .collect();
    let mut tally: HashMap<(String, u64), (usize, usize)> = HashMap::new();
    for r in existing.iter().filter(|r| r.error.is_none()) {
        if spec.budgets.contains(&r.budget) && spec.seeds.contains(&r.seed) {
            let t = tally.entry((r.method.clone(), r.budget)).or_default();
            t.0 += usize::from(r.correct);
            t.1 += 1;
        }
    }
    let mut jobs = Vec::new();
    let mut total = 0;
    for index in 0..problems.len() {
        for &budget in &spec.budgets {
            for (mi, m) in spec.methods.iter().enumerate() {
                for &seed in &spec.seeds {
                    total += 1;
                    if !done.contains(&(index, m.name.clone(), budget, seed)) {
                        jobs.push(Job {
                            index,
                            method: mi,
                            method_name: m.name.clone(),
                            budget,
                            seed,
                        });
                    }
                }
            }
        }
    }
    let mut outcome = RunOutcome {
        total,
        resumed: total - jobs.len(),
        ..RunOutcome::default()
    };
    if jobs.is_empty() {
        return Ok(outcome);
    }
    let path = out.records();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let start = Instant::now();
    let mut policy_batch = 0.0;
    let mut body = |eval: Evaluator<'_>| -> Result<()> {
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, Record)>();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..(spec.parallel_trees as usize).min(jobs.len()) {
                let tx = tx.clone();
                let (next, cancel, jobs) = (&next, &cancel, &jobs);
                scope.spawn(move || {
                    loop {
                        // Relaxed: a work counter and a stop flag.
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(j) else { break };
                        let p = &problems[job.index];
                        let cfg = spec.methods[job.method].at(job.budget, job.seed, spec.threads);
                        let t = Instant::now();
                        let tree = TreeId(j as u32);
                        let rec = match search(p.clone(), tree, &cfg, eval) {
                            Ok(rep) => {
                                Record::from_report(job, p, &rep, t.elapsed().as_secs_f64() * 1e3)
                            }
                            Err(e) => failed_record(job, p, &e, t.elapsed().as_secs_f64() * 1e3),
                        };
                        if tx.send((j, rec)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (_, rec) in rx.iter() {
                let mut line = serde_json::to_vec(&rec).expect("record serialises");
                line.push(b'\n');
                if let Err(e) = file.write_all(&line).and_then(|()| file.flush()) {
                    // Relaxed: a stop flag.
                    cancel.store(true, Ordering::Relaxed);
                    return Err(Error::io(&path, e));
                }
                outcome.ran += 1;
                outcome.tokens += rec.tokens;
                if let Some(e) = &rec.error {
                    outcome.failed += 1;
                    tracing::error!(problem = %rec.problem, method = %rec.method, budget = rec.budget, "search failed: {e}");
                }
                if rec.tokens > rec.budget {
                    // The engine's budget is hard; a record over it is a bug, said loudly.
                    tracing::error!(problem = %rec.problem, method = %rec.method, tokens = rec.tokens, budget = rec.budget, "over budget");
                }
                let t = tally.entry((rec.method.clone(), rec.budget)).or_default();
                if rec.error.is_none() {
                    t.0 += usize::from(rec.correct);
                    t.1 += 1;
                }
                let (correct, runs) = *t;
                if let Some(b) = eval.batcher() {
                    policy_batch = b.stats().policy.mean_batch;
                }
                on_progress(&Progress {
                    done: outcome.resumed + outcome.ran,
                    total,
                    record: &rec,
                    correct,
                    runs,
                    tokens_per_sec: outcome.tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
                    failed: outcome.failed,
                    policy_batch,
                });
            }
            if let Some(b) = eval.batcher() {
                outcome.batch = Some(b.stats());
            }
            Ok(())
        })
    };
    match &spec.batch {
        Some(b)
            if b.max_batch > 1
                && (spec.parallel_trees > 1 || spec.threads > 1)
                && models.policy.wants_batches() =>
        {
            Batcher::run(models, b, |batcher| {
                body(Evaluator::batched(models, batcher))
            })??;
        }
        _ => body(Evaluator::direct(models))?,
    }
    outcome.wall_seconds = start.elapsed().as_secs_f64();
    Ok(outcome)
}

fn failed_record(job: &Job, p: &Problem, e: &ponder_engine::Error, wall_ms: f64) -> Record {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Record {
        error: Some(msg),
        ..Record::empty(job, p, wall_ms)
    }
}
