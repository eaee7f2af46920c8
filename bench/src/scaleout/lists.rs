//! The list measures: the first `_catalog` and `tags/list` pages with N
//! repositories in the registry, and again with 10N.

use anyhow::{ensure, Result};

use super::*;
use crate::framework::{run_concurrent, sync_disks};
use crate::registry::{manifest, push_image_blobs, put_manifest};
use crate::scale::ops::mount;

/// Where the repositories' shared blobs are pushed once, to be mounted from.
const SOURCE: &str = "bench/src";
/// Repositories created at once.
const CREATE_CONC: usize = 16;
/// Untimed requests before a list's timed ones.
const WARMUP: usize = 3;

/// Creates `bench/cat/r{from:05}`... before `to`, 16 at once, as a registry
/// filling up does: the shared config and layer mounted from `SOURCE` (one
/// `POST ?mount=` each), then a manifest `PUT`.
async fn create_repos(t: &Target, from: usize, to: usize) -> Result<()> {
    let img = push_image_blobs(t, SOURCE).await?;
    let body = manifest(&img, "cat");
    let t2 = t.clone();
    let setup = std::time::Instant::now();
    run_concurrent(to.saturating_sub(from), CREATE_CONC, move |i| {
        let (t, img, body) = (t2.clone(), img.clone(), body.clone());
        async move {
            let repo = format!("bench/cat/r{:05}", from + i);
            mount(&t, &repo, &img.config_digest, SOURCE).await?;
            mount(&t, &repo, &img.layer_digest, SOURCE).await?;
            put_manifest(&t, &repo, "latest", body).await
        }
    })
    .await?;
    eprintln!(
        "[{}] {} repositories created in {:.1} s (untimed)",
        t.name,
        to.saturating_sub(from),
        setup.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The first catalog and tags pages with N repositories, then with 10N.
pub(super) async fn lists(ctx: &Ctx, columns: &mut [Column], report: &mut ScaleOutReport) {
    let n = ctx.p.scaleout_repos;
    // The two berth S3 columns share one database: set up through one.
    for col in columns.iter_mut().filter(|c| c.stack != Stack::Three) {
        eprintln!(
            "== scaleout: {n} repositories and {} tags on {}",
            ctx.p.tags,
            col.stack.label()
        );
        let t = &col.target;
        let r = bounded(ctx, async {
            create_repos(t, 0, n).await?;
            workloads::create_tags(t, ctx.p.tags).await
        })
        .await;
        col.lists_failed = r.err();
    }
    share_failure(columns);
    measure_lists(ctx, columns, report, false).await;
    for col in columns.iter_mut().filter(|c| c.stack != Stack::One) {
        if col.lists_failed.is_some() {
            continue;
        }
        let who = col.stack;
        eprintln!(
            "== scaleout: {} more repositories on {}",
            (GROWTH - 1) * n,
            who.label()
        );
        let t = &col.target;
        let start = std::time::Instant::now();
        let r = bounded(ctx, create_repos(t, n, GROWTH * n)).await;
        let rate = r.map(|()| ((GROWTH - 1) * n) as f64 / start.elapsed().as_secs_f64());
        col.lists_failed = rate.as_ref().err().cloned();
        report.set(Fig::CreateRate, who, rate);
    }
    share_failure(columns);
    measure_lists(ctx, columns, report, true).await;
}

/// The shared database's setup runs through the x3 column when it grows and
/// through x1 before: either's failure is both's.
fn share_failure(columns: &mut [Column]) {
    let shared = columns
        .iter()
        .filter(|c| matches!(c.stack, Stack::One | Stack::Three))
        .find_map(|c| c.lists_failed.clone());
    for c in columns.iter_mut() {
        if matches!(c.stack, Stack::One | Stack::Three) && shared.is_some() {
            c.lists_failed = shared.clone();
        }
    }
}

async fn measure_lists(ctx: &Ctx, columns: &[Column], report: &mut ScaleOutReport, grown: bool) {
    let (cat, tags) = if grown {
        (Fig::CatalogGrown, Fig::TagsGrown)
    } else {
        (Fig::Catalog, Fig::Tags)
    };
    // The writes of the setup before, flushed so they do not land in the timings.
    sync_disks().await;
    for col in columns {
        let who = col.stack;
        if let Some(e) = &col.lists_failed {
            report.set(cat, who, Err(e.clone()));
            report.set(tags, who, Err(e.clone()));
            continue;
        }
        eprintln!(
            "== scaleout: first catalog and tags pages on {}",
            who.label()
        );
        let c = bounded(ctx, first_page(ctx, col, "/v2/_catalog", "repositories")).await;
        report.set(cat, who, c);
        let path = format!("/v2/{}/tags/list", workloads::REPO_TAGS);
        let t = bounded(ctx, first_page(ctx, col, &path, "tags")).await;
        if who == Stack::Dist && t.is_ok() && !grown {
            report.notes.push(format!(
                "distribution 2.8 ignores n on tags/list: its tags figures are the whole list of {}",
                ctx.p.tags
            ));
        }
        report.set(tags, who, t);
    }
}

/// Median ms of `GET path?n=100`, which must list 100 names (Distribution's
/// tags list: all of them, as it ignores `n`).
async fn first_page(ctx: &Ctx, col: &Column, path: &str, field: &str) -> Result<f64> {
    let url = format!("{path}?n={PAGE}");
    let t = &col.target;
    let (got, _) = list_all(t, &url, field, false, 1).await?;
    for _ in 0..WARMUP {
        list_all(t, &url, field, false, 1).await?;
    }
    let whole_tags = col.stack == Stack::Dist && field == "tags" && got.len() == ctx.p.tags;
    ensure!(
        got.len() == PAGE || whole_tags,
        "GET {url}: {} {field}, expected {PAGE}",
        got.len()
    );
    let ms = workloads::time_ms(&ctx.p, || async {
        list_all(t, &url, field, false, 1).await?;
        Ok(())
    })
    .await?;
    eprintln!("[{}] GET {url}: {ms:.2} ms", t.name);
    Ok(ms)
}
