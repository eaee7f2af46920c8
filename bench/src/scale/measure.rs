//! Measuring a registry at a step.

use super::*;

/// The timed requests of one step; a failed one fails its own figure only.
pub(super) async fn measure(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    measure_registry(s, sh, k, n, v).await;
    if s.berth.is_some() {
        measure_berth(s, sh, n, v).await;
    }
}

/// What both registries have: push, manifest GET, blob HEAD, the first tags
/// and catalog pages (as admin).
pub(super) async fn measure_registry(
    s: &mut Side,
    sh: &mut Shared,
    k: usize,
    n: usize,
    v: &mut Vals,
) {
    measure_push(s, sh, k, n, v).await;
    measure_manifest_get(s, sh, n, v).await;
    measure_blob_head(s, sh, n, v).await;
    measure_tags_page(s, sh, k, n, v).await;
    measure_catalog_admin(s, sh, n, v).await;
}

/// A push of a new image into a fresh repository per sample.
async fn measure_push(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let img = sh.img.clone();
    // 1. Push of a new image: a fresh repository per sample.
    let base = s.pushes;
    let r = sample(w, ns, |j| {
        let (t, img) = (&t, &img);
        async move {
            let i = base + j;
            let repo = format!("push/s{k}-{i:05}");
            let body = manifest(img, &format!("push-{k}-{i}"));
            let t0 = Instant::now();
            docker_push(t, &repo, img, body).await?;
            Ok(ms_since(t0))
        }
    })
    .await;
    s.pushes += w + ns;
    sh.record(who, n, v, M::Push, r);
}

/// A manifest GET on the first repository.
async fn measure_manifest_get(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let img = sh.img.clone();
    // 2. Manifest GET and blob HEAD on the first repository.
    let repo0 = sh.plan.repo_name(0);
    let want = manifest(&img, "repo-0");
    let url = format!("/v2/{repo0}/manifests/latest");
    let r = sample(w, ns, |_| {
        let (t, url, want) = (&t, &url, &want);
        async move {
            let t0 = Instant::now();
            let r = t
                .request(
                    Method::GET,
                    url,
                    &[("accept", OCI_MANIFEST)],
                    ReqBody::Empty,
                    &[200],
                )
                .await?;
            let body = read_body(r).await?;
            let ms = ms_since(t0);
            ensure!(
                body == *want,
                "GET {url}: not the manifest pushed ({} bytes)",
                body.len()
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::ManifestGet, r);
}

/// A blob HEAD (the shared layer) on the first repository.
async fn measure_blob_head(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let img = sh.img.clone();
    let repo0 = sh.plan.repo_name(0);
    let url = format!("/v2/{repo0}/blobs/{}", img.layer_digest);
    let r = sample(w, ns, |_| {
        let (t, url) = (&t, &url);
        async move {
            let t0 = Instant::now();
            let r = t
                .request(Method::HEAD, url, &[], ReqBody::Empty, &[200])
                .await?;
            let len = header(&r, "content-length");
            drain(r).await?;
            let ms = ms_since(t0);
            ensure!(
                len.as_deref() == Some(&LAYER_LEN.to_string()),
                "HEAD {url}: Content-Length {len:?}, expected {LAYER_LEN}"
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::BlobHead, r);
}

/// The big repository's first tags page.
async fn measure_tags_page(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let is_berth = s.name == "berth";
    // 3. The big repository's first tags page.
    let url = format!("/v2/{BIG}/tags/list?n={PAGE}");
    let want: Vec<String> = (0..PAGE.min(n)).map(tag_name).collect();
    let whole = std::sync::atomic::AtomicBool::new(false);
    let r = sample(w, ns, |_| {
        let (t, url, want, whole) = (&t, &url, &want, &whole);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "tags").await?;
            let ms = ms_since(t0);
            if !is_berth && names.len() == n && !next {
                // Distribution 2.8 ignores n on tags/list and answers all
                // tags unsorted: the figure is then the whole list's.
                let mut sorted = names.clone();
                sorted.sort();
                sorted.dedup();
                ensure!(
                    sorted.len() == n && sorted.iter().enumerate().all(|(i, x)| *x == tag_name(i)),
                    "GET {url}: {} tags, not the {n} distinct tags pushed",
                    names.len()
                );
                whole.store(
                    n > PAGE || names != *want,
                    std::sync::atomic::Ordering::Relaxed,
                );
                return Ok(ms);
            }
            ensure!(
                names == *want,
                "GET {url}: {} tags starting {:?}, expected {} starting {:?}",
                names.len(),
                &names[..names.len().min(3)],
                want.len(),
                &want[..want.len().min(3)]
            );
            ensure!(
                next == (n > PAGE),
                "GET {url}: Link rel=\"next\" {}, with {n} tags",
                if next { "present" } else { "absent" }
            );
            Ok(ms)
        }
    })
    .await;
    if whole.into_inner() && k == 0 {
        sh.note(format!(
            "{}: tags/list?n={PAGE} answers all tags, unsorted, without a Link: its tags \
                 row is the time of the whole list",
            s.name
        ));
    }
    sh.record(who, n, v, M::TagsPage, r);
}

/// The first catalog page, as admin.
async fn measure_catalog_admin(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    // 4. The first catalog page, as admin and as the viewer.
    let url = format!("/v2/_catalog?n={PAGE}");
    let total = s.repos + SEEN_REPOS + FIXED_REPOS + s.pushes;
    let r = sample(w, ns, |_| {
        let (t, url) = (&t, &url);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "repositories").await?;
            let ms = ms_since(t0);
            ensure!(
                names.len() == PAGE.min(total),
                "GET {url}: {} repositories, expected {} (of {total})",
                names.len(),
                PAGE.min(total)
            );
            check_sorted_distinct(url, &names)?;
            ensure!(
                names.first().map(String::as_str) == Some(SOURCE),
                "GET {url}: first repository {:?}, expected {SOURCE:?}",
                names.first()
            );
            ensure!(
                next == (total > PAGE),
                "GET {url}: Link rel=\"next\" {} with {total} repositories",
                if next { "present" } else { "absent" }
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::CatalogAdmin, r);
}

/// What only berth has: the catalog as a user who sees 10 repositories, the
/// UI pages' server time, fresh logins.
pub(super) async fn measure_berth(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    if s.berth.is_none() {
        return;
    }
    measure_viewer_catalog(s, sh, n, v).await;
    measure_logins(s, sh, n, v).await;
    measure_ui_pages(s, sh, n, v).await;
}

/// The first catalog page as the viewer, who sees the 10 repositories of `seen`.
async fn measure_viewer_catalog(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let Some(b) = &s.berth else {
        return;
    };
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let url = format!("/v2/_catalog?n={PAGE}");
    let want: Vec<String> = (0..SEEN_REPOS).map(seen_repo).collect();
    let entries = std::sync::atomic::AtomicUsize::new(0);
    let r = sample(w, ns, |_| {
        let (t, url, want, entries) = (&b.viewer, &url, &want, &entries);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "repositories").await?;
            let ms = ms_since(t0);
            entries.store(names.len(), std::sync::atomic::Ordering::Relaxed);
            ensure!(
                names == *want && !next,
                "GET {url} as {VIEWER}: {} repositories {:?}{}, expected exactly the \
                 {SEEN_REPOS} of {SEEN}",
                names.len(),
                &names[..names.len().min(12)],
                if next { " and a next page" } else { "" }
            );
            Ok(ms)
        }
    })
    .await;
    match &r {
        Ok(_) => v.set(M::ViewerEntries, Ok(entries.into_inner() as f64)),
        Err(e) => v.set(M::ViewerEntries, Err(format!("{e:#}"))),
    }
    sh.record(who, n, v, M::CatalogViewer, r);
}

/// Fresh logins: a user that never logged in before, per sample.
async fn measure_logins(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let Some(b) = &s.berth else {
        return;
    };
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    // 5. Fresh logins: a user that never logged in before, per sample.
    let base = s.logins;
    let url = format!(
        "/token?service={}&scope={}",
        urlencode(&b.service),
        urlencode(&format!("repository:{}:pull", seen_repo(0)))
    );
    let r = sample(w, ns, |j| {
        let (url, t) = (&url, &t);
        async move {
            let user = user_name(base + j);
            let u = Target {
                authorization: Some(basic_authorization(&user, USER_PASSWORD)),
                ..t.clone()
            };
            let t0 = Instant::now();
            let r = u
                .request(Method::GET, url, &[], ReqBody::Empty, &[200])
                .await
                .with_context(|| format!("as {user}"))?;
            let body = read_body(r).await?;
            let ms = ms_since(t0);
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("GET {url}: body is not JSON"))?;
            ensure!(
                v.get("token")
                    .and_then(|x| x.as_str())
                    .is_some_and(|x| !x.is_empty()),
                "GET {url} as {user}: no token in {}",
                excerpt(&body)
            );
            Ok(ms)
        }
    })
    .await;
    s.logins += w + ns;
    sh.record(who, n, v, M::Login, r);
}

/// The UI pages' server time, signed in as admin.
async fn measure_ui_pages(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let Some(b) = &s.berth else {
        return;
    };
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    // 6. UI pages, the server's time, signed in as admin.
    let browser = Target {
        authorization: None,
        ..t.clone()
    };
    let projects = s.projects + FIXED_PROJECTS.len();
    let in_p0000 = sh.plan.in_first_project(s.repos);
    // The overview last: at scale it has been the slowest page by far.
    let pages: [(M, String); 3] = [
        (M::UiProject, format!("/ui/projects/{}", project_name(0))),
        (M::UiRepo, format!("/ui/r/{BIG}")),
        (M::UiOverview, "/ui".to_string()),
    ];
    for (m, url) in pages {
        let r = sample(w, ns, |_| {
            let (t, url, cookie) = (&browser, &url, &b.cookie);
            async move {
                let (body, dur) = crate::webui::get_page(t, url, cookie).await?;
                let html = String::from_utf8_lossy(&body);
                check_ui(m, url, &html, projects, in_p0000, n)?;
                Ok(dur)
            }
        })
        .await;
        sh.record(who, n, v, m, r);
    }
    v.set(M::ProjectRepos, Ok(in_p0000 as f64));
}

/// Checks that a UI page shows what it should, so a lost session or an
/// error page cannot produce a number.
pub(super) fn check_ui(
    m: M,
    url: &str,
    html: &str,
    projects: usize,
    in_p0000: usize,
    tags: usize,
) -> Result<()> {
    match m {
        // All rows, or the first page of 100 where the page is paged.
        M::UiOverview => {
            let rows = html.matches("<tr data-name=\"").count();
            ensure!(
                (rows == projects || rows == projects.min(PAGE))
                    && html.contains("data-name=\"p0000\""),
                "GET {url}: {rows} project rows, expected {projects} (or the first {PAGE}) \
                 with p0000"
            );
        }
        M::UiProject => {
            let rows = html.matches("<tr data-name=\"p0000/").count();
            ensure!(
                rows == in_p0000 || rows == in_p0000.min(PAGE),
                "GET {url}: {rows} repository rows, expected {in_p0000} (or the first {PAGE})"
            );
        }
        M::UiRepo => {
            ensure!(
                html.contains(&format!("{tags} tags"))
                    && html.contains(&format!("data-name=\"{}\"", tag_name(0))),
                "GET {url}: the page does not say \"{tags} tags\" or lacks {}",
                tag_name(0)
            );
        }
        _ => return Err(anyhow!("not a UI page: {m:?}")),
    }
    Ok(())
}
