//! The workloads, each run against one registry at a time, each returning the values
//! of its figures in the order `dispatch::figures` names them.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use bytes::Bytes;
use http::Method;

use crate::data::BlobSpec;
use crate::framework::{digest_of, mb_s, median, run_concurrent, sync_disks, Ctx, Params, State};
use crate::hammer::{hammer, HammerSpec};
use crate::http::{plain_download, Target};
use crate::registry::{
    list_all, manifest, pull_blob, push_chunked, push_image_blobs, push_monolithic, put_manifest,
    Image, OCI_MANIFEST,
};

const REPO_BIG: &str = "bench/big";
const REPO_CONC: &str = "bench/concurrent";
const REPO_MANIFESTS: &str = "bench/manifests";
pub const REPO_TAGS: &str = "bench/tags";

pub async fn big_push(ctx: &Ctx, t: &Target, st: &mut State, chunked: bool) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let mut rates = Vec::new();
    for run in 0..p.runs {
        let seed = if chunked { 2000 } else { 1000 } + (st.round * 100 + run) as u64;
        let spec = BlobSpec { seed, len: p.big };
        let digest = digest_of(&ctx.pool, spec).await?;
        sync_disks().await;
        let start = Instant::now();
        if chunked {
            push_chunked(t, &ctx.pool, REPO_BIG, spec, &digest, p.patch_chunk).await?;
        } else {
            push_monolithic(t, &ctx.pool, REPO_BIG, spec, &digest).await?;
            st.big = Some(spec);
        }
        let secs = start.elapsed().as_secs_f64();
        rates.push(mb_s(p.big, secs));
        eprintln!(
            "[{}] {} push run {}: {:.3} s, {:.1} MB/s",
            t.name,
            if chunked { "chunked" } else { "monolithic" },
            run + 1,
            secs,
            mb_s(p.big, secs)
        );
    }
    Ok(vec![median(rates)])
}

pub async fn pull(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let spec = match st.big {
        Some(s) => s,
        None => {
            let spec = BlobSpec {
                seed: 1000,
                len: p.big,
            };
            let digest = digest_of(&ctx.pool, spec).await?;
            eprintln!("[{}] pull: pushing the blob first (untimed)", t.name);
            push_monolithic(t, &ctx.pool, REPO_BIG, spec, &digest).await?;
            st.big = Some(spec);
            spec
        }
    };
    let digest = digest_of(&ctx.pool, spec).await?;
    // One hashed pull, untimed, proves the bytes are right; timed pulls just
    // count them, with the loopback ceiling's plain reader.
    pull_blob(t, REPO_BIG, &digest, spec.len, true).await?;
    let path = format!("/v2/{REPO_BIG}/blobs/{digest}");
    let mut rates = Vec::new();
    for run in 0..p.runs {
        let start = Instant::now();
        let got = plain_download(t, &path).await?;
        ensure!(
            got == spec.len,
            "GET {path}: {got} bytes, expected {}",
            spec.len
        );
        let secs = start.elapsed().as_secs_f64();
        rates.push(mb_s(spec.len, secs));
        eprintln!(
            "[{}] pull run {}: {:.3} s, {:.1} MB/s",
            t.name,
            run + 1,
            secs,
            mb_s(spec.len, secs)
        );
    }
    Ok(vec![median(rates)])
}

pub async fn concurrent(ctx: &Ctx, t: &Target, st: &State) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let specs: Vec<BlobSpec> = (0..p.conc_count)
        .map(|i| BlobSpec {
            seed: 100_000 + (st.round * 1000 + i) as u64,
            len: p.conc_len,
        })
        .collect();
    let mut digests = Vec::new();
    for s in &specs {
        digests.push(digest_of(&ctx.pool, *s).await?);
    }
    sync_disks().await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (spec, digest) in specs.into_iter().zip(digests) {
        let (t, pool) = (t.clone(), ctx.pool.clone());
        tasks.push(tokio::spawn(async move {
            push_monolithic(&t, &pool, REPO_CONC, spec, &digest).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = p.conc_len * p.conc_count as u64;
    eprintln!(
        "[{}] {} parallel pushes: {:.3} s, {:.1} MB/s",
        t.name,
        p.conc_count,
        secs,
        mb_s(total, secs)
    );
    Ok(vec![mb_s(total, secs), secs])
}
async fn ensure_image(t: &Target, st: &mut State) -> Result<Image> {
    if let Some(img) = &st.image {
        return Ok(img.clone());
    }
    let img = push_image_blobs(t, REPO_MANIFESTS).await?;
    st.image = Some(img.clone());
    Ok(img)
}

pub async fn manifest_puts(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let img = ensure_image(t, st).await?;
    let round = st.round;
    let seq: Vec<Bytes> = (0..p.manifest_puts)
        .map(|i| manifest(&img, &format!("seq-{round}-{i}")))
        .collect();
    let start = Instant::now();
    for (i, body) in seq.into_iter().enumerate() {
        put_manifest(t, REPO_MANIFESTS, &format!("r{round}-t{i}"), body).await?;
    }
    let seq_rate = p.manifest_puts as f64 / start.elapsed().as_secs_f64();

    let conc: Arc<Vec<Bytes>> = Arc::new(
        (0..p.manifest_puts)
            .map(|i| manifest(&img, &format!("conc-{round}-{i}")))
            .collect(),
    );
    let t2 = t.clone();
    let start = Instant::now();
    run_concurrent(p.manifest_puts, p.manifest_conc, move |i| {
        let (t, body) = (t2.clone(), conc[i].clone());
        async move { put_manifest(&t, REPO_MANIFESTS, &format!("r{round}-c{i}"), body).await }
    })
    .await?;
    let conc_rate = p.manifest_puts as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "[{}] manifest PUT: {:.0} req/s sequential, {:.0} req/s at {}",
        t.name, seq_rate, conc_rate, p.manifest_conc
    );
    Ok(vec![seq_rate, conc_rate])
}

async fn run_hammer(
    ctx: &Ctx,
    t: &Target,
    st: &mut State,
    what: &str,
    spec: HammerSpec,
) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let r = hammer(t, spec, p.conns, p.warmup, p.hammer).await?;
    let per_req = r.server_cpu.map(|c| c * 1e6 / r.requests as f64);
    let pct =
        |c: Option<f64>| c.map_or("n/a".to_string(), |c| format!("{:.0}%", 100.0 * c / r.secs));
    eprintln!(
        "[{}] {what}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; CPU server {} client {}",
        t.name,
        r.rps(),
        r.quantile_ms(0.5),
        r.quantile_ms(0.99),
        pct(r.server_cpu),
        pct(r.client_cpu)
    );
    st.notes.push((
        format!("{what}: CPU of the server / of this client, in % of one core"),
        format!("{} / {}", pct(r.server_cpu), pct(r.client_cpu)),
    ));
    Ok(vec![
        r.rps(),
        r.quantile_ms(0.99),
        per_req.unwrap_or(f64::NAN),
    ])
}

pub async fn manifest_get(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let spec = manifest_get_spec(t, st).await?;
    run_hammer(ctx, t, st, "manifest GET", spec).await
}

/// The `manifest-get` workload's request: a manifest by tag, pushed first.
pub async fn manifest_get_spec(t: &Target, st: &mut State) -> Result<HammerSpec> {
    let img = ensure_image(t, st).await?;
    let body = manifest(&img, "get");
    put_manifest(t, REPO_MANIFESTS, "get", body.clone()).await?;
    Ok(HammerSpec {
        method: Method::GET,
        path: format!("/v2/{REPO_MANIFESTS}/manifests/get"),
        accept: Some(OCI_MANIFEST),
        content_length: Some(body.len() as u64),
        body_len: body.len() as u64,
    })
}

pub async fn blob_head(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let spec = blob_head_spec(t, st).await?;
    run_hammer(ctx, t, st, "blob HEAD", spec).await
}

/// The `blob-head` workload's request: a `HEAD` of a layer, pushed first.
pub async fn blob_head_spec(t: &Target, st: &mut State) -> Result<HammerSpec> {
    let img = ensure_image(t, st).await?;
    Ok(HammerSpec {
        method: Method::HEAD,
        path: format!("/v2/{REPO_MANIFESTS}/blobs/{}", img.layer_digest),
        accept: None,
        content_length: Some(img.layer_len as u64),
        body_len: 0,
    })
}

/// Median milliseconds of `f`, repeated at least 3 times, within the listing bounds.
pub async fn time_ms<F, Fut>(p: &Params, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut v = Vec::new();
    while v.len() < 3 || (v.len() < p.list_iters && start.elapsed() < p.list_time) {
        let t0 = Instant::now();
        f().await?;
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(v))
}

fn check_names(what: &str, got: &[String], want: &HashSet<String>, exact: bool) -> Result<()> {
    let set: HashSet<&String> = got.iter().collect();
    ensure!(
        set.len() == got.len(),
        "{what}: {} duplicate names",
        got.len() - set.len()
    );
    let missing = want.iter().filter(|w| !set.contains(w)).count();
    ensure!(
        missing == 0,
        "{what}: {missing} of {} expected names missing",
        want.len()
    );
    if exact {
        ensure!(
            got.len() == want.len(),
            "{what}: {} names, expected {}",
            got.len(),
            want.len()
        );
    }
    Ok(())
}

pub async fn tags(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let n = p.tags;
    if !st.tags_ready {
        create_tags(t, n).await?;
        st.tags_ready = true;
    }
    let want: HashSet<String> = (0..n).map(|i| format!("tag{i:05}")).collect();

    let full_url = format!("/v2/{REPO_TAGS}/tags/list");
    let (got, _) = list_all(t, &full_url, "tags", false, 1).await?;
    check_names(&format!("GET {full_url}"), &got, &want, true)?;
    let page_url = format!("/v2/{REPO_TAGS}/tags/list?n=100");
    let max_pages = n / 100 + 5;
    let (got, pages) = list_all(t, &page_url, "tags", true, max_pages).await?;
    check_names(
        &format!("GET {page_url} and its Link pages"),
        &got,
        &want,
        true,
    )?;
    if pages == 1 && st.round == 0 {
        st.notes.push((
            "tags list ?n=100".into(),
            format!("one page of {} tags: n ignored", got.len()),
        ));
    }

    let full = time_ms(p, || async {
        list_all(t, &full_url, "tags", false, 1).await?;
        Ok(())
    })
    .await?;
    let paged = time_ms(p, || async {
        list_all(t, &page_url, "tags", true, max_pages).await?;
        Ok(())
    })
    .await?;
    eprintln!(
        "[{}] tags list: {full:.2} ms full, {paged:.2} ms in {pages} pages",
        t.name
    );
    Ok(vec![full, paged])
}

pub async fn catalog(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let n = p.repos;
    if !st.catalog_ready {
        create_repos(t, n).await?;
        st.catalog_ready = true;
    }
    let want: HashSet<String> = (0..n).map(|i| format!("bench/cat/r{i:05}")).collect();

    // Other workloads add a few repositories; the walk sees them all.
    let page_url = "/v2/_catalog?n=100";
    let max_pages = n / 100 + 20;
    let (all, pages) = list_all(t, page_url, "repositories", true, max_pages).await?;
    check_names(
        &format!("GET {page_url} and its Link pages"),
        &all,
        &want,
        false,
    )?;
    if pages == 1 && st.round == 0 {
        st.notes.push((
            "catalog ?n=100".into(),
            format!("one page of {} repositories: n ignored", all.len()),
        ));
    }
    let full_url = format!("/v2/_catalog?n={n}");
    let (got, _) = list_all(t, &full_url, "repositories", false, 1).await?;
    ensure!(
        got.len() == n.min(all.len()),
        "GET {full_url}: {} repositories, expected {} (of {} in the registry)",
        got.len(),
        n.min(all.len()),
        all.len()
    );

    let full = time_ms(p, || async {
        list_all(t, &full_url, "repositories", false, 1).await?;
        Ok(())
    })
    .await?;
    let paged = time_ms(p, || async {
        list_all(t, page_url, "repositories", true, max_pages).await?;
        Ok(())
    })
    .await?;
    eprintln!(
        "[{}] catalog: {full:.2} ms for n={n}, {paged:.2} ms in {pages} pages",
        t.name
    );
    Ok(vec![full, paged])
}

pub async fn create_tags(t: &Target, n: usize) -> Result<()> {
    let setup = Instant::now();
    let img = push_image_blobs(t, REPO_TAGS).await?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..n)
            .map(|i| manifest(&img, &format!("tag-{i}")))
            .collect(),
    );
    let t2 = t.clone();
    run_concurrent(n, 16, move |i| {
        let (t, body) = (t2.clone(), bodies[i].clone());
        async move { put_manifest(&t, REPO_TAGS, &format!("tag{i:05}"), body).await }
    })
    .await?;
    eprintln!(
        "[{}] tags: {n} tags created in {:.1} s (untimed)",
        t.name,
        setup.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn create_repos(t: &Target, n: usize) -> Result<()> {
    let setup = Instant::now();
    let t2 = t.clone();
    run_concurrent(n, 16, move |i| {
        let t = t2.clone();
        async move {
            let repo = format!("bench/cat/r{i:05}");
            let img = push_image_blobs(&t, &repo).await?;
            put_manifest(&t, &repo, "latest", manifest(&img, "cat")).await
        }
    })
    .await?;
    eprintln!(
        "[{}] catalog: {n} repositories created in {:.1} s (untimed)",
        t.name,
        setup.elapsed().as_secs_f64()
    );
    Ok(())
}
