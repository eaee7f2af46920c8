//! Checks after a GC: what was kept still pulls, what was freed is gone.

use super::*;

/// What the checks looked at; every one of them passed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checked {
    /// Kept manifests that pulled (GET by digest, then a HEAD of each blob).
    pub manifests: usize,
    /// Freed blobs whose HEAD answered 404.
    pub freed: usize,
}

/// `GET` of manifest `j` by digest (200, the same bytes), then a `HEAD` of
/// each of its blobs (200).
async fn pulls(t: &Target, plan: &Plan, j: usize) -> Result<()> {
    let body = plan.manifest(j);
    let digest = sha256_digest(&body);
    let repo = repo_name(plan.repo_of(j));
    let url = format!("/v2/{repo}/manifests/{digest}");
    let got = get_manifest(t, &url).await?;
    ensure!(got == body, "GET {url}: a different body came back");
    for i in plan.refs(j) {
        head(t, &format!("/v2/{repo}/blobs/{}", plan.digests[i]), 200).await?;
    }
    Ok(())
}

/// `GET` of a manifest URL: 200; its body.
pub async fn get_manifest(t: &Target, url: &str) -> Result<Bytes> {
    let accept = [("accept", OCI_MANIFEST)];
    let r = t
        .request(Method::GET, url, &accept, ReqBody::Empty, &[200])
        .await?;
    read_body(r).await
}

pub async fn head(t: &Target, url: &str, expect: u16) -> Result<()> {
    let r = t
        .request(Method::HEAD, url, &[], ReqBody::Empty, &[expect])
        .await?;
    drain(r).await?;
    Ok(())
}

/// `VERIFY_SAMPLES` kept manifests must pull; as many freed blobs must be
/// gone (404 in a repository they were pushed into).
pub async fn check(t: &Target, plan: &Arc<Plan>) -> Result<Checked> {
    let kept = Arc::new(plan.kept_sample(VERIFY_SAMPLES));
    let (tt, p, k) = (t.clone(), plan.clone(), kept.clone());
    run_concurrent(kept.len(), VERIFY_CONC, move |n| {
        let (t, p, j) = (tt.clone(), p.clone(), k[n]);
        async move {
            within("pulling a kept manifest", pulls(&t, &p, j))
                .await
                .with_context(|| format!("after GC, kept manifest {j} does not pull"))
        }
    })
    .await?;
    let freed = Arc::new(plan.freed_sample(VERIFY_SAMPLES));
    let (tt, p, f) = (t.clone(), plan.clone(), freed.clone());
    run_concurrent(freed.len(), VERIFY_CONC, move |n| {
        let (t, p, (i, r)) = (tt.clone(), p.clone(), f[n]);
        async move {
            let url = format!("/v2/{}/blobs/{}", repo_name(r), p.digests[i]);
            within("HEAD of a freed blob", head(&t, &url, 404))
                .await
                .with_context(|| format!("after GC, freed blob {i} is still there"))
        }
    })
    .await?;
    Ok(Checked {
        manifests: kept.len(),
        freed: freed.len(),
    })
}
