//! Python callables as the engine's [`Critic`] and [`Task`]: called from the search's threads,
//! each call taking the interpreter for its duration.

use std::sync::Mutex;

use ponder_engine::{BoxError, Critic, CriticKind, PathRef, Problem, ScoreRange, Task};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// A Python critic: `f(paths) -> list[float]`, each path a dict (`question`, `prompt`,
/// `steps`, `text`, `depth`, `terminal`), each score in [0, 1].
pub(crate) struct PyCritic {
    name: String,
    kind: CriticKind,
    func: Py<PyAny>,
}

impl PyCritic {
    pub(crate) fn new(name: &str, kind: CriticKind, func: Py<PyAny>) -> PyCritic {
        PyCritic {
            name: format!("python:{name}"),
            kind,
            func,
        }
    }
}

fn path_dict<'py>(py: Python<'py>, p: &PathRef<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("question", &p.problem().question)?;
    d.set_item("prompt", p.prompt())?;
    let steps: Vec<&str> = p.steps().iter().map(|s| s.text.as_str()).collect();
    d.set_item("steps", steps)?;
    d.set_item("text", p.text())?;
    d.set_item("depth", p.depth())?;
    d.set_item("terminal", p.is_terminal())?;
    Ok(d)
}

impl Critic for PyCritic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CriticKind {
        self.kind
    }

    fn range(&self) -> ScoreRange {
        ScoreRange { lo: 0.0, hi: 1.0 }
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Python::attach(|py| -> PyResult<Vec<f32>> {
            let batch = PyList::empty(py);
            for p in paths {
                batch.append(path_dict(py, p)?)?;
            }
            self.func.bind(py).call1((batch,))?.extract()
        })
        .map_err(|e| format!("the Python critic `{}` raised {e}", self.name).into())
    }
}

/// A Python task: an object with `prompt(question) -> str`, `extract_answer(text) -> str |
/// None` and `check(answer, gold) -> bool` (and optionally `name`). The engine's task calls
/// cannot fail, so the first exception is kept (and the method answers as a task that found
/// nothing would), then raised as a `PonderError` when the call from Python returns.
pub(crate) struct PyTask {
    name: String,
    obj: Py<PyAny>,
    error: Mutex<Option<String>>,
}

impl PyTask {
    pub(crate) fn new(py: Python<'_>, obj: Py<PyAny>) -> PyResult<PyTask> {
        let b = obj.bind(py);
        for m in ["prompt", "extract_answer", "check"] {
            if !b.hasattr(m)? {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "task: no `{m}` method (a task has prompt, extract_answer and check)"
                )));
            }
        }
        let name = match b.getattr("name") {
            Ok(n) => n.str()?.to_string(),
            Err(_) => b.get_type().name()?.to_string(),
        };
        Ok(PyTask {
            name,
            obj,
            error: Mutex::new(None),
        })
    }

    /// The first exception since the last call, taken.
    pub(crate) fn take_error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn call<T>(&self, what: &str, f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>) -> Option<T> {
        Python::attach(|py| match f(self.obj.bind(py)) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut slot = self
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if slot.is_none() {
                    *slot = Some(format!("the Python task's `{what}` raised {e}"));
                }
                None
            }
        })
    }
}

impl Task for PyTask {
    fn name(&self) -> &str {
        &self.name
    }

    fn prompt(&self, problem: &Problem) -> String {
        self.call("prompt", |o| {
            o.call_method1("prompt", (&problem.question,))?.extract()
        })
        .unwrap_or_else(|| problem.question.clone())
    }

    fn extract_answer(&self, path_text: &str) -> Option<String> {
        self.call("extract_answer", |o| {
            o.call_method1("extract_answer", (path_text,))?.extract()
        })
        .flatten()
    }

    fn check(&self, answer: &str, gold: &str) -> bool {
        self.call("check", |o| {
            o.call_method1("check", (answer, gold))?.extract()
        })
        .unwrap_or(false)
    }
}
