//! The scale workload's tests.

use super::*;
use crate::data::Pool;
use crate::framework::Launch;
use crate::framework::Params;

/// `$BERTH_BIN`, else the workspace's `target/release/berth`, else
/// `target/debug/berth` (as the conformance suite finds it).
pub(crate) fn berth_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the workspace");
    for profile in ["release", "debug"] {
        let bin = root.join("target").join(profile).join("berth");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "no berth binary in {}/target/{{release,debug}}: build it (cargo build -p berth) \
         or set BERTH_BIN",
        root.display()
    );
}

fn values(report: &ScaleReport, m: M, registry: &str) -> Vec<f64> {
    let label = m.spec().0;
    let row = report
        .rows
        .iter()
        .find(|r| r.label == label && r.registry == registry)
        .unwrap_or_else(|| panic!("no row {label:?} for {registry}"));
    row.cells
        .iter()
        .map(|c| *c.as_ref().expect("a number"))
        .collect()
}

#[test]
fn repositories_spread_over_the_projects_of_their_step() {
    let plan = Plan {
        steps: vec![1000, 10_000],
    };
    assert_eq!(plan.repo_name(0), "p0000/r000000");
    assert_eq!(plan.repo_name(99), "p0000/r000099");
    assert_eq!(plan.repo_name(999), "p0090/r000999");
    assert_eq!(plan.repo_name(1234), "p0022/r001234");
    assert_eq!(plan.in_first_project(1000), 109);
    assert_eq!(plan.in_first_project(10_000), 199);
    assert_eq!(fmt_count(100_000), "100,000");
    assert_eq!(fmt_count(999), "999");
}

/// The whole workload at tiny steps against a real berth and Distribution:
/// every row and column is a number, the viewer saw exactly its 10
/// repositories, and every repository was created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_workload_end_to_end_at_tiny_steps() {
    let dist = PathBuf::from("/usr/bin/docker-registry");
    assert!(
        dist.is_file(),
        "the scale test needs CNCF Distribution at {}: apt-get install docker-registry",
        dist.display()
    );
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut p = Params::new(true, 1);
    p.scale_steps = vec![20, 60];
    p.scale_samples = 3;
    let ctx = Ctx {
        pool: Pool::new(2 << 20),
        p,
        launch: Launch {
            berth_bin: Some(berth_binary()),
            dist_bin: dist,
            tmp_dir: tmp.path().to_path_buf(),
            pids: Vec::new(),
        },
    };
    let report = tokio::time::timeout(Duration::from_secs(45), run(&ctx))
        .await
        .expect("the scale workload finishes within 45 s")
        .expect("the scale workload runs");
    let table = report.table();
    println!("{table}");

    assert_eq!(report.steps, [20, 60]);
    for r in &report.rows {
        assert_eq!(r.cells.len(), 2, "{} ({})", r.label, r.registry);
        for c in &r.cells {
            match c {
                Ok(v) => assert!(v.is_finite(), "{} ({}): {v}", r.label, r.registry),
                Err(e) => panic!("{} ({}) failed: {e}", r.label, r.registry),
            }
        }
    }
    assert!(report.ok());
    for m in MEASURES {
        let (label, _, in_dist) = m.spec();
        assert!(table.contains(label), "the table lacks {label:?}");
        for (registry, present) in [("berth", true), ("distribution", in_dist)] {
            let found = report
                .rows
                .iter()
                .any(|r| r.label == label && r.registry == registry);
            assert_eq!(found, present, "{label:?} for {registry}");
        }
    }
    assert!(!table.contains("FAILED"), "{table}");
    let header = table.lines().next().expect("a header");
    for col in ["registry", "20", "60", "growth"] {
        assert!(header.contains(col), "header {header:?} lacks {col:?}");
    }

    assert_eq!(values(&report, M::ViewerEntries, "berth"), [10.0, 10.0]);
    for registry in ["berth", "distribution"] {
        assert_eq!(values(&report, M::Repos, registry), [20.0, 60.0]);
        assert_eq!(values(&report, M::Tags, registry), [20.0, 60.0]);
        for c in values(&report, M::CreatePerRepo, registry) {
            assert!(c > 0.0, "{registry}: creation {c} ms per repository");
        }
    }
    assert!(values(&report, M::AuditRows, "berth")[1] >= 600.0);
    assert_eq!(values(&report, M::AuditLost, "berth"), [0.0, 0.0]);
    let json = report.to_json();
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(report.rows.len())
    );
}
