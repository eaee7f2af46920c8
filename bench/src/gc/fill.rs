//! Building the data set in a registry: the blobs (single-POST monolithic
//! uploads where the registry has them), the manifests, then the deletes.

use super::*;

/// How long each stage of building the data set took.
pub struct Filled {
    pub blobs_s: f64,
    pub manifests_s: f64,
    pub deletes_s: f64,
    /// Whether the registry took `POST ...?digest=` with the blob as one
    /// request (201); if not (202: it only opened a session), the blobs went
    /// up as POST + PUT `?digest=`.
    pub single_post: bool,
    /// Blob uploads made (a blob once per repository that needs it).
    pub uploads: usize,
}

/// `POST /v2/<repo>/blobs/uploads/?digest=<digest>` carrying the blob: 201,
/// or 202 from a registry that only opened an upload session (its Location).
pub async fn post_blob(
    t: &Target,
    repo: &str,
    body: ReqBody,
    len: usize,
    digest: &str,
) -> Result<Option<String>> {
    let url = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
    let len = len.to_string();
    let r = t
        .request(
            Method::POST,
            &url,
            &[("content-type", OCTET), ("content-length", &len)],
            body,
            &[201, 202],
        )
        .await?;
    let status = r.status().as_u16();
    let loc = header(&r, "location").with_context(|| format!("POST {url}: no Location"))?;
    if let Some(d) = header(&r, "docker-content-digest").filter(|_| status == 201) {
        ensure!(
            d == digest,
            "POST {url}: Docker-Content-Digest {d}, expected {digest}"
        );
    }
    drain(r).await?;
    Ok((status == 202).then_some(loc))
}

/// Pushes blob `i` into `repo`; `single` is cleared once the registry turns
/// out not to take single-POST uploads.
async fn push_blob(
    t: &Target,
    plan: &Plan,
    i: usize,
    repo: &str,
    single: &AtomicBool,
) -> Result<()> {
    let data = blob_bytes(i);
    let digest = &plan.digests[i];
    if single.load(Ordering::Relaxed) {
        let body = ReqBody::full(data.clone());
        match post_blob(t, repo, body, data.len(), digest).await? {
            None => return Ok(()),
            Some(loc) => {
                single.store(false, Ordering::Relaxed);
                return put_small(t, &loc, data, digest).await;
            }
        }
    }
    let loc = start_upload(t, repo).await?;
    put_small(t, &loc, data, digest).await
}

async fn delete_manifest(t: &Target, repo: &str, digest: &str) -> Result<()> {
    let url = format!("/v2/{repo}/manifests/{digest}");
    let r = t
        .request(Method::DELETE, &url, &[], ReqBody::Empty, &[202])
        .await?;
    drain(r).await?;
    Ok(())
}

/// Runs `f(0..n)` with `FILL_CONC` in flight, each bounded by `OP_TIMEOUT`;
/// its wall time in seconds.
async fn stage<F, Fut>(what: &'static str, n: usize, f: F) -> Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let t0 = Instant::now();
    let f = Arc::new(f);
    run_concurrent(n, FILL_CONC, move |k| {
        let f = f.clone();
        async move { within(what, f(k)).await }
    })
    .await
    .with_context(|| format!("building the data set: {what}"))?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Builds the plan's data set in `t`: every blob into the repositories of
/// the manifests referring to it, every manifest PUT by its tag, then the
/// odd manifests DELETEd by digest.
pub async fn fill(t: &Target, plan: &Arc<Plan>) -> Result<Filled> {
    let single = Arc::new(AtomicBool::new(true));
    let (tt, p, s) = (t.clone(), plan.clone(), single.clone());
    let blobs_s = stage("blob uploads", plan.pushes.len(), move |k| {
        let (t, p, s) = (tt.clone(), p.clone(), s.clone());
        async move {
            let (i, r) = p.pushes[k];
            push_blob(&t, &p, i as usize, &repo_name(r as usize), &s).await
        }
    })
    .await?;
    let (tt, p) = (t.clone(), plan.clone());
    let manifests_s = stage("manifest PUTs", plan.manifests, move |j| {
        let (t, p) = (tt.clone(), p.clone());
        async move { put_manifest(&t, &repo_name(p.repo_of(j)), &tag_name(j), p.manifest(j)).await }
    })
    .await?;
    let deleted: Arc<Vec<usize>> =
        Arc::new((0..plan.manifests).filter(|j| Plan::deleted(*j)).collect());
    let (tt, p, d) = (t.clone(), plan.clone(), deleted.clone());
    let deletes_s = stage("manifest DELETEs", deleted.len(), move |k| {
        let (t, p, j) = (tt.clone(), p.clone(), d[k]);
        async move {
            let digest = sha256_digest(&p.manifest(j));
            delete_manifest(&t, &repo_name(p.repo_of(j)), &digest).await
        }
    })
    .await?;
    Ok(Filled {
        blobs_s,
        manifests_s,
        deletes_s,
        single_post: single.load(Ordering::Relaxed),
        uploads: plan.pushes.len(),
    })
}
