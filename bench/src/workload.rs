//! The workloads by name: what each reports and which function runs it.

use anyhow::Result;

use crate::framework::{fig, size_label, Better, Ctx, FigureSpec, Params, State};
use crate::http::Target;
use crate::workloads::{
    big_push, blob_head, catalog, concurrent, manifest_get, manifest_puts, pull, tags,
};

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
