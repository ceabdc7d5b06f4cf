//! The [`Critic`] trait and the [`CriticPanel`] that combines the critic trio.

use serde::{Deserialize, Serialize};

use crate::error::{BoxError, Error, Result};
use crate::tree::{PathRef, TreeId};

/// What a critic judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriticKind {
    /// The expected final outcome from a (partial) path (AlphaLLM's value function).
    Value,
    /// The correctness of the path's latest step (process reward model).
    Process,
    /// The correctness of a complete path (outcome reward model).
    Outcome,
}

/// The native range a critic's raw scores live in. The panel maps it linearly onto `[0, 1]`, so
/// a value function on `[-1, 1]` and a PRM on `[0, 1]` are combined on the same scale (AlphaLLM
/// added them unnormalised; ponder does not).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreRange {
    /// Lowest (worst) score.
    pub lo: f32,
    /// Highest (best) score.
    pub hi: f32,
}

impl ScoreRange {
    /// `[0, 1]`: probabilities.
    pub const UNIT: ScoreRange = ScoreRange { lo: 0.0, hi: 1.0 };
    /// `[-1, 1]`: signed values.
    pub const SIGNED: ScoreRange = ScoreRange { lo: -1.0, hi: 1.0 };

    /// Maps a raw score onto `[0, 1]`. A slack of 1e-4 of the range absorbs float noise; anything
    /// further out (or NaN) is a contract violation.
    pub fn normalise(&self, raw: f32) -> Option<f32> {
        let span = self.hi - self.lo;
        let slack = 1e-4 * span;
        if !raw.is_finite() || raw < self.lo - slack || raw > self.hi + slack {
            return None;
        }
        Some(((raw - self.lo) / span).clamp(0.0, 1.0))
    }
}

/// A model (or rule, or test double) that scores paths.
///
/// Batch first: `score` receives every path the batcher gathered and returns one raw score per
/// path, in order, inside [`Critic::range`].
pub trait Critic: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// What the critic judges.
    fn kind(&self) -> CriticKind;

    /// The range of raw scores.
    fn range(&self) -> ScoreRange;

    /// Scores each path. `Process` critics judge the path's last step; `Outcome` critics are only
    /// asked about complete paths (terminal nodes and fast-rollout completions).
    ///
    /// # Errors
    /// Whatever the model reports; the search stops with it.
    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError>;

    /// Called when a tree is finished (see [`crate::Policy::release`]).
    fn release(&self, _tree: TreeId) {}
}

/// Checks a critic's answer: one finite in-range score per path, normalised to `[0, 1]`.
pub(crate) fn normalise_scores(critic: &dyn Critic, n: usize, raw: Vec<f32>) -> Result<Vec<f32>> {
    if raw.len() != n {
        return Err(Error::CriticContract {
            name: critic.name().into(),
            message: format!("returned {} scores for {n} paths", raw.len()),
        });
    }
    let range = critic.range();
    raw.into_iter()
        .map(|x| {
            range.normalise(x).ok_or_else(|| Error::CriticContract {
                name: critic.name().into(),
                message: format!(
                    "score {x} outside its declared range [{}, {}]",
                    range.lo, range.hi
                ),
            })
        })
        .collect()
}

/// How the per-step PRM scores along a path are aggregated (AlphaLLM's `STEP_REWARD_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrmAggregate {
    /// The latest step's score.
    #[default]
    Latest,
    /// Mean over the path's steps.
    Avg,
    /// Minimum over the path's steps.
    Min,
    /// Maximum over the path's steps.
    Max,
}

impl PrmAggregate {
    /// Aggregates a path's per-step scores (`latest` is the last element).
    pub fn apply(self, scores: &[f32]) -> Option<f32> {
        let last = *scores.last()?;
        Some(match self {
            PrmAggregate::Latest => last,
            PrmAggregate::Avg => scores.iter().sum::<f32>() / scores.len() as f32,
            PrmAggregate::Min => scores.iter().copied().fold(f32::INFINITY, f32::min),
            PrmAggregate::Max => scores.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        })
    }
}

/// The critic trio: at most one critic of each kind, combined with configured weights after
/// normalisation (AlphaLLM §4.4, `s = β_v·v + β_PRM·PRM + β_ORM·ORM`, on a common `[0, 1]` scale).
#[derive(Clone, Default)]
pub struct CriticPanel {
    pub(crate) value: Option<std::sync::Arc<dyn Critic>>,
    pub(crate) process: Option<std::sync::Arc<dyn Critic>>,
    pub(crate) outcome: Option<std::sync::Arc<dyn Critic>>,
}

impl std::fmt::Debug for CriticPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |c: &Option<std::sync::Arc<dyn Critic>>| c.as_ref().map(|c| c.name().to_string());
        f.debug_struct("CriticPanel")
            .field("value", &n(&self.value))
            .field("process", &n(&self.process))
            .field("outcome", &n(&self.outcome))
            .finish()
    }
}

impl CriticPanel {
    /// An empty panel (scores are then 0 except for terminal outcome rewards).
    pub fn new() -> Self {
        CriticPanel::default()
    }

    /// Adds a critic in the slot of its kind.
    ///
    /// # Errors
    /// [`Error::Config`] if that slot is already taken or the range is empty.
    pub fn with(mut self, critic: std::sync::Arc<dyn Critic>) -> Result<Self> {
        let r = critic.range();
        if !(r.lo.is_finite() && r.hi.is_finite())
            || r.hi.partial_cmp(&r.lo) != Some(std::cmp::Ordering::Greater)
        {
            return Err(Error::config(
                "critics",
                format!(
                    "critic `{}` declares an empty range [{}, {}]",
                    critic.name(),
                    r.lo,
                    r.hi
                ),
            ));
        }
        let slot = match critic.kind() {
            CriticKind::Value => &mut self.value,
            CriticKind::Process => &mut self.process,
            CriticKind::Outcome => &mut self.outcome,
        };
        if let Some(old) = slot {
            return Err(Error::config(
                "critics",
                format!(
                    "two {:?} critics: `{}` and `{}`",
                    critic.kind(),
                    old.name(),
                    critic.name()
                ),
            ));
        }
        *slot = Some(critic);
        Ok(self)
    }

    /// Puts a critic in the slot of its kind, replacing the one there (a user's own critic in
    /// place of a configured one).
    ///
    /// # Errors
    /// [`Error::Config`] if the range is empty.
    pub fn replace(mut self, critic: std::sync::Arc<dyn Critic>) -> Result<Self> {
        match critic.kind() {
            CriticKind::Value => self.value = None,
            CriticKind::Process => self.process = None,
            CriticKind::Outcome => self.outcome = None,
        }
        self.with(critic)
    }

    /// The critic of a kind.
    pub fn get(&self, kind: CriticKind) -> Option<&std::sync::Arc<dyn Critic>> {
        match kind {
            CriticKind::Value => self.value.as_ref(),
            CriticKind::Process => self.process.as_ref(),
            CriticKind::Outcome => self.outcome.as_ref(),
        }
    }

    /// Tells every critic a tree is done.
    pub fn release(&self, tree: TreeId) {
        for c in [&self.value, &self.process, &self.outcome]
            .into_iter()
            .flatten()
        {
            c.release(tree);
        }
    }
}

/// A score cache in front of a critic, keyed by a 128-bit hash of the path's text (prompt,
/// steps, and the extra step of a rollout): a path scored once in a run is never sent to the
/// model again — a duplicate sibling that dedup later drops, the same prefix in another tree of
/// the same problem (parallel trees, repeated searches), a path re-scored after re-rooting.
/// Bounded: when full, the cache is cleared (cheap, and keeps memory flat on long runs).
pub struct CachedCritic {
    inner: std::sync::Arc<dyn Critic>,
    capacity: usize,
    map: std::sync::Mutex<std::collections::HashMap<(u64, u64), f32>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CachedCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCritic")
            .field("inner", &self.inner.name())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl CachedCritic {
    /// Caches up to `capacity` scores of `inner`.
    pub fn new(inner: std::sync::Arc<dyn Critic>, capacity: usize) -> Self {
        CachedCritic {
            inner,
            capacity: capacity.max(1),
            map: std::sync::Mutex::new(std::collections::HashMap::new()),
            hits: std::sync::atomic::AtomicU64::new(0),
            misses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `(hits, misses)` so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        // Relaxed: statistics counters.
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn key(path: &PathRef<'_>) -> (u64, u64) {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(path.prompt().as_bytes());
        for s in path.steps() {
            // A separator no text contains, so ["ab", "c"] and ["a", "bc"] differ.
            bytes.push(0);
            bytes.extend_from_slice(s.text.as_bytes());
        }
        (
            crate::rng::hash_bytes(0x5c0e, &bytes),
            crate::rng::hash_bytes(0xca11, &bytes),
        )
    }
}

impl Critic for CachedCritic {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> CriticKind {
        self.inner.kind()
    }

    fn range(&self) -> ScoreRange {
        self.inner.range()
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        use std::sync::atomic::Ordering;
        let keys: Vec<(u64, u64)> = paths.iter().map(Self::key).collect();
        let mut out: Vec<Option<f32>> = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| map.get(k).copied()).collect()
        };
        let missing: Vec<usize> = (0..paths.len()).filter(|&i| out[i].is_none()).collect();
        // Relaxed: statistics counters.
        self.hits
            .fetch_add((paths.len() - missing.len()) as u64, Ordering::Relaxed);
        self.misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            let ask: Vec<PathRef<'_>> = missing.iter().map(|&i| paths[i]).collect();
            let got = self.inner.score(&ask)?;
            if got.len() != ask.len() {
                // Let the engine's contract check report it with the critic's name.
                return Ok(got);
            }
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() + got.len() > self.capacity {
                map.clear();
            }
            for (&i, s) in missing.iter().zip(got) {
                out[i] = Some(s);
                map.insert(keys[i], s);
            }
        }
        Ok(out.into_iter().map(|s| s.unwrap_or(f32::NAN)).collect())
    }

    fn release(&self, tree: TreeId) {
        self.inner.release(tree);
    }
}

/// A critic made of a closure: a one-line test double.
pub struct FnCritic<F> {
    name: String,
    kind: CriticKind,
    range: ScoreRange,
    f: F,
}

impl<F> std::fmt::Debug for FnCritic<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnCritic")
            .field("name", &self.name)
            .finish()
    }
}

impl<F> FnCritic<F>
where
    F: Fn(&PathRef<'_>) -> f32 + Send + Sync,
{
    /// Wraps `f`, which scores one path.
    pub fn new(name: impl Into<String>, kind: CriticKind, range: ScoreRange, f: F) -> Self {
        FnCritic {
            name: name.into(),
            kind,
            range,
            f,
        }
    }
}

impl<F> Critic for FnCritic<F>
where
    F: Fn(&PathRef<'_>) -> f32 + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> CriticKind {
        self.kind
    }
    fn range(&self) -> ScoreRange {
        self.range
    }
    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Ok(paths.iter().map(|p| (self.f)(p)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_maps_ranges_and_rejects_outliers() {
        assert_eq!(ScoreRange::SIGNED.normalise(0.0), Some(0.5));
        assert_eq!(ScoreRange::SIGNED.normalise(-1.0), Some(0.0));
        assert_eq!(ScoreRange::UNIT.normalise(1.00001), Some(1.0));
        assert_eq!(ScoreRange::UNIT.normalise(1.1), None);
        assert_eq!(ScoreRange::UNIT.normalise(f32::NAN), None);
    }

    #[test]
    fn prm_aggregates() {
        let s = [0.2, 0.8, 0.5];
        assert_eq!(PrmAggregate::Latest.apply(&s), Some(0.5));
        assert_eq!(PrmAggregate::Min.apply(&s), Some(0.2));
        assert_eq!(PrmAggregate::Max.apply(&s), Some(0.8));
        assert!((PrmAggregate::Avg.apply(&s).unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(PrmAggregate::Avg.apply(&[]), None);
    }

    #[test]
    fn cached_critic_scores_each_path_text_once() {
        use crate::tree::Tree;
        use crate::types::{Problem, Step};
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        let inner = std::sync::Arc::new(FnCritic::new(
            "len",
            CriticKind::Process,
            ScoreRange::UNIT,
            move |p: &PathRef<'_>| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (p.text().len() % 10) as f32 / 10.0
            },
        ));
        let cached = CachedCritic::new(inner, 100);
        let chain = |id, steps: &[&str]| {
            Tree::chain(
                TreeId(id),
                Problem::new("p", "q"),
                "q".into(),
                steps.iter().map(|s| Step::text(*s)).collect(),
                false,
            )
            .unwrap()
        };
        let (a, ai) = chain(1, &["ab", "c"]);
        let (b, bi) = chain(2, &["ab", "c"]);
        let (c2, ci) = chain(3, &["a", "bc"]);
        let pa = PathRef::new(&a, ai[2]);
        let pb = PathRef::new(&b, bi[2]);
        let pc = PathRef::new(&c2, ci[2]);
        let s1 = cached.score(&[pa, pc]).unwrap();
        let s2 = cached.score(&[pb, pa, pc]).unwrap();
        assert_eq!(s2, vec![s1[0], s1[0], s1[1]]);
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            2,
            "another tree, same text: a hit"
        );
        assert_eq!(cached.counts(), (3, 2));
    }

    #[test]
    fn panel_rejects_two_critics_of_a_kind() {
        let c = || -> std::sync::Arc<dyn Critic> {
            std::sync::Arc::new(FnCritic::new(
                "v",
                CriticKind::Value,
                ScoreRange::UNIT,
                |_| 0.5,
            ))
        };
        let err = CriticPanel::new().with(c()).unwrap().with(c()).unwrap_err();
        assert!(err.to_string().contains("two Value critics"), "{err}");
    }
}
