//! The `ui` workload: how fast berth's web UI shows a repository with many tags.
//!
//! It starts a berth of its own with authentication on (`auth.mode = token`, a
//! random `BERTH_ADMIN_PASSWORD`), pushes one small image and tags it `ui_tags`
//! times (manifest PUTs with Basic admin credentials, untimed), signs in to the
//! UI as a browser does (`GET /ui/login` for the CSRF token and the login-nonce
//! cookie, `POST /ui/login`, session cookie), then times `GET` of the
//! repository page's first page, sorted by name and sorted by push time:
//! client-measured time (request sent to body read) and the server's own
//! `Server-Timing: app;dur=<ms>`. Every page is checked to list the expected
//! tags, so a lost session cannot produce a number.
//!
//! Distribution has no web UI: its figures are n/a.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;

use crate::framework::{fig, median, run_concurrent, Better, Ctx, FigureSpec, Params, State};
use crate::http::{basic_authorization, new_client, parse_base, Target};
use crate::registry::{manifest, push_image_blobs, put_manifest};
use crate::server::{log_tail, random_hex, start_berth_with, BerthAuth};
use crate::webui::{get_page, login, SESSION_COOKIE};

const REPO: &str = "uibench/app";

/// The timed views: a label and the query string of the repository page.
const VIEWS: [(&str, &str); 2] = [("by name", "sort=name"), ("by push time", "sort=pushed")];

pub fn figures(p: &Params) -> Vec<FigureSpec> {
    let mut out = Vec::new();
    for (label, _) in VIEWS {
        let what = format!("ui: repo page of {} tags, {label}", p.ui_tags);
        for (who, q) in [
            ("client", "median"),
            ("client", "p99"),
            ("server", "median"),
            ("server", "p99"),
        ] {
            out.push(fig(format!("{what}: {who} {q} (ms)"), Better::Lower));
        }
    }
    out
}

fn tag_name(i: usize) -> String {
    format!("tag{i:05}")
}

/// Nearest-rank quantile of a non-empty sample.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub async fn run(ctx: &Ctx, t: &Target, _st: &mut State) -> Result<Vec<f64>> {
    if t.name != "berth" {
        eprintln!("[{}] ui: no web UI, n/a", t.name);
        return Ok(vec![f64::NAN; figures(&ctx.p).len()]);
    }
    let l = &ctx.launch;
    let bin = l
        .berth_bin
        .as_ref()
        .context("the ui workload starts a berth of its own: give --berth-bin, not --berth-url")?;
    let password = random_hex(12)?;
    let server = start_berth_with(bin, &l.tmp_dir, BerthAuth::Admin(&password)).await?;
    let api = Target {
        name: t.name,
        base: server.base.clone(),
        addr: parse_base(&server.base).await?.1,
        pid: Some(server.pid),
        client: new_client(),
        authorization: Some(basic_authorization("admin", &password)),
    };
    let result = measure(ctx, &api, &password).await;
    let result = match result {
        Ok(v) => Ok(v),
        Err(e) => {
            // Let the server's log writer catch up before its tail is read.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(anyhow::anyhow!(
                "ui: {e:#}; server log tail:\n{}",
                log_tail(&server.log)
            ))
        }
    };
    server.stop().await;
    result
}

async fn measure(ctx: &Ctx, api: &Target, password: &str) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let n = p.ui_tags;
    create_tags(api, n).await.context("creating the tags")?;

    // The browser sends no Basic credentials, only cookies.
    let browser = Target {
        authorization: None,
        ..api.clone()
    };
    let session = login(&browser, "admin", password)
        .await
        .context("signing in")?;
    let cookie = format!("{SESSION_COOKIE}={session}");

    let mut out = Vec::new();
    for (label, query) in VIEWS {
        let url = format!("/ui/r/{REPO}?{query}");
        let pushed = query == "sort=pushed";
        // Untimed: the first GET warms the server's caches and is checked.
        let (body, _) = get_page(&browser, &url, &cookie).await?;
        let rows = check_page(&url, &body, n, pushed)?;
        let (mut client, mut server) = (Vec::new(), Vec::new());
        for _ in 0..p.ui_iters {
            let t0 = Instant::now();
            let (body, dur) = get_page(&browser, &url, &cookie).await?;
            client.push(t0.elapsed().as_secs_f64() * 1e3);
            server.push(dur);
            check_page(&url, &body, n, pushed)?;
        }
        let fig = [
            median(client.clone()),
            quantile(&client, 0.99),
            median(server.clone()),
            quantile(&server, 0.99),
        ];
        eprintln!(
            "[{}] ui, {label}: GET {url} ({rows} rows, {} KiB) x{}: client median {:.2} ms, \
             p99 {:.2} ms; server median {:.2} ms, p99 {:.2} ms",
            api.name,
            body.len() / 1024,
            p.ui_iters,
            fig[0],
            fig[1],
            fig[2],
            fig[3]
        );
        out.extend(fig);
    }
    Ok(out)
}

/// One image, tagged `n` times (distinct manifests), 4 PUTs in flight so the
/// push order stays close to the index order.
async fn create_tags(t: &Target, n: usize) -> Result<()> {
    let setup = Instant::now();
    let img = push_image_blobs(t, REPO).await?;
    let bodies: Arc<Vec<Bytes>> =
        Arc::new((0..n).map(|i| manifest(&img, &format!("ui-{i}"))).collect());
    let t2 = t.clone();
    run_concurrent(n, 4, move |i| {
        let (t, body) = (t2.clone(), bodies[i].clone());
        async move { put_manifest(&t, REPO, &tag_name(i), body).await }
    })
    .await?;
    eprintln!(
        "[{}] ui: {n} tags created in {:.1} s (untimed)",
        t.name,
        setup.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Checks that the page lists the repository's tags: the total, and rows of
/// distinct known tags, the first ones by name, or recent ones by push time.
/// Returns the number of rows.
fn check_page(url: &str, body: &[u8], n: usize, pushed: bool) -> Result<usize> {
    let html = String::from_utf8_lossy(body);
    ensure!(
        html.contains(&format!("{n} tags")),
        "GET {url}: the page does not say \"{n} tags\" ({} bytes)",
        body.len()
    );
    let marker = "data-name=\"";
    let rows: Vec<&str> = html
        .match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest.find('"').map(|e| &rest[..e])
        })
        .collect();
    ensure!(!rows.is_empty(), "GET {url}: no tag rows");
    let distinct: HashSet<&&str> = rows.iter().collect();
    ensure!(
        distinct.len() == rows.len(),
        "GET {url}: duplicate tag rows"
    );
    let mut indices = Vec::new();
    for r in &rows {
        let i = r
            .strip_prefix("tag")
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|i| *i < n && tag_name(*i) == *r);
        match i {
            Some(i) => indices.push(i),
            None => bail!("GET {url}: unexpected row {r:?}"),
        }
    }
    if pushed {
        // Pushed with 4 in flight: the newest rows are among the last pushed.
        let floor = n.saturating_sub(rows.len() + 16);
        ensure!(
            indices.iter().all(|i| *i >= floor),
            "GET {url}: by push time, rows {:?}... are not among the {} pushed last",
            &rows[..rows.len().min(5)],
            n - floor
        );
    } else {
        ensure!(
            indices.iter().enumerate().all(|(k, i)| k == *i),
            "GET {url}: by name, rows {:?}... are not tag00000, tag00001, ...",
            &rows[..rows.len().min(5)]
        );
    }
    Ok(rows.len())
}
