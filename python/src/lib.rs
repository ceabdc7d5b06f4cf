//! `ponder._native`: the search engine as a Python extension module (PyO3, stable ABI from
//! Python 3.9). The Python package `ponder` (python/ponder) re-exports it with docstrings, type
//! stubs and the dataset helpers.
//!
//! Threads: a search runs on a thread of its own while the calling thread waits with the
//! interpreter released, waking every 100 ms to run the progress callback and to check for
//! Ctrl-C (which cancels the search: it stops after the simulation in hand, and the call raises
//! `KeyboardInterrupt`). Python critics and tasks are called from the search's threads, taking
//! the interpreter for the call; an exception they raise fails the search with a `PonderError`
//! carrying the Python message.

mod bridge;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ponder_engine::extract;
use ponder_engine::{CriticKind, Problem, SearchControl, SearchReport};
use ponder_runtime::generate::{GenerateOptions, chain, generate as run_generate};
use ponder_runtime::searcher::SearchResult;
use ponder_runtime::{Config, ManyOptions, Searcher as RtSearcher, models};
use pyo3::exceptions::{PyKeyboardInterrupt, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::bridge::{PyCritic, PyTask};

pyo3::create_exception!(
    ponder,
    PonderError,
    pyo3::exceptions::PyException,
    "A ponder error: bad settings, a model that cannot be loaded, a failed search, a Python \
     critic or task that raised. The message names the cause."
);

fn ponder_err(e: &dyn std::error::Error) -> PyErr {
    PonderError::new_err(chain(e))
}

/// Short names for the settings people change most, as `Searcher(..., simulations=32)`.
const ALIASES: [(&str, &str); 13] = [
    ("simulations", "search.budget.simulations"),
    ("threads", "search.parallel.threads"),
    ("algorithm", "search.algorithm"),
    ("seed", "search.seed"),
    ("max_tokens", "search.budget.max_tokens"),
    ("max_depth", "search.budget.max_depth"),
    ("wall_seconds", "search.budget.wall_seconds"),
    ("n", "search.baseline.n"),
    ("temperature", "policy.temperature"),
    ("backend", "policy.backend"),
    ("weights", "policy.weights"),
    ("max_batch", "batch.max_batch"),
    ("shots", "task.shots"),
];

/// A Python value as JSON, through the `json` module (so anything it serialises works).
fn to_json(obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let py = obj.py();
    let text: String = py
        .import("json")?
        .call_method1("dumps", (obj,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

fn toml_of(at: &str, v: serde_json::Value) -> PyResult<toml::Value> {
    toml::Value::try_from(v)
        .map_err(|e| PyValueError::new_err(format!("`{at}`: not a config value ({e})")))
}

/// Sets a dotted key (`search.budget.simulations`) in a TOML table.
fn set_path(table: &mut toml::Table, path: &str, v: toml::Value) -> PyResult<()> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| PyValueError::new_err(format!("`{p}` in `{path}` is not a table")))?;
    }
    t.insert(last.to_string(), v);
    Ok(())
}

/// The config: the file or dict first, then `model`/`endpoint`/`policy`, then the overrides;
/// parsed and validated as the CLI's.
fn build_config(
    model: Option<String>,
    config: Option<&Bound<'_, PyAny>>,
    endpoint: Option<String>,
    policy: Option<String>,
    overrides: Option<&Bound<'_, PyDict>>,
) -> PyResult<Config> {
    let mut table = match config {
        None => toml::Table::new(),
        Some(c) if c.is_instance_of::<PyDict>() => match toml_of("config", to_json(c)?)? {
            toml::Value::Table(t) => t,
            _ => return Err(PyTypeError::new_err("config: a dict or a TOML file path")),
        },
        Some(c) => {
            let path: PathBuf = c
                .extract()
                .map_err(|_| PyTypeError::new_err("config: a dict or a TOML file path"))?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| PonderError::new_err(format!("reading {}: {e}", path.display())))?;
            toml::from_str(&text)
                .map_err(|e| PonderError::new_err(format!("{}: {e}", path.display())))?
        }
    };
    if let Some(m) = model {
        set_path(&mut table, "policy.model", toml::Value::String(m))?;
    }
    if let Some(e) = endpoint {
        set_path(
            &mut table,
            "policy.remote.endpoints",
            toml::Value::Array(vec![toml::Value::String(e)]),
        )?;
        if policy.is_none() {
            set_path(
                &mut table,
                "policy.kind",
                toml::Value::String("remote".into()),
            )?;
        }
    }
    if let Some(p) = policy {
        set_path(&mut table, "policy.kind", toml::Value::String(p))?;
    }
    if let Some(o) = overrides {
        for (k, v) in o.iter() {
            let key: String = k.extract()?;
            let path = ALIASES
                .iter()
                .find(|(a, _)| *a == key)
                .map_or_else(|| key.replace("__", "."), |(_, p)| (*p).to_string());
            let value = toml_of(&key, to_json(&v)?)?;
            if path == "preset" {
                table.insert("preset".into(), value);
            } else {
                set_path(&mut table, &path, value)?;
            }
        }
    }
    let text = toml::to_string(&table).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let cfg = Config::parse(&text, None).map_err(|e| ponder_err(&e))?;
    cfg.validate().map_err(|e| ponder_err(&e))?;
    Ok(cfg)
}

/// A question as Python gives it: a string, or a dict with `question` and optional
/// `answer`/`gold` and `id`.
fn problem_of(i: usize, obj: &Bound<'_, PyAny>) -> PyResult<Problem> {
    if obj.is_instance_of::<PyString>() {
        return Ok(Problem::new(format!("q{i}"), obj.extract::<String>()?));
    }
    let d = obj.cast::<PyDict>().map_err(|_| {
        PyTypeError::new_err(format!(
            "question {i}: a string or a dict with `question` (and `answer`, `id`)"
        ))
    })?;
    let question: String = d
        .get_item("question")?
        .ok_or_else(|| PyValueError::new_err(format!("question {i}: no `question` key")))?
        .extract()?;
    let id = match d.get_item("id")? {
        Some(v) => v.str()?.to_string(),
        None => format!("q{i}"),
    };
    let gold = match d.get_item("answer")?.or(d.get_item("gold")?) {
        Some(v) if !v.is_none() => ponder_runtime::dataset::gold_of(&to_json(&v)?),
        _ => None,
    };
    let mut p = Problem::new(id, question);
    p.gold = gold;
    Ok(p)
}

/// What the waiting thread is told.
enum Event<T> {
    Progress(usize, usize),
    Done(T),
}

/// Runs `work` on a thread of its own while this thread waits with the interpreter released,
/// calling `progress(done, total)` as the work reports it and cancelling `control` on Ctrl-C
/// (then raising `KeyboardInterrupt` once the work has stopped).
fn run_detached<T: Send>(
    py: Python<'_>,
    control: &Arc<SearchControl>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&dyn Fn(usize, usize)) -> T + Send,
) -> PyResult<T> {
    let (tx, rx) = crossbeam_channel::unbounded::<Event<T>>();
    std::thread::scope(|s| {
        let ptx = tx.clone();
        s.spawn(move || {
            let report = move |done, total| {
                let _ = ptx.send(Event::Progress(done, total));
            };
            let out = work(&report);
            let _ = tx.send(Event::Done(out));
        });
        let mut failure: Option<PyErr> = None;
        loop {
            let ev = py.detach(|| rx.recv_timeout(Duration::from_millis(100)));
            match ev {
                Ok(Event::Done(out)) => {
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(out),
                    };
                }
                Ok(Event::Progress(done, total)) => {
                    if let (Some(cb), None) = (progress, &failure)
                        && let Err(e) = cb.call1((done, total))
                    {
                        control.cancel();
                        failure = Some(e);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(PonderError::new_err(
                        "the search thread stopped unexpectedly",
                    ));
                }
            }
            if failure.is_none()
                && let Err(e) = py.check_signals()
            {
                control.cancel();
                failure = Some(e);
            }
        }
    })
}

/// One search's outcome, as Python reads it.
#[pyclass(module = "ponder._native", frozen, get_all)]
struct Result {
    /// The question's id.
    id: String,
    /// The extracted final answer (`None` if the search found none).
    answer: Option<String>,
    /// Whether it matches the gold answer (`None` without one).
    correct: Option<bool>,
    /// The chosen solution's steps, in order.
    steps: Vec<String>,
    /// The chosen node's critic score in [0, 1].
    score: Option<f64>,
    /// Why the search stopped (`budget`, `wall_time`, `tokens`, `nodes`, `cancelled`).
    stop: String,
    /// The search's error, for a search of `search_many` that failed (then the rest is empty).
    error: Option<String>,
    stats_json: String,
    tree_json: String,
    pairs_json: String,
}

#[pymethods]
impl Result {
    /// The solution's text: its steps joined.
    #[getter]
    fn text(&self) -> String {
        self.steps.concat()
    }

    /// The search's counters (simulations, nodes, tokens, wall time, ...).
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &parse(&self.stats_json))
    }

    /// The whole tree as `ponder search --dump-tree` writes it (what `ponder view` draws).
    #[getter]
    fn tree<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &parse(&self.tree_json))
    }

    /// The step-level preference pairs `ponder generate` would write for this tree.
    #[getter]
    fn pairs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &parse(&self.pairs_json))
    }

    /// Everything but the tree, as a dict (what `datasets.Dataset.from_list` takes).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", &self.id)?;
        d.set_item("answer", &self.answer)?;
        d.set_item("correct", self.correct)?;
        d.set_item("steps", &self.steps)?;
        d.set_item("text", self.text())?;
        d.set_item("score", self.score)?;
        d.set_item("stop", &self.stop)?;
        d.set_item("error", &self.error)?;
        d.set_item("stats", self.stats(py)?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let q = |s: &Option<String>| s.as_ref().map_or("None".to_string(), |s| format!("{s:?}"));
        match &self.error {
            Some(e) => format!("Result(id={:?}, error={e:?})", self.id),
            None => format!(
                "Result(id={:?}, answer={}, correct={}, score={}, steps={})",
                self.id,
                q(&self.answer),
                self.correct
                    .map_or("None", |c| if c { "True" } else { "False" }),
                self.score.map_or("None".to_string(), |s| format!("{s:.3}")),
                self.steps.len()
            ),
        }
    }
}

fn parse(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

fn result_of(cfg: &Config, id: &str, r: SearchResult) -> Result {
    let rep: SearchReport = match r {
        Ok(rep) => rep,
        Err(e) => {
            return Result {
                id: id.to_string(),
                answer: None,
                correct: None,
                steps: Vec::new(),
                score: None,
                stop: String::new(),
                error: Some(chain(&e)),
                stats_json: "{}".into(),
                tree_json: "null".into(),
                pairs_json: "[]".into(),
            };
        }
    };
    let pairs = extract::pairs(&rep, &cfg.search, &cfg.output.pairs);
    let dump = extract::dump(&rep, &cfg.search).with_pairs(&pairs);
    let path = dump.answer_path();
    let score = path.last().map(|n| n.critics.score);
    let steps: Vec<String> = path.iter().map(|n| n.text.clone()).collect();
    let stop = serde_json::to_value(rep.stop)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Result {
        id: id.to_string(),
        answer: rep.answer.as_ref().and_then(|a| a.answer.clone()),
        correct: rep.answer.as_ref().and_then(|a| a.correct),
        steps,
        score: score.map(f64::from),
        stop,
        error: None,
        stats_json: serde_json::to_string(&rep.stats).unwrap_or_else(|_| "{}".into()),
        tree_json: serde_json::to_string(&dump).unwrap_or_else(|_| "null".into()),
        pairs_json: serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into()),
    }
}

/// Loads a model and its critics once, then searches questions with them.
#[pyclass(module = "ponder._native", frozen)]
struct Searcher {
    inner: Arc<RtSearcher>,
    task: Option<Arc<PyTask>>,
}

impl Searcher {
    /// Raises the Python task's first exception, if it raised during the last call.
    fn task_error(&self) -> PyResult<()> {
        match self.task.as_ref().and_then(|t| t.take_error()) {
            Some(e) => Err(PonderError::new_err(e)),
            None => Ok(()),
        }
    }

    /// Trees at once: as asked, else 4 (the CLI's default for many problems).
    fn parallel(parallel_trees: Option<u32>) -> u32 {
        parallel_trees.unwrap_or(4).max(1)
    }
}

#[pymethods]
impl Searcher {
    #[new]
    // The Python signature: keyword arguments, as Python users expect.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (model=None, *, config=None, endpoint=None, policy=None, critics=None, task=None, **overrides))]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        config: Option<&Bound<'_, PyAny>>,
        endpoint: Option<String>,
        policy: Option<String>,
        critics: Option<&Bound<'_, PyDict>>,
        task: Option<Py<PyAny>>,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let cfg = build_config(model, config, endpoint, policy, overrides)?;
        let mut own_critics = Vec::new();
        if let Some(c) = critics {
            for (k, f) in c.iter() {
                let name: String = k.extract()?;
                let kind = match name.as_str() {
                    "value" => CriticKind::Value,
                    "prm" | "process" => CriticKind::Process,
                    "orm" | "outcome" => CriticKind::Outcome,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "critics: unknown kind `{other}` (value, prm, orm)"
                        )));
                    }
                };
                if !f.is_callable() {
                    return Err(PyTypeError::new_err(format!(
                        "critics[{name:?}]: a callable taking a list of paths and returning a \
                         list of floats in [0, 1]"
                    )));
                }
                own_critics.push(Arc::new(PyCritic::new(&name, kind, f.unbind())));
            }
        }
        let task = task.map(|t| PyTask::new(py, t)).transpose()?.map(Arc::new);
        let task2 = task.clone();
        let inner = py
            .detach(move || -> std::result::Result<RtSearcher, String> {
                let mut loaded = models::load(&cfg, &[]).map_err(|e| chain(&e))?;
                for c in own_critics {
                    loaded.models.critics = loaded
                        .models
                        .critics
                        .clone()
                        .replace(c)
                        .map_err(|e| chain(&e))?;
                }
                if let Some(t) = task2 {
                    loaded.models.task = t;
                }
                RtSearcher::with_models(cfg, loaded).map_err(|e| chain(&e))
            })
            .map_err(PonderError::new_err)?;
        Ok(Searcher {
            inner: Arc::new(inner),
            task,
        })
    }

    /// The resolved settings, as a dict (every default filled in).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(self.inner.config())
            .map_err(|e| PonderError::new_err(e.to_string()))?;
        json_to_py(py, &v)
    }

    /// Searches one question (with its gold answer, if given, to mark the result correct).
    #[pyo3(signature = (question, gold=None))]
    fn search(&self, py: Python<'_>, question: String, gold: Option<String>) -> PyResult<Result> {
        let mut p = Problem::new("q0", question);
        p.gold = gold.and_then(|g| ponder_runtime::dataset::gold_of(&serde_json::Value::String(g)));
        let control = Arc::new(SearchControl::default());
        let (inner, c2) = (self.inner.clone(), control.clone());
        let r = run_detached(py, &control, None, move |_| {
            inner.search_with(&p, Some(c2)).map_err(|e| chain(&e))
        })?;
        self.task_error()?;
        let rep = r.map_err(PonderError::new_err)?;
        let out = result_of(self.inner.config(), "q0", Ok(rep));
        if let Some(e) = &out.error {
            return Err(PonderError::new_err(e.clone()));
        }
        if out.stop == "cancelled" {
            return Err(PyKeyboardInterrupt::new_err("search cancelled"));
        }
        Ok(out)
    }

    /// Searches many questions, `parallel_trees` at a time over one batcher; results in
    /// question order (a failed search is a result with `error` set). `progress(done, total)`
    /// is called as questions finish.
    #[pyo3(signature = (questions, parallel_trees=None, progress=None))]
    fn search_many(
        &self,
        py: Python<'_>,
        questions: &Bound<'_, PyList>,
        parallel_trees: Option<u32>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Result>> {
        let problems: Vec<Problem> = questions
            .iter()
            .enumerate()
            .map(|(i, q)| problem_of(i, &q))
            .collect::<PyResult<_>>()?;
        let control = Arc::new(SearchControl::default());
        let opts = ManyOptions {
            parallel_trees: Searcher::parallel(parallel_trees),
            ids: None,
            control: Some(control.clone()),
        };
        let inner = self.inner.clone();
        let cfg = inner.config().clone();
        let results = run_detached(py, &control, progress, move |report| {
            let mut out = Vec::with_capacity(problems.len());
            let r = inner.search_many(
                &problems,
                &opts,
                &mut |p| report(p.done, p.total),
                &mut |_, p, r| {
                    out.push(result_of(&cfg, &p.id, r));
                    Ok(())
                },
            );
            r.map(|_| out).map_err(|e| chain(&e))
        })?
        .map_err(PonderError::new_err)?;
        self.task_error()?;
        if control.is_cancelled() {
            return Err(PyKeyboardInterrupt::new_err("search cancelled"));
        }
        Ok(results)
    }

    /// Searches a dataset and writes its training data (`pairs.jsonl`, `prm.jsonl`,
    /// `sft.jsonl`, `journal.jsonl`, `stats.json`) to `out` through the crash-safe journal:
    /// calling it again with the same settings resumes where it stopped. `dataset` is a JSONL
    /// path or a list of questions. Returns `stats.json` as a dict.
    #[pyo3(signature = (dataset, out, *, force=false, dump_trees=false, fsync=false, parallel_trees=None, progress=None))]
    // The Python signature: keyword arguments, as Python users expect.
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        dataset: &Bound<'py, PyAny>,
        out: PathBuf,
        force: bool,
        dump_trees: bool,
        fsync: bool,
        parallel_trees: Option<u32>,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (problems, source) = if let Ok(list) = dataset.cast::<PyList>() {
            let ps: Vec<Problem> = list
                .iter()
                .enumerate()
                .map(|(i, q)| problem_of(i, &q))
                .collect::<PyResult<_>>()?;
            let n = ps.len();
            (ps, format!("python list of {n}"))
        } else {
            let path: PathBuf = dataset
                .extract()
                .map_err(|_| PyTypeError::new_err("dataset: a JSONL path or a list"))?;
            let ps = ponder_runtime::ProblemSource::Dataset {
                path: path.clone(),
                fields: Default::default(),
            }
            .load()
            .map_err(|e| ponder_err(&e))?;
            (ps, path.display().to_string())
        };
        let control = Arc::new(SearchControl::default());
        let opts = GenerateOptions {
            out,
            shard: None,
            dump_trees,
            force,
            fsync,
            parallel_trees: Searcher::parallel(parallel_trees),
            source,
            command: vec!["python".into(), "Searcher.generate".into()],
            control: Some(control.clone()),
        };
        let inner = self.inner.clone();
        let outcome = run_detached(py, &control, progress, move |report| {
            run_generate(&inner, &problems, &opts, &mut |p| report(p.done, p.total))
                .map_err(|e| chain(&e))
        })?
        .map_err(PonderError::new_err)?;
        self.task_error()?;
        if control.is_cancelled() {
            return Err(PyKeyboardInterrupt::new_err(
                "generate interrupted (finished problems are written; call again to resume)",
            ));
        }
        json_to_py(py, &outcome.stats)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Searcher(policy={:?}, algorithm={:?}, simulations={})",
            self.inner.models().policy.name(),
            c.search.algorithm,
            c.search.budget.simulations
        )
    }
}

/// Writes the tiny random-weight GGUF model the test suites use (a test double: it answers
/// nonsense, fast) to `path`.
#[pyfunction]
fn write_test_gguf(path: PathBuf, seed: u64) -> PyResult<()> {
    std::fs::write(&path, ponder_testkit::tiny_llama::tiny_llama_gguf(seed))
        .map_err(|e| PonderError::new_err(format!("writing {}: {e}", path.display())))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Searcher>()?;
    m.add_class::<Result>()?;
    m.add("PonderError", m.py().get_type::<PonderError>())?;
    m.add_function(wrap_pyfunction!(write_test_gguf, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
