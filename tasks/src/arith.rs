//! The arithmetic-checking tool: finds every `a op b = c` claim in a step (and GSM8K's
//! `<<a*b=c>>` calculator annotations) and checks it with an exact evaluator over rationals.
//!
//! Nothing the model writes is executed: claims are parsed by a small recursive-descent parser
//! (numbers, `+ - * / × ÷ x`, parentheses, unary minus) into exact fractions of `i128`. A claim
//! whose numbers overflow, or that is not arithmetic, is left unchecked rather than guessed.
//! A right-hand side written with `d` decimals is accepted when it is the exact value rounded to
//! `d` places (`10/3 = 3.33` holds; `10/3 = 3.5` does not).

use ponder_engine::{BoxError, Critic, CriticKind, PathRef, ScoreRange};

/// An exact fraction `num/den`, `den > 0`, in lowest terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rational {
    num: i128,
    den: i128,
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a as i128
}

impl Rational {
    /// `num/den` in lowest terms; `None` for a zero denominator.
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let (num, den) = (num / g, den / g);
        Some(if den < 0 {
            Rational {
                num: num.checked_neg()?,
                den: den.checked_neg()?,
            }
        } else {
            Rational { num, den }
        })
    }

    /// An integer.
    pub fn int(n: i128) -> Self {
        Rational { num: n, den: 1 }
    }

    /// Numerator (sign carrier).
    pub fn num(&self) -> i128 {
        self.num
    }

    /// Denominator (positive).
    pub fn den(&self) -> i128 {
        self.den
    }

    fn add(self, o: Self) -> Option<Self> {
        let den = self.den.checked_mul(o.den)?;
        let num = self
            .num
            .checked_mul(o.den)?
            .checked_add(o.num.checked_mul(self.den)?)?;
        Rational::new(num, den)
    }

    fn neg(self) -> Option<Self> {
        Some(Rational {
            num: self.num.checked_neg()?,
            den: self.den,
        })
    }

    fn mul(self, o: Self) -> Option<Self> {
        // Cross-reduce first to keep the products small.
        let g1 = gcd(self.num, o.den).max(1);
        let g2 = gcd(o.num, self.den).max(1);
        Rational::new(
            (self.num / g1).checked_mul(o.num / g2)?,
            (self.den / g2).checked_mul(o.den / g1)?,
        )
    }

    fn recip(self) -> Option<Self> {
        Rational::new(self.den, self.num)
    }

    /// Whether `self`, rounded half away from zero to `decimals` places, equals `other`.
    fn rounds_to(self, other: Self, decimals: u32) -> Option<bool> {
        if self == other {
            return Some(true);
        }
        if decimals == 0 {
            return Some(false);
        }
        let scale = 10i128.checked_pow(decimals)?;
        // round(self · scale) as an integer, half away from zero.
        let scaled = self.num.checked_mul(scale)?;
        let (q, r) = (scaled / self.den, scaled % self.den);
        let rounded = if r.unsigned_abs().checked_mul(2)? >= self.den.unsigned_abs() {
            q + scaled.signum()
        } else {
            q
        };
        Some(Rational::new(rounded, scale)? == other)
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// A parsed number literal: its value and how many decimals it was written with.
fn number(s: &str) -> Option<(Rational, u32)> {
    let s = s.trim().trim_start_matches('$');
    let cleaned: String = s.chars().filter(|&c| c != ',').collect();
    // Thousands separators must group by three (so "1,2" is not read as 12).
    if s.contains(',') {
        let int = s.split('.').next().unwrap_or("");
        let groups: Vec<&str> = int.split(',').collect();
        if groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3) {
            return None;
        }
    }
    let (int, frac) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() + frac.len() > 30
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let num: i128 = digits.parse().ok()?;
    let den = 10i128.checked_pow(frac.len() as u32)?;
    Some((Rational::new(num, den)?, frac.len() as u32))
}

/// Tokens of an arithmetic expression.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Rational),
    Op(char),
    Open,
    Close,
}

/// Splits an expression into tokens; `None` if anything in it is not arithmetic.
fn lex(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '0'..='9' | '.' | '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == '$'
                        // A comma inside a number is a thousands separator only when three
                        // digits follow it.
                        || (chars[i] == ','
                            && chars.get(i + 1..i + 4).is_some_and(|d| d.iter().all(char::is_ascii_digit))
                            && !chars.get(i + 4).is_some_and(char::is_ascii_digit)))
                {
                    i += 1;
                }
                let lit: String = chars[start..i].iter().collect();
                out.push(Tok::Num(number(&lit)?.0));
            }
            '+' | '-' | '*' | '/' | '×' | '÷' | 'x' | '·' => {
                let op = match c {
                    '×' | 'x' | '·' => '*',
                    '÷' => '/',
                    o => o,
                };
                out.push(Tok::Op(op));
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Recursive-descent evaluation: `expr = term (('+'|'-') term)*`, `term = factor (('*'|'/')
/// factor)*`, `factor = '-' factor | number | '(' expr ')'`.
struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn expr(&mut self) -> Option<Rational> {
        let mut v = self.term()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            let r = self.term()?;
            v = if op == '+' {
                v.add(r)?
            } else {
                v.add(r.neg()?)?
            };
        }
        Some(v)
    }

    fn term(&mut self) -> Option<Rational> {
        let mut v = self.factor()?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek().cloned() {
            self.at += 1;
            let r = self.factor()?;
            v = if op == '*' {
                v.mul(r)?
            } else {
                v.mul(r.recip()?)?
            };
        }
        Some(v)
    }

    fn factor(&mut self) -> Option<Rational> {
        // Bounded nesting: a pathological step cannot overflow the stack.
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let v = match self.peek().cloned()? {
            Tok::Op('-') => {
                self.at += 1;
                self.factor()?.neg()?
            }
            Tok::Num(n) => {
                self.at += 1;
                n
            }
            Tok::Open => {
                self.at += 1;
                let v = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return None;
                }
                self.at += 1;
                v
            }
            _ => return None,
        };
        self.depth -= 1;
        Some(v)
    }
}

/// Evaluates an arithmetic expression exactly; `None` if it is not one (or overflows, or
/// divides by zero).
pub fn evaluate(expr: &str) -> Option<Rational> {
    let toks = lex(expr)?;
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    let v = p.expr()?;
    (p.at == p.toks.len()).then_some(v)
}

/// One checked claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The claim as written (`"3 * 4 = 12"`).
    pub text: String,
    /// The exact value of the left-hand side.
    pub value: Rational,
    /// The value claimed.
    pub claimed: Rational,
    /// Whether the claim holds (allowing the rounding its decimals show).
    pub holds: bool,
}

/// The characters an arithmetic left-hand side is made of.
fn expr_char(c: char) -> bool {
    c.is_ascii_digit() || " \t+-*/×÷x·().,$".contains(c)
}

/// Every arithmetic claim in `text` that could be evaluated: `lhs = rhs` where `lhs` contains
/// an operator and `rhs` is a number, plus GSM8K's `<<lhs=rhs>>` annotations.
pub fn claims(text: &str) -> Vec<Claim> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(at, c)) in chars.iter().enumerate() {
        if c != '=' {
            continue;
        }
        // Left: the longest run of expression characters before '=' (stopping at another '=',
        // so chains `a = b = c` check each link), trimmed to start at a digit, '(' or '-'/'$'.
        // A comma or full stop followed by a space ends a clause, not a number.
        let mut s = k;
        while s > 0
            && expr_char(chars[s - 1].1)
            && !(matches!(chars[s - 1].1, ',' | '.')
                && chars.get(s).is_some_and(|c| c.1.is_whitespace()))
        {
            s -= 1;
        }
        let Some(mut p) = chars[s..k]
            .iter()
            .position(|&(_, c)| c.is_ascii_digit() || c == '(' || c == '$')
            .map(|p| s + p)
        else {
            continue;
        };
        // A leading minus sign belongs to the expression ("-3 * 2 = -6").
        if p > s && chars[p - 1].1 == '-' && (p - 1 == s || chars[p - 2].1.is_whitespace()) {
            p -= 1;
        }
        let lhs_start = chars[p].0;
        let mut lhs = text[lhs_start..at].trim().to_string();
        // Unbalanced leading/trailing parentheses from prose: "(so 3*4 = 12)" → "3*4".
        while lhs.matches('(').count() > lhs.matches(')').count() && lhs.starts_with('(') {
            lhs.remove(0);
        }
        while lhs.matches(')').count() > lhs.matches('(').count() && lhs.ends_with(')') {
            lhs.pop();
        }
        let lhs = lhs.trim();
        if !lhs.chars().skip(1).any(|c| "+-*/×÷x·".contains(c)) {
            continue; // "x = 5": a bare number is not a calculation.
        }
        // Right: the number after '='.
        let rest = &text[at + 1..];
        let rest = rest.trim_start();
        let end = rest
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_digit() || c == '.' || c == ',' || c == '$' || (c == '-' && i == 0))
            })
            .map_or(rest.len(), |(i, _)| i);
        let rhs = rest[..end].trim_end_matches(['.', ',']);
        let (neg, rhs_digits) = match rhs.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rhs),
        };
        let (Some(value), Some((claimed, decimals))) = (evaluate(lhs), number(rhs_digits)) else {
            continue;
        };
        let claimed = if neg {
            match claimed.neg() {
                Some(c) => c,
                None => continue,
            }
        } else {
            claimed
        };
        let Some(holds) = value.rounds_to(claimed, decimals) else {
            continue;
        };
        out.push(Claim {
            text: format!("{lhs} = {rhs}"),
            value,
            claimed,
            holds,
        });
    }
    out
}

/// The arithmetic tool as a process critic: a step scores 1 when every claim in it holds, 0
/// when any is wrong, and 0.5 when it makes no checkable claim (the tool has no opinion).
#[derive(Clone, Copy, Debug, Default)]
pub struct ArithmeticCritic;

impl ArithmeticCritic {
    /// The score of one step's text.
    pub fn score_text(text: &str) -> f32 {
        let c = claims(text);
        if c.is_empty() {
            0.5
        } else if c.iter().all(|c| c.holds) {
            1.0
        } else {
            0.0
        }
    }
}

impl Critic for ArithmeticCritic {
    fn name(&self) -> &str {
        "arithmetic"
    }

    fn kind(&self) -> CriticKind {
        CriticKind::Process
    }

    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }

    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Ok(paths
            .iter()
            .map(|p| p.last_step().map_or(0.5, |s| Self::score_text(&s.text)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i128, d: i128) -> Rational {
        Rational::new(n, d).unwrap()
    }

    #[test]
    fn evaluates_exactly() {
        assert_eq!(evaluate("3 + 4 * 2"), Some(r(11, 1)));
        assert_eq!(evaluate("(3 + 4) * 2"), Some(r(14, 1)));
        assert_eq!(evaluate("0.1 + 0.2"), Some(r(3, 10)), "no float surprises");
        assert_eq!(evaluate("10 / 4"), Some(r(5, 2)));
        assert_eq!(evaluate("-3 * -2"), Some(r(6, 1)));
        assert_eq!(evaluate("$1,200 ÷ 3"), Some(r(400, 1)));
        assert_eq!(evaluate("6 × 7"), Some(r(42, 1)));
        assert_eq!(evaluate("5 - 2 - 1"), Some(r(2, 1)), "left associative");
        assert_eq!(evaluate("1 / 0"), None);
        assert_eq!(evaluate("2 +"), None);
        assert_eq!(evaluate("import os"), None);
        assert_eq!(evaluate(&"(".repeat(500)), None, "deep nesting is refused");
        assert_eq!(
            evaluate("99999999999999999999 * 99999999999999999999 * 99999999999999999999"),
            None,
            "overflow is unchecked, not wrapped"
        );
    }

    #[test]
    fn finds_and_checks_claims() {
        let c = claims("Tom has 3 + 5 = 8 apples. Then 8 * 2 = 17 pears.");
        assert_eq!(c.len(), 2);
        assert!(c[0].holds);
        assert!(!c[1].holds, "the planted error is found");
        assert_eq!(c[1].claimed, r(17, 1));
        // GSM8K annotations.
        let c = claims("She pays 12*3=<<12*3=36>>36 dollars.");
        assert!(!c.is_empty() && c.iter().all(|c| c.holds), "{c:?}");
        let c = claims("<<48/2=25>>");
        assert_eq!(c.len(), 1);
        assert!(!c[0].holds);
        // Rounded decimals are fine; wrong ones are not.
        assert!(claims("10/3 = 3.33").iter().all(|c| c.holds));
        assert!(claims("2/3 = 0.67").iter().all(|c| c.holds));
        assert!(!claims("10/3 = 3.5")[0].holds);
        // Chains: only the calculation is a claim.
        let c = claims("2 * 3 = 6 = 7");
        assert_eq!(c.len(), 1, "{c:?}");
        // Clauses: "8, 8 * 2" is not one expression.
        let c = claims("3 + 5 = 8, 8 * 2 = 16. Next, 16 - 1 = 14");
        assert_eq!(
            c.iter().map(|c| c.holds).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert!(claims("-3 * 2 = -6").iter().all(|c| c.holds));
        // Money and thousands.
        assert!(claims("$1,200 - $200 = $1,000.").iter().all(|c| c.holds));
        // Not claims: bare assignments, prose.
        assert!(claims("x = 5").is_empty());
        assert!(claims("Let the answer = the total").is_empty());
        // Negative results.
        assert!(claims("3 - 5 = -2").iter().all(|c| c.holds));
        assert!(!claims("3 - 5 = 2")[0].holds);
    }

    #[test]
    fn critic_scores_steps() {
        assert_eq!(ArithmeticCritic::score_text("3 * 4 = 12."), 1.0);
        assert_eq!(
            ArithmeticCritic::score_text("3 * 4 = 12, 12 + 1 = 14."),
            0.0
        );
        assert_eq!(ArithmeticCritic::score_text("He is happy."), 0.5);
    }
}
