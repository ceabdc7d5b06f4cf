//! Search configuration: every algorithm choice of AlphaLLM and MCTS-DPO is a field here.
//!
//! The structs deserialise from TOML (`deny_unknown_fields`; missing fields take defaults) and
//! [`SearchConfig::validate`] rejects out-of-range values naming the dotted field. Two presets
//! reproduce the papers: [`SearchConfig::alphallm`] (the default) and [`SearchConfig::mcts_dpo`].

use serde::{Deserialize, Serialize};

use crate::critic::PrmAggregate;
use crate::error::{Error, Result};

/// Which search runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Algorithm {
    /// Monte Carlo tree search (AlphaLLM eta-MCTS or MCTS-DPO, depending on the other fields).
    #[default]
    Mcts,
    /// One greedy path (temperature 0), step by step.
    Greedy,
    /// `baseline.n` complete samples, the best by the outcome critic.
    #[serde(alias = "best_of_n")]
    BestOfN,
    /// `baseline.n` complete samples, the majority answer.
    #[serde(alias = "self_consistency")]
    SelfConsistency,
    /// Step-level beam search guided by the process critic.
    Beam,
}

/// The selection rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SelectionRule {
    /// `Q/N + c·sqrt(ln N_parent / N)` (AlphaLLM's released code).
    #[default]
    Uct,
    /// `Q/N + c·sqrt(2·ln N_parent / N)` (AlphaLLM's paper).
    Ucb2,
    /// `Q + c·p·sqrt(N_parent)/(1 + N)` with `p = exp(logp / len^λ)` (MCTS-DPO).
    Puct,
}

/// Where PUCT's prior comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorKind {
    /// The policy's length-normalised step probability.
    #[default]
    Lm,
    /// `1 / number of siblings` (for ablations).
    Uniform,
}

/// Selection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionConfig {
    /// The rule.
    pub rule: SelectionRule,
    /// Exploration constant `c` (AlphaLLM 1.0 or 1.5; MCTS-DPO `w_exp` 1.0).
    pub c: f64,
    /// λ in the PUCT prior `exp(logp / len^λ)` (MCTS-DPO 1.25).
    pub length_penalty: f64,
    /// The prior.
    pub prior: PriorKind,
}

impl Default for SelectionConfig {
    fn default() -> Self {
        SelectionConfig {
            rule: SelectionRule::Uct,
            c: 1.0,
            length_penalty: 1.25,
            prior: PriorKind::Lm,
        }
    }
}

/// How children are added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpansionMode {
    /// One new child per visit while the node has fewer children than its allowance
    /// (AlphaLLM's progressive widening).
    #[default]
    Progressive,
    /// All `k_root`/`k` candidates at once, the first time a node is reached (MCTS-DPO).
    Full,
}

/// How a node's importance (which sets its child allowance) is measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Importance {
    /// `max_children |v(child) - v(node)|` (AlphaLLM paper §4.3.2).
    #[default]
    Paper,
    /// `max_children |Q̄(child) - mean_siblings Q̄|` (AlphaLLM code).
    Code,
    /// No importance: the allowance is `c_min` (fixed branching).
    Fixed,
}

/// Importance-based adaptive branching: `n(s) = max(c_min(t), min(floor(α·I(s)) + 1, c_max(t)))`,
/// grow-only; `t = 0` is the root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WideningConfig {
    /// How importance is measured.
    pub importance: Importance,
    /// α. Scores here are normalised to `[0, 1]`, half the width of the paper's `[-1, 1]` value
    /// scale, so the default α = 2 equals the paper's α = 1 (and the code's width factor 2).
    pub alpha: f64,
    /// `c_min(0)`.
    pub c_min_root: u32,
    /// `c_min(t>0)`.
    pub c_min: u32,
    /// `c_max(0)`.
    pub c_max_root: u32,
    /// `c_max(t>0)`.
    pub c_max: u32,
}

impl Default for WideningConfig {
    fn default() -> Self {
        // AlphaLLM Table 5, GSM8K small budget.
        WideningConfig {
            importance: Importance::Paper,
            alpha: 2.0,
            c_min_root: 10,
            c_min: 2,
            c_max_root: 60,
            c_max: 10,
        }
    }
}

/// State merge: exact duplicates of a sibling are always rejected when `dedup` is on; with
/// `edit_distance > 0`, a candidate closer than that (characters, Levenshtein) to a sibling is
/// resampled up to `max_resamples` times and the most distant sample kept (AlphaLLM code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergeConfig {
    /// Reject exact duplicates of siblings.
    pub dedup: bool,
    /// Edit-distance threshold (0 = off; AlphaLLM 20).
    pub edit_distance: u32,
    /// Resamples per new child (AlphaLLM 5).
    pub max_resamples: u32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            dedup: true,
            edit_distance: 0,
            max_resamples: 5,
        }
    }
}

/// Expansion settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpansionConfig {
    /// Progressive widening or full expansion.
    pub mode: ExpansionMode,
    /// Candidates at the root in full mode (MCTS-DPO `n_init_actions`).
    pub k_root: u32,
    /// Candidates elsewhere in full mode (MCTS-DPO `n_actions`).
    pub k: u32,
    /// Adaptive branching for progressive mode.
    pub widening: WideningConfig,
    /// State merge.
    pub merge: MergeConfig,
    /// Decode a node's first child greedily (AlphaLLM `GREEDY_PATH`).
    pub greedy_first_child: bool,
    /// After creating a node, keep expanding one child at a time down to a terminal before backing
    /// up (MCTS-DPO's simulation); off, a simulation stops at the new node (AlphaLLM).
    pub descend_to_terminal: bool,
    /// Full mode: at the depth limit ask for one candidate that finishes the solution instead of
    /// `k` (MCTS-DPO's `force_terminating_on_depth_limit`).
    pub single_at_depth_limit: bool,
    /// Prune: a freshly created, unfinished node whose own step's process score (normalised to
    /// `[0, 1]`) is below this is never expanded (frozen), and the simulation that made it ends
    /// there, so no tokens are spent finishing a path the process critic rejects; its parent
    /// can widen instead. Unset (default) = off; needs a process critic to have any effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_below: Option<f32>,
}

impl Default for ExpansionConfig {
    fn default() -> Self {
        ExpansionConfig {
            mode: ExpansionMode::Progressive,
            k_root: 4,
            k: 2,
            widening: WideningConfig::default(),
            merge: MergeConfig::default(),
            greedy_first_child: false,
            descend_to_terminal: false,
            single_at_depth_limit: false,
            prune_below: None,
        }
    }
}

/// How leaf scores flow up the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackupRule {
    /// Node value = mean of all leaf scores backed up through it (AlphaLLM).
    #[default]
    #[serde(alias = "mean_leaf")]
    MeanLeaf,
    /// `Q = r + V`, `V = Σ max(1,N_c)·Q_c / Σ max(1,N_c)`, `r` = score difference (MCTS-DPO).
    #[serde(alias = "q_r_plus_v")]
    #[cfg_attr(feature = "clap", value(name = "q-r-plus-v"))]
    QRPlusV,
}

/// How the critic trio's normalised scores become one leaf score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// β_value.
    pub value_weight: f32,
    /// β_PRM.
    pub prm_weight: f32,
    /// β_ORM (applied to terminal nodes and to fast-rollout completions).
    pub orm_weight: f32,
    /// PRM aggregation along the path.
    pub prm_aggregate: PrmAggregate,
    /// Reward added at a terminal when the gold check is known: `+outcome_reward` if correct,
    /// `-outcome_reward` if not (MCTS-DPO ±1). 0 = off. Never use it where the answer must not be
    /// known (test-time search).
    pub outcome_reward: f32,
    /// Divide the critic part of a score by `max(depth_parent - 3, 1)` (MCTS-DPO).
    pub depth_penalty: bool,
    /// Fast rollouts per new non-terminal node, scored by the outcome critic (AlphaLLM n = 4;
    /// 0 = off). Needs a rollout policy.
    pub rollouts: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            value_weight: 1.0,
            prm_weight: 1.0,
            orm_weight: 1.0,
            prm_aggregate: PrmAggregate::Latest,
            outcome_reward: 0.0,
            depth_penalty: false,
            rollouts: 0,
        }
    }
}

/// When a search stops. A search stops at the first limit reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Simulations (per move in move-by-move mode).
    pub simulations: u32,
    /// Keep going past `simulations` until this many terminal nodes exist, up to
    /// `10 × simulations` (AlphaLLM `MIN_TERMINALS`). 0 = off.
    pub min_terminals: u32,
    /// Wall-clock limit per tree, seconds.
    pub wall_seconds: Option<f64>,
    /// Generated-token limit per tree (policy tokens, rollouts included).
    pub max_tokens: Option<u64>,
    /// Node limit per tree.
    pub max_nodes: u32,
    /// Depth limit: a node at this depth is terminal; the step before it is generated to the end.
    pub max_depth: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            simulations: 64,
            min_terminals: 0,
            wall_seconds: None,
            max_tokens: None,
            max_nodes: 1 << 22,
            max_depth: 10,
        }
    }
}

/// Threads and virtual loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParallelConfig {
    /// Worker threads on one tree.
    pub threads: u32,
    /// Weight of one in-flight simulation, counted as a visit of value `loss_value` during
    /// selection, so concurrent simulations spread out. 0 = off.
    pub virtual_loss: f64,
    /// The value an in-flight visit is assumed to have.
    pub loss_value: f64,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            threads: 1,
            virtual_loss: 1.0,
            loss_value: 0.0,
        }
    }
}

/// MCTS-DPO's move-by-move search: run `simulations` from the current root (× `root_factor` at
/// the first), commit to the child with the most `visits·(1 + diversity)`, re-root, repeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoveByMoveConfig {
    /// On or off.
    pub enabled: bool,
    /// Simulation multiplier at the first root (MCTS-DPO 4).
    pub root_factor: u32,
}

impl Default for MoveByMoveConfig {
    fn default() -> Self {
        MoveByMoveConfig {
            enabled: false,
            root_factor: 4,
        }
    }
}

/// How the final answer is chosen from a finished tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum AnswerRule {
    /// Follow the most visited child from the root.
    #[default]
    #[serde(alias = "most_visited")]
    MostVisited,
    /// Follow the child with the best Q from the root.
    #[serde(alias = "best_q")]
    BestQ,
    /// The terminal with the best outcome-critic score (or leaf score without one).
    #[serde(alias = "orm_rerank")]
    OrmRerank,
    /// The answer whose terminals have the largest summed leaf score.
    #[serde(alias = "weighted_vote")]
    WeightedVote,
}

/// Settings of the baseline searches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Samples for best-of-N and self-consistency.
    pub n: u32,
    /// Beams kept per depth.
    pub beam_width: u32,
    /// Candidates per beam per depth.
    pub beam_k: u32,
    /// Best-of-N and self-consistency under a token budget (`budget.max_tokens`): keep sampling
    /// waves of `n` until the budget is spent, instead of one wave (how `ponder eval` runs
    /// them, so every method spends the same tokens).
    pub fill_budget: bool,
    /// Self-consistency weights each sample's vote by its leaf score (PRM-weighted majority
    /// voting) instead of counting it once.
    pub weighted_vote: bool,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            n: 8,
            beam_width: 4,
            beam_k: 4,
            fill_budget: false,
            weighted_vote: false,
        }
    }
}

/// Everything a search needs to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Run seed: every random choice derives from it, the tree id and the node.
    pub seed: u64,
    /// Selection.
    pub selection: SelectionConfig,
    /// Expansion.
    pub expansion: ExpansionConfig,
    /// Backup.
    pub backup: BackupRule,
    /// Leaf scoring.
    pub scoring: ScoringConfig,
    /// Budgets.
    pub budget: BudgetConfig,
    /// Parallelism.
    pub parallel: ParallelConfig,
    /// MCTS-DPO move-by-move mode.
    pub move_by_move: MoveByMoveConfig,
    /// Final answer rule.
    pub answer: AnswerRule,
    /// Baselines.
    pub baseline: BaselineConfig,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig::alphallm()
    }
}

impl SearchConfig {
    /// AlphaLLM eta-MCTS: UCT as in the released code (c = 1), progressive widening with the
    /// paper's importance and Table 5's GSM8K small-budget widths, mean-of-leaf-scores backup,
    /// value + PRM + ORM weights 1 (the paper's §4.4). The released script differs: it turns the
    /// PRM off (`prm_weight = 0`), uses 4 fast rollouts (`rollouts = 4`, with a rollout policy)
    /// and `min_terminals = 40`; set those to match it.
    pub fn alphallm() -> Self {
        SearchConfig {
            algorithm: Algorithm::Mcts,
            seed: 0,
            selection: SelectionConfig::default(),
            expansion: ExpansionConfig::default(),
            backup: BackupRule::MeanLeaf,
            scoring: ScoringConfig::default(),
            budget: BudgetConfig::default(),
            parallel: ParallelConfig::default(),
            move_by_move: MoveByMoveConfig::default(),
            answer: AnswerRule::MostVisited,
            baseline: BaselineConfig::default(),
        }
    }

    /// MCTS-DPO: PUCT (c = 1, λ = 1.25) with LM priors, full expansion (4 at the root, 2 elsewhere,
    /// one finishing candidate at the depth limit), descent to a terminal per simulation,
    /// `Q = r + V` backup, ±1 terminal outcome reward, depth penalty, move-by-move search with 4×
    /// simulations at the first root. The released scripts use 64 iterations per move and depth
    /// 3-4 (`budget.simulations = 64`, `budget.max_depth = 4`); this preset defaults to 16 and 10
    /// for longer, cheaper searches. Their pair rules (random rejected, `--filter`) are output
    /// settings: `output.pairs.rejected = "random"`, `only_correct = true`.
    pub fn mcts_dpo() -> Self {
        let mut c = SearchConfig::alphallm();
        c.selection.rule = SelectionRule::Puct;
        c.expansion.mode = ExpansionMode::Full;
        c.expansion.k_root = 4;
        c.expansion.k = 2;
        c.expansion.descend_to_terminal = true;
        c.expansion.single_at_depth_limit = true;
        c.backup = BackupRule::QRPlusV;
        c.scoring.outcome_reward = 1.0;
        c.scoring.depth_penalty = true;
        c.budget.simulations = 16;
        c.move_by_move.enabled = true;
        c
    }

    /// Checks every field, naming the first bad one.
    ///
    /// # Errors
    /// [`Error::Config`] with the dotted field name.
    pub fn validate(&self) -> Result<()> {
        fn finite_nonneg(field: &str, x: f64) -> Result<()> {
            if x.is_finite() && x >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must be a finite number >= 0, got {x}"),
                ))
            }
        }
        fn positive(field: &str, x: u32) -> Result<()> {
            if x > 0 {
                Ok(())
            } else {
                Err(Error::config(field, "must be at least 1"))
            }
        }
        finite_nonneg("selection.c", self.selection.c)?;
        finite_nonneg("selection.length_penalty", self.selection.length_penalty)?;
        let e = &self.expansion;
        positive("expansion.k_root", e.k_root)?;
        positive("expansion.k", e.k)?;
        if e.k_root > 1024 || e.k > 1024 {
            return Err(Error::config(
                "expansion.k",
                "at most 1024 candidates per node",
            ));
        }
        let w = &e.widening;
        finite_nonneg("expansion.widening.alpha", w.alpha)?;
        positive("expansion.widening.c_min_root", w.c_min_root)?;
        positive("expansion.widening.c_min", w.c_min)?;
        if w.c_max_root < w.c_min_root {
            return Err(Error::config(
                "expansion.widening.c_max_root",
                format!(
                    "must be >= c_min_root ({}), got {}",
                    w.c_min_root, w.c_max_root
                ),
            ));
        }
        if w.c_max < w.c_min {
            return Err(Error::config(
                "expansion.widening.c_max",
                format!("must be >= c_min ({}), got {}", w.c_min, w.c_max),
            ));
        }
        if w.c_max_root > 1024 || w.c_max > 1024 {
            return Err(Error::config(
                "expansion.widening.c_max",
                "at most 1024 children per node",
            ));
        }
        if let Some(t) = e.prune_below
            && !(t.is_finite() && (0.0..=1.0).contains(&t))
        {
            return Err(Error::config(
                "expansion.prune_below",
                format!("must be between 0 and 1, got {t}"),
            ));
        }
        if e.merge.max_resamples > 64 {
            return Err(Error::config("expansion.merge.max_resamples", "at most 64"));
        }
        let s = &self.scoring;
        for (f, x) in [
            ("scoring.value_weight", s.value_weight),
            ("scoring.prm_weight", s.prm_weight),
            ("scoring.orm_weight", s.orm_weight),
            ("scoring.outcome_reward", s.outcome_reward),
        ] {
            finite_nonneg(f, f64::from(x))?;
        }
        if s.rollouts > 64 {
            return Err(Error::config(
                "scoring.rollouts",
                "at most 64 rollouts per node",
            ));
        }
        let b = &self.budget;
        positive("budget.simulations", b.simulations)?;
        positive("budget.max_depth", b.max_depth)?;
        if b.max_depth > 10_000 {
            return Err(Error::config("budget.max_depth", "at most 10000"));
        }
        if b.max_nodes < 2 || b.max_nodes == u32::MAX {
            return Err(Error::config(
                "budget.max_nodes",
                "must be between 2 and 2^32 - 2",
            ));
        }
        if let Some(t) = b.wall_seconds
            && !(t.is_finite() && t > 0.0 && t <= 1e9)
        {
            return Err(Error::config(
                "budget.wall_seconds",
                format!("must be > 0 and at most 1e9, got {t}"),
            ));
        }
        if b.max_tokens == Some(0) {
            return Err(Error::config("budget.max_tokens", "must be at least 1"));
        }
        let p = &self.parallel;
        positive("parallel.threads", p.threads)?;
        if p.threads > 4096 {
            return Err(Error::config("parallel.threads", "at most 4096"));
        }
        finite_nonneg("parallel.virtual_loss", p.virtual_loss)?;
        if !p.loss_value.is_finite() {
            return Err(Error::config("parallel.loss_value", "must be finite"));
        }
        positive("move_by_move.root_factor", self.move_by_move.root_factor)?;
        positive("baseline.n", self.baseline.n)?;
        positive("baseline.beam_width", self.baseline.beam_width)?;
        positive("baseline.beam_k", self.baseline.beam_k)?;
        if self.baseline.n > 1024 {
            return Err(Error::config("baseline.n", "at most 1024 samples"));
        }
        if self.baseline.beam_k > 1024 {
            return Err(Error::config(
                "baseline.beam_k",
                "at most 1024 candidates per beam",
            ));
        }
        if u64::from(self.baseline.beam_width) * u64::from(self.baseline.beam_k) > 65_536 {
            return Err(Error::config(
                "baseline.beam_width",
                "beam_width × beam_k must be at most 65536",
            ));
        }
        Ok(())
    }

    /// The child allowance cap at a depth (full mode: `k_root`/`k`; progressive: `c_max`).
    pub(crate) fn cap(&self, depth: u32) -> u32 {
        let root = depth == 0;
        match self.expansion.mode {
            ExpansionMode::Full => {
                if root {
                    self.expansion.k_root
                } else {
                    self.expansion.k
                }
            }
            ExpansionMode::Progressive => {
                let w = &self.expansion.widening;
                if root { w.c_max_root } else { w.c_max }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of `T` as serde writes it, and that the snake_case spelling of older files
    /// still reads.
    fn spellings<T>(all: &[T]) -> Vec<String>
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        all.iter()
            .map(|v| {
                let name = serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(!name.contains('_'), "{name}: values are kebab-case");
                let old = serde_json::Value::String(name.replace('-', "_"));
                assert_eq!(&serde_json::from_value::<T>(old).unwrap(), v, "{name}");
                name
            })
            .collect()
    }

    #[test]
    fn values_are_kebab_case_and_snake_case_still_reads() {
        use Algorithm::*;
        spellings(&[Mcts, Greedy, BestOfN, SelfConsistency, Beam]);
        spellings(&[BackupRule::MeanLeaf, BackupRule::QRPlusV]);
        spellings(&[
            AnswerRule::MostVisited,
            AnswerRule::BestQ,
            AnswerRule::OrmRerank,
            AnswerRule::WeightedVote,
        ]);
        spellings(&[SelectionRule::Uct, SelectionRule::Ucb2, SelectionRule::Puct]);
    }

    /// The CLI takes exactly the config file's values.
    #[cfg(feature = "clap")]
    #[test]
    fn flag_values_are_the_config_values() {
        fn same<T>()
        where
            T: clap::ValueEnum
                + Serialize
                + serde::de::DeserializeOwned
                + PartialEq
                + std::fmt::Debug,
        {
            for v in T::value_variants() {
                let flag = v.to_possible_value().unwrap().get_name().to_string();
                let file = serde_json::to_value(v).unwrap();
                assert_eq!(file.as_str(), Some(flag.as_str()));
            }
        }
        same::<Algorithm>();
        same::<SelectionRule>();
        same::<BackupRule>();
        same::<AnswerRule>();
    }

    #[test]
    fn presets_are_valid() {
        SearchConfig::alphallm().validate().unwrap();
        SearchConfig::mcts_dpo().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = SearchConfig::default();
        c.expansion.widening.c_max = 1;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("expansion.widening.c_max"), "{e}");
        let mut c = SearchConfig::default();
        c.selection.c = f64::NAN;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("selection.c")
        );
        let mut c = SearchConfig::default();
        c.parallel.threads = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("parallel.threads")
        );
    }
}
