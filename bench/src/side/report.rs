//! The side-by-side table and its JSON: a row per figure, berth's and
//! distribution's values and their ratio, the machine's ceilings and the notes.

use crate::ceilings::Ceilings;
use crate::framework::{fmt_value, Better};

pub type Cell = Result<f64, String>;

pub struct Row {
    pub label: String,
    pub better: Better,
    pub cells: [Cell; 2],
}

/// One remark, with its values for berth and for distribution (one per round).
pub struct Note {
    pub topic: String,
    pub values: [Vec<String>; 2],
}

pub fn group_notes(raw: Vec<(String, (String, String))>) -> Vec<Note> {
    let mut out: Vec<Note> = Vec::new();
    for (who, (topic, value)) in raw {
        let i = usize::from(who != "berth");
        let pos = match out.iter().position(|n| n.topic == topic) {
            Some(p) => p,
            None => {
                out.push(Note {
                    topic,
                    values: Default::default(),
                });
                out.len() - 1
            }
        };
        out[pos].values[i].push(value);
    }
    out
}

fn ratio(row: &Row) -> Option<f64> {
    let (Ok(b), Ok(d)) = (&row.cells[0], &row.cells[1]) else {
        return None;
    };
    let r = match row.better {
        Better::Higher => b / d,
        Better::Lower => d / b,
    };
    r.is_finite().then_some(r)
}

fn fmt_cell(c: &Cell) -> String {
    match c {
        Ok(v) => fmt_value(*v),
        Err(_) => "FAILED".into(),
    }
}

pub fn print_table(
    rows: &[Row],
    ceilings: &Ceilings,
    machine: &str,
    sources: &[String; 2],
    notes: &[Note],
) {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}  {:>12}  {:>12}  {:>7}",
        "figure", "berth", "distribution", "ratio"
    );
    for r in rows {
        let ratio = ratio(r).map_or("-".into(), |x| format!("{x:.2}x"));
        println!(
            "{:<width$}  {:>12}  {:>12}  {:>7}",
            r.label,
            fmt_cell(&r.cells[0]),
            fmt_cell(&r.cells[1]),
            ratio
        );
    }
    println!();
    println!(
        "ratio: how many times better berth does; berth/distribution for rates (req/s, MB/s),"
    );
    println!("distribution/berth for times, latencies, CPU and RSS. >1 means berth is better.");
    println!("MB = 10^6 bytes. Big-blob figures are the median of the timed runs.");
    println!();
    println!("machine: {machine}");
    println!(
        "ceiling: SHA-256 (sha2), one core: {:.1} MB/s",
        ceilings.sha256
    );
    println!(
        "ceiling: loopback TCP copy of a file of the big blob's size from the page cache (read 1 MiB, write; 127.0.0.1): {:.1} MB/s",
        ceilings.loopback_file
    );
    println!(
        "ceiling: loopback TCP copy resending one cache-resident 1 MiB buffer (no memory reads): {:.1} MB/s",
        ceilings.loopback_cached
    );
    println!(
        "ceiling: durable write of the big blob's size (1 MiB writes, then fsync) in the registries' directory: {:.1} MB/s",
        ceilings.durable_write
    );
    for (prefix, what, ceiling) in [
        ("pull ", "loopback copy of a file", ceilings.loopback_file),
        ("monolithic push ", "durable write", ceilings.durable_write),
    ] {
        if let Some(r) = rows.iter().find(|r| r.label.starts_with(prefix)) {
            let share = |c: &Cell| match c {
                Ok(v) if v.is_finite() => format!("{:.0}%", 100.0 * v / ceiling),
                _ => "-".into(),
            };
            println!(
                "share of the {what}: {}: berth {}, distribution {}",
                r.label.trim_end_matches(" (MB/s)"),
                share(&r.cells[0]),
                share(&r.cells[1])
            );
        }
    }
    println!("berth: {}", sources[0]);
    println!("distribution: {}", sources[1]);
    for n in notes {
        let side = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        println!(
            "note: {}: berth {}; distribution {}",
            n.topic,
            side(&n.values[0]),
            side(&n.values[1])
        );
    }
    // A failed workload fails all its figures with one message: print it once.
    let mut shown: Vec<&str> = Vec::new();
    for r in rows {
        for (who, c) in ["berth", "distribution"].iter().zip(&r.cells) {
            if let Err(e) = c {
                if !shown.contains(&e.as_str()) {
                    shown.push(e);
                    println!("FAILED ({who}) {}: {e}", r.label);
                }
            }
        }
    }
}

pub fn to_json(
    rows: &[Row],
    ceilings: &Ceilings,
    machine: &str,
    sources: &[String; 2],
    notes: &[Note],
    quick: bool,
) -> serde_json::Value {
    let cell = |c: &Cell| match c {
        Ok(v) if v.is_finite() => serde_json::json!(v),
        _ => serde_json::Value::Null,
    };
    let err = |c: &Cell| c.as_ref().err().cloned();
    serde_json::json!({
        "quick": quick,
        "machine": machine,
        "ceilings": {
            "sha256_one_core_mb_s": ceilings.sha256,
            "loopback_file_copy_mb_s": ceilings.loopback_file,
            "loopback_cached_buffer_copy_mb_s": ceilings.loopback_cached,
            "durable_write_mb_s": ceilings.durable_write,
        },
        "registries": { "berth": sources[0], "distribution": sources[1] },
        "ratio_means": "how many times better berth does: berth/distribution when higher is better, distribution/berth when lower is better",
        "figures": rows.iter().map(|r| serde_json::json!({
            "figure": r.label,
            "better": r.better,
            "berth": cell(&r.cells[0]),
            "distribution": cell(&r.cells[1]),
            "ratio": ratio(r),
            "berth_error": err(&r.cells[0]),
            "distribution_error": err(&r.cells[1]),
        })).collect::<Vec<_>>(),
        "notes": notes.iter().map(|n| serde_json::json!({
            "topic": n.topic,
            "berth": n.values[0],
            "distribution": n.values[1],
        })).collect::<Vec<_>>(),
    })
}
