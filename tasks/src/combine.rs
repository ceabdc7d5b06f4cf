//! Several critics of one kind as one: the mean of their scores, each first mapped onto
//! `[0, 1]` from its own range (the engine's panel holds one critic per kind).

use std::sync::Arc;

use ponder_engine::{BoxError, Critic, CriticKind, PathRef, ScoreRange, TreeId};

use crate::error::{Error, Result};

/// The mean of several critics of the same kind.
pub struct MeanCritic {
    name: String,
    kind: CriticKind,
    parts: Vec<Arc<dyn Critic>>,
}

impl std::fmt::Debug for MeanCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeanCritic")
            .field("name", &self.name)
            .finish()
    }
}

impl MeanCritic {
    /// Combines `parts` (at least one, all of one kind).
    ///
    /// # Errors
    /// No parts, or parts of different kinds.
    pub fn new(parts: Vec<Arc<dyn Critic>>) -> Result<Self> {
        let kind = parts
            .first()
            .map(|c| c.kind())
            .ok_or_else(|| Error::Combine("a combined critic needs at least one part".into()))?;
        if let Some(c) = parts.iter().find(|c| c.kind() != kind) {
            return Err(Error::Combine(format!(
                "cannot average `{}` ({:?}) with {kind:?} critics",
                c.name(),
                c.kind()
            )));
        }
        let name = parts.iter().map(|c| c.name()).collect::<Vec<_>>().join("+");
        Ok(MeanCritic { name, kind, parts })
    }
}

impl Critic for MeanCritic {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> CriticKind {
        self.kind
    }

    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }

    fn score(&self, paths: &[PathRef<'_>]) -> std::result::Result<Vec<f32>, BoxError> {
        let mut sum = vec![0f32; paths.len()];
        for c in &self.parts {
            let raw = c.score(paths)?;
            if raw.len() != paths.len() {
                return Err(format!(
                    "critic `{}` returned {} scores for {} paths",
                    c.name(),
                    raw.len(),
                    paths.len()
                )
                .into());
            }
            for (s, x) in sum.iter_mut().zip(raw) {
                let r = c.range();
                *s += r.normalise(x).ok_or_else(|| {
                    format!(
                        "critic `{}` scored {x}, outside [{}, {}]",
                        c.name(),
                        r.lo,
                        r.hi
                    )
                })?;
            }
        }
        let n = self.parts.len() as f32;
        Ok(sum.into_iter().map(|s| s / n).collect())
    }

    fn release(&self, tree: TreeId) {
        for c in &self.parts {
            c.release(tree);
        }
    }
}
