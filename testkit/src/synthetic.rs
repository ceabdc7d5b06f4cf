//! The synthetic task: multi-step integer arithmetic ("Start with 7. Add 3. Multiply by 2. What is
//! the result?"). Each step applies one operation; the scripted policy gets a step right with a
//! set probability, and the critics are noisy oracles that know the truth. Because correctness
//! is known exactly, tests can check that search finds right answers more often with more
//! simulations, that good priors help PUCT, and that pairs prefer right steps.

use std::sync::Arc;

use ponder_engine::batcher::Models;
use ponder_engine::critic::{Critic, CriticKind, CriticPanel, ScoreRange};
use ponder_engine::error::BoxError;
use ponder_engine::policy::{ExpandRequest, Policy};
use ponder_engine::rng::{Rng, hash_bytes, mix};
use ponder_engine::task::Task;
use ponder_engine::tree::PathRef;
use ponder_engine::types::{Problem, Step};

/// One operation of a synthetic problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `x + a`.
    Add(i64),
    /// `x - a`.
    Sub(i64),
    /// `x * a`.
    Mul(i64),
}

impl Op {
    /// Applies the operation.
    pub fn apply(self, x: i64) -> i64 {
        match self {
            Op::Add(a) => x + a,
            Op::Sub(a) => x - a,
            Op::Mul(a) => x * a,
        }
    }

    /// The operator as written in a step line (`+`, `-`, `*`) and its argument.
    pub fn symbol_and_arg(self) -> (char, i64) {
        match self {
            Op::Add(a) => ('+', a),
            Op::Sub(a) => ('-', a),
            Op::Mul(a) => ('*', a),
        }
    }

    /// The operation written as `symbol_and_arg` gives it; `None` for another symbol.
    pub fn from_symbol(symbol: char, a: i64) -> Option<Op> {
        match symbol {
            '+' => Some(Op::Add(a)),
            '-' => Some(Op::Sub(a)),
            '*' => Some(Op::Mul(a)),
            _ => None,
        }
    }

    fn phrase(self) -> String {
        match self {
            Op::Add(a) => format!("Add {a}."),
            Op::Sub(a) => format!("Subtract {a}."),
            Op::Mul(a) => format!("Multiply by {a}."),
        }
    }
}

/// A parsed synthetic problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arithmetic {
    /// The starting value.
    pub start: i64,
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl Arithmetic {
    /// The true final value.
    pub fn answer(&self) -> i64 {
        self.ops.iter().fold(self.start, |x, op| op.apply(x))
    }

    /// The question text.
    pub fn question(&self) -> String {
        let mut q = format!("Start with {}.", self.start);
        for op in &self.ops {
            q.push(' ');
            q.push_str(&op.phrase());
        }
        q.push_str(" What is the result?");
        q
    }

    /// Parses a question written by [`Arithmetic::question`] (case-insensitive, commas allowed).
    pub fn parse(question: &str) -> Option<Arithmetic> {
        let q = question.to_ascii_lowercase().replace(',', ".");
        let mut start = None;
        let mut ops = Vec::new();
        for sentence in q.split('.').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = sentence.split_whitespace().collect();
            let num = |w: Option<&&str>| w.and_then(|w| w.parse::<i64>().ok());
            match words.as_slice() {
                ["start", "with", ..] | ["start", "at", ..] => start = num(words.get(2)),
                ["add", ..] => ops.push(Op::Add(num(words.get(1))?)),
                ["subtract", ..] => ops.push(Op::Sub(num(words.get(1))?)),
                ["multiply", "by", ..] => ops.push(Op::Mul(num(words.get(2))?)),
                ["times", ..] => ops.push(Op::Mul(num(words.get(1))?)),
                _ if sentence.contains("what is") || sentence.contains('?') => {}
                _ => return None,
            }
        }
        let start = start?;
        (!ops.is_empty()).then_some(Arithmetic { start, ops })
    }
}

/// `n` seeded problems with `level` operations each. Ids are `syn-L{level}-{seed}-{i}`; different
/// seeds give disjoint-by-construction id sets (splits use different seeds).
pub fn problems(n: usize, level: u32, seed: u64) -> Vec<Problem> {
    let mut rng = Rng::new(mix(seed, u64::from(level)));
    (0..n)
        .map(|i| {
            let start = 1 + rng.below(20) as i64;
            let ops = (0..level.max(1))
                .map(|_| match rng.below(3) {
                    0 => Op::Add(1 + rng.below(20) as i64),
                    1 => Op::Sub(1 + rng.below(20) as i64),
                    _ => Op::Mul(2 + rng.below(4) as i64),
                })
                .collect();
            let a = Arithmetic { start, ops };
            Problem::new(format!("syn-L{level}-{seed}-{i}"), a.question())
                .with_gold(a.answer().to_string())
        })
        .collect()
}

/// Knobs of the synthetic world.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// Probability that a sampled step is right.
    pub p_correct: f64,
    /// Probability that the greedy (mode) step is right, per problem and depth.
    pub p_greedy: f64,
    /// How informative the policy's log-probs are: 0 = right and wrong steps look alike,
    /// 1 = right steps are much more likely.
    pub prior_quality: f64,
    /// Amplitude of the critics' noise (uniform in `[-noise, noise]` on their native scale).
    pub critic_noise: f32,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            p_correct: 0.6,
            p_greedy: 0.6,
            prior_quality: 0.5,
            critic_noise: 0.2,
        }
    }
}

/// The task: prompt `Question: …\nAnswer:\n`, answers `The answer is N.`, integer equality.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyntheticTask;

impl Task for SyntheticTask {
    fn name(&self) -> &str {
        "synthetic-arithmetic"
    }

    fn prompt(&self, problem: &Problem) -> String {
        format!("Question: {}\nAnswer:\n", problem.question)
    }

    fn extract_answer(&self, text: &str) -> Option<String> {
        let at = text.rfind("The answer is ")?;
        let rest = &text[at + "The answer is ".len()..];
        let num: String = rest
            .chars()
            .enumerate()
            .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'))
            .map(|(_, c)| c)
            .collect();
        num.parse::<i64>().ok().map(|n| n.to_string())
    }

    fn check(&self, answer: &str, gold: &str) -> bool {
        match (answer.trim().parse::<i64>(), gold.trim().parse::<i64>()) {
            (Ok(a), Ok(g)) => a == g,
            _ => answer.trim() == gold.trim(),
        }
    }
}

/// One parsed step line `x op a = y` (an optional `. The answer is …` tail is ignored): the
/// claimed input, operator, operand and result.
pub fn parse_line(line: &str) -> Option<(i64, char, i64, i64)> {
    let line = line
        .split(". The answer")
        .next()?
        .trim()
        .trim_end_matches('.');
    let (lhs, y) = line.split_once(" = ")?;
    let mut parts = lhs.split_whitespace();
    let x = parts.next()?.parse().ok()?;
    let op = parts.next()?.chars().next()?;
    let a = parts.next()?.parse().ok()?;
    Some((x, op, a, y.trim().parse().ok()?))
}

/// Replays a path against the truth: (claimed current value, number of op lines, every line
/// locally right, last line locally right).
fn replay(problem: &Arithmetic, steps: &[&Step]) -> (i64, usize, bool, bool) {
    let mut x = problem.start;
    let mut i = 0;
    let mut all_ok = true;
    let mut last_ok = true;
    for s in steps {
        for line in s.text.lines() {
            let Some((_, _, _, y)) = parse_line(line) else {
                continue;
            };
            let ok = problem.ops.get(i).is_some_and(|op| op.apply(x) == y);
            all_ok &= ok;
            last_ok = ok;
            x = y;
            i += 1;
        }
    }
    (x, i, all_ok, last_ok)
}

fn parse_problem(path: &PathRef<'_>) -> Result<Arithmetic, BoxError> {
    Arithmetic::parse(&path.problem().question).ok_or_else(|| {
        format!(
            "the synthetic policy only understands questions like \
             'Start with 7. Add 3. Multiply by 2. What is the result?', got {:?}",
            path.problem().question
        )
        .into()
    })
}

/// The scripted policy (a test double): step `i` applies operation `i` to the path's current
/// value, right with probability `p_correct`, otherwise off by 1-9.
#[derive(Clone, Debug, Default)]
pub struct ScriptedPolicy {
    spec: SyntheticSpec,
}

impl ScriptedPolicy {
    /// A policy for `spec`.
    pub fn new(spec: SyntheticSpec) -> Self {
        ScriptedPolicy { spec }
    }

    fn line(x: i64, op: Op, y: i64) -> String {
        let (sym, a) = op.symbol_and_arg();
        format!("{x} {sym} {a} = {y}")
    }

    fn sample(&self, problem: &Arithmetic, qkey: u64, req: &ExpandRequest<'_>, j: u32) -> Step {
        let steps = req.path.steps();
        let (mut x, done, _, _) = replay(problem, &steps);
        let mut rng = Rng::new(mix(req.seed, u64::from(j)));
        let mut text = String::new();
        let mut logprob = 0.0f64;
        let mut i = done;
        loop {
            let Some(&op) = problem.ops.get(i) else {
                text.push_str(&format!("The answer is {x}.\n"));
                break;
            };
            let right = if req.greedy {
                Rng::new(mix(qkey, i as u64)).next_f64() < self.spec.p_greedy
            } else {
                rng.next_f64() < self.spec.p_correct
            };
            let truth = op.apply(x);
            let y = if right {
                truth
            } else {
                let d = 1 + rng.below(9) as i64;
                if rng.below(2) == 0 {
                    truth + d
                } else {
                    truth - d
                }
            };
            let q = self.spec.prior_quality;
            let p_tok = if right { 0.6 + 0.3 * q } else { 0.6 - 0.3 * q };
            let line = Self::line(x, op, y);
            let toks = (line.len() / 3).max(1) as f64;
            logprob += toks * (p_tok * (0.95 + 0.1 * rng.next_f64())).ln();
            text.push_str(&line);
            x = y;
            i += 1;
            if i == problem.ops.len() {
                text.push_str(&format!(". The answer is {x}.\n"));
                break;
            }
            text.push('\n');
            if !req.to_end {
                break;
            }
        }
        let mut n_tokens = (text.len() / 3).max(1) as u32;
        if let Some(max) = req.max_tokens.filter(|&m| n_tokens > m) {
            // Cut at the budget like a real decoder: three bytes a token, unfinished.
            text.truncate(3 * max as usize);
            logprob *= f64::from(max) / f64::from(n_tokens);
            n_tokens = max;
        }
        Step {
            finished: text.ends_with('\n') && text.contains("The answer is"),
            text,
            tokens: None,
            logprob: logprob as f32,
            n_tokens,
            reused_tokens: 0,
        }
    }
}

impl Policy for ScriptedPolicy {
    fn name(&self) -> &str {
        "synthetic-scripted"
    }

    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        requests
            .iter()
            .map(|r| {
                let problem = parse_problem(&r.path)?;
                let qkey = hash_bytes(0xA11CE, r.path.problem().question.as_bytes());
                Ok((0..r.k)
                    .map(|j| self.sample(&problem, qkey, r, j))
                    .collect())
            })
            .collect()
    }

    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        // A step is one line of at most ~45 bytes; a solution at most one line per operation.
        Some(if to_end { 512 } else { 32 })
    }
}

/// Which truth a [`OracleCritic`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Oracle {
    Value,
    Process,
    Outcome,
}

/// A noisy oracle critic (a test double) for the synthetic task. Its noise is a hash of the path
/// text, so the same path always gets the same score.
#[derive(Clone, Debug)]
pub struct OracleCritic {
    oracle: Oracle,
    spec: SyntheticSpec,
    name: &'static str,
}

impl OracleCritic {
    /// Value: `2p - 1` on `[-1, 1]`, with `p` the chance the path still ends right.
    pub fn value(spec: SyntheticSpec) -> Self {
        OracleCritic {
            oracle: Oracle::Value,
            spec,
            name: "synthetic-value",
        }
    }

    /// Process: 0.8 for a right latest step, 0.2 for a wrong one, on `[0, 1]`.
    pub fn process(spec: SyntheticSpec) -> Self {
        OracleCritic {
            oracle: Oracle::Process,
            spec,
            name: "synthetic-prm",
        }
    }

    /// Outcome: 0.9 for a right complete path, 0.1 otherwise, on `[0, 1]`.
    pub fn outcome(spec: SyntheticSpec) -> Self {
        OracleCritic {
            oracle: Oracle::Outcome,
            spec,
            name: "synthetic-orm",
        }
    }

    fn one(&self, path: &PathRef<'_>) -> Result<f32, BoxError> {
        let problem = parse_problem(path)?;
        let steps = path.steps();
        let (_, done, all_ok, last_ok) = replay(&problem, &steps);
        let text = path.text();
        let u =
            Rng::new(hash_bytes(self.oracle as u64, text.as_bytes())).next_f64() as f32 * 2.0 - 1.0;
        let noise = self.spec.critic_noise * u;
        Ok(match self.oracle {
            Oracle::Value => {
                let left = problem.ops.len().saturating_sub(done) as i32;
                let p = if all_ok {
                    self.spec.p_correct.powi(left) as f32
                } else {
                    0.0
                };
                (2.0 * p - 1.0 + noise).clamp(-1.0, 1.0)
            }
            Oracle::Process => (if last_ok { 0.8 } else { 0.2 } + noise).clamp(0.0, 1.0),
            Oracle::Outcome => {
                let right = all_ok && done == problem.ops.len();
                (if right { 0.9 } else { 0.1 } + noise).clamp(0.0, 1.0)
            }
        })
    }
}

impl Critic for OracleCritic {
    fn name(&self) -> &str {
        self.name
    }

    fn kind(&self) -> CriticKind {
        match self.oracle {
            Oracle::Value => CriticKind::Value,
            Oracle::Process => CriticKind::Process,
            Oracle::Outcome => CriticKind::Outcome,
        }
    }

    fn range(&self) -> ScoreRange {
        match self.oracle {
            Oracle::Value => ScoreRange::SIGNED,
            _ => ScoreRange::UNIT,
        }
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        paths.iter().map(|p| self.one(p)).collect()
    }
}

/// The synthetic world's models: scripted policy (also the rollout policy), the three oracle
/// critics, and the task.
pub fn models(spec: &SyntheticSpec) -> Models {
    let critics = CriticPanel::new()
        .with(Arc::new(OracleCritic::value(spec.clone())))
        .and_then(|p| p.with(Arc::new(OracleCritic::process(spec.clone()))))
        .and_then(|p| p.with(Arc::new(OracleCritic::outcome(spec.clone()))))
        .expect("one critic of each kind");
    let policy: Arc<dyn Policy> = Arc::new(ScriptedPolicy::new(spec.clone()));
    Models {
        rollout: Some(policy.clone()),
        policy,
        critics,
        task: Arc::new(SyntheticTask),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_round_trip() {
        for p in problems(20, 4, 3) {
            let a = Arithmetic::parse(&p.question).unwrap();
            assert_eq!(a.ops.len(), 4);
            assert_eq!(a.answer().to_string(), p.gold.clone().unwrap());
            assert_eq!(a.question(), p.question);
        }
        let a = Arithmetic::parse("Start at 7, add 3, times 2").unwrap();
        assert_eq!(a.answer(), 20);
        assert!(Arithmetic::parse("If Tom has 3 apples").is_none());
    }

    #[test]
    fn task_extracts_and_checks() {
        let t = SyntheticTask;
        assert_eq!(
            t.extract_answer("3 + 4 = 7. The answer is 7.\n").as_deref(),
            Some("7")
        );
        assert_eq!(
            t.extract_answer("The answer is -12.").as_deref(),
            Some("-12")
        );
        assert_eq!(t.extract_answer("no answer"), None);
        assert!(t.check("7", " 7"));
        assert!(!t.check("7", "8"));
    }

    #[test]
    fn lines_parse() {
        assert_eq!(parse_line("7 + 3 = 10"), Some((7, '+', 3, 10)));
        assert_eq!(
            parse_line("10 * 2 = 20. The answer is 20."),
            Some((10, '*', 2, 20))
        );
        assert_eq!(parse_line("The answer is 20."), None);
    }
}
