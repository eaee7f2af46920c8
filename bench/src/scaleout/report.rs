//! The scaleout table and its JSON: a row per figure, a column per stack,
//! and the ratios the targets are about.

use std::fmt::Write as _;

use super::{Stack, GROWTH, PAGE, STACKS};
use crate::framework::{fmt_count, fmt_value, size_label, Better, Params};

pub type Cell = Result<f64, String>;

/// The figures, in table order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fig {
    Push,
    Concurrent,
    Pull,
    GetRate,
    GetP99,
    GetCpu,
    HeadRate,
    HeadP99,
    HeadCpu,
    Catalog,
    CatalogGrown,
    CatalogGrowth,
    Tags,
    TagsGrown,
    TagsGrowth,
    CreateRate,
}

const FIGS: [Fig; 16] = [
    Fig::Push,
    Fig::Concurrent,
    Fig::Pull,
    Fig::GetRate,
    Fig::GetP99,
    Fig::GetCpu,
    Fig::HeadRate,
    Fig::HeadP99,
    Fig::HeadCpu,
    Fig::Catalog,
    Fig::CatalogGrown,
    Fig::CatalogGrowth,
    Fig::Tags,
    Fig::TagsGrown,
    Fig::TagsGrowth,
    Fig::CreateRate,
];

/// Growth from N to 10N repositories beyond which a list is not flat.
const FLAT: f64 = 1.5;

impl Fig {
    pub fn what(self) -> &'static str {
        match self {
            Fig::GetRate | Fig::GetP99 | Fig::GetCpu => "manifest GET",
            Fig::HeadRate | Fig::HeadP99 | Fig::HeadCpu => "blob HEAD",
            _ => "",
        }
    }

    fn label(self, p: &Params) -> String {
        let (n, big) = (p.scaleout_repos, size_label(p.big));
        let grown = fmt_count(GROWTH * n);
        let n = fmt_count(n);
        match self {
            Fig::Push => format!("monolithic push {big} (MB/s)"),
            Fig::Concurrent => format!(
                "{} parallel pushes of {} (MB/s)",
                p.conc_count,
                size_label(p.conc_len)
            ),
            Fig::Pull => format!("pull {big} (MB/s)"),
            Fig::GetRate | Fig::HeadRate => format!("{}, {} conns (req/s)", self.what(), p.conns),
            Fig::GetP99 | Fig::HeadP99 => format!("{}: p99 (ms)", self.what()),
            Fig::GetCpu | Fig::HeadCpu => format!("{}: server CPU per req (µs)", self.what()),
            Fig::Catalog => format!("catalog ?n={PAGE}, {n} repos (ms)"),
            Fig::CatalogGrown => format!("catalog ?n={PAGE}, {grown} repos (ms)"),
            Fig::CatalogGrowth => "catalog: growth (x)".into(),
            Fig::Tags => format!("tags list ?n={PAGE} of {}, {n} repos (ms)", p.tags),
            Fig::TagsGrown => format!("tags list ?n={PAGE} of {}, {grown} repos (ms)", p.tags),
            Fig::TagsGrowth => "tags list: growth (x)".into(),
            Fig::CreateRate => "repositories created (repos/s, setup)".into(),
        }
    }

    /// How a ratio is taken; none for the growth rows.
    fn better(self) -> Option<Better> {
        match self {
            Fig::Push | Fig::Concurrent | Fig::Pull | Fig::GetRate | Fig::HeadRate => {
                Some(Better::Higher)
            }
            Fig::CreateRate => Some(Better::Higher),
            Fig::CatalogGrowth | Fig::TagsGrowth => None,
            _ => Some(Better::Lower),
        }
    }

    fn index(self) -> usize {
        FIGS.iter().position(|f| *f == self).unwrap_or(0)
    }
}

pub struct ScaleOutReport {
    labels: Vec<String>,
    /// Per figure, per stack: none where the stack has no such figure.
    cells: Vec<[Option<Cell>; 4]>,
    pub sources: Vec<String>,
    pub notes: Vec<String>,
}

/// How many times better `a` does than `b` (>1: `a` is better).
fn ratio(better: Better, a: &Option<Cell>, b: &Option<Cell>) -> Option<f64> {
    let (Some(Ok(a)), Some(Ok(b))) = (a, b) else {
        return None;
    };
    let r = match better {
        Better::Higher => a / b,
        Better::Lower => b / a,
    };
    r.is_finite().then_some(r)
}

/// The ratio columns: (heading, better stack, the other).
const RATIOS: [(&str, Stack, Stack); 3] = [
    ("x3/x1", Stack::Three, Stack::One),
    ("x1/dist", Stack::One, Stack::Dist),
    ("x3/dist", Stack::Three, Stack::Dist),
];

impl ScaleOutReport {
    pub fn new(p: &Params) -> ScaleOutReport {
        ScaleOutReport {
            labels: FIGS.iter().map(|f| f.label(p)).collect(),
            cells: FIGS.iter().map(|_| Default::default()).collect(),
            sources: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn set(&mut self, fig: Fig, who: Stack, cell: Cell) {
        self.cells[fig.index()][who.index()] = Some(cell);
        for (grown, base, growth) in [
            (Fig::CatalogGrown, Fig::Catalog, Fig::CatalogGrowth),
            (Fig::TagsGrown, Fig::Tags, Fig::TagsGrowth),
        ] {
            if fig == grown {
                let g = match (self.get(base, who), self.get(grown, who)) {
                    (Some(Ok(a)), Some(Ok(b))) => Ok(b / a),
                    (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e.clone()),
                    _ => Err("not measured".into()),
                };
                self.cells[growth.index()][who.index()] = Some(g);
            }
        }
    }

    /// A figure's value, if it was measured.
    #[cfg(test)]
    pub fn value(&self, fig: Fig, who: Stack) -> Option<f64> {
        self.get(fig, who).as_ref()?.as_ref().ok().copied()
    }

    fn get(&self, fig: Fig, who: Stack) -> &Option<Cell> {
        &self.cells[fig.index()][who.index()]
    }

    /// Whether every figure a stack has was measured.
    pub fn ok(&self) -> bool {
        self.cells.iter().flatten().flatten().all(Result::is_ok)
    }

    fn ratio_of(&self, fig: Fig, a: Stack, b: Stack) -> Option<f64> {
        ratio(fig.better()?, self.get(fig, a), self.get(fig, b))
    }

    fn cell_text(fig: Fig, c: &Option<Cell>) -> String {
        match c {
            None => "n/a".into(),
            Some(Err(_)) => "FAILED".into(),
            Some(Ok(v)) if matches!(fig, Fig::CatalogGrowth | Fig::TagsGrowth) && *v > FLAT => {
                format!("{}!", fmt_value(*v))
            }
            Some(Ok(v)) => fmt_value(*v),
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(6);
        let _ = write!(out, "{:<width$}", "scaleout");
        for s in STACKS {
            let _ = write!(out, "  {:>15}", s.label());
        }
        for (h, _, _) in RATIOS {
            let _ = write!(out, "  {h:>7}");
        }
        out.push('\n');
        for (fig, label) in FIGS.iter().zip(&self.labels) {
            let _ = write!(out, "{label:<width$}");
            for s in STACKS {
                let _ = write!(out, "  {:>15}", Self::cell_text(*fig, self.get(*fig, s)));
            }
            for (_, a, b) in RATIOS {
                let r = self.ratio_of(*fig, a, b);
                let _ = write!(out, "  {:>7}", r.map_or("-".into(), |x| format!("{x:.2}x")));
            }
            out.push('\n');
        }
        out.push('\n');
        self.targets(&mut out);
        self.footer(&mut out);
        out
    }

    /// The targets, each met or missed.
    fn targets(&self, out: &mut String) {
        let verdict = |r: Option<f64>, min: f64| match r {
            Some(r) if r >= min => format!("{r:.2}x (met)"),
            Some(r) => format!("{r:.2}x (MISSED)"),
            None => "n/a".into(),
        };
        for fig in [Fig::GetRate, Fig::HeadRate] {
            let _ = writeln!(
                out,
                "target: {} req/s through 3 replicas >= 2x one: {}; >= 5x distribution S3: x1 {}, x3 {}",
                fig.what(),
                verdict(self.ratio_of(fig, Stack::Three, Stack::One), 2.0),
                verdict(self.ratio_of(fig, Stack::One, Stack::Dist), 5.0),
                verdict(self.ratio_of(fig, Stack::Three, Stack::Dist), 5.0),
            );
        }
        for fig in [Fig::CatalogGrowth, Fig::TagsGrowth] {
            let per: Vec<String> = [Stack::Embedded, Stack::One, Stack::Three]
                .iter()
                .map(|s| match self.get(fig, *s) {
                    Some(Ok(g)) if *g <= FLAT => format!("{} {g:.2}x (met)", s.label()),
                    Some(Ok(g)) => format!("{} {g:.2}x (MISSED)", s.label()),
                    _ => format!("{} n/a", s.label()),
                })
                .collect();
            let _ = writeln!(
                out,
                "target: {} flat from N to {GROWTH}N repositories (growth <= {FLAT}x): {}",
                fig.label_stem(),
                per.join(", ")
            );
        }
    }

    fn footer(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "ratios: how many times better the first does; a/b for rates, b/a for times and CPU."
        );
        let _ = writeln!(
            out,
            "every column behind its own nginx (round-robin, keep-alive upstreams); server CPU per \
             req sums the registry processes, nginx and the engines the column uses (PostgreSQL, Garage)."
        );
        for s in &self.sources {
            let _ = writeln!(out, "stack: {s}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let mut shown: Vec<&str> = Vec::new();
        for (label, cells) in self.labels.iter().zip(&self.cells) {
            for (s, c) in STACKS.iter().zip(cells) {
                if let Some(Err(e)) = c {
                    if !shown.contains(&e.as_str()) {
                        shown.push(e);
                        let _ = writeln!(out, "FAILED ({}) {label}: {e}", s.label());
                    }
                }
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cell = |c: &Option<Cell>| match c {
            Some(Ok(v)) if v.is_finite() => serde_json::json!(v),
            Some(Err(e)) => serde_json::json!({ "error": e }),
            _ => serde_json::Value::Null,
        };
        let figures: Vec<serde_json::Value> = FIGS
            .iter()
            .zip(&self.labels)
            .map(|(fig, label)| {
                let mut o = serde_json::json!({ "figure": label });
                for s in STACKS {
                    o[s.label()] = cell(self.get(*fig, s));
                }
                for (h, a, b) in RATIOS {
                    o[h] = serde_json::json!(self.ratio_of(*fig, a, b));
                }
                o
            })
            .collect();
        serde_json::json!({
            "figures": figures,
            "stacks": self.sources,
            "notes": self.notes,
        })
    }
}

impl Fig {
    fn label_stem(self) -> &'static str {
        match self {
            Fig::CatalogGrowth => "catalog first page",
            _ => "tags list first page",
        }
    }
}
