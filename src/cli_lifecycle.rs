//! Storage lifecycle commands: `berth gc`, `berth repo del`, `berth
//! project policy`. Garbage collection runs where the data directory is
//! served: with a server running, the command requests a run (the server's
//! worker performs it) and follows it; without one, it runs here.

use std::io::{IsTerminal, Read as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use berth::config::Config;
use berth::core::Registry;
use berth::metadata::{GcRun, GcState, Metadata, ProjectPolicy, RegistryStore};
use berth::oci::RepoName;

#[derive(clap::Args)]
pub struct GcArgs {
    /// Report what would be removed, removing nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Delete a repository: its tags, manifests and blob links at once
    /// (the bytes at the next garbage collection); it leaves the catalog.
    Del { name: String },
}

/// How long `berth gc` follows a run the server performs.
const FOLLOW_FOR: Duration = Duration::from_secs(6 * 3600);

async fn open_metadata(config: &Config) -> anyhow::Result<Arc<dyn Metadata>> {
    berth::server::open_metadata(config).await
}

pub async fn gc(config: &Config, args: GcArgs) -> anyhow::Result<()> {
    let metadata = open_metadata(config).await?;
    let store: Arc<dyn RegistryStore> = metadata.clone();
    let local = local_registry(config, &store).await?;
    let run = match store.request_gc(args.dry_run, "cli").await? {
        Ok(run) => run,
        Err(busy) => bail!(
            "garbage collection run {} is already requested or running (see GET /api/v1/gc/runs/{})",
            busy.0,
            busy.0
        ),
    };
    let finished = match local {
        Some(registry) => {
            let holder = berth::server::gc_holder();
            let worker = registry.clone();
            // This process holds the data directory: no other can be running one.
            let task = tokio::spawn(async move { worker.perform_gc(&holder, i64::MAX).await });
            let followed = follow(&*store, run.id).await;
            task.await.context("the collection task")??;
            followed?
        }
        None => {
            eprintln!(
                "a berth server serves {}: it performs run {} (within a few seconds)",
                config.data_dir.display(),
                run.id
            );
            follow(&*store, run.id).await?
        }
    };
    println!("{}", summary(&finished));
    if finished.state == GcState::Failed {
        bail!(
            "garbage collection run {} failed: {}",
            finished.id,
            finished.error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(())
}

/// `berth scrub`: like `berth gc`, here or through the running server.
pub async fn scrub(config: &Config) -> anyhow::Result<()> {
    let metadata = open_metadata(config).await?;
    let store: Arc<dyn RegistryStore> = metadata.clone();
    let local = local_registry(config, &store).await?;
    let run = match store.request_scrub("cli").await? {
        Ok(run) => run,
        Err(busy) => bail!("scrub run {busy} is already requested or running"),
    };
    let task =
        local.map(|registry| tokio::spawn(async move { registry.perform_scrub(i64::MAX).await }));
    if task.is_none() {
        eprintln!(
            "a berth server serves {}: it performs scrub run {}",
            config.data_dir.display(),
            run.id
        );
    }
    let finished = follow_scrub(&*store, run.id).await?;
    if let Some(task) = task {
        task.await.context("the scrub task")??;
    }
    for p in &finished.problems {
        println!("{}\t{}", p.digest, p.problem);
    }
    let s = &finished.stats;
    println!(
        "scrub run {} {}: {} blobs ({}) checked, {} corrupt and {} missing (quarantined: pushing them again restores them)",
        finished.id, finished.state.as_str(), s.checked, bytes(s.bytes_checked), s.corrupt, s.missing
    );
    if finished.state == GcState::Failed {
        bail!(
            "scrub run {} failed: {}",
            finished.id,
            finished.error.as_deref().unwrap_or("unknown error")
        );
    }
    if s.corrupt + s.missing > 0 {
        bail!("{} blobs are corrupt or missing", s.corrupt + s.missing);
    }
    Ok(())
}

/// Shows a scrub's progress until it ends; returns it as it ended.
async fn follow_scrub(
    store: &dyn RegistryStore,
    id: i64,
) -> anyhow::Result<berth::metadata::ScrubRun> {
    let bar = spinner()?;
    let started = Instant::now();
    loop {
        let now = store
            .scrub_run(id)
            .await?
            .context("the scrub run disappeared")?;
        if matches!(now.state, GcState::Succeeded | GcState::Failed) {
            bar.finish_and_clear();
            return Ok(now);
        }
        bar.set_length(now.stats.total);
        bar.set_position(now.stats.checked);
        if started.elapsed() > FOLLOW_FOR {
            bail!("scrub run {id} still running after {FOLLOW_FOR:?}; stopped following it");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spinner() -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template(
        "{spinner} {elapsed} [{bar:30}] {pos}/{len} {msg}",
    )?);
    Ok(bar)
}

/// The registry over the data directory when no server holds it.
async fn local_registry(
    config: &Config,
    store: &Arc<dyn RegistryStore>,
) -> anyhow::Result<Option<Arc<Registry>>> {
    // The blob store the server would use: GC and scrub on another one
    // would find every blob missing.
    match berth::server::open_storage(config).await {
        Ok(storage) => Ok(Some(Arc::new(Registry::new(
            storage,
            store.clone(),
            config.core_settings(),
        )))),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Shows a run's progress until it ends; returns it as it ended.
async fn follow(store: &dyn RegistryStore, id: i64) -> anyhow::Result<GcRun> {
    let bar = ProgressBar::new_spinner();
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    let started = Instant::now();
    loop {
        let run = store
            .gc_run(id)
            .await?
            .with_context(|| format!("garbage collection run {id} disappeared"))?;
        if matches!(run.state, GcState::Succeeded | GcState::Failed) {
            bar.finish_and_clear();
            return Ok(run);
        }
        let s = &run.stats;
        bar.set_message(format!(
            "{}: {} repositories scanned, {} links and {} blobs swept, {} freed",
            run.phase.as_deref().unwrap_or(run.state.as_str()),
            s.repositories_scanned,
            s.links_swept,
            s.blobs_swept,
            bytes(s.bytes_freed)
        ));
        bar.tick();
        if started.elapsed() > FOLLOW_FOR {
            bail!(
                "run {id} still {} after {FOLLOW_FOR:?}; stopped following it",
                run.state.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn summary(run: &GcRun) -> String {
    let s = &run.stats;
    let took = run
        .started_at
        .zip(run.finished_at)
        .map_or(0.0, |(a, b)| (b - a) as f64 / 1000.0);
    let verb = if run.dry_run {
        "would remove"
    } else {
        "removed"
    };
    format!(
        "garbage collection run {} {} in {took:.1} s{}: {verb} {} tags, {} manifests, {} blob links, \
         {} repositories and {} blobs ({}); kept {} manifests and {} blobs ({})",
        run.id,
        run.state.as_str(),
        if run.dry_run { " (dry run)" } else { "" },
        s.tags_swept,
        s.manifests_swept,
        s.links_swept,
        s.repositories_swept,
        s.blobs_swept,
        bytes(s.bytes_freed),
        s.manifests_marked,
        s.blobs_marked,
        bytes(s.bytes_marked)
    )
}

pub async fn repo(config: &Config, cmd: RepoCommand) -> anyhow::Result<()> {
    let metadata = open_metadata(config).await?;
    match cmd {
        RepoCommand::Del { name } => {
            let repo: RepoName = name
                .parse()
                .map_err(|e| anyhow::anyhow!("{name:?} is not a repository name: {e}"))?;
            let policy = metadata.project_policy(repo.project()).await?;
            if !metadata.delete_repository(&repo, &policy).await? {
                bail!("no repository {name}");
            }
            println!("deleted repository {name}; its blobs go at the next garbage collection");
        }
    }
    Ok(())
}

/// `berth project policy NAME [--set FILE|-]`: prints the project's policy
/// and usage as JSON; with `--set`, replaces the policy first.
pub async fn policy(config: &Config, name: &str, set: Option<&str>) -> anyhow::Result<()> {
    let metadata = open_metadata(config).await?;
    if berth::metadata::ProjectStore::get_project(&*metadata, name)
        .await?
        .is_none()
    {
        bail!("no project {name}");
    }
    if let Some(file) = set {
        let mut text = String::new();
        if file == "-" {
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        }
        let policy: ProjectPolicy =
            serde_json::from_str(&text).with_context(|| format!("the policy in {file}"))?;
        policy
            .check()
            .map_err(|e| anyhow::anyhow!("the policy in {file}: {e}"))?;
        metadata.set_project_policy(name, &policy).await?;
    }
    let view = serde_json::json!({
        "project": name,
        "policy": metadata.project_policy(name).await?,
        "usage": metadata.quota_usage(name).await?,
    });
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}
