//! The gc workload's test.

use super::*;
use crate::framework::Launch;

/// The whole workload at a tiny size (500 blobs and 100 manifests, and a
/// tenth of it), pushes for 1 s each and a 3 s grace period, against
/// `$BERTH_BIN` (else `target/release/berth`, else `target/debug/berth`) and
/// `/usr/bin/docker-registry`: every figure is a number, both registries
/// freed what they should, and no push failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_workload_end_to_end_at_a_tiny_size() {
    let dist = std::path::PathBuf::from("/usr/bin/docker-registry");
    assert!(
        dist.is_file(),
        "the gc test needs CNCF Distribution at {}: apt-get install docker-registry",
        dist.display()
    );
    let tmp = tempfile::tempdir().expect("a temp dir");
    let mut p = Params::new(true, 1);
    (p.gc_blobs, p.gc_manifests, p.gc_push) = (500, 100, Duration::from_secs(1));
    let ctx = Ctx {
        pool: Pool::new(2 << 20),
        p,
        launch: Launch {
            berth_bin: Some(crate::scale::tests::berth_binary()),
            dist_bin: dist,
            tmp_dir: tmp.path().to_path_buf(),
            pids: Vec::new(),
        },
    };
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        run_with(&ctx, Duration::from_secs(3)),
    )
    .await
    .expect("the gc workload finishes within 60 s")
    .expect("the gc workload runs");
    let table = report.table();
    println!("{table}");
    assert!(report.ok(), "{table}");
    assert!(!table.contains("FAILED"), "{table}");
    for s in &report.sizes {
        let b = s.berth.as_ref().expect("berth's side");
        let gc = b.gc.as_ref().expect("berth's GC");
        assert_eq!(gc.run.blobs_swept, Some(s.expected.freed() as u64));
        let checked = b.checked.as_ref().expect("the checks after berth's GC");
        assert_eq!(checked.manifests, s.expected.kept_manifests);
        let d = s.dist.as_ref().expect("distribution's side");
        let gc = d.gc.as_ref().expect("distribution's GC");
        assert_eq!(gc.before.blobs - gc.after.blobs, s.expected.freed());
        assert!(!d.fill.single_post);
        assert!(b.fill.single_post);
    }
    let push = report.push.as_ref().expect("the push part");
    assert_eq!(push.idle.failed + push.during.failed, 0);
    assert!(push.idle.images > 0 && push.during.images > 0);
    assert!(!push.runs.as_ref().expect("the GC runs").is_empty());
    let json = report.to_json();
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(report.rows().len())
    );
}
