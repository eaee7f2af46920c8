//! Push throughput on berth with no GC running, then while GC runs back to
//! back: `PUSH_CLIENTS` clients pushing small images for a fixed time.

use super::*;

/// One pushed image: its repository, tag and blob digests.
struct Pushed {
    repo: String,
    tag: String,
    digests: Vec<String>,
}

/// One timed phase of pushes.
#[derive(Default)]
pub struct Phase {
    pub images: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub secs: f64,
    pushed: Vec<Pushed>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.images as f64 / self.secs
    }

    fn add(&mut self, other: Phase) {
        self.images += other.images;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.pushed.extend(other.pushed);
    }

    fn fail(&mut self, e: String) {
        self.failed += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Both phases, the GC runs during the second, and how many of the images
/// pushed meanwhile were pulled back afterwards.
pub struct PushOutcome {
    pub idle: Phase,
    pub during: Phase,
    pub runs: Result<Vec<RunStats>, String>,
    pub checked: Result<usize, String>,
}

/// Uploads `spec`'s bytes (or `data`) with a single POST: 201.
async fn upload(t: &Target, repo: &str, body: ReqBody, len: usize, digest: &str) -> Result<()> {
    match post_blob(t, repo, body, len, digest).await? {
        None => Ok(()),
        Some(_) => {
            bail!("POST ...?digest=: 202, the registry did not take the blob in one request")
        }
    }
}

/// Image `k` of client `c` in phase `phase`: a config, two 64 KiB layers,
/// and its manifest PUT by tag.
async fn push_image(pool: &Pool, t: &Target, phase: usize, c: usize, k: usize) -> Result<Pushed> {
    let repo = format!("pushgc/c{c:02}");
    let tag = format!("p{phase}-{k:06}");
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"gcbench":"{tag}"}}}}}}"#
    ));
    let config_digest = sha256_digest(&config);
    upload(
        t,
        &repo,
        ReqBody::full(config.clone()),
        config.len(),
        &config_digest,
    )
    .await?;
    let mut digests = vec![config_digest.clone()];
    for l in 0..2u64 {
        let seed = PUSH_SEED + ((phase as u64 * 64 + c as u64) << 24) + k as u64 * 2 + l;
        let spec = BlobSpec {
            seed,
            len: PUSH_LAYER,
        };
        let digest = digest_of(pool, spec).await?;
        let body = ReqBody::Gen(pool.body(spec, 0, spec.len));
        upload(t, &repo, body, PUSH_LAYER as usize, &digest).await?;
        digests.push(digest);
    }
    let layers: Vec<(&str, u64)> = digests[1..]
        .iter()
        .map(|d| (d.as_str(), PUSH_LAYER))
        .collect();
    let config = (config_digest.as_str(), config.len() as u64);
    let body = image_manifest(config, &layers, &tag);
    put_manifest(t, &repo, &tag, body).await?;
    Ok(Pushed { repo, tag, digests })
}

/// One client: images one after the other until `deadline` (at most
/// `PUSH_MAX_IMAGES`); a failed push is counted and the next one tried.
async fn client(pool: Pool, t: Target, phase: usize, c: usize, deadline: Instant) -> Phase {
    let mut out = Phase::default();
    for k in 0..PUSH_MAX_IMAGES {
        if Instant::now() >= deadline {
            break;
        }
        match within("push an image", push_image(&pool, &t, phase, c, k)).await {
            Ok(p) => {
                out.images += 1;
                out.pushed.push(p);
            }
            Err(e) => out.fail(format!("{e:#}")),
        }
    }
    out
}

/// `PUSH_CLIENTS` clients for `dur`; wall time until the last one stopped.
async fn phase(pool: &Pool, t: &Target, id: usize, dur: Duration) -> Phase {
    let t0 = Instant::now();
    let deadline = t0 + dur;
    let tasks: Vec<_> = (0..PUSH_CLIENTS)
        .map(|c| tokio::spawn(client(pool.clone(), t.clone(), id, c, deadline)))
        .collect();
    let mut out = Phase::default();
    for task in tasks {
        match task.await {
            Ok(p) => out.add(p),
            Err(e) => out.fail(format!("a push client panicked: {e}")),
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    out
}

/// GC runs back to back until `stop`, each awaited (bounded by `timeout`);
/// every one must succeed.
async fn gc_loop(t: Target, stop: Arc<AtomicBool>, timeout: Duration) -> Result<Vec<RunStats>> {
    let mut runs = Vec::new();
    for _ in 0..MAX_GC_RUNS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = within("POST /api/v1/gc", request_gc(&t)).await?;
        let run = await_run(&t, id, Instant::now() + timeout, || {}).await?;
        ensure!(run.state == "succeeded", "GC run {id} failed: {}", run.raw);
        runs.push(run);
    }
    Ok(runs)
}

/// Up to `VERIFY_SAMPLES` of the images pushed while GC ran: the manifest
/// by tag and every blob must still be there.
async fn check_pushed(t: &Target, pushed: &[Pushed]) -> Result<usize> {
    let step = pushed.len().div_ceil(VERIFY_SAMPLES).max(1);
    let mut n = 0;
    for p in pushed.iter().step_by(step) {
        get_manifest(t, &format!("/v2/{}/manifests/{}", p.repo, p.tag)).await?;
        for d in &p.digests {
            head(t, &format!("/v2/{}/blobs/{d}", p.repo), 200).await?;
        }
        n += 1;
    }
    Ok(n)
}

/// The idle phase; then, once the grace period has passed since the data
/// set was built (so the first GC run sweeps its deleted half), the phase
/// with GC running; then the check of what was pushed meanwhile.
pub async fn throughput(
    ctx: &Ctx,
    t: &Target,
    filled_at: Instant,
    grace: Duration,
) -> Result<PushOutcome> {
    let dur = ctx.p.gc_push;
    eprintln!("[berth] gc: pushes for {} s, no GC running", dur.as_secs());
    let idle = phase(&ctx.pool, t, 0, dur).await;
    let ready = filled_at + grace + Duration::from_secs(1);
    if let Some(wait) = ready.checked_duration_since(Instant::now()) {
        eprintln!(
            "[berth] gc: waiting {:.0} s for the grace period",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
    eprintln!(
        "[berth] gc: pushes for {} s while GC runs back to back",
        dur.as_secs()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let gc = tokio::spawn(gc_loop(t.clone(), stop.clone(), ctx.p.timeout));
    let during = phase(&ctx.pool, t, 1, dur).await;
    stop.store(true, Ordering::Relaxed);
    let runs = match gc.await {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("the GC loop panicked: {e}")),
    };
    let checked = within(
        "checking the pushed images",
        check_pushed(t, &during.pushed),
    )
    .await
    .context("after GC, an image pushed while it ran does not pull")
    .map_err(|e| format!("{e:#}"));
    Ok(PushOutcome {
        idle,
        during,
        runs,
        checked,
    })
}
