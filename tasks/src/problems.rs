//! Grade-school arithmetic word problems with gold answers, by difficulty (the number of
//! operations, 1-5), seeded, in disjoint train / dev / test splits.
//!
//! A problem's split is a function of its question text (a stable hash into 70 / 10 / 20
//! buckets), so the same question can never land in two splits, whatever the seeds or sizes
//! asked for.

use ponder_engine::Problem;
use ponder_engine::rng::{Rng, hash_bytes, mix};

/// Which part of the problem space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// 70% of questions.
    Train,
    /// 10%.
    Dev,
    /// 20%.
    Test,
    /// Every question.
    All,
}

impl Split {
    /// The split a question belongs to.
    pub fn of(question: &str) -> Split {
        match hash_bytes(0x0005_9117, question.as_bytes()) % 100 {
            0..70 => Split::Train,
            70..80 => Split::Dev,
            _ => Split::Test,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
            Split::All => "all",
        }
    }
}

const NAMES: &[&str] = &[
    "Tom", "Sara", "Ben", "Lily", "Max", "Ana", "Omar", "Mia", "Leo", "Zoe", "Sam", "Nina",
];
/// (plural noun, verb for getting more, verb for losing some).
const ITEMS: &[(&str, &str, &str)] = &[
    ("apples", "buys", "eats"),
    ("marbles", "finds", "loses"),
    ("stickers", "gets", "gives away"),
    ("books", "buys", "sells"),
    ("coins", "finds", "spends"),
    ("cookies", "bakes", "eats"),
    ("pencils", "buys", "lends out"),
    ("stamps", "gets", "trades away"),
];

/// One generated problem: question text and exact answer.
fn one(rng: &mut Rng, level: u32) -> (String, i64) {
    let name = NAMES[rng.below(NAMES.len() as u64) as usize];
    let (item, more, less) = ITEMS[rng.below(ITEMS.len() as u64) as usize];
    let mut value = 2 + rng.below(19) as i64;
    let mut text = format!("{name} has {value} {item}.");
    for _ in 0..level.max(1) {
        match rng.below(4) {
            0 => {
                let n = 1 + rng.below(20) as i64;
                value += n;
                text.push_str(&format!(" Then {name} {more} {n} more."));
            }
            1 if value > 1 => {
                let n = 1 + rng.below(value.min(20) as u64 - 1) as i64;
                value -= n;
                text.push_str(&format!(" Then {name} {less} {n} of them."));
            }
            2 if value <= 60 => {
                let k = 2 + rng.below(2) as i64;
                value *= k;
                let word = if k == 2 { "doubles" } else { "triples" };
                text.push_str(&format!(" Then the number of {item} {word}."));
            }
            _ => {
                // Share equally and keep one share, only when it divides evenly.
                let ways: Vec<i64> = (2..=5).filter(|k| value % k == 0).collect();
                if let Some(&k) = ways.get(rng.below(ways.len().max(1) as u64) as usize) {
                    value /= k;
                    text.push_str(&format!(
                        " Then {name} shares them equally among {k} friends and keeps one share."
                    ));
                } else {
                    let n = 1 + rng.below(10) as i64;
                    value += n;
                    text.push_str(&format!(" Then {name} {more} {n} more."));
                }
            }
        }
    }
    text.push_str(&format!(" How many {item} does {name} have now?"));
    (text, value)
}

/// `n` problems of `level` operations from `split`, seeded. Ids are
/// `word-L{level}-{split}-{seed}-{i}`.
pub fn word_problems(n: usize, level: u32, seed: u64, split: Split) -> Vec<Problem> {
    let mut rng = Rng::new(mix(seed, 0x3040_0000 + u64::from(level)));
    let mut out = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    // Every split holds at least 10% of the space, so this ends quickly; the cap only guards
    // against a tiny space at level 1.
    for _ in 0..n.saturating_mul(200).max(1000) {
        if out.len() == n {
            break;
        }
        let (q, a) = one(&mut rng, level);
        if (split == Split::All || Split::of(&q) == split) && seen.insert(q.clone()) {
            let id = format!("word-L{level}-{}-{seed}-{}", split.name(), out.len());
            out.push(Problem::new(id, q).with_gold(a.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_disjoint_and_answers_right() {
        let train = word_problems(300, 3, 1, Split::Train);
        let test = word_problems(100, 3, 2, Split::Test);
        assert_eq!((train.len(), test.len()), (300, 100));
        let tq: std::collections::HashSet<&str> =
            train.iter().map(|p| p.question.as_str()).collect();
        assert!(test.iter().all(|p| !tq.contains(p.question.as_str())));
        assert!(test.iter().all(|p| Split::of(&p.question) == Split::Test));
        // Same seed, same problems.
        assert_eq!(
            word_problems(5, 2, 7, Split::Dev),
            word_problems(5, 2, 7, Split::Dev)
        );
        // Answers: replay a problem's operations from its text.
        for p in word_problems(200, 5, 3, Split::All) {
            let mut v: i64 = p
                .question
                .split_whitespace()
                .nth(2)
                .unwrap()
                .parse()
                .unwrap();
            for s in p.question.split(". Then ").skip(1) {
                let num = s
                    .split_whitespace()
                    .find_map(|w| w.trim_end_matches(['.', '?']).parse::<i64>().ok());
                if s.contains("doubles") {
                    v *= 2;
                } else if s.contains("triples") {
                    v *= 3;
                } else if s.contains("shares") {
                    v /= num.unwrap();
                } else if [
                    "eats",
                    "loses",
                    "gives away",
                    "sells",
                    "spends",
                    "lends out",
                    "trades away",
                ]
                .iter()
                .any(|w| s.contains(&format!(" {w} ")))
                {
                    v -= num.unwrap();
                } else {
                    v += num.unwrap();
                }
            }
            assert_eq!(
                p.gold.as_deref(),
                Some(v.to_string().as_str()),
                "{}",
                p.question
            );
            assert!(v >= 0, "{}", p.question);
        }
    }
}
