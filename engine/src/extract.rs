//! One finished tree, every training format: step-level preference pairs (TRL preference form),
//! PRM data (TRL stepwise-supervision form), SFT traces, a full JSON dump and Graphviz DOT.
//!
//! All records carry `schema_version` ([`SCHEMA_VERSION`]); the README documents each field.

use serde::{Deserialize, Serialize};

use crate::config::SearchConfig;
use crate::error::{Error, Result};
use crate::rng::{Rng, mix};
use crate::search::SearchReport;
use crate::tree::{NodeId, Tree};

/// Version of every JSONL record ponder writes. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Which sibling becomes the rejected step of a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectedRule {
    /// The sibling with the lowest Q (MCTS-DPO `--choose_worst`; the paper's description).
    #[default]
    #[serde(alias = "min_q")]
    MinQ,
    /// A uniformly random non-best sibling (MCTS-DPO's released default, `--choose_random`).
    Random,
    /// The second-best sibling.
    Second,
}

/// Where pairs are taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairScope {
    /// Siblings along the final answer path (MCTS-DPO: the committed trajectory).
    #[default]
    #[serde(alias = "answer_path")]
    AnswerPath,
    /// Siblings anywhere in the tree, shallowest first.
    Tree,
}

/// Pair extraction settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairConfig {
    /// How the rejected step is chosen.
    pub rejected: RejectedRule,
    /// Minimum `q_chosen - q_rejected` (pairs also need a strictly positive gap).
    pub min_q_gap: f64,
    /// At most this many pairs per tree (MCTS-DPO 8).
    pub max_pairs_per_tree: u32,
    /// Keep a tree's pairs only if its final answer is correct (MCTS-DPO `--filter`).
    pub only_correct: bool,
    /// Where pairs come from.
    pub scope: PairScope,
    /// Children with fewer visits are not candidates.
    pub min_visits: u32,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            rejected: RejectedRule::MinQ,
            min_q_gap: 0.0,
            max_pairs_per_tree: 8,
            only_correct: false,
            scope: PairScope::AnswerPath,
            min_visits: 0,
        }
    }
}

/// PRM-data settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrmConfig {
    /// A step is labelled good when its MC value is above this (Math-Shepherd hard label: 0).
    pub threshold: f64,
    /// At most this many root-to-terminal paths per tree.
    pub max_paths_per_tree: u32,
}

impl Default for PrmConfig {
    fn default() -> Self {
        PrmConfig {
            threshold: 0.0,
            max_paths_per_tree: 32,
        }
    }
}

/// Output settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Pairs.
    pub pairs: PairConfig,
    /// PRM data.
    pub prm: PrmConfig,
}

impl OutputConfig {
    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(self.pairs.min_q_gap.is_finite() && self.pairs.min_q_gap >= 0.0) {
            return Err(Error::config(
                "output.pairs.min_q_gap",
                "must be a finite number >= 0",
            ));
        }
        if !self.prm.threshold.is_finite() {
            return Err(Error::config("output.prm.threshold", "must be finite"));
        }
        Ok(())
    }
}

/// The critics' view of one step, carried by pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticBreakdown {
    /// The leaf score backed up by the search.
    pub score: f32,
    /// Value critic, `[0, 1]`.
    pub value: Option<f32>,
    /// Process critic for this step, `[0, 1]`.
    pub prm: Option<f32>,
    /// Outcome critic, `[0, 1]`.
    pub orm: Option<f32>,
}

/// Both steps' critic views.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairCritics {
    /// The chosen step.
    pub chosen: CriticBreakdown,
    /// The rejected step.
    pub rejected: CriticBreakdown,
}

/// The concatenated token ids of the steps from the root to `node`, if all are known.
fn prefix_tokens(tree: &Tree, node: NodeId) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for n in tree.path_to(node).into_iter().skip(1) {
        out.extend(tree.data(n).step.tokens.as_ref()?);
    }
    Some(out)
}

/// A step-level preference pair (TRL preference form plus MCTS metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The tree within the run.
    pub tree_id: u32,
    /// Depth of the two steps (1 = first step).
    pub depth: u32,
    /// Question prompt plus the shared prefix of steps.
    pub prompt: String,
    /// The shared prefix of steps alone (`prompt` ends with it): a policy that wraps the task
    /// prompt in a chat template needs the boundary.
    #[serde(default)]
    pub prefix: String,
    /// Token ids of the prefix steps, when every one of them is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_tokens: Option<Vec<u32>>,
    /// The chosen step's node in the tree (what `trees.jsonl` and `ponder view` show); absent
    /// in pairs not taken from a tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_node: Option<u32>,
    /// The rejected step's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_node: Option<u32>,
    /// The preferred next step.
    pub chosen: String,
    /// The dispreferred next step.
    pub rejected: String,
    /// Q of the chosen step.
    pub q_chosen: f64,
    /// Q of the rejected step.
    pub q_rejected: f64,
    /// Visits of the chosen step.
    pub n_chosen: u32,
    /// Visits of the rejected step.
    pub n_rejected: u32,
    /// MCTS-DPO's per-pair conservative smoothing `min(N_l / (N_w + N_l), 0.5)`.
    pub label_smoothing: f64,
    /// Whether the tree's final answer is correct (`null` without a gold answer).
    pub final_correct: Option<bool>,
    /// Critic scores of both steps.
    pub critics: PairCritics,
    /// Token ids of the chosen step, when the policy is token-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_tokens: Option<Vec<u32>>,
    /// Token ids of the rejected step, when the policy is token-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_tokens: Option<Vec<u32>>,
}

/// PRM training data for one root-to-terminal path (TRL stepwise supervision plus MC values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrmRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The question prompt.
    pub prompt: String,
    /// The steps of the path.
    pub completions: Vec<String>,
    /// One label per step: `mc_values[i] > threshold`.
    pub labels: Vec<bool>,
    /// Per step: share of the terminals below it that are correct (`mc`), or its mean backed-up
    /// score when no gold answer exists (`q`).
    pub mc_values: Vec<f64>,
    /// `"mc"` or `"q"`.
    pub label_source: String,
}

/// An SFT trace: the best correct path of a tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SftRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The question prompt.
    pub prompt: String,
    /// The solution: the path's steps concatenated.
    pub completion: String,
    /// The extracted answer.
    pub answer: Option<String>,
    /// The terminal's leaf score.
    pub score: f32,
    /// Checked against a gold answer (`false`: chosen by the outcome critic alone).
    pub verified: bool,
}

/// The training-data views of one tree.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeOutputs {
    /// Step-level pairs.
    pub pairs: Vec<PairRecord>,
    /// PRM paths.
    pub prm: Vec<PrmRecord>,
    /// The SFT trace, if the tree has a usable solution.
    pub sft: Option<SftRecord>,
}

/// Q of a node as the search saw it.
fn q_of(tree: &Tree, cfg: &SearchConfig, n: NodeId) -> f64 {
    crate::search::q_value(tree, cfg, n, tree.counts(n).0)
}

fn breakdown(tree: &Tree, n: NodeId) -> CriticBreakdown {
    let e = tree.eval(n).copied().unwrap_or_default();
    CriticBreakdown {
        score: e.score,
        value: e.value,
        prm: e.prm,
        orm: e.orm,
    }
}

/// Extracts pairs, PRM data and the SFT trace from a finished search.
pub fn extract(report: &SearchReport, cfg: &SearchConfig, out: &OutputConfig) -> TreeOutputs {
    TreeOutputs {
        pairs: pairs(report, cfg, &out.pairs),
        prm: prm_records(report, cfg, &out.prm),
        sft: sft(report),
    }
}

/// The nodes whose children are compared, in output order.
fn pair_parents(report: &SearchReport, scope: PairScope) -> Vec<NodeId> {
    let tree = &*report.tree;
    match scope {
        PairScope::AnswerPath => {
            let end = report
                .answer
                .as_ref()
                .map_or_else(|| *report.committed.last().expect("root"), |a| a.node);
            let mut path = tree.path_to(end);
            path.pop();
            path
        }
        PairScope::Tree => {
            let mut v: Vec<NodeId> = tree
                .node_ids()
                .filter(|&n| tree.child_count(n) >= 2)
                .collect();
            v.sort_by_key(|&n| (tree.data(n).depth, n));
            v
        }
    }
}

/// Step-level preference pairs: siblings under one parent, chosen = max Q.
pub fn pairs(report: &SearchReport, cfg: &SearchConfig, pc: &PairConfig) -> Vec<PairRecord> {
    let tree = &*report.tree;
    let final_correct = report.answer.as_ref().and_then(|a| a.correct);
    if pc.only_correct && final_correct != Some(true) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for parent in pair_parents(report, pc.scope) {
        if out.len() >= pc.max_pairs_per_tree as usize {
            break;
        }
        let mut cands: Vec<(f64, u32, NodeId)> = tree
            .children_in_order(parent)
            .into_iter()
            .filter(|&c| tree.eval(c).is_some())
            .map(|c| (q_of(tree, cfg, c), tree.counts(c).0, c))
            .filter(|&(_, n, _)| n >= pc.min_visits)
            .collect();
        if cands.len() < 2 {
            continue;
        }
        // Best first: higher Q, then more visits, then older.
        cands.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.1.cmp(&a.1))
                .then(a.2.cmp(&b.2))
        });
        let (qw, nw, w) = cands[0];
        let (ql, nl, l) = match pc.rejected {
            RejectedRule::MinQ => *cands.last().expect("len >= 2"),
            RejectedRule::Second => cands[1],
            RejectedRule::Random => {
                let mut rng = Rng::new(mix(tree.seed(), mix(u64::from(parent.0), 0x9A1F)));
                cands[1 + rng.below(cands.len() as u64 - 1) as usize]
            }
        };
        let dq = qw - ql;
        let (sw, sl) = (&tree.data(w).step, &tree.data(l).step);
        if dq <= 0.0 || dq < pc.min_q_gap || sw.text == sl.text {
            continue;
        }
        let total = f64::from(nw) + f64::from(nl);
        out.push(PairRecord {
            schema_version: SCHEMA_VERSION,
            problem_id: tree.problem().id.clone(),
            tree_id: tree.id().0,
            depth: tree.data(w).depth,
            prompt: format!("{}{}", tree.prompt(), tree.path_text(parent)),
            prefix: tree.path_text(parent),
            prefix_tokens: prefix_tokens(tree, parent),
            chosen_node: Some(w.0),
            rejected_node: Some(l.0),
            chosen: sw.text.clone(),
            rejected: sl.text.clone(),
            q_chosen: qw,
            q_rejected: ql,
            n_chosen: nw,
            n_rejected: nl,
            label_smoothing: if total > 0.0 {
                (f64::from(nl) / total).min(0.5)
            } else {
                0.0
            },
            final_correct,
            critics: PairCritics {
                chosen: breakdown(tree, w),
                rejected: breakdown(tree, l),
            },
            chosen_tokens: sw.tokens.clone(),
            rejected_tokens: sl.tokens.clone(),
        });
    }
    out
}

/// Per node: (correct terminals, terminals) in its subtree, indexed by node id.
fn terminal_counts(tree: &Tree) -> Vec<(u32, u32)> {
    let mut acc = vec![(0u32, 0u32); tree.len()];
    let ids: Vec<NodeId> = tree.node_ids().collect();
    // Children have larger ids than their parent: one reverse pass sums subtrees.
    for &id in ids.iter().rev() {
        let d = tree.data(id);
        if d.terminal {
            let ok = tree.eval(id).and_then(|e| e.correct) == Some(true);
            acc[id.index()].0 += u32::from(ok);
            acc[id.index()].1 += 1;
        }
        if d.parent != NodeId::NONE {
            let (c, t) = acc[id.index()];
            acc[d.parent.index()].0 += c;
            acc[d.parent.index()].1 += t;
        }
    }
    acc
}

/// PRM data: every root-to-terminal path (up to the cap), each step labelled by its Monte-Carlo
/// value (Math-Shepherd), or by its mean backed-up score without a gold answer.
pub fn prm_records(report: &SearchReport, cfg: &SearchConfig, pc: &PrmConfig) -> Vec<PrmRecord> {
    let tree = &*report.tree;
    let has_gold = tree.problem().gold.is_some();
    let counts = if has_gold {
        terminal_counts(tree)
    } else {
        Vec::new()
    };
    tree.node_ids()
        .filter(|&n| tree.data(n).terminal)
        .take(pc.max_paths_per_tree as usize)
        .map(|leaf| {
            let path: Vec<NodeId> = tree.path_to(leaf).into_iter().skip(1).collect();
            let mc_values: Vec<f64> = path
                .iter()
                .map(|&n| {
                    if has_gold {
                        let (c, t) = counts[n.index()];
                        if t == 0 {
                            0.0
                        } else {
                            f64::from(c) / f64::from(t)
                        }
                    } else {
                        q_of(tree, cfg, n)
                    }
                })
                .collect();
            PrmRecord {
                schema_version: SCHEMA_VERSION,
                problem_id: tree.problem().id.clone(),
                prompt: tree.prompt().to_string(),
                completions: path
                    .iter()
                    .map(|&n| tree.data(n).step.text.clone())
                    .collect(),
                labels: mc_values.iter().map(|&v| v > pc.threshold).collect(),
                mc_values,
                label_source: if has_gold { "mc" } else { "q" }.into(),
            }
        })
        .collect()
}

/// The best correct path (highest leaf score among correct terminals); without a gold answer,
/// the chosen answer's path if its outcome score is at least 0.5.
pub fn sft(report: &SearchReport) -> Option<SftRecord> {
    let tree = &*report.tree;
    let (node, verified) = if tree.problem().gold.is_some() {
        let best = tree
            .node_ids()
            .filter(|&n| tree.eval(n).and_then(|e| e.correct) == Some(true))
            .max_by(|&a, &b| {
                let (sa, sb) = (tree.eval(a).unwrap().score, tree.eval(b).unwrap().score);
                sa.partial_cmp(&sb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.cmp(&a))
            })?;
        (best, true)
    } else {
        let a = report.answer.as_ref()?;
        let orm = tree.eval(a.node).and_then(|e| e.orm)?;
        if orm < 0.5 || !tree.data(a.node).terminal {
            return None;
        }
        (a.node, false)
    };
    Some(SftRecord {
        schema_version: SCHEMA_VERSION,
        problem_id: tree.problem().id.clone(),
        prompt: tree.prompt().to_string(),
        completion: tree.path_text(node),
        answer: tree.data(node).answer.clone(),
        score: tree.eval(node).map_or(0.0, |e| e.score),
        verified,
    })
}

/// One node of a tree dump.
#[derive(Clone, Debug, Serialize)]
pub struct DumpNode {
    /// Node id.
    pub id: u32,
    /// Parent id (`null` at the root).
    pub parent: Option<u32>,
    /// Depth.
    pub depth: u32,
    /// Step text.
    pub text: String,
    /// Visits.
    pub visits: u32,
    /// Mean backed-up score.
    pub mean: f64,
    /// Q as selection saw it.
    pub q: f64,
    /// Critic scores.
    pub critics: CriticBreakdown,
    /// Step reward.
    pub reward: f32,
    /// Step log-probability under the policy.
    pub logprob: f32,
    /// Step token count.
    pub n_tokens: u32,
    /// Terminal node.
    pub terminal: bool,
    /// Extracted answer.
    pub answer: Option<String>,
    /// Gold check.
    pub correct: Option<bool>,
}

/// A whole tree, for inspection.
#[derive(Clone, Debug, Serialize)]
pub struct TreeDump {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The problem.
    pub problem_id: String,
    /// The tree.
    pub tree_id: u32,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: Option<String>,
    /// The prompt.
    pub prompt: String,
    /// The chosen answer.
    pub answer: Option<crate::search::Answer>,
    /// Counters.
    pub stats: crate::search::SearchStats,
    /// Every node, by id.
    pub nodes: Vec<DumpNode>,
    /// The preference pairs extracted from the tree ([`TreeDump::with_pairs`]; empty unless
    /// given).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<DumpPair>,
}

/// A preference pair, by node ids (what `ponder view` shows on both nodes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DumpPair {
    /// The chosen step's node.
    pub chosen: u32,
    /// The rejected step's node.
    pub rejected: u32,
    /// Q of the chosen step.
    pub q_chosen: f64,
    /// Q of the rejected step.
    pub q_rejected: f64,
}

impl TreeDump {
    /// The dump with the pairs `records` took from this tree (those carrying node ids).
    pub fn with_pairs(mut self, records: &[PairRecord]) -> TreeDump {
        self.pairs = records
            .iter()
            .filter(|r| r.tree_id == self.tree_id)
            .filter_map(|r| {
                Some(DumpPair {
                    chosen: r.chosen_node?,
                    rejected: r.rejected_node?,
                    q_chosen: r.q_chosen,
                    q_rejected: r.q_rejected,
                })
            })
            .collect();
        self
    }

    /// The nodes of the chosen answer's path, from the root's child down to the answer's node
    /// (the root holds no step); empty without an answer.
    pub fn answer_path(&self) -> Vec<&DumpNode> {
        // Nodes are stored by id; the search is only a fallback for a dump read back reordered.
        let node = |id: u32| {
            self.nodes
                .get(id as usize)
                .filter(|n| n.id == id)
                .or_else(|| self.nodes.iter().find(|n| n.id == id))
        };
        let mut path = Vec::new();
        let mut at = self.answer.as_ref().and_then(|a| node(a.node.0));
        // At most one node per stored node: a malformed dump cannot loop.
        while let Some(n) = at.filter(|_| path.len() < self.nodes.len()) {
            let Some(parent) = n.parent else { break };
            path.push(n);
            at = node(parent);
        }
        path.reverse();
        path
    }
}

/// The full tree as a serialisable value.
pub fn dump(report: &SearchReport, cfg: &SearchConfig) -> TreeDump {
    let tree = &*report.tree;
    let nodes = tree
        .node_ids()
        .map(|n| {
            let d = tree.data(n);
            let s = tree.stats(n);
            DumpNode {
                id: n.0,
                parent: (d.parent != NodeId::NONE).then_some(d.parent.0),
                depth: d.depth,
                text: d.step.text.clone(),
                visits: s.visits,
                mean: s.mean(),
                q: q_of(tree, cfg, n),
                critics: breakdown(tree, n),
                reward: tree.eval(n).map_or(0.0, |e| e.reward),
                logprob: d.step.logprob,
                n_tokens: d.step.n_tokens,
                terminal: d.terminal,
                answer: d.answer.clone(),
                correct: tree.eval(n).and_then(|e| e.correct),
            }
        })
        .collect();
    TreeDump {
        schema_version: SCHEMA_VERSION,
        problem_id: tree.problem().id.clone(),
        tree_id: tree.id().0,
        question: tree.problem().question.clone(),
        gold: tree.problem().gold.clone(),
        prompt: tree.prompt().to_string(),
        answer: report.answer.clone(),
        stats: report.stats,
        nodes,
        pairs: Vec::new(),
    }
}

fn dot_escape(s: &str, max: usize) -> String {
    let mut t: String = s.trim().chars().take(max).collect();
    if s.trim().chars().count() > max {
        t.push('…');
    }
    t.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The tree in Graphviz DOT: labels show id, visits, Q and the step; correct terminals green,
/// wrong ones red, the answer path bold.
pub fn to_dot(report: &SearchReport, cfg: &SearchConfig) -> String {
    use std::fmt::Write;
    let tree = &*report.tree;
    let on_path: std::collections::HashSet<NodeId> = report
        .answer
        .as_ref()
        .map(|a| tree.path_to(a.node).into_iter().collect())
        .unwrap_or_default();
    let mut s = String::from("digraph ponder {\n  node [shape=box, fontname=\"monospace\"];\n");
    for n in tree.node_ids() {
        let d = tree.data(n);
        let st = tree.stats(n);
        let color = match tree.eval(n).and_then(|e| e.correct) {
            Some(true) => "green",
            Some(false) => "red",
            None if d.terminal => "gray",
            None => "black",
        };
        let style = if on_path.contains(&n) {
            ", penwidth=3"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  n{} [label=\"#{} N={} Q={:.3}\\n{}\", color={color}{style}];",
            n.0,
            n.0,
            st.visits,
            q_of(tree, cfg, n),
            dot_escape(&d.step.text, 48)
        );
        if d.parent != NodeId::NONE {
            let _ = writeln!(
                s,
                "  n{} -> n{}{};",
                d.parent.0,
                n.0,
                if on_path.contains(&n) {
                    " [penwidth=3]"
                } else {
                    ""
                }
            );
        }
    }
    s.push_str("}\n");
    s
}
