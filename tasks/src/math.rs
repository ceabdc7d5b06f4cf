//! Math word problems: the task (prompt, answer extraction, gold check) and the rule-based answer
//! normaliser it relies on.
//!
//! Answers are read, in order of preference, from `The answer is …`, GSM8K's `#### …`, LaTeX
//! `\boxed{…}`, and at a terminal without any marker, the last number of the text. Numbers are
//! normalised before comparison: thousands separators, currency and percent signs, trailing
//! units and full stops go; fractions and decimals compare by value (`1/2` = `0.5` = `.50`).

use ponder_engine::{PathRef, Problem, Task};

/// The answer marker the prompt asks for, and the step rule's answer pattern.
pub const ANSWER_MARKER: &str = "The answer is";

/// A number as an exact fraction `num/den` (den > 0), or `None` when the text is not a number.
fn parse_number(s: &str) -> Option<(i128, i128)> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('/') {
        let (n1, d1) = parse_number(a)?;
        let (n2, d2) = parse_number(b)?;
        if n2 == 0 {
            return None;
        }
        let (num, den) = (n1.checked_mul(d2)?, d1.checked_mul(n2)?);
        return Some(if den < 0 { (-num, -den) } else { (num, den) });
    }
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 18
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let num: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let den = 10i128.checked_pow(frac.len() as u32)?;
    Some((if neg { -num } else { num }, den))
}

/// Normalises an answer: strips `$`, `%`, thousands separators, surrounding punctuation and
/// trailing words (units), and writes numbers in lowest terms (`"$1,200.50"` → `"2401/2"`).
/// Text that is not a number is returned trimmed and lower-cased.
pub fn normalise(answer: &str) -> String {
    let t = answer
        .trim()
        .trim_end_matches(['.', '!', ',', ';', ':'])
        .trim();
    let t = t
        .strip_prefix("\\boxed{")
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    // LaTeX fractions: `\frac{3}{4}`, `\dfrac{3}{4}`, `-\frac{1}{2}` → `3/4`, `-1/2`.
    let latex = latex_fraction(t);
    let t = latex.as_deref().unwrap_or(t);
    let cleaned: String = t
        .chars()
        .filter(|c| !matches!(c, '$' | '%' | ',' | '€' | '£'))
        .collect();
    let first = cleaned.split_whitespace().next().unwrap_or("");
    match parse_number(first) {
        Some((n, d)) => {
            let g = gcd(n.unsigned_abs(), d.unsigned_abs()).max(1) as i128;
            let (n, d) = (n / g, d / g);
            if d == 1 {
                n.to_string()
            } else {
                format!("{n}/{d}")
            }
        }
        None => t.to_lowercase(),
    }
}

/// `\frac{a}{b}` (or `\dfrac`, `\tfrac`, optionally signed) as `a/b`.
fn latex_fraction(t: &str) -> Option<String> {
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => ("-", r.trim_start()),
        None => ("", t),
    };
    let rest = ["\\frac{", "\\dfrac{", "\\tfrac{"]
        .iter()
        .find_map(|p| rest.strip_prefix(p))?;
    let (num, rest) = rest.split_once('}')?;
    let den = rest.strip_prefix('{')?.strip_suffix('}')?;
    Some(format!("{sign}{}/{}", num.trim(), den.trim()))
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Whether two answers are the same after [`normalise`].
pub fn equivalent(a: &str, b: &str) -> bool {
    normalise(a) == normalise(b)
}

/// The number-like token that ends a marker's line: `"The answer is $1,200."` → `"$1,200"`.
fn after_marker(text: &str, marker: &str) -> Option<String> {
    let at = text.rfind(marker)?;
    let rest = text[at + marker.len()..].trim_start_matches([':', ' ']);
    let line = rest.lines().next()?.trim();
    let token: String = line
        .split_whitespace()
        .next()?
        .trim_end_matches(['.', ',', '!', ';'])
        .to_string();
    (!token.is_empty()).then_some(token)
}

/// The last number in a text, if any.
fn last_number(text: &str) -> Option<String> {
    let mut last = None;
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit()
            || ((c == '.' || c == ',' || c == '/') && !cur.is_empty())
            || (c == '-' && cur.is_empty())
        {
            cur.push(c);
        } else {
            let t = cur.trim_end_matches(['.', ',', '/', '-']);
            if t.chars().any(|c| c.is_ascii_digit()) {
                last = Some(t.to_string());
            }
            cur.clear();
        }
    }
    last
}

/// Reads the final answer of a solution text (see the module docs for the order).
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(a) = after_marker(text, ANSWER_MARKER) {
        return Some(a);
    }
    if let Some(a) = after_marker(text, "####") {
        return Some(a);
    }
    if let Some(at) = text.rfind("\\boxed{") {
        let rest = &text[at + 7..];
        let mut depth = 1;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(rest[..i].to_string());
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// Grade-school math word problems for an instruct model: the prompt asks for short steps, one
/// per line, and a final `The answer is N.`; optionally worked examples come first (few-shot).
#[derive(Clone, Debug)]
pub struct MathTask {
    instruction: String,
    examples: Vec<(String, String)>,
}

/// The default instruction.
pub const DEFAULT_INSTRUCTION: &str =
    "Solve the problem step by step, one short step per line. End with \"The answer is N.\"";

/// Worked examples for few-shot prompts: (question, solution), one calculation per line and the
/// answer line last, in the style of the word-problem generator (written for ponder).
pub const WORKED_EXAMPLES: [(&str, &str); 3] = [
    (
        "Lena has 6 pencils. Then Lena buys 9 more. How many pencils does Lena have now?",
        "Lena starts with 6 pencils.\nShe buys 9 more: 6 + 9 = 15.\nThe answer is 15.",
    ),
    (
        "Omar has 20 cards. Then Omar gives away 8 of them. Then the number of cards doubles. How many cards does Omar have now?",
        "Omar starts with 20 cards.\nHe gives away 8: 20 - 8 = 12.\nThe number doubles: 12 * 2 = 24.\nThe answer is 24.",
    ),
    (
        "Mia has 18 shells. Then Mia shares them equally among 3 friends and keeps one share. How many shells does Mia have now?",
        "Mia starts with 18 shells.\nShe keeps one of 3 equal shares: 18 / 3 = 6.\nThe answer is 6.",
    ),
];

impl Default for MathTask {
    fn default() -> Self {
        MathTask::new(DEFAULT_INSTRUCTION, Vec::new())
    }
}

impl MathTask {
    /// A task with its own instruction (after the question) and worked examples (before it).
    pub fn new(instruction: &str, examples: Vec<(String, String)>) -> Self {
        MathTask {
            instruction: instruction.to_string(),
            examples,
        }
    }

    /// The same task with another instruction.
    pub fn with_instruction(mut self, instruction: &str) -> Self {
        self.instruction = instruction.to_string();
        self
    }

    /// The default instruction after the first `shots` of [`WORKED_EXAMPLES`] (at most all).
    pub fn few_shot(shots: usize) -> Self {
        MathTask::new(
            DEFAULT_INSTRUCTION,
            WORKED_EXAMPLES
                .iter()
                .take(shots)
                .map(|(q, a)| ((*q).to_string(), (*a).to_string()))
                .collect(),
        )
    }
}

impl Task for MathTask {
    fn name(&self) -> &str {
        "math"
    }

    fn prompt(&self, problem: &Problem) -> String {
        let mut p = String::new();
        for (q, a) in &self.examples {
            p.push_str(&format!("Problem: {q}\nSolution:\n{a}\n\n"));
        }
        if self.examples.is_empty() {
            format!("{}\n\n{}", problem.question, self.instruction)
        } else {
            p.push_str(&format!(
                "{}\n\nProblem: {}\nSolution:",
                self.instruction, problem.question
            ));
            p
        }
    }

    fn extract_answer(&self, path_text: &str) -> Option<String> {
        extract_answer(path_text).or_else(|| last_number(path_text))
    }

    fn is_terminal(&self, path: &PathRef<'_>) -> bool {
        path.last_step()
            .is_some_and(|s| s.finished || extract_answer(&s.text).is_some())
    }

    fn check(&self, answer: &str, gold: &str) -> bool {
        equivalent(answer, gold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_extracted_by_marker() {
        assert_eq!(
            extract_answer("so 3+5=8.\nThe answer is 8.").as_deref(),
            Some("8")
        );
        assert_eq!(
            extract_answer("The answer is: $1,200.").as_deref(),
            Some("$1,200")
        );
        assert_eq!(extract_answer("blah\n#### 42").as_deref(), Some("42"));
        assert_eq!(
            extract_answer("so \\boxed{\\frac{1}{2}} done").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(extract_answer("no marker 12 and 13"), None);
        assert_eq!(
            last_number("no marker 12 and 1,300.").as_deref(),
            Some("1,300")
        );
        assert_eq!(last_number("it is -7."), Some("-7".into()));
    }

    #[test]
    fn numbers_normalise_by_value() {
        for (a, b) in [
            ("$1,200", "1200"),
            ("1200.00", "1200"),
            ("0.5", "1/2"),
            (".50", "2/4"),
            ("50%", "50"),
            ("-3", "-3.0"),
            ("42 apples", "42"),
            ("7.", "7"),
        ] {
            assert!(
                equivalent(a, b),
                "{a} vs {b}: {} {}",
                normalise(a),
                normalise(b)
            );
        }
        assert!(equivalent("\\frac{1}{2}", "0.5"));
        assert!(equivalent("\\boxed{\\dfrac{3}{4}}", "0.75"));
        assert!(equivalent("-\\frac{1}{4}", "-0.25"));
        assert!(!equivalent("42", "43"));
        assert!(!equivalent("1/3", "0.33"));
        assert_eq!(normalise("Paris."), "paris");
    }

    /// Property tests over seeded random numbers: every way of writing a number normalises to
    /// the same answer, normalising is idempotent, and different numbers stay different.
    #[test]
    fn normaliser_properties() {
        use ponder_engine::rng::Rng;
        let mut rng = Rng::new(42);
        let with_commas = |n: u64| -> String {
            let s = n.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        for _ in 0..2000 {
            let n = rng.below(10_000_000);
            let neg = rng.below(4) == 0;
            let sign = if neg { "-" } else { "" };
            let base = format!("{sign}{n}");
            let forms = [
                format!("{sign}{n}.0"),
                format!("{sign}{n}.000"),
                format!("{sign}${}", with_commas(n)),
                format!("{sign}{}.", with_commas(n)),
                format!("{sign}{n} apples"),
                format!("  {sign}{n}  "),
                format!("\\boxed{{{sign}{n}}}"),
                format!("{sign}{}/{}", n * 4, 4),
            ];
            for f in &forms {
                assert!(equivalent(f, &base), "{f:?} vs {base:?}: {}", normalise(f));
            }
            let once = normalise(&forms[2]);
            assert_eq!(normalise(&once), once, "idempotent");
            assert!(!equivalent(&base, &format!("{sign}{}", n + 1)));
            // Decimals against fractions: n/8 always terminates.
            let num = n % 1000;
            let dec = format!("{:.3}", num as f64 / 8.0);
            assert!(equivalent(&dec, &format!("{num}/8")), "{dec} vs {num}/8");
        }
    }

    #[test]
    fn task_checks_answers() {
        let t = MathTask::default();
        let few = MathTask::few_shot(2).prompt(&Problem::new("x", "Q?"));
        assert!(few.contains(WORKED_EXAMPLES[0].1) && few.contains(WORKED_EXAMPLES[1].1));
        assert!(!few.contains(WORKED_EXAMPLES[2].1));
        assert!(few.ends_with("Problem: Q?\nSolution:"), "{few}");
        assert!(t.check("8", "8.0"));
        assert!(
            t.prompt(&Problem::new("p", "What is 2+2?"))
                .contains(ANSWER_MARKER)
        );
        assert_eq!(t.extract_answer("2 + 2 = 4").as_deref(), Some("4"));
    }
}
