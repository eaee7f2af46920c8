//! Growing a registry to a step: projects, users, repositories, tags, audit rows.

use super::*;

pub(super) async fn side(
    name: &'static str,
    server: Server,
    password: Option<&str>,
) -> Result<Side> {
    let admin = Target {
        name,
        base: server.base.clone(),
        addr: parse_base(&server.base).await?.1,
        pid: Some(server.pid),
        client: new_client(),
        authorization: password.map(|p| basic_authorization("admin", p)),
    };
    Ok(Side {
        name,
        server,
        admin,
        berth: None,
        repos: 0,
        tags: 0,
        projects: 0,
        users: 0,
        logins: 0,
        pushes: 0,
        broken: None,
    })
}

/// Marks the side broken when `r` failed, with the server's log tail.
pub(super) async fn fail_side(s: &mut Side, what: &str, r: Result<()>) {
    if let Err(e) = r {
        // Let the server's log writer catch up before its tail is read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let why = format!(
            "{what}: {e:#}; server log tail:\n{}",
            log_tail(&s.server.log)
        );
        eprintln!("[{}] scale FAILED: {why}", s.name);
        s.broken = Some(why);
    }
    check_alive(s).await;
}

pub(super) async fn check_alive(s: &mut Side) {
    if let Some(status) = s.server.exited() {
        let why = format!(
            "server exited ({status}); log tail:\n{}",
            log_tail(&s.server.log)
        );
        eprintln!("[{}] scale FAILED: {why}", s.name);
        s.broken = Some(why);
    }
}

/// Untimed, once: the source repository with the shared blobs; the big
/// repository's blobs; the viewer's project with its 10 repositories; on
/// berth the fixed projects, the viewer and the admin's UI session.
pub(super) async fn bootstrap(
    ctx: &Ctx,
    s: &mut Side,
    sh: &Shared,
    admin_password: &str,
    config: &Bytes,
    layer: BlobSpec,
) -> Result<()> {
    let t = s.admin.clone();
    let img = &sh.img;
    let is_berth = s.name == "berth";
    if is_berth {
        for p in FIXED_PROJECTS {
            within("create project", create_project(&t, p)).await?;
        }
    }
    within("push config", push_small(&t, SOURCE, config.clone())).await?;
    within(
        "push layer",
        push_monolithic(&t, &ctx.pool, SOURCE, layer, &img.layer_digest),
    )
    .await?;
    within(
        "put manifest",
        put_manifest(&t, SOURCE, "latest", manifest(img, "src")),
    )
    .await?;
    within("mount", mount(&t, BIG, &img.config_digest, SOURCE)).await?;
    within("mount", mount(&t, BIG, &img.layer_digest, SOURCE)).await?;
    for i in 0..SEEN_REPOS {
        let body = manifest(img, &format!("seen-{i}"));
        within(
            "create repository",
            create_repo(&t, &seen_repo(i), img, body),
        )
        .await?;
    }
    if is_berth {
        bootstrap_berth(s, &t, admin_password).await?;
    }
    Ok(())
}

/// On berth: the viewer, a guest of `seen`, and the admin's UI session.
async fn bootstrap_berth(s: &mut Side, t: &Target, admin_password: &str) -> Result<()> {
    let viewer_password = random_hex(12)?;
    within("create user", create_user(t, VIEWER, &viewer_password)).await?;
    within(
        "add member",
        api_post(
            t,
            &format!("/api/v1/projects/{SEEN}/members/{VIEWER}"),
            serde_json::json!({ "role": "guest" }),
            204,
        ),
    )
    .await?;
    let service = within("GET /v2/", token_service(t)).await?;
    let browser = Target {
        authorization: None,
        ..t.clone()
    };
    let session = within(
        "UI login",
        crate::webui::login(&browser, "admin", admin_password),
    )
    .await
    .context("signing in to the UI")?;
    s.berth = Some(BerthSide {
        viewer: Target {
            authorization: Some(basic_authorization(VIEWER, &viewer_password)),
            ..t.clone()
        },
        service,
        cookie: format!("{}={session}", crate::webui::SESSION_COOKIE),
    });

    Ok(())
}

/// Grows one side to step `n`: projects and users (berth), the new
/// repositories (timed), the big repository's tags, the audit log (berth).
pub(super) async fn grow(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) -> Result<()> {
    let t = s.admin.clone();
    let plan = sh.plan.clone();
    let img = sh.img.clone();
    let is_berth = s.name == "berth";

    if is_berth {
        grow_berth_people(s, sh, n, v, &t).await?;
    }
    let after = create_repos(s, &plan, &img, n, v).await?;
    tag_big(s, &t, &img, n, v, after).await?;
    if is_berth {
        let (rows, lost) = top_up_audit(s, sh, n).await;
        v.set(M::AuditRows, rows);
        v.set(M::AuditLost, lost);
    }
    Ok(())
}

/// On berth, untimed: the step's projects, and enough users that every
/// fresh-login sample has one of its own.
async fn grow_berth_people(
    s: &mut Side,
    sh: &Shared,
    n: usize,
    v: &mut Vals,
    t: &Target,
) -> Result<()> {
    let label = fmt_count(n);
    let t0 = Instant::now();
    let (from, to) = (s.projects, projects_at(n));
    let t2 = t.clone();
    run_concurrent(to - from, PROJECT_CONC, move |j| {
        let t = t2.clone();
        async move {
            within(
                "create project",
                create_project(&t, &project_name(from + j)),
            )
            .await
        }
    })
    .await?;
    s.projects = to;
    // Enough users that every fresh-login sample has one of its own.
    let (from, to) = (s.users, users_at(n).max(s.logins + WARMUP + sh.samples));
    let t2 = t.clone();
    run_concurrent(to.saturating_sub(from), USER_CONC, move |j| {
        let t = t2.clone();
        async move {
            within(
                "create user",
                create_user(&t, &user_name(from + j), USER_PASSWORD),
            )
            .await
        }
    })
    .await?;
    s.users = to.max(from);
    eprintln!(
        "[{}] step {label}: {} projects, {} users ({:.1} s, untimed)",
        s.name,
        s.projects,
        s.users,
        t0.elapsed().as_secs_f64()
    );
    v.set(M::Projects, Ok((s.projects + FIXED_PROJECTS.len()) as f64));
    v.set(M::Users, Ok((s.users + 2) as f64));

    Ok(())
}

/// The step's new repositories, timed, and the disk they took; the data
/// directory's size after them.
async fn create_repos(
    s: &mut Side,
    plan: &Arc<Plan>,
    img: &Arc<Image>,
    n: usize,
    v: &mut Vals,
) -> Result<(u64, u64)> {
    let t = s.admin.clone();
    let label = fmt_count(n);
    let (from, to) = (s.repos, n);
    let before = disk(s).await?;
    sync_disks().await;
    let t0 = Instant::now();
    let (t2, plan2, img2) = (t.clone(), plan.clone(), img.clone());
    run_concurrent(to - from, CREATE_CONC, move |j| {
        let (t, plan, img) = (t2.clone(), plan2.clone(), img2.clone());
        async move {
            let i = from + j;
            let repo = plan.repo_name(i);
            let body = manifest(&img, &format!("repo-{i}"));
            within(
                &format!("creating {repo}"),
                create_repo(&t, &repo, &img, body),
            )
            .await
        }
    })
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    s.repos = to;
    let after = disk(s).await?;
    let added = (to - from) as f64;
    eprintln!(
        "[{}] step {label}: {} repositories created in {secs:.1} s ({:.2} ms each, {CREATE_CONC} in flight)",
        s.name,
        to - from,
        secs * 1e3 / added
    );
    v.set(M::Repos, Ok(n as f64));
    v.set(M::CreatePerRepo, Ok(secs * 1e3 / added));
    v.set(M::CreateTotal, Ok(secs));
    v.set(
        M::DiskPerRepo,
        Ok((after.0 as f64 - before.0 as f64) / added),
    );
    v.set(
        M::DiskPerRepoAlloc,
        Ok((after.1 as f64 - before.1 as f64) / added),
    );

    Ok(after)
}

/// The big repository's tags up to `n`, untimed, and the disk they took
/// (from `after`, the size before them).
async fn tag_big(
    s: &mut Side,
    t: &Target,
    img: &Arc<Image>,
    n: usize,
    v: &mut Vals,
    after: (u64, u64),
) -> Result<()> {
    let label = fmt_count(n);
    let (from, to) = (s.tags, n);
    let t0 = Instant::now();
    let (t2, img2) = (t.clone(), img.clone());
    run_concurrent(to - from, CREATE_CONC, move |j| {
        let (t, img) = (t2.clone(), img2.clone());
        async move {
            let i = from + j;
            let body = manifest(&img, &format!("tag-{i}"));
            within("tagging", put_manifest(&t, BIG, &tag_name(i), body)).await
        }
    })
    .await?;
    s.tags = to;
    let tagged = disk(s).await?;
    let added = (to - from) as f64;
    eprintln!(
        "[{}] step {label}: {BIG} tagged {} times in {:.1} s (untimed)",
        s.name,
        to - from,
        t0.elapsed().as_secs_f64()
    );
    v.set(M::Tags, Ok(n as f64));
    v.set(
        M::DiskPerTag,
        Ok((tagged.0 as f64 - after.0 as f64) / added),
    );
    v.set(
        M::DiskPerTagAlloc,
        Ok((tagged.1 as f64 - after.1 as f64) / added),
    );
    v.set(M::Disk, Ok(tagged.0 as f64 / f64::from(1 << 20)));

    Ok(())
}

/// `gets` manifest GETs spread over the repositories, `AUDIT_CONNS` in flight;
/// returns their wall time (s).
pub(super) async fn audit_gets(
    t: &Target,
    plan: &Arc<Plan>,
    repos: usize,
    gets: usize,
) -> Result<f64> {
    let t0 = Instant::now();
    let (t, plan) = (t.clone(), plan.clone());
    run_concurrent(gets, AUDIT_CONNS, move |j| {
        let (t, plan) = (t.clone(), plan.clone());
        async move {
            let url = format!("/v2/{}/manifests/latest", plan.repo_name(j % repos));
            within(&format!("GET {url}"), async {
                let r = t
                    .request(
                        Method::GET,
                        &url,
                        &[("accept", OCI_MANIFEST)],
                        ReqBody::Empty,
                        &[200],
                    )
                    .await?;
                drain(r).await?;
                Ok(())
            })
            .await
        }
    })
    .await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// The last `unwritten_total=` berth's audit writer logged (events it gave up).
pub(super) fn logged_unwritten(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let key = "unwritten_total=";
    let at = text.rfind(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Rounds of manifest GETs (each an audit row on berth) until the log holds
/// 10·N rows, each followed by a bounded wait for the writer: until it has
/// caught up, written nothing for `AUDIT_STALL`, or `AUDIT_WAIT` passed.
/// Returns the newest event id and the GETs (all answered 200) that left no
/// row; lost events are also noted, with berth's own count from its log.
pub(super) async fn top_up_audit(s: &Side, sh: &mut Shared, n: usize) -> (Cell, Cell) {
    let t = s.admin.clone();
    let plan = sh.plan.clone();
    let mut losses = Vec::new();
    let r = async {
        let want = (AUDIT_PER_REPO * n) as i64;
        let mut lost = 0i64;
        let mut now = within("GET /api/v1/audit", audit_newest(&t)).await?;
        for _ in 0..AUDIT_ROUNDS {
            if now >= want {
                break;
            }
            let (have, gets) = (now, (want - now) as usize);
            let get_secs = audit_gets(&t, &plan, s.repos, gets).await?;
            let expected = have + gets as i64;
            let waited = Instant::now();
            now = wait_for_audit(&t, expected).await?;
            let rate = gets as f64 / get_secs.max(1e-9);
            eprintln!(
                "[{}] step {}: {gets} manifest GETs at {AUDIT_CONNS} conns in {get_secs:.1} s \
                 ({rate:.0} req/s), audit log at {now} (waited {:.1} s; untimed)",
                s.name,
                fmt_count(n),
                waited.elapsed().as_secs_f64()
            );
            if now < expected {
                let missing = expected - now;
                lost += missing;
                losses.push(format!(
                    "{missing} of {gets} manifest GETs (all answered 200, {rate:.0}/s over \
                     {AUDIT_CONNS} connections) left no audit row: the newest event id went \
                     from {have} to {now}, not {expected}, and stayed there {} s",
                    AUDIT_STALL.as_secs()
                ));
            }
        }
        ensure!(
            now >= want,
            "audit log: newest event id {now} after {AUDIT_ROUNDS} rounds of manifest GETs, \
             expected {want}"
        );
        Ok::<_, anyhow::Error>((now, lost))
    }
    .await;
    if !losses.is_empty() {
        note_losses(s, sh, n, &losses);
    }
    match r {
        Ok((now, lost)) => (Ok(now as f64), Ok(lost as f64)),
        Err(e) => {
            let msg = format!("{e:#}");
            sh.note(format!("berth, step {}: {msg}", fmt_count(n)));
            (Err(msg.clone()), Err(msg))
        }
    }
}

/// The audit log's newest event id once the writer has caught up to
/// `expected`, written nothing for `AUDIT_STALL`, or `AUDIT_WAIT` passed.
async fn wait_for_audit(t: &Target, expected: i64) -> Result<i64> {
    let waited = Instant::now();
    let mut changed = Instant::now();
    let mut now = within("GET /api/v1/audit", audit_newest(t)).await?;
    while now < expected && waited.elapsed() < AUDIT_WAIT && changed.elapsed() < AUDIT_STALL {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = within("GET /api/v1/audit", audit_newest(t)).await?;
        if next != now {
            changed = Instant::now();
        }
        now = next;
    }
    Ok(now)
}

/// Notes the step's lost audit events, with berth's own count from its log.
fn note_losses(s: &Side, sh: &mut Shared, n: usize, losses: &[String]) {
    let logged = logged_unwritten(&s.server.log).map_or_else(
        || "no unwritten_total in its log".to_string(),
        |u| {
            format!(
                "its log says \"audit events not written: the audit queue and its \
                 overflow are full\", one ERROR line per event, up to unwritten_total={u}"
            )
        },
    );
    sh.note(format!(
        "berth, step {}: {}; {logged}",
        fmt_count(n),
        losses.join("; then ")
    ));
}
