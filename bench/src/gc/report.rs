//! The gc table and its JSON.

use std::fmt::Write as _;

use super::*;
use crate::framework::fmt_value;

type Cell = Result<f64, String>;

/// One figure: berth's and Distribution's values where each has it.
pub struct Row {
    pub section: String,
    pub label: String,
    pub berth: Option<Cell>,
    pub dist: Option<Cell>,
    /// How the ratio is taken; none for counts and checks.
    pub better: Option<Better>,
}

impl Row {
    fn new(section: &str, label: &str, berth: Option<Cell>, dist: Option<Cell>) -> Row {
        Row {
            section: section.to_string(),
            label: label.to_string(),
            berth,
            dist,
            better: None,
        }
    }

    fn better(mut self, b: Better) -> Row {
        self.better = Some(b);
        self
    }

    /// How many times better berth does (>1: berth is better).
    pub fn ratio(&self) -> Option<f64> {
        let (Some(Ok(b)), Some(Ok(d))) = (&self.berth, &self.dist) else {
            return None;
        };
        let r = match self.better? {
            Better::Higher => b / d,
            Better::Lower => d / b,
        };
        (r.is_finite() && r > 0.0).then_some(r)
    }

    fn cells(&self) -> impl Iterator<Item = &Cell> {
        self.berth.iter().chain(self.dist.iter())
    }
}

pub struct GcReport {
    pub sizes: Vec<SizeResult>,
    pub push: Result<PushOutcome, String>,
    pub sources: [String; 2],
    pub secs: f64,
}

/// `f` of a side's outcome, or that side's failure.
fn of<T>(r: &Result<T, String>, f: impl Fn(&T) -> Cell) -> Option<Cell> {
    Some(match r {
        Ok(v) => f(v),
        Err(e) => Err(e.clone()),
    })
}

/// `f` of a part of a side's outcome, or the failure of either.
fn of2<T, U>(
    r: &Result<T, String>,
    part: impl Fn(&T) -> &Result<U, String>,
    f: impl Fn(&U) -> Cell,
) -> Option<Cell> {
    Some(match r.as_ref().map(part) {
        Ok(Ok(v)) => f(v),
        Ok(Err(e)) | Err(e) => Err(e.clone()),
    })
}

/// `f` of berth's GC at one size.
fn bgc(s: &SizeResult, f: impl Fn(&BerthGc) -> Cell) -> Option<Cell> {
    of2(&s.berth, |b| &b.gc, f)
}

/// `f` of Distribution's GC at one size.
fn dgc(s: &SizeResult, f: impl Fn(&DistGc) -> Cell) -> Option<Cell> {
    of2(&s.dist, |d| &d.gc, f)
}

/// `got` if it is `want`, else a failure saying so.
fn exactly(what: &str, got: u64, want: usize) -> Cell {
    if got == want as u64 {
        Ok(got as f64)
    } else {
        Err(format!("{what}: {got}, expected {want}"))
    }
}

fn some(what: &str, v: Option<u64>) -> Cell {
    v.map(|x| x as f64)
        .ok_or_else(|| format!("the GC run has no {what}"))
}

fn section_of(s: &SizeResult) -> String {
    format!(
        "data set: {} blobs, {} manifests; half the manifests deleted, {} blobs to free",
        fmt_count(s.blobs),
        fmt_count(s.manifests),
        fmt_count(s.expected.freed())
    )
}

/// The GC figures of one size both registries have.
fn gc_rows(s: &SizeResult) -> Vec<Row> {
    let sec = section_of(s);
    let e = s.expected;
    let mib = |kib: u64| kib as f64 / 1024.0;
    vec![
        Row::new(
            &sec,
            "GC wall time (s)",
            bgc(s, |g| Ok(g.wall_s)),
            dgc(s, |g| Ok(g.wall_s)),
        )
        .better(Better::Lower),
        Row::new(
            &sec,
            &format!("blobs freed (expected {})", fmt_count(e.freed())),
            bgc(s, |g| match g.run.blobs_swept {
                Some(n) => exactly("blobs_swept", n, e.freed()),
                None => Err("the GC run has no blobs_swept".into()),
            }),
            dgc(s, |g| {
                let freed = g.before.blobs.saturating_sub(g.after.blobs);
                exactly("blob files freed", freed as u64, e.freed())
            }),
        ),
        Row::new(
            &sec,
            &format!(
                "deleted manifests' own blobs freed (expected {})",
                fmt_count(e.deleted_manifests)
            ),
            None,
            dgc(s, |g| {
                let freed = g.before.manifests.saturating_sub(g.after.manifests);
                let n = e.deleted_manifests;
                exactly("manifest blob files freed", freed as u64, n)
            }),
        ),
        Row::new(
            &sec,
            "GC memory (MiB): berth peak RSS - RSS before; distribution the tool's peak",
            bgc(s, |g| {
                Ok(mib(g.rss_peak_kib.saturating_sub(g.rss_before_kib)))
            }),
            dgc(s, |g| Ok(mib(g.peak_rss_kib))),
        )
        .better(Better::Lower),
    ]
}

/// berth's own figures of one size: what its run said, and the checks.
fn run_rows(s: &SizeResult) -> Vec<Row> {
    let sec = section_of(s);
    let e = s.expected;
    let row = |label: &str, f: &dyn Fn(&RunStats) -> Cell| {
        Row::new(&sec, label, bgc(s, |g| f(&g.run)), None)
    };
    let check = |label: &str, f: fn(&Checked) -> usize| {
        Row::new(
            &sec,
            label,
            of2(&s.berth, |b| &b.checked, |c| Ok(f(c) as f64)),
            None,
        )
    };
    vec![
        row("GC run's own duration_ms (s)", &|r| {
            let ms = r.duration_ms;
            ms.map(|ms| ms / 1e3)
                .ok_or_else(|| "the GC run has no duration_ms".into())
        }),
        row("bytes freed (KiB)", &|r| {
            some("bytes_freed", r.bytes_freed).map(|x| x / 1024.0)
        }),
        row("links swept", &|r| some("links_swept", r.links_swept)),
        row(
            &format!("manifests marked (kept {})", fmt_count(e.kept_manifests)),
            &|r| some("manifests_marked", r.manifests_marked),
        ),
        row(
            &format!("blobs marked (kept {})", fmt_count(e.kept_blobs)),
            &|r| some("blobs_marked", r.blobs_marked),
        ),
        check("kept manifests that pull after GC (sampled)", |c| {
            c.manifests
        }),
        check("freed blobs gone after GC, HEAD 404 (sampled)", |c| c.freed),
    ]
}

/// The data set's build rates at one size.
fn fill_rows(s: &SizeResult) -> Vec<Row> {
    let sec = section_of(s);
    let rate = |n: usize, secs: f64| Ok(n as f64 / secs);
    let uploads = |f: &Filled| rate(f.uploads, f.blobs_s);
    vec![
        Row::new(
            &sec,
            "build: blob uploads (/s)",
            of(&s.berth, |b| uploads(&b.fill)),
            of(&s.dist, |d| uploads(&d.fill)),
        )
        .better(Better::Higher),
        Row::new(
            &sec,
            "build: manifest PUTs (/s)",
            of(&s.berth, |b| rate(s.manifests, b.fill.manifests_s)),
            of(&s.dist, |d| rate(s.manifests, d.fill.manifests_s)),
        )
        .better(Better::Higher),
        Row::new(
            &sec,
            "build: manifest DELETEs (/s)",
            of(&s.berth, |b| {
                rate(s.expected.deleted_manifests, b.fill.deletes_s)
            }),
            of(&s.dist, |d| {
                rate(s.expected.deleted_manifests, d.fill.deletes_s)
            }),
        )
        .better(Better::Higher),
    ]
}

fn push_rows(p: &Result<PushOutcome, String>) -> Vec<Row> {
    let sec = format!(
        "pushes on berth: {PUSH_CLIENTS} clients, images of a config and 2 layers of {} KiB, \
         over the full data set",
        PUSH_LAYER >> 10
    );
    let row = |label: &str, f: &dyn Fn(&PushOutcome) -> Cell| Row::new(&sec, label, of(p, f), None);
    // A figure of the phase with GC running fails when GC did not run.
    let runs = |label: &str, f: &dyn Fn(&PushOutcome, &[RunStats]) -> Cell| {
        row(label, &|o| match &o.runs {
            Ok(r) => f(o, r),
            Err(e) => Err(e.clone()),
        })
    };
    vec![
        row("images/s, no GC running", &|o| Ok(o.idle.rate())),
        runs("images/s, GC running back to back", &|o, _| {
            Ok(o.during.rate())
        }),
        runs("during GC / no GC (target >= 0.8)", &|o, _| {
            Ok(o.during.rate() / o.idle.rate())
        }),
        row("failed pushes (must be 0)", &|o| {
            let n = o.idle.failed + o.during.failed;
            match o
                .idle
                .first_error
                .as_ref()
                .or(o.during.first_error.as_ref())
            {
                Some(e) if n > 0 => Err(format!("{n} failed pushes; the first: {e}")),
                _ => Ok(n as f64),
            }
        }),
        runs(
            "GC runs started during the pushes (all succeeded)",
            &|_, r| Ok(r.len() as f64),
        ),
        runs("those runs' duration_ms, summed (s)", &|_, r| {
            Ok(r.iter().filter_map(|r| r.duration_ms).sum::<f64>() / 1e3)
        }),
        runs("blobs swept by those runs", &|_, r| {
            Ok(r.iter().filter_map(|r| r.blobs_swept).sum::<u64>() as f64)
        }),
        row("images pushed meanwhile that pull after (sampled)", &|o| {
            o.checked.clone().map(|n| n as f64)
        }),
    ]
}

impl GcReport {
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for s in &self.sizes {
            rows.extend(gc_rows(s));
            rows.extend(run_rows(s));
            rows.extend(fill_rows(s));
        }
        rows.extend(push_rows(&self.push));
        rows
    }

    pub fn ok(&self) -> bool {
        self.rows().iter().all(|r| r.cells().all(Result::is_ok))
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mem = |s: &SizeResult| {
            let g = s.berth.as_ref().ok()?.gc.as_ref().ok()?;
            Some(g.rss_peak_kib.saturating_sub(g.rss_before_kib) as f64 / 1024.0)
        };
        if let [a, b] = &self.sizes[..] {
            if let (Some(x), Some(y)) = (mem(a), mem(b)) {
                notes.push(format!(
                    "berth's GC memory: {} MiB at {} blobs, {} MiB at {} blobs ({}x the data, {} the memory)",
                    fmt_value(x),
                    fmt_count(a.blobs),
                    fmt_value(y),
                    fmt_count(b.blobs),
                    b.blobs / a.blobs.max(1),
                    if x > 0.0 { format!("{:.2}x", y / x) } else { "-".into() }
                ));
            }
        }
        for s in &self.sizes {
            if let Ok(d) = &s.dist {
                if let Ok(g) = &d.gc {
                    let n = fmt_count(s.blobs);
                    notes.push(format!("distribution at {n} blobs said: {}", g.summary));
                }
                if !d.fill.single_post {
                    notes.push("distribution answers 202 to a single POST ?digest= (it only opens a session), so its blobs went up as POST + PUT ?digest=".into());
                }
            }
            if let Ok(b) = &s.berth {
                if b.gc.as_ref().is_ok_and(|g| !g.hwm_reset) {
                    notes.push("berth's VmHWM could not be reset: its GC peak is the highest VmRSS sample (every 10 ms)".into());
                }
            }
        }
        if let Ok(o @ PushOutcome { runs: Ok(_), .. }) = &self.push {
            let r = o.during.rate() / o.idle.rate();
            notes.push(format!(
                "target: pushes while GC runs at least 0.8x the rate without: {:.2}x, {}",
                r,
                if r >= 0.8 { "met" } else { "missed" }
            ));
        }
        let mut seen = BTreeSet::new();
        notes.retain(|n| seen.insert(n.clone()));
        notes
    }

    pub fn table(&self) -> String {
        let rows = self.rows();
        let width = rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:>12}  {:>7}",
            "gc", "berth", "distribution", "ratio"
        );
        let mut section = "";
        let cell = |c: &Option<Cell>| match c {
            None => "n/a".to_string(),
            Some(Ok(v)) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
            Some(Ok(v)) => fmt_value(*v),
            Some(Err(_)) => "FAILED".to_string(),
        };
        for r in &rows {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "-- {section}");
            }
            let ratio = r.ratio().map_or("-".to_string(), |x| format!("{x:.2}x"));
            let _ = writeln!(
                out,
                "{:<width$}  {:>10}  {:>12}  {ratio:>7}",
                r.label,
                cell(&r.berth),
                cell(&r.dist)
            );
        }
        let _ = writeln!(out, "\nratio: how many times better berth does (distribution/berth for times and memory, berth/distribution for rates).");
        let _ = writeln!(
            out,
            "berth: {}\ndistribution: {}",
            self.sources[0], self.sources[1]
        );
        for n in self.notes() {
            let _ = writeln!(out, "note: {n}");
        }
        let mut shown: Vec<&str> = Vec::new();
        for r in &rows {
            for (who, c) in [("berth", &r.berth), ("distribution", &r.dist)] {
                if let Some(Err(e)) = c {
                    if !shown.contains(&e.as_str()) {
                        shown.push(e);
                        let _ = writeln!(out, "FAILED ({who}) {}: {e}", r.label);
                    }
                }
            }
        }
        let _ = writeln!(out, "gc workload done in {:.0} s", self.secs);
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cell = |c: &Option<Cell>| match c {
            Some(Ok(v)) if v.is_finite() => serde_json::json!(v),
            _ => serde_json::Value::Null,
        };
        let err = |c: &Option<Cell>| c.as_ref().and_then(|c| c.as_ref().err().cloned());
        serde_json::json!({
            "rows": self.rows().iter().map(|r| serde_json::json!({
                "section": r.section,
                "figure": r.label,
                "berth": cell(&r.berth),
                "distribution": cell(&r.dist),
                "ratio": r.ratio(),
                "errors": { "berth": err(&r.berth), "distribution": err(&r.dist) },
            })).collect::<Vec<_>>(),
            "registries": { "berth": self.sources[0], "distribution": self.sources[1] },
            "notes": self.notes(),
            "secs": self.secs,
        })
    }
}
