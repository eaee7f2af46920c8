//! Prometheus metrics (`GET /metrics`, text format): HTTP requests by
//! endpoint, status and duration, bytes in and out, active uploads, blob
//! storage and metadata latency, metadata pool use, garbage collection and
//! scrub runs, build info.
//!
//! Every label takes its values from a bounded set: an endpoint's name
//! (`manifest.put`), a route's template (`/api/v1/projects/{name}`), a
//! status code, an operation or outcome name. Never a repository, a digest
//! or a raw path. Counting costs atomic additions and one read-locked map
//! lookup per labelled family on each request; gauges that mirror a pool
//! are read when scraped.
//!
//! A leaf beside `tracing`: it reads the storage and metadata contracts
//! (the timing decorators, the pools) and nothing above them.

mod http;
mod metadata;
mod storage;

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::{Deserialize, Serialize};

use crate::metadata::{GcRun, GcState, Health, ScrubRun};

pub use http::{name_endpoint, track};
pub use metadata::MeteredMetadata;
pub use storage::MeteredStorage;

/// Where `GET /metrics` is served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port of a separate plain-HTTP listener serving only
    /// `GET /metrics`, without authentication (bind it to an address only
    /// the scraper reaches, e.g. `127.0.0.1:9090`); the main listener then
    /// answers 404 there. Unset: `/metrics` is on the main listener and
    /// needs a system administrator's credentials.
    pub listen: Option<String>,
}

impl MetricsConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        if let Some(listen) = &self.listen {
            if let Err(e) = std::net::ToSocketAddrs::to_socket_addrs(listen.as_str()) {
                problems.push(format!(
                    "metrics.listen = {listen:?}: not an address and port such as 127.0.0.1:9090 ({e})"
                ));
            }
        }
    }
}

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds, from a millisecond to a minute: requests and storage calls.
const FAST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Seconds, from a second to half a day: collection and scrub runs.
const RUN_BUCKETS: &[f64] = &[
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    12.0 * 3600.0,
];

/// One process's metrics (one per application state).
pub struct Metrics {
    registry: Registry,
    http: http::HttpMetrics,
    storage: storage::StorageMetrics,
    metadata: metadata::MetadataMetrics,
    runs: RunMetrics,
    pools: PoolGauges,
    /// Whose pools are read at each scrape.
    pool_source: Arc<dyn Health>,
}

struct PoolGauges {
    connections: IntGaugeVec,
    max: IntGaugeVec,
}

struct RunMetrics {
    gc_runs: IntCounterVec,
    gc_blobs_freed: IntCounter,
    gc_bytes_freed: IntCounter,
    gc_duration: Histogram,
    scrub_runs: IntCounterVec,
    scrub_checked: IntCounter,
    /// By problem: `corrupt` (bytes moved aside) or `missing`.
    scrub_quarantined: IntCounterVec,
    scrub_duration: Histogram,
}

impl Metrics {
    /// The metrics of a process whose metadata backend is `metadata` (its
    /// pools are read at each scrape).
    pub fn new(metadata: Arc<dyn Health>) -> Arc<Metrics> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "berth_build_info",
                "The running berth's version (always 1).",
            ),
            &["version"],
        );
        register(&registry, build.expect("valid metric"))
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Arc::new(Metrics {
            http: http::HttpMetrics::new(&registry),
            storage: storage::StorageMetrics::new(&registry),
            metadata: metadata::MetadataMetrics::new(&registry),
            runs: RunMetrics::new(&registry),
            pools: PoolGauges {
                connections: gauges(
                    &registry,
                    "berth_metadata_pool_connections",
                    "Metadata database connections by pool and state (idle or in_use).",
                    &["pool", "state"],
                ),
                max: gauges(
                    &registry,
                    "berth_metadata_pool_max_connections",
                    "The most connections a metadata pool opens.",
                    &["pool"],
                ),
            },
            registry,
            pool_source: metadata,
        })
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        for pool in self.pool_source.pools() {
            let c = &self.pools.connections;
            c.with_label_values(&[pool.pool, "idle"])
                .set(i64::from(pool.idle));
            c.with_label_values(&[pool.pool, "in_use"])
                .set(i64::from(pool.open.saturating_sub(pool.idle)));
            self.pools
                .max
                .with_label_values(&[pool.pool])
                .set(i64::from(pool.max));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// A collection run this process performed.
    pub fn gc_finished(&self, run: &GcRun) {
        let r = &self.runs;
        r.gc_runs
            .with_label_values(&[outcome(run.state, run.dry_run)])
            .inc();
        if !run.dry_run {
            r.gc_blobs_freed.inc_by(run.stats.blobs_swept);
            r.gc_bytes_freed.inc_by(run.stats.bytes_freed);
        }
        if let Some(seconds) = seconds_between(run.started_at, run.finished_at) {
            r.gc_duration.observe(seconds);
        }
    }

    /// A collection or scrub pass that failed before it had a run to record.
    pub fn run_errored(&self, worker: &str) {
        let family = match worker {
            "scrub" => &self.runs.scrub_runs,
            _ => &self.runs.gc_runs,
        };
        family.with_label_values(&["error"]).inc();
    }

    /// A scrub run this process performed.
    pub fn scrub_finished(&self, run: &ScrubRun) {
        let r = &self.runs;
        r.scrub_runs
            .with_label_values(&[outcome(run.state, false)])
            .inc();
        r.scrub_checked.inc_by(run.stats.checked);
        let quarantined = &r.scrub_quarantined;
        quarantined
            .with_label_values(&["corrupt"])
            .inc_by(run.stats.corrupt);
        quarantined
            .with_label_values(&["missing"])
            .inc_by(run.stats.missing);
        if let Some(seconds) = seconds_between(run.started_at, run.finished_at) {
            r.scrub_duration.observe(seconds);
        }
    }
}

impl RunMetrics {
    fn new(registry: &Registry) -> RunMetrics {
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let runs = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["outcome"]);
            register(registry, c.expect("valid metric"))
        };
        let duration = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(RUN_BUCKETS.to_vec());
            register(registry, Histogram::with_opts(opts).expect("valid metric"))
        };
        let metrics = RunMetrics {
            gc_runs: runs(
                "berth_gc_runs_total",
                "Garbage-collection runs this process performed, by outcome \
                 (succeeded, failed, dry_run, error).",
            ),
            gc_blobs_freed: counter("berth_gc_blobs_freed_total", "Blobs deleted by collection."),
            gc_bytes_freed: counter("berth_gc_bytes_freed_total", "Bytes freed by collection."),
            gc_duration: duration(
                "berth_gc_run_duration_seconds",
                "How long each garbage-collection run took.",
            ),
            scrub_runs: runs(
                "berth_scrub_runs_total",
                "Scrub runs this process performed, by outcome (succeeded, failed, error).",
            ),
            scrub_checked: counter(
                "berth_scrub_blobs_checked_total",
                "Blobs re-hashed by scrubs.",
            ),
            scrub_quarantined: counters(
                registry,
                "berth_scrub_blobs_quarantined_total",
                "Blobs scrubs quarantined (never served again), by problem: corrupt \
                 (bytes not matching the digest, moved aside) or missing.",
                &["problem"],
            ),
            scrub_duration: duration(
                "berth_scrub_run_duration_seconds",
                "How long each scrub took.",
            ),
        };
        // Every outcome shows from the start, at zero, so that a rate or
        // an alert on it has a series before the first run.
        for outcome in ["succeeded", "failed", "dry_run", "error"] {
            metrics.gc_runs.with_label_values(&[outcome]);
        }
        for outcome in ["succeeded", "failed", "error"] {
            metrics.scrub_runs.with_label_values(&[outcome]);
        }
        for problem in ["corrupt", "missing"] {
            metrics.scrub_quarantined.with_label_values(&[problem]);
        }
        metrics
    }
}

/// A run's outcome label: its final state, or `dry_run` for a finished dry run.
fn outcome(state: GcState, dry_run: bool) -> &'static str {
    match (state, dry_run) {
        (GcState::Succeeded, true) => "dry_run",
        (state, _) => state.as_str(),
    }
}

fn seconds_between(start_ms: Option<i64>, end_ms: Option<i64>) -> Option<f64> {
    let (start, end) = (start_ms?, end_ms?);
    (end >= start).then(|| (end - start) as f64 / 1000.0)
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, g)
}

pub(crate) fn histograms(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(FAST_BUCKETS.to_vec());
    register(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

pub(crate) fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(registry, c)
}

pub(crate) fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

/// Registers a metric built from constant names: failing is a programming
/// error (a duplicate or malformed name), caught by any test that starts.
fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::path::Path;

    use crate::config::{Config, Overrides};

    #[test]
    fn listen_comes_from_the_file_or_the_environment_and_is_checked() {
        figment::Jail::expect_with(|jail| {
            let load = |file: Option<&Path>| Config::load(file, &Overrides::default()).unwrap();
            assert_eq!(load(None).metrics.listen, None);
            jail.create_file("berth.toml", "[metrics]\nlisten = \"127.0.0.1:9100\"\n")?;
            let file = Some(Path::new("berth.toml"));
            assert_eq!(load(file).metrics.listen.as_deref(), Some("127.0.0.1:9100"));
            jail.set_env("BERTH_METRICS__LISTEN", "127.0.0.1:9200");
            assert_eq!(load(file).metrics.listen.as_deref(), Some("127.0.0.1:9200"));
            let unknown = Config::unknown_env_vars();
            assert!(
                !unknown.iter().any(|v| v == "BERTH_METRICS__LISTEN"),
                "{unknown:?}"
            );
            assert!(load(file).validate().is_ok());
            jail.set_env("BERTH_METRICS__LISTEN", "nowhere");
            let problems = load(file).validate().unwrap_err().0;
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("metrics.listen = \"nowhere\"")),
                "{problems:?}"
            );
            Ok(())
        });
    }
}
