//! The scale table and its JSON.

use super::*;

impl ScaleReport {
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.cells.iter().all(Result::is_ok))
    }

    fn creation(&self, registry: &str) -> Option<f64> {
        let row = self
            .rows
            .iter()
            .find(|r| r.label == M::CreatePerRepo.spec().0 && r.registry == registry)?;
        row.cells.last()?.as_ref().ok().copied()
    }

    /// The table: a row per measure and registry, a column per step, and the
    /// growth from the first step to the last.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.write_rows(&mut out);
        let _ = writeln!(out);
        self.write_targets(&mut out);
        self.write_footer(&mut out);
        out
    }

    /// The header line and a line per row.
    fn write_rows(&self, out: &mut String) {
        let width = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10);
        let _ = write!(
            out,
            "{:<width$}  {:<12}",
            "scale (repositories)", "registry"
        );
        for n in &self.steps {
            let _ = write!(out, "  {:>10}", fmt_count(*n));
        }
        let _ = writeln!(out, "  {:>9}", "growth");
        let mut last = "";
        for r in &self.rows {
            let label = if r.label == last { "" } else { r.label };
            last = r.label;
            let _ = write!(out, "{label:<width$}  {:<12}", r.registry);
            for c in &r.cells {
                let cell = match c {
                    Ok(v) => crate::framework::fmt_value(*v),
                    Err(_) => "FAILED".into(),
                };
                let _ = write!(out, "  {cell:>10}");
            }
            let growth = r.growth().map_or("-".to_string(), |g| format!("{g:.2}x"));
            let mark = if r.missed() { " !" } else { "  " };
            let _ = writeln!(out, "  {growth:>7}{mark}");
        }
    }

    /// What growth means, and whether berth met its targets.
    fn write_targets(&self, out: &mut String) {
        let (first, last) = (
            fmt_count(self.steps[0]),
            fmt_count(*self.steps.last().expect("a step")),
        );
        let _ = writeln!(
            out,
            "growth: value at {last} / value at {first} repositories. ! marks a berth request \
             time that grew more than the target 1.5x."
        );
        let missed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.missed())
            .map(|r| format!("{} ({:.2}x)", r.label, r.growth().unwrap_or(f64::NAN)))
            .collect();
        let targets = self
            .rows
            .iter()
            .filter(|r| r.kind == Kind::Target && r.registry == "berth")
            .count();
        if self.steps.len() > 1 {
            let _ = writeln!(
                out,
                "target: berth's {targets} request times within 1.5x from {first} to {last}: {}",
                if missed.is_empty() {
                    "met".to_string()
                } else {
                    format!("missed by {}", missed.join(", "))
                }
            );
        }
        if let (Some(b), Some(d)) = (self.creation("berth"), self.creation("distribution")) {
            let _ = writeln!(
                out,
                "target: creation per repository at the last step no slower than Distribution's: \
                 berth {} ms, distribution {} ms: {}",
                crate::framework::fmt_value(b),
                crate::framework::fmt_value(d),
                if b <= d { "met" } else { "missed" }
            );
        }
    }

    /// How the times were taken, the registries, the notes and the failures.
    fn write_footer(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "times: median of {} samples after {WARMUP} untimed, sequential, keep-alive; UI rows \
             are the server's Server-Timing, the others client-measured. Creation: \
             {CREATE_CONC} in flight, wall time / repositories added.",
            self.samples
        );
        let _ = writeln!(out, "berth: {}", self.sources[0]);
        let _ = writeln!(out, "distribution: {}", self.sources[1]);
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let mut shown: Vec<&str> = Vec::new();
        for r in &self.rows {
            for (c, n) in r.cells.iter().zip(&self.steps) {
                if let Err(e) = c {
                    if !shown.contains(&e.as_str()) {
                        shown.push(e);
                        let _ = writeln!(
                            out,
                            "FAILED ({}) {} at {}: {e}",
                            r.registry,
                            r.label,
                            fmt_count(*n)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "scale workload done in {:.0} s", self.secs);
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cell = |c: &Cell| match c {
            Ok(v) if v.is_finite() => serde_json::json!(v),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "steps": self.steps,
            "growth_means": "value at the last step / value at the first step",
            "target_growth": 1.5,
            "registries": { "berth": self.sources[0], "distribution": self.sources[1] },
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "figure": r.label,
                "registry": r.registry,
                "kind": r.kind.name(),
                "values": r.cells.iter().map(cell).collect::<Vec<_>>(),
                "errors": r.cells.iter().map(|c| c.as_ref().err().cloned()).collect::<Vec<_>>(),
                "growth": r.growth(),
                "target_missed": r.missed(),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "samples": self.samples,
            "secs": self.secs,
        })
    }
}
