//! [`PathRef`]: how policies and critics see a path of the tree.

use super::{NodeId, PathKey, Tree};
use crate::types::{Problem, Step};

/// A borrowed view of one path: the problem, its prompt, and the steps from the root to a node,
/// optionally followed by one extra step that is not in the tree (a fast-rollout completion).
///
/// It is `Copy` and costs nothing to build: the steps are read from the tree on demand.
#[derive(Clone, Copy, Debug)]
pub struct PathRef<'a> {
    tree: &'a Tree,
    node: NodeId,
    extra: Option<&'a Step>,
}

impl<'a> PathRef<'a> {
    /// The path from the root to `node`.
    pub fn new(tree: &'a Tree, node: NodeId) -> Self {
        PathRef {
            tree,
            node,
            extra: None,
        }
    }

    /// The path from the root to `node`, then `extra`.
    pub fn with_extra(tree: &'a Tree, node: NodeId, extra: &'a Step) -> Self {
        PathRef {
            tree,
            node,
            extra: Some(extra),
        }
    }

    /// The stable key of the tree node the path ends at (an `extra` step does not change it).
    pub fn key(&self) -> PathKey {
        PathKey {
            tree: self.tree.id(),
            node: self.node,
        }
    }

    /// The tree node the path ends at.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The tree.
    pub fn tree(&self) -> &'a Tree {
        self.tree
    }

    /// The problem.
    pub fn problem(&self) -> &'a Problem {
        self.tree.problem()
    }

    /// The task-formatted prompt.
    pub fn prompt(&self) -> &'a str {
        self.tree.prompt()
    }

    /// The extra step after the tree node, if any.
    pub fn extra(&self) -> Option<&'a Step> {
        self.extra
    }

    /// Number of steps on the path.
    pub fn depth(&self) -> u32 {
        self.tree.data(self.node).depth + u32::from(self.extra.is_some())
    }

    /// The steps from the root (exclusive: the root has no step) to the end, in order.
    pub fn steps(&self) -> Vec<&'a Step> {
        let tree = self.tree;
        let mut steps: Vec<&'a Step> = tree
            .path_to(self.node)
            .into_iter()
            .skip(1)
            .map(|n| &tree.data(n).step)
            .collect();
        steps.extend(self.extra);
        steps
    }

    /// The last step (the extra step if there is one), `None` for the bare root.
    pub fn last_step(&self) -> Option<&'a Step> {
        self.extra.or_else(|| {
            let d = self.tree.data(self.node);
            (d.parent != NodeId::NONE).then_some(&d.step)
        })
    }

    /// The concatenated text of the steps.
    pub fn text(&self) -> String {
        let mut s = self.tree.path_text(self.node);
        if let Some(e) = self.extra {
            s.push_str(&e.text);
        }
        s
    }

    /// Whether the path is complete: the tree node is terminal, or the extra step finished.
    pub fn is_terminal(&self) -> bool {
        match self.extra {
            Some(e) => e.finished,
            None => self.tree.data(self.node).terminal,
        }
    }
}
