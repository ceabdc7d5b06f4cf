//! The tables and the plot of an evaluation folder: `summary.csv` (accuracy with its Wilson
//! interval and the tokens spent, per method and budget), `comparisons.csv` (each method against
//! the best sampling baseline at each budget, paired), `table.md` and `plot.svg` (accuracy
//! against mean generated tokens per problem, one line per method, 95% intervals).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::run::{Folder, Manifest, Record};
use crate::stats::{Paired, paired, wilson};

/// Bootstrap resamples per comparison.
const RESAMPLES: u32 = 10_000;

/// One method at one budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The method.
    pub method: String,
    /// The budget (generated tokens per problem).
    pub budget: u64,
    /// Runs (problems × seeds) without an error.
    pub runs: u64,
    /// Correct runs.
    pub correct: u64,
    /// `correct / runs`.
    pub accuracy: f64,
    /// Wilson 95% interval, low end.
    pub lo: f64,
    /// High end.
    pub hi: f64,
    /// Mean generated tokens per run.
    pub mean_tokens: f64,
    /// The most tokens one run generated (never above the budget).
    pub max_tokens: u64,
    /// Share of runs that chose an answer.
    pub answered: f64,
    /// Share of runs whose tree held a correct answer (chosen or not).
    pub in_tree: f64,
    /// Mean wall time per run, milliseconds.
    pub mean_wall_ms: f64,
    /// Runs that failed (left out of the figures above).
    pub failed: u64,
}

/// One method against the best baseline at one budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The budget.
    pub budget: u64,
    /// The method.
    pub method: String,
    /// The best sampling baseline at this budget (by accuracy).
    pub baseline: String,
    /// The paired figures.
    #[serde(flatten)]
    pub paired: Paired,
}

/// Everything the folder's tables say.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Per method and budget.
    pub rows: Vec<Row>,
    /// Paired comparisons.
    pub comparisons: Vec<Comparison>,
}

/// Builds the report from the folder's records (the manifest's latest methods, budgets and
/// seeds) and writes `summary.csv`, `comparisons.csv`, `table.md` and `plot.svg`.
///
/// # Errors
/// No manifest, unreadable records, or files that cannot be written.
pub fn write(folder: &Folder) -> Result<Report> {
    let manifest = folder.read_manifest()?.ok_or_else(|| Error::BadFile {
        path: folder.manifest().display().to_string(),
        message: "no manifest: not an evaluation folder".into(),
    })?;
    let records = folder.read_records(false)?;
    let report = build(&manifest, &records);
    let put = |name: &str, body: String| -> Result<()> {
        let p = folder.dir.join(name);
        std::fs::write(&p, body).map_err(|e| Error::io(&p, e))
    };
    put("summary.csv", summary_csv(&report.rows))?;
    put("comparisons.csv", comparisons_csv(&report.comparisons))?;
    put("table.md", markdown(&manifest, &report))?;
    put("plot.svg", svg(&manifest, &report.rows))?;
    Ok(report)
}

/// One method's records at one budget, by (problem index, seed).
type Runs<'a> = BTreeMap<(usize, u64), &'a Record>;

/// The report of `records` for the manifest's methods, budgets and seeds.
pub fn build(manifest: &Manifest, records: &[Record]) -> Report {
    let wanted = |r: &Record| {
        manifest.order.contains(&r.method)
            && manifest.budgets.contains(&r.budget)
            && manifest.seeds.contains(&r.seed)
    };
    let mut by: HashMap<(&str, u64), Runs<'_>> = HashMap::new();
    for r in records.iter().filter(|r| wanted(r)) {
        by.entry((r.method.as_str(), r.budget))
            .or_default()
            .insert((r.index, r.seed), r);
    }
    let mut rows = Vec::new();
    for &budget in &manifest.budgets {
        for m in &manifest.order {
            let Some(runs) = by.get(&(m.as_str(), budget)) else {
                continue;
            };
            let ok: Vec<&&Record> = runs.values().filter(|r| r.error.is_none()).collect();
            let n = ok.len() as u64;
            let correct = ok.iter().filter(|r| r.correct).count() as u64;
            let mean = |f: &dyn Fn(&Record) -> f64| {
                if n == 0 {
                    0.0
                } else {
                    ok.iter().map(|r| f(r)).sum::<f64>() / n as f64
                }
            };
            let (lo, hi) = wilson(correct, n);
            rows.push(Row {
                method: m.clone(),
                budget,
                runs: n,
                correct,
                accuracy: if n == 0 {
                    0.0
                } else {
                    correct as f64 / n as f64
                },
                lo,
                hi,
                mean_tokens: mean(&|r| r.tokens as f64),
                max_tokens: ok.iter().map(|r| r.tokens).max().unwrap_or(0),
                answered: mean(&|r| f64::from(u8::from(r.answer.is_some()))),
                in_tree: mean(&|r| f64::from(u8::from(r.correct_in_tree))),
                mean_wall_ms: mean(&|r| r.wall_ms),
                failed: runs.len() as u64 - n,
            });
        }
    }
    let is_baseline = |name: &str| {
        manifest.methods.get(name).is_some_and(|c| {
            use ponder_engine::config::Algorithm::*;
            matches!(c.algorithm, Greedy | BestOfN | SelfConsistency)
        })
    };
    let mut comparisons = Vec::new();
    for &budget in &manifest.budgets {
        let best = rows
            .iter()
            .filter(|r| r.budget == budget && is_baseline(&r.method) && r.runs > 0)
            .max_by(|a, b| {
                a.accuracy
                    .total_cmp(&b.accuracy)
                    .then(b.method.cmp(&a.method))
            });
        let Some(best) = best else { continue };
        let base = &by[&(best.method.as_str(), budget)];
        for m in &manifest.order {
            if *m == best.method {
                continue;
            }
            let Some(runs) = by.get(&(m.as_str(), budget)) else {
                continue;
            };
            let pairs: Vec<(bool, bool)> = runs
                .iter()
                .filter_map(|(k, r)| {
                    let b = base.get(k)?;
                    (r.error.is_none() && b.error.is_none()).then_some((r.correct, b.correct))
                })
                .collect();
            comparisons.push(Comparison {
                budget,
                method: m.clone(),
                baseline: best.method.clone(),
                paired: paired(&pairs, RESAMPLES, budget),
            });
        }
    }
    Report { rows, comparisons }
}

fn summary_csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "method,budget,runs,correct,accuracy,wilson_lo,wilson_hi,mean_tokens,max_tokens,answered,correct_in_tree,mean_wall_ms,failed\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.4},{:.4},{:.4},{:.1},{},{:.4},{:.4},{:.1},{}",
            r.method,
            r.budget,
            r.runs,
            r.correct,
            r.accuracy,
            r.lo,
            r.hi,
            r.mean_tokens,
            r.max_tokens,
            r.answered,
            r.in_tree,
            r.mean_wall_ms,
            r.failed
        );
    }
    s
}

fn comparisons_csv(cs: &[Comparison]) -> String {
    let mut s =
        String::from("budget,method,baseline,pairs,diff,ci_lo,ci_hi,wins,losses,mcnemar_p\n");
    for c in cs {
        let p = &c.paired;
        let _ = writeln!(
            s,
            "{},{},{},{},{:.4},{:.4},{:.4},{},{},{:.4}",
            c.budget, c.method, c.baseline, p.n, p.diff, p.lo, p.hi, p.wins, p.losses, p.p
        );
    }
    s
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The Markdown tables: accuracy `[95% interval]` and mean tokens per method and budget, then
/// the paired comparisons.
pub fn markdown(manifest: &Manifest, report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Accuracy % [Wilson 95%] (mean generated tokens per problem); {} problems × {} seed(s).\n",
        manifest.problems,
        manifest.seeds.len()
    );
    let full = (manifest.problems * manifest.seeds.len()) as u64;
    if report.rows.iter().any(|r| r.runs < full) {
        let _ = writeln!(
            s,
            "Partial: a cell with `n=` has fewer than {full} finished runs.\n"
        );
    }
    s.push_str("| method |");
    for b in &manifest.budgets {
        let _ = write!(s, " {b} tokens |");
    }
    s.push_str("\n|---|");
    for _ in &manifest.budgets {
        s.push_str("---|");
    }
    s.push('\n');
    for m in &manifest.order {
        let _ = write!(s, "| {m} |");
        for &b in &manifest.budgets {
            match report.rows.iter().find(|r| r.method == *m && r.budget == b) {
                Some(r) => {
                    let _ = write!(
                        s,
                        " {} [{}, {}] ({:.0}{}) |",
                        pct(r.accuracy),
                        pct(r.lo),
                        pct(r.hi),
                        r.mean_tokens,
                        if r.runs == full {
                            String::new()
                        } else {
                            format!(", n={}", r.runs)
                        }
                    );
                }
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    if !report.comparisons.is_empty() {
        s.push_str(
            "\nPaired against the best sampling baseline at each budget (difference in points, \
             95% paired bootstrap interval, wins/losses, exact McNemar p):\n\n\
             | budget | method | baseline | diff | 95% CI | wins/losses | p |\n|---|---|---|---|---|---|---|\n",
        );
        for c in &report.comparisons {
            let p = &c.paired;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:+.1} | [{:+.1}, {:+.1}] | {}/{} | {:.3} |",
                c.budget,
                c.method,
                c.baseline,
                100.0 * p.diff,
                100.0 * p.lo,
                100.0 * p.hi,
                p.wins,
                p.losses,
                p.p
            );
        }
    }
    s
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Accuracy against mean generated tokens per problem (log scale), one line per method with
/// its 95% Wilson intervals as error bars.
pub fn svg(manifest: &Manifest, rows: &[Row]) -> String {
    let (w, h) = (720.0f64, 440.0f64);
    let (left, right, top, bottom) = (60.0, 190.0, 30.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xs: Vec<f64> = rows
        .iter()
        .filter(|r| r.runs > 0)
        .map(|r| r.mean_tokens.max(1.0).log2())
        .collect();
    let (mut x0, mut x1) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    x0 = x0.floor();
    x1 = x1.ceil().max(x0 + 1.0);
    let ymax = rows.iter().map(|r| r.hi).fold(0.0f64, f64::max).max(0.05);
    let ymax = (ymax * 10.0).ceil() / 10.0;
    let px = |t: f64| left + (t.max(1.0).log2() - x0) / (x1 - x0) * pw;
    let py = |a: f64| top + ph - a / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">Accuracy vs generated tokens per problem ({} problems × {} seeds, 95% Wilson)</text>",
        left + pw / 2.0,
        manifest.problems,
        manifest.seeds.len()
    );
    // Axes and grid.
    let _ = writeln!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
    );
    let mut e = x0;
    while e <= x1 + 1e-9 {
        let x = left + (e - x0) / (x1 - x0) * pw;
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            top + ph,
            top + ph + 16.0,
            2f64.powf(e).round()
        );
        e += 1.0;
    }
    for i in 0..=5 {
        let a = ymax * f64::from(i) / 5.0;
        let y = py(a);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>",
            left + pw,
            left - 6.0,
            y + 4.0,
            100.0 * a
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">mean generated tokens per problem (log scale)</text>",
        left + pw / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">accuracy</text>",
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, m) in manifest.order.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut pts: Vec<&Row> = rows
            .iter()
            .filter(|r| r.method == *m && r.runs > 0)
            .collect();
        pts.sort_by(|a, b| a.mean_tokens.total_cmp(&b.mean_tokens));
        if pts.is_empty() {
            continue;
        }
        let line: Vec<String> = pts
            .iter()
            .map(|r| format!("{:.1},{:.1}", px(r.mean_tokens), py(r.accuracy)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
            line.join(" ")
        );
        for r in &pts {
            let x = px(r.mean_tokens) + (i as f64 - manifest.order.len() as f64 / 2.0) * 2.0;
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-opacity=\"0.6\"/><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{} @ {}: {:.1}% [{:.1}, {:.1}], {:.0} tokens</title></circle>",
                py(r.lo),
                py(r.hi),
                x,
                py(r.accuracy),
                esc(m),
                r.budget,
                100.0 * r.accuracy,
                100.0 * r.lo,
                100.0 * r.hi,
                r.mean_tokens
            );
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let lx = left + pw + 14.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            esc(m)
        );
    }
    s.push_str("</svg>\n");
    s
}
