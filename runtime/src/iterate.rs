//! `ponder iterate`: the self-improvement loop (MCTS-DPO's iterative schedule). Each round
//! evaluates the current policy on a held-out test split, searches the training split with it,
//! turns the trees into preference pairs, and trains the next policy on them by DPO.
//!
//! Layout of `--out`:
//! - `round-<r>/eval.json` — the policy of round `r` on the test split (greedy, MCTS at the
//!   evaluation budget, self-consistency@N; accuracy and tokens);
//! - `round-<r>/gen/` — the round's search on the training split: `pairs.jsonl` (step-level),
//!   `trajectory_pairs.jsonl` (a correct versus an incorrect complete solution), `prm.jsonl`,
//!   `sft.jsonl`, and `stats.json` with the B-STaR figures (written last: the stage's marker);
//! - `round-<r+1>/model/` — the trained policy (HF checkpoint, adapters, DPO report);
//! - `metrics.jsonl`, `metrics.csv`, `metrics.svg` — one row per round.
//!
//! Every stage is skipped when its output is complete, so a killed run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use ponder_critics::training::{self, HeadJob};
use ponder_engine::config::Algorithm;
use ponder_engine::extract::{self, PairCritics, PairRecord, SCHEMA_VERSION};
use ponder_engine::{CriticKind, NodeId, Problem, SearchReport, Tree};
use ponder_policies::dpo::DpoConfig;
use ponder_policies::models;
use ponder_tasks::metrics;
use ponder_tasks::problems::{Split, word_problems};
use serde::{Deserialize, Serialize};

use crate::config::{BackendKind, Config, PolicyKind};
use crate::error::{Error, Result};
use crate::models::Loaded;
use crate::searcher::{ManyOptions, Searcher};

/// Which pairs each round trains on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PairLevel {
    /// Step-level pairs from sibling steps (MCTS-DPO).
    #[default]
    Step,
    /// A correct versus an incorrect complete solution per problem.
    Trajectory,
}

/// The settings of a self-improvement run.
#[derive(Clone, Debug)]
pub struct IterateOptions {
    /// The run's folder (see the module docs for its layout).
    pub out: PathBuf,
    /// DPO rounds (evaluations: one more).
    pub rounds: usize,
    /// The starting policy (the installed default when absent).
    pub model: Option<PathBuf>,
    /// Operations per word problem.
    pub level: u32,
    /// Training problems per round (the generator's train split).
    pub train_size: usize,
    /// Held-out test problems (the test split).
    pub test_size: usize,
    /// Generator seed.
    pub problem_seed: u64,
    /// Simulations per training tree.
    pub simulations: u32,
    /// Simulations per evaluation tree.
    pub eval_simulations: u32,
    /// Self-consistency samples in the evaluation.
    pub sc_n: u32,
    /// Token cap of one step.
    pub max_step_tokens: u32,
    /// Which pairs train the next policy.
    pub pairs: PairLevel,
    /// At most this many pairs per round (0: all).
    pub max_pairs: usize,
    /// DPO settings.
    pub dpo: DpoConfig,
    /// Trees searched at once.
    pub parallel_trees: u32,
    /// Worker threads per tree.
    pub threads: u32,
    /// Seed of searches and training.
    pub seed: u64,
    /// Train value / PRM / ORM heads on each round's trees for the next round's search.
    pub train_critics: bool,
}

/// Appends JSON lines to a fresh file.
struct Jsonl {
    path: PathBuf,
    w: BufWriter<File>,
    lines: u64,
}

impl Jsonl {
    fn create(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Jsonl {
            path,
            w: BufWriter::new(f),
            lines: 0,
        })
    }

    fn write<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let mut line = serde_json::to_vec(v).expect("records serialise");
        line.push(b'\n');
        self.w
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.lines += 1;
        Ok(())
    }

    /// Every record of a finished tree reaches the file before the next tree is written.
    fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// One row of the metrics table: a round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Row {
    /// The round.
    pub round: usize,
    /// Its policy.
    pub model: String,
    /// Greedy accuracy on the test split.
    pub greedy_acc: f64,
    /// MCTS accuracy on the test split.
    pub mcts_acc: f64,
    /// Self-consistency accuracy on the test split.
    pub sc_acc: f64,
    /// Tokens the evaluation generated.
    pub eval_tokens: u64,
    /// Seconds the evaluation took.
    pub eval_secs: f64,
    /// Share of training problems the round's search solved.
    pub train_solve_rate: Option<f64>,
    /// Pairs the next policy trained on.
    pub pairs: Option<u64>,
    /// B-STaR exploration: share of problems with a correct terminal.
    pub explore_solved_share: Option<f64>,
    /// B-STaR exploration: distinct final answers per problem.
    pub explore_distinct_answers: Option<f64>,
    /// B-STaR exploration: pass@4 over a problem's terminals.
    pub explore_pass_at_k: Option<f64>,
    /// B-STaR exploitation: the critics' AUROC on terminals.
    pub exploit_auroc: Option<f64>,
    /// Seconds the round's search took.
    pub gen_secs: Option<f64>,
    /// Seconds DPO took.
    pub dpo_secs: Option<f64>,
    /// DPO loss after training.
    pub dpo_loss_after: Option<f64>,
    /// DPO margin after training.
    pub dpo_margin_after: Option<f64>,
}

/// The policy evaluated on the test split.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Eval {
    greedy_acc: f64,
    mcts_acc: f64,
    sc_acc: f64,
    tokens: u64,
    secs: f64,
}

/// The round's search on the training split, with the B-STaR figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GenStats {
    problems: usize,
    solve_rate: f64,
    pairs: u64,
    trajectory_pairs: u64,
    /// Share of problems with at least one correct terminal (exploration).
    solved_share: f64,
    /// Mean number of distinct final answers among a problem's terminals (exploration).
    distinct_answers: f64,
    /// pass@k over each problem's terminals, unbiased estimator (exploration).
    pass_at_k: f64,
    k: usize,
    /// AUROC of the critics' mean score (value, PRM, ORM; not the gold reward) separating
    /// correct from incorrect terminals (exploitation).
    auroc: f64,
    secs: f64,
}

/// The search settings of a round: its policy `model`, and the critic heads in `heads` (the
/// round's `critics/` folder) when `--train-critics` made them.
fn base_cfg(model: &Path, heads: &Path, a: &IterateOptions) -> Config {
    let mut cfg = Config::default();
    cfg.policy.kind = PolicyKind::Llm;
    cfg.policy.model = Some(model.to_path_buf());
    if a.train_critics && heads.join("value.safetensors").exists() {
        cfg.critics.weights = Some(heads.to_path_buf());
    }
    cfg.policy.step.max_tokens = a.max_step_tokens;
    cfg.search.seed = a.seed;
    cfg.search.parallel.threads = a.threads;
    cfg
}

/// Accuracy and tokens of one algorithm on the test split, on models already loaded.
fn accuracy(cfg: &Config, loaded: &Loaded, problems: &[Problem], trees: u32) -> Result<(f64, u64)> {
    let searcher = Searcher::with_models(cfg.clone(), loaded.clone())?;
    let mut first: Option<ponder_engine::Error> = None;
    let s = searcher.search_many(problems, &many(trees), &mut |_| {}, &mut |_, _, r| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
        Ok(())
    })?;
    if let Some(e) = first {
        return Err(Error::Handler(
            format!(
                "{} of {} searches failed; the first: {e}",
                s.failed, s.problems
            )
            .into(),
        ));
    }
    Ok((s.accuracy().unwrap_or(0.0), s.stats.tokens))
}

fn evaluate(model: &Path, heads: &Path, test: &[Problem], a: &IterateOptions) -> Result<Eval> {
    let start = Instant::now();
    // One model load for the three evaluations: they differ in search settings only.
    let loaded = crate::models::load(&base_cfg(model, heads, a), test)?;
    let mut cfg = base_cfg(model, heads, a);
    cfg.search.algorithm = Algorithm::Greedy;
    let (greedy_acc, t1) = accuracy(&cfg, &loaded, test, a.parallel_trees)?;
    let mut cfg = base_cfg(model, heads, a);
    cfg.search.budget.simulations = a.eval_simulations;
    let (mcts_acc, t2) = accuracy(&cfg, &loaded, test, a.parallel_trees)?;
    let mut cfg = base_cfg(model, heads, a);
    cfg.search.algorithm = Algorithm::SelfConsistency;
    cfg.search.baseline.n = a.sc_n;
    let (sc_acc, t3) = accuracy(&cfg, &loaded, test, a.parallel_trees)?;
    Ok(Eval {
        greedy_acc,
        mcts_acc,
        sc_acc,
        tokens: t1 + t2 + t3,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// 1 − C(n−c, k)/C(n, k): the chance that k terminals drawn without replacement include a
/// correct one.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if c == 0 {
        return 0.0;
    }
    if n - c < k {
        return 1.0;
    }
    let mut p = 1.0;
    for i in (n - c + 1)..=n {
        p *= 1.0 - k as f64 / i as f64;
    }
    1.0 - p
}

/// The full solution of a terminal as a trajectory-level pair side: text and token ids.
fn solution(tree: &Tree, node: NodeId) -> (String, Option<Vec<u32>>) {
    let text = tree.path_text(node);
    let mut tokens = Some(Vec::new());
    for n in tree.path_to(node).into_iter().skip(1) {
        match (&mut tokens, &tree.data(n).step.tokens) {
            (Some(t), Some(s)) => t.extend(s),
            _ => tokens = None,
        }
    }
    (text, tokens)
}

/// A correct versus an incorrect complete solution of one tree (the best-scored correct one
/// against the best-scored incorrect one: the hardest negative).
pub fn trajectory_pair(rep: &SearchReport) -> Option<PairRecord> {
    let tree = &*rep.tree;
    let score = |n: NodeId| tree.eval(n).map_or(0.0, |e| e.score);
    let best = |want: bool| {
        tree.node_ids()
            .filter(|&n| {
                tree.data(n).terminal && tree.eval(n).and_then(|e| e.correct) == Some(want)
            })
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
    };
    let (w, l) = (best(true)?, best(false)?);
    let (chosen, ct) = solution(tree, w);
    let (rejected, rt) = solution(tree, l);
    (chosen != rejected).then(|| PairRecord {
        schema_version: SCHEMA_VERSION,
        problem_id: tree.problem().id.clone(),
        tree_id: tree.id().0,
        depth: 1,
        prompt: tree.prompt().to_string(),
        prefix: String::new(),
        prefix_tokens: Some(Vec::new()),
        // Whole solutions, not sibling steps: no step nodes to point at.
        chosen_node: None,
        rejected_node: None,
        chosen,
        rejected,
        q_chosen: 1.0,
        q_rejected: 0.0,
        n_chosen: tree.stats(w).visits,
        n_rejected: tree.stats(l).visits,
        label_smoothing: 0.0,
        final_correct: rep.answer.as_ref().and_then(|a| a.correct),
        critics: PairCritics::default(),
        chosen_tokens: ct,
        rejected_tokens: rt,
    })
}

fn generate(
    model: &Path,
    heads: &Path,
    train: &[Problem],
    dir: &Path,
    a: &IterateOptions,
) -> Result<GenStats> {
    let start = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut cfg = base_cfg(model, heads, a);
    cfg.search.budget.simulations = a.simulations;
    // Training problems have gold answers: terminals earn ±1 for right/wrong (MCTS-DPO), so
    // the Q values the pairs come from reflect correctness. Evaluation never does this.
    cfg.search.scoring.outcome_reward = 1.0;
    cfg.output.pairs.scope = extract::PairScope::Tree;
    let loaded = crate::models::load(&cfg, train)?;
    let searcher = Searcher::with_models(cfg.clone(), loaded)?;
    let mut pairs = Jsonl::create(dir, "pairs.jsonl")?;
    let mut traj = Jsonl::create(dir, "trajectory_pairs.jsonl")?;
    let mut prm = Jsonl::create(dir, "prm.jsonl")?;
    let mut sft = Jsonl::create(dir, "sft.jsonl")?;
    let k = 4;
    let (mut solved, mut distinct, mut pass, mut trees) = (0usize, 0usize, 0.0, 0usize);
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    let mut write = |rep: SearchReport| -> Result<()> {
        let out = extract::extract(&rep, &cfg.search, &cfg.output);
        for p in &out.pairs {
            pairs.write(p)?;
        }
        if let Some(t) = trajectory_pair(&rep) {
            traj.write(&t)?;
        }
        for p in &out.prm {
            prm.write(p)?;
        }
        if let Some(s) = &out.sft {
            sft.write(s)?;
        }
        for f in [&mut pairs, &mut traj, &mut prm, &mut sft] {
            f.flush()?;
        }
        // B-STaR: how varied and how often right the terminals are, and how well the leaf
        // score tells right from wrong.
        let tree = &*rep.tree;
        let terms: Vec<NodeId> = tree.node_ids().filter(|&n| tree.data(n).terminal).collect();
        let correct = terms
            .iter()
            .filter(|&&n| tree.eval(n).and_then(|e| e.correct) == Some(true))
            .count();
        let answers: std::collections::HashSet<&str> = terms
            .iter()
            .filter_map(|&n| tree.data(n).answer.as_deref())
            .collect();
        trees += 1;
        solved += usize::from(correct > 0);
        distinct += answers.len();
        pass += pass_at_k(terms.len(), correct, k);
        // Exploitation is judged on the critics alone: the leaf score of a training search
        // includes the gold reward, which would separate right from wrong trivially.
        for &n in &terms {
            if let Some(e) = tree.eval(n)
                && let Some(c) = e.correct
            {
                let parts: Vec<f32> = [e.value, e.prm, e.orm].into_iter().flatten().collect();
                if !parts.is_empty() {
                    scores.push(parts.iter().sum::<f32>() / parts.len() as f32);
                    labels.push(c);
                }
            }
        }
        Ok(())
    };
    let summary = searcher.search_many(
        train,
        &many(a.parallel_trees),
        &mut |_| {},
        &mut |_, p, r| match r {
            Ok(rep) => write(rep).map_err(Into::into),
            Err(e) => {
                tracing::error!(problem = %p.id, "search failed: {e}");
                Ok(())
            }
        },
    )?;
    let n = trees.max(1) as f64;
    let stats = GenStats {
        problems: summary.problems,
        solve_rate: summary.accuracy().unwrap_or(0.0),
        pairs: pairs.lines,
        trajectory_pairs: traj.lines,
        solved_share: solved as f64 / n,
        distinct_answers: distinct as f64 / n,
        pass_at_k: pass / n,
        k,
        auroc: metrics::auroc(&scores, &labels),
        secs: start.elapsed().as_secs_f64(),
    };
    write_json(&dir.join("stats.json"), &stats)?;
    Ok(stats)
}

fn many(parallel_trees: u32) -> ManyOptions {
    ManyOptions {
        parallel_trees,
        ids: None,
        control: None,
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_string_pretty(v).expect("stage outputs serialise") + "\n";
    std::fs::write(&tmp, body).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(Some(serde_json::from_str(&text).map_err(|e| {
        Error::Output {
            at: path.display().to_string(),
            message: format!("not a complete stage output: {e}"),
        }
    })?))
}

/// The metrics as CSV (`metrics.csv`).
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "round,model,greedy_acc,mcts_acc,sc_acc,eval_tokens,train_solve_rate,pairs,explore_solved_share,explore_distinct_answers,explore_pass_at_k,exploit_auroc,gen_secs,dpo_secs\n",
    );
    let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.4}"));
    for r in rows {
        s.push_str(&format!(
            "{},{},{:.4},{:.4},{:.4},{},{},{},{},{},{},{},{},{}\n",
            r.round,
            r.model,
            r.greedy_acc,
            r.mcts_acc,
            r.sc_acc,
            r.eval_tokens,
            o(r.train_solve_rate),
            r.pairs.map_or(String::new(), |p| p.to_string()),
            o(r.explore_solved_share),
            o(r.explore_distinct_answers),
            o(r.explore_pass_at_k),
            o(r.exploit_auroc),
            o(r.gen_secs),
            o(r.dpo_secs),
        ));
    }
    s
}

/// A line chart of the per-round figures that live on [0, 1] (`metrics.svg`).
pub fn svg(rows: &[Row]) -> String {
    let (w, h, left, top, pw, ph) = (640.0, 360.0, 60.0, 30.0, 420.0, 280.0);
    let n = rows.len().max(2) - 1;
    let x = |i: usize| left + pw * i as f64 / n as f64;
    let y = |v: f64| top + ph * (1.0 - v.clamp(0.0, 1.0));
    let series: Vec<(&str, &str, Vec<Option<f64>>)> = vec![
        (
            "greedy accuracy",
            "#1f77b4",
            rows.iter().map(|r| Some(r.greedy_acc)).collect(),
        ),
        (
            "MCTS accuracy",
            "#d62728",
            rows.iter().map(|r| Some(r.mcts_acc)).collect(),
        ),
        (
            "self-consistency",
            "#2ca02c",
            rows.iter().map(|r| Some(r.sc_acc)).collect(),
        ),
        (
            "explore: solved share",
            "#9467bd",
            rows.iter().map(|r| r.explore_solved_share).collect(),
        ),
        (
            "explore: pass@4",
            "#8c564b",
            rows.iter().map(|r| r.explore_pass_at_k).collect(),
        ),
        (
            "exploit: AUROC",
            "#ff7f0e",
            rows.iter().map(|r| r.exploit_auroc).collect(),
        ),
    ];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for t in 0..=4 {
        let v = f64::from(t) / 4.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
            y(v),
            left + pw,
            left - 6.0,
            y(v) + 4.0
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">round {}</text>\n",
            x(i),
            top + ph + 18.0,
            r.round
        ));
    }
    for (k, (name, color, vals)) in series.iter().enumerate() {
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
            .collect();
        if !pts.is_empty() {
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
        }
        let ly = top + 14.0 + 18.0 * k as f64;
        s.push_str(&format!(
            "<line x1=\"{0:.1}\" y1=\"{ly:.1}\" x2=\"{1:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{2:.1}\" y=\"{3:.1}\">{name}</text>\n",
            left + pw + 12.0,
            left + pw + 32.0,
            left + pw + 38.0,
            ly + 4.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// Runs the self-improvement loop of `a`, resuming from what `a.out` holds: each stage is
/// skipped when its output is complete. `say` gets progress messages (and warnings, prefixed
/// `warning: `). Returns the metrics, one row per round, also written as `metrics.jsonl`,
/// `metrics.csv` and `metrics.svg`.
///
/// # Errors
/// Zero rounds, a missing model, a stage that fails (searches, DPO), files that cannot be
/// read or written.
pub fn run(a: &IterateOptions, say: &mut dyn FnMut(&str)) -> Result<Vec<Row>> {
    if a.rounds == 0 {
        return Err(Error::config("rounds", "must be at least 1"));
    }
    let base = a.model.clone().unwrap_or_else(models::default_model_path);
    if !base.exists() {
        return Err(Error::config(
            "model",
            format!(
                "{} not found: run scripts/setup.sh or pass --model",
                base.display()
            ),
        ));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    let train = word_problems(a.train_size, a.level, a.problem_seed, Split::Train);
    let test = word_problems(a.test_size, a.level, a.problem_seed, Split::Test);
    let dpo_cfg: DpoConfig = a.dpo.clone();
    let mut say = |m: String| {
        tracing::info!("{m}");
        say(&m);
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut model: PathBuf = base.clone();
    for r in 0..=a.rounds {
        let dir = a.out.join(format!("round-{r}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if r > 0 {
            let trained = dir.join("model");
            // The previous round's DPO marks its checkpoint complete with the report.
            if trained.join("dpo-report.json").exists() {
                model = trained;
            } else if let Some(p) = read_json::<PathBuf>(&dir.join("model-path.json"))? {
                model = p;
            }
        }
        let eval = match read_json::<Eval>(&dir.join("eval.json"))? {
            Some(e) => e,
            None => {
                say(format!(
                    "round {r}: evaluating {} on {} test problems",
                    model.display(),
                    test.len()
                ));
                let e = evaluate(&model, &dir.join("critics"), &test, a)?;
                write_json(&dir.join("eval.json"), &e)?;
                e
            }
        };
        let mut row = Row {
            round: r,
            model: model.display().to_string(),
            greedy_acc: eval.greedy_acc,
            mcts_acc: eval.mcts_acc,
            sc_acc: eval.sc_acc,
            eval_tokens: eval.tokens,
            eval_secs: eval.secs,
            ..Row::default()
        };
        say(format!(
            "round {r}: greedy {:.1}%  mcts {:.1}%  self-consistency@{} {:.1}%",
            100.0 * eval.greedy_acc,
            100.0 * eval.mcts_acc,
            a.sc_n,
            100.0 * eval.sc_acc
        ));
        if r < a.rounds {
            let gen_dir = dir.join("gen");
            let g = match read_json::<GenStats>(&gen_dir.join("stats.json"))? {
                Some(g) => g,
                None => {
                    say(format!(
                        "round {r}: searching {} training problems",
                        train.len()
                    ));
                    generate(&model, &dir.join("critics"), &train, &gen_dir, a)?
                }
            };
            if let Some(prev) = rows.last()
                && let (Some(ps), Some(pd)) =
                    (prev.explore_solved_share, prev.explore_distinct_answers)
                && (g.solved_share < 0.8 * ps || g.distinct_answers < 0.8 * pd)
            {
                let m = format!(
                    "round {r}: exploration is collapsing (solved share {ps:.2} -> {:.2}, distinct answers {pd:.2} -> {:.2}); consider a higher temperature or fewer DPO epochs",
                    g.solved_share, g.distinct_answers
                );
                tracing::warn!("{m}");
                say(format!("warning: {m}"));
            }
            row.train_solve_rate = Some(g.solve_rate);
            row.explore_solved_share = Some(g.solved_share);
            row.explore_distinct_answers = Some(g.distinct_answers);
            row.explore_pass_at_k = Some(g.pass_at_k);
            row.exploit_auroc = Some(g.auroc);
            row.gen_secs = Some(g.secs);
            let next = a.out.join(format!("round-{}", r + 1));
            let (file, count) = match a.pairs {
                PairLevel::Step => ("pairs.jsonl", g.pairs),
                PairLevel::Trajectory => ("trajectory_pairs.jsonl", g.trajectory_pairs),
            };
            row.pairs = Some(count);
            let out = next.join("model");
            let report = out.join("dpo-report.json");
            if count == 0 {
                say(format!(
                    "round {r}: no pairs; the next round keeps this policy"
                ));
                std::fs::create_dir_all(&next).map_err(|e| Error::io(&next, e))?;
                write_json(&next.join("model-path.json"), &model)?;
            } else if let Some(v) = read_json::<serde_json::Value>(&report)? {
                row.dpo_secs = v["secs"].as_f64();
                row.dpo_loss_after = v["report"]["after"]["loss"].as_f64();
                row.dpo_margin_after = v["report"]["after"]["margin"].as_f64();
            } else {
                say(format!("round {r}: DPO on {count} {file} pairs"));
                let start = Instant::now();
                let rep = crate::train::dpo(
                    &model,
                    BackendKind::Flex,
                    &[gen_dir.join(file)],
                    a.max_pairs,
                    dpo_cfg.clone(),
                    &out,
                    &mut |_, _, _| {},
                )?;
                row.dpo_secs = Some(start.elapsed().as_secs_f64());
                row.dpo_loss_after = Some(rep.after.loss);
                row.dpo_margin_after = Some(rep.after.margin);
            }
            // Heads for the next round, trained on this round's trees over the next round's
            // backbone (the policy they will score with).
            if a.train_critics && !next.join("critics/value-report.json").exists() {
                let backbone = if out.join("dpo-report.json").exists() {
                    out.clone()
                } else {
                    model.clone()
                };
                say(format!(
                    "round {r}: training critic heads on the round's trees"
                ));
                let trained = train_heads(&backbone, &gen_dir.join("prm.jsonl"), &next, a.seed);
                if let Err(e) = trained {
                    let m = format!(
                        "round {r}: critic heads not trained ({e}); searching without them"
                    );
                    tracing::warn!("{m}");
                    say(format!("warning: {m}"));
                }
            }
        }
        rows.push(row);
        let jsonl: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).expect("rows serialise") + "\n")
            .collect();
        for (name, body) in [
            ("metrics.jsonl", jsonl),
            ("metrics.csv", csv(&rows)),
            ("metrics.svg", svg(&rows)),
        ] {
            let path = a.out.join(name);
            std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(rows)
}

/// Value, PRM and ORM heads over `backbone` from the labelled paths of `prm`, into
/// `next/critics`.
fn train_heads(backbone: &Path, prm: &Path, next: &Path, seed: u64) -> Result<()> {
    let data = ponder_tasks::data::read_jsonl(prm)?;
    let policy_cfg = crate::config::PolicyConfig {
        model: Some(backbone.to_path_buf()),
        ..crate::config::PolicyConfig::default()
    };
    let policy = Arc::new(crate::models::load_local_policy(&policy_cfg)?);
    let name = backbone.file_name().map_or_else(
        || backbone.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let cfg = ponder_critics::head::TrainConfig {
        hidden: 128,
        lr: 1e-3,
        max_epochs: 200,
        val_share: 0.2,
        seed,
        ..ponder_critics::head::TrainConfig::default()
    };
    let kinds = [CriticKind::Value, CriticKind::Process, CriticKind::Outcome];
    let job = HeadJob {
        backbone_name: &name,
        kinds: &kinds,
        train: &cfg,
        out: &next.join("critics"),
        about: serde_json::json!({"data": [prm], "backbone_path": backbone}),
    };
    training::train_heads(&*policy, &data, &job, &mut |_, _| {})?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_matches_the_combinatorics() {
        assert_eq!(pass_at_k(10, 0, 4), 0.0);
        assert_eq!(pass_at_k(10, 10, 4), 1.0);
        assert_eq!(pass_at_k(3, 1, 4), 1.0, "fewer wrong terminals than draws");
        assert_eq!(pass_at_k(2, 0, 4), 0.0, "no correct terminal, however few");
        assert_eq!(pass_at_k(0, 0, 4), 0.0);
        // 1 correct of 4, 1 draw: 1/4.
        assert!((pass_at_k(4, 1, 1) - 0.25).abs() < 1e-12);
        // 2 correct of 5, 2 draws: 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
    }
}
