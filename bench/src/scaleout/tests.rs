//! The scaleout workload's tests.

use std::path::PathBuf;
use std::time::Duration;

use super::report::Fig;
use super::*;
use crate::data::Pool;
use crate::framework::Params;
use crate::scale::tests::berth_binary;

#[test]
fn the_table_marks_missed_targets_and_lists_that_grew() {
    let p = crate::framework::Params::new(true, 1);
    let mut r = ScaleOutReport::new(&p);
    for (who, rate, first, grown) in [
        (Stack::One, 1000.0, 2.0, 2.2),
        (Stack::Three, 1500.0, 2.0, 6.0),
        (Stack::Dist, 100.0, 50.0, 400.0),
    ] {
        r.set(Fig::GetRate, who, Ok(rate));
        r.set(Fig::Catalog, who, Ok(first));
        r.set(Fig::CatalogGrown, who, Ok(grown));
    }
    r.set(Fig::HeadRate, Stack::One, Err("HEAD failed: 502".into()));
    let table = r.table();
    println!("{table}");
    assert!(
        table.contains("manifest GET req/s through 3 replicas >= 2x one: 1.50x (MISSED)"),
        "{table}"
    );
    assert!(
        table.contains("x1 10.00x (met), x3 15.00x (met)"),
        "{table}"
    );
    let growth = table
        .lines()
        .find(|l| l.starts_with("catalog: growth"))
        .expect("a growth row");
    assert!(growth.contains("1.10") && growth.contains("3.00!") && growth.contains("8.00!"));
    assert!(table.contains("berth S3 x3 3.00x (MISSED)"), "{table}");
    assert!(table.contains("FAILED (berth S3 x1) blob HEAD"), "{table}");
    assert!(!r.ok(), "a failed cell fails the run");
}

/// The whole workload at a tiny size against real engines (PostgreSQL,
/// Garage, nginx), berth and Distribution: every figure is a number, and the
/// lists were measured on every stack at both sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaleout_workload_end_to_end_at_a_tiny_size() {
    let dist = PathBuf::from("/usr/bin/docker-registry");
    assert!(
        dist.is_file(),
        "needs CNCF Distribution: apt-get install docker-registry"
    );
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut p = Params::new(true, 1);
    p.scaleout_big = 4 << 20;
    p.scaleout_repos = PAGE;
    p.conc_count = 8;
    p.conc_len = 64 << 10;
    p.conns = 8;
    p.warmup = Duration::from_millis(200);
    p.hammer = Duration::from_millis(800);
    p.tags = 120;
    p.list_iters = 3;
    let ctx = Ctx {
        pool: Pool::new(8 << 20),
        p,
        launch: Launch {
            berth_bin: Some(berth_binary()),
            dist_bin: dist,
            tmp_dir: tmp.path().to_path_buf(),
            pids: Vec::new(),
        },
    };
    let report = tokio::time::timeout(Duration::from_secs(240), run(&ctx))
        .await
        .expect("the scaleout workload finishes within 240 s")
        .expect("the scaleout workload runs");
    let table = report.table();
    println!("{table}");
    assert!(report.ok(), "{table}");
    assert!(!table.contains("FAILED"), "{table}");
    for fig in [
        Fig::GetRate,
        Fig::HeadRate,
        Fig::Push,
        Fig::Pull,
        Fig::CatalogGrowth,
    ] {
        for who in STACKS {
            let v = report.value(fig, who).expect("measured");
            assert!(v.is_finite() && v > 0.0, "{fig:?} on {who:?}: {v}");
        }
    }
    drop(ctx);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("the temp dir")
        .collect();
    assert!(left.is_empty(), "left behind in the temp dir: {left:?}");
}
