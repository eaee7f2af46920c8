//! The workloads, each run against one registry at a time, each returning the values
//! of its figures in the order `Workload::figures` names them.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bytes::Bytes;
use http::Method;
use serde::Serialize;

use crate::auth::Launch;
use crate::data::{BlobSpec, Pool};
use crate::hammer::{hammer, HammerSpec};
use crate::http::{plain_download, Target};
use crate::registry::{
    list_all, manifest, pull_blob, push_chunked, push_image_blobs, push_monolithic, put_manifest,
    Image, OCI_MANIFEST,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

pub struct FigureSpec {
    pub label: String,
    pub better: Better,
}

pub fn fig(label: String, better: Better) -> FigureSpec {
    FigureSpec { label, better }
}

/// Sizes, counts and durations; `--quick` shrinks them about 16x.
pub struct Params {
    pub runs: usize,
    pub big: u64,
    pub patch_chunk: u64,
    pub conc_count: usize,
    pub conc_len: u64,
    pub manifest_puts: usize,
    pub manifest_conc: usize,
    pub conns: usize,
    pub warmup: Duration,
    pub hammer: Duration,
    pub tags: usize,
    pub repos: usize,
    pub list_iters: usize,
    pub list_time: Duration,
    /// Bound on one workload against one registry.
    pub timeout: Duration,
    /// `auth`: images pushed and pulled, one after the other.
    pub auth_images: usize,
    /// `auth`: small layers per image, and their size.
    pub auth_small_layers: usize,
    pub auth_small_len: u64,
    /// `auth`: size of each image's one big layer.
    pub auth_big_len: u64,
    /// `auth`: blobs of one image in flight at once when pushing and when pulling
    /// (docker's defaults: 5 uploads, 3 downloads).
    pub auth_push_conc: usize,
    pub auth_pull_conc: usize,
    /// `ui`: tags of the repository whose page is shown, and GETs timed per view.
    pub ui_tags: usize,
    pub ui_iters: usize,
    /// `scale`: repositories at each step (`--scale-steps`), and the timed
    /// samples of each measure per step (`--scale-samples`).
    pub scale_steps: Vec<usize>,
    pub scale_samples: usize,
}

impl Params {
    pub fn new(quick: bool, runs: usize) -> Params {
        const MIB: u64 = 1 << 20;
        if quick {
            Params {
                runs,
                big: 64 * MIB,
                patch_chunk: MIB,
                conc_count: 64,
                conc_len: MIB / 2,
                manifest_puts: 125,
                manifest_conc: 16,
                conns: 64,
                warmup: Duration::from_millis(500),
                hammer: Duration::from_secs(3),
                tags: 250,
                repos: 125,
                list_iters: 10,
                list_time: Duration::from_secs(1),
                timeout: Duration::from_secs(180),
                auth_images: 2,
                auth_small_layers: 6,
                auth_small_len: 64 << 10,
                auth_big_len: 2 * MIB,
                auth_push_conc: 5,
                auth_pull_conc: 3,
                ui_tags: 2000,
                ui_iters: 10,
                scale_steps: vec![100, 1000],
                scale_samples: 10,
            }
        } else {
            Params {
                runs,
                big: 1024 * MIB,
                patch_chunk: 16 * MIB,
                conc_count: 64,
                conc_len: 8 * MIB,
                manifest_puts: 1000,
                manifest_conc: 16,
                conns: 64,
                warmup: Duration::from_secs(2),
                hammer: Duration::from_secs(10),
                tags: 2000,
                repos: 1000,
                list_iters: 50,
                list_time: Duration::from_secs(5),
                timeout: Duration::from_secs(900),
                auth_images: 8,
                auth_small_layers: 25,
                auth_small_len: 64 << 10,
                auth_big_len: 8 * MIB,
                auth_push_conc: 5,
                auth_pull_conc: 3,
                ui_tags: 2000,
                ui_iters: 50,
                scale_steps: vec![1000, 10_000, 100_000],
                scale_samples: 30,
            }
        }
    }
}

pub struct Ctx {
    pub pool: Pool,
    pub p: Params,
    /// How to start more registries (the `auth` workload starts its own).
    pub launch: Launch,
}

/// What one registry holds so far, so workloads can run alone (`--only`).
#[derive(Default)]
pub struct State {
    /// Which repetition of the workload this is (`--rounds`); keeps blobs and tags distinct.
    pub round: usize,
    big: Option<BlobSpec>,
    image: Option<Image>,
    tags_ready: bool,
    catalog_ready: bool,
    /// (topic, value) pairs; values of one topic are shown together, one per round.
    pub notes: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    Mono,
    Chunked,
    Pull,
    Concurrent,
    ManifestPut,
    ManifestGet,
    BlobHead,
    Tags,
    Catalog,
    Ui,
    Auth,
    Scale,
}

pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

pub fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

const REPO_BIG: &str = "bench/big";
const REPO_CONC: &str = "bench/concurrent";
const REPO_MANIFESTS: &str = "bench/manifests";
const REPO_TAGS: &str = "bench/tags";

impl Workload {
    /// What runs without `--only`: all but `auth` (which `--auth` adds) and
    /// `scale` (which only `--only scale` runs).
    pub const DEFAULT: [Workload; 10] = [
        Workload::Mono,
        Workload::Chunked,
        Workload::Pull,
        Workload::Concurrent,
        Workload::ManifestPut,
        Workload::ManifestGet,
        Workload::BlobHead,
        Workload::Tags,
        Workload::Catalog,
        Workload::Ui,
    ];

    pub const ALL: [Workload; 12] = [
        Workload::Mono,
        Workload::Chunked,
        Workload::Pull,
        Workload::Concurrent,
        Workload::ManifestPut,
        Workload::ManifestGet,
        Workload::BlobHead,
        Workload::Tags,
        Workload::Catalog,
        Workload::Ui,
        Workload::Auth,
        Workload::Scale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Mono => "mono",
            Workload::Chunked => "chunked",
            Workload::Pull => "pull",
            Workload::Concurrent => "concurrent",
            Workload::ManifestPut => "manifest-put",
            Workload::ManifestGet => "manifest-get",
            Workload::BlobHead => "blob-head",
            Workload::Tags => "tags",
            Workload::Catalog => "catalog",
            Workload::Ui => "ui",
            Workload::Auth => "auth",
            Workload::Scale => "scale",
        }
    }

    pub fn figures(self, p: &Params) -> Vec<FigureSpec> {
        use Better::*;
        let big = size_label(p.big);
        match self {
            Workload::Mono => vec![fig(format!("monolithic push {big} (MB/s)"), Higher)],
            Workload::Chunked => vec![fig(
                format!(
                    "chunked push {big}, {} PATCH (MB/s)",
                    size_label(p.patch_chunk)
                ),
                Higher,
            )],
            Workload::Pull => vec![fig(format!("pull {big} (MB/s)"), Higher)],
            Workload::Concurrent => {
                let what = format!(
                    "{} parallel pushes of {}",
                    p.conc_count,
                    size_label(p.conc_len)
                );
                vec![
                    fig(format!("{what} (MB/s)"), Higher),
                    fig(format!("{what}: wall (s)"), Lower),
                ]
            }
            Workload::ManifestPut => vec![
                fig("manifest PUT, sequential (req/s)".into(), Higher),
                fig(
                    format!("manifest PUT, {} concurrent (req/s)", p.manifest_conc),
                    Higher,
                ),
            ],
            Workload::ManifestGet => hammer_figures("manifest GET", p.conns),
            Workload::BlobHead => hammer_figures("blob HEAD", p.conns),
            Workload::Tags => vec![
                fig(format!("tags list of {}: one GET (ms)", p.tags), Lower),
                fig(format!("tags list of {}: n=100 pages (ms)", p.tags), Lower),
            ],
            Workload::Catalog => vec![
                fig(
                    format!("catalog of {} repos: n={} (ms)", p.repos, p.repos),
                    Lower,
                ),
                fig(
                    format!("catalog of {} repos: n=100 pages (ms)", p.repos),
                    Lower,
                ),
            ],
            Workload::Ui => crate::ui::figures(p),
            Workload::Auth => crate::auth::figures(p),
            // A table of its own, a column per step (`crate::scale`).
            Workload::Scale => Vec::new(),
        }
    }

    pub async fn run(self, ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
        match self {
            Workload::Mono => big_push(ctx, t, st, false).await,
            Workload::Chunked => big_push(ctx, t, st, true).await,
            Workload::Pull => pull(ctx, t, st).await,
            Workload::Concurrent => concurrent(ctx, t, st).await,
            Workload::ManifestPut => manifest_puts(ctx, t, st).await,
            Workload::ManifestGet => manifest_get(ctx, t, st).await,
            Workload::BlobHead => blob_head(ctx, t, st).await,
            Workload::Tags => tags(ctx, t, st).await,
            Workload::Catalog => catalog(ctx, t, st).await,
            Workload::Ui => crate::ui::run(ctx, t, st).await,
            Workload::Auth => crate::auth::run(ctx, t, st).await,
            Workload::Scale => {
                anyhow::bail!("the scale workload runs apart from the side-by-side table")
            }
        }
    }

    /// Whether the workload starts registries of its own (rather than using the
    /// two the run started), and so measures the machine's other load itself.
    pub fn starts_servers(self) -> bool {
        matches!(self, Workload::Auth | Workload::Ui | Workload::Scale)
    }
}

fn hammer_figures(what: &str, conns: usize) -> Vec<FigureSpec> {
    vec![
        fig(format!("{what}, {conns} conns (req/s)"), Better::Higher),
        fig(format!("{what}, {conns} conns: p99 (ms)"), Better::Lower),
        fig(format!("{what}: server CPU per req (µs)"), Better::Lower),
    ]
}

/// Flushes dirty pages so one registry's writes are not paid for by the next.
pub async fn sync_disks() {
    let _ = tokio::process::Command::new("sync").status().await;
}

pub async fn digest_of(pool: &Pool, spec: BlobSpec) -> Result<String> {
    let pool = pool.clone();
    Ok(tokio::task::spawn_blocking(move || pool.digest(spec)).await?)
}

async fn big_push(ctx: &Ctx, t: &Target, st: &mut State, chunked: bool) -> Result<Vec<f64>> {
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

async fn pull(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
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

async fn concurrent(ctx: &Ctx, t: &Target, st: &State) -> Result<Vec<f64>> {
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

/// Runs `f(0..n)` on `conc` tasks; stops at the first error and returns it.
pub async fn run_concurrent<F, Fut>(n: usize, conc: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (next, failed, f) = (next.clone(), failed.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Err(e) = f(i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    let mut first_err = None;
    for task in tasks {
        if let Err(e) = task.await? {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn ensure_image(t: &Target, st: &mut State) -> Result<Image> {
    if let Some(img) = &st.image {
        return Ok(img.clone());
    }
    let img = push_image_blobs(t, REPO_MANIFESTS).await?;
    st.image = Some(img.clone());
    Ok(img)
}

async fn manifest_puts(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
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

async fn manifest_get(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let img = ensure_image(t, st).await?;
    let body = manifest(&img, "get");
    put_manifest(t, REPO_MANIFESTS, "get", body.clone()).await?;
    let spec = HammerSpec {
        method: Method::GET,
        path: format!("/v2/{REPO_MANIFESTS}/manifests/get"),
        accept: Some(OCI_MANIFEST),
        content_length: Some(body.len() as u64),
        body_len: body.len() as u64,
    };
    run_hammer(ctx, t, st, "manifest GET", spec).await
}

async fn blob_head(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let img = ensure_image(t, st).await?;
    let spec = HammerSpec {
        method: Method::HEAD,
        path: format!("/v2/{REPO_MANIFESTS}/blobs/{}", img.layer_digest),
        accept: None,
        content_length: Some(img.layer_len as u64),
        body_len: 0,
    };
    run_hammer(ctx, t, st, "blob HEAD", spec).await
}

/// Median milliseconds of `f`, repeated at least 3 times, within the listing bounds.
async fn time_ms<F, Fut>(p: &Params, mut f: F) -> Result<f64>
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

async fn tags(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
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

async fn catalog(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
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

async fn create_tags(t: &Target, n: usize) -> Result<()> {
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
