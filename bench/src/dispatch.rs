//! Which function measures which workload, and the figures each one reports, in
//! the order its function returns their values.

use anyhow::Result;

use crate::framework::{fig, size_label, Better, Ctx, FigureSpec, Params, State, Workload};
use crate::http::Target;
use crate::{auth, ui, workloads};

/// The figures `w` reports.
pub fn figures(w: Workload, p: &Params) -> Vec<FigureSpec> {
    use Better::*;
    let big = size_label(p.big);
    match w {
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
        Workload::Ui => ui::figures(p),
        Workload::Auth => auth::figures(p),
        // A table of its own, a column per step (`crate::scale`).
        Workload::Scale => Vec::new(),
        // A table of its own (`crate::gc`).
        Workload::Gc => Vec::new(),
        // A table of its own, a column per stack (`crate::scaleout`).
        Workload::ScaleOut => Vec::new(),
    }
}

/// Runs `w` once against `t`; the values of its figures.
pub async fn run(w: Workload, ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    match w {
        Workload::Mono => workloads::big_push(ctx, t, st, false).await,
        Workload::Chunked => workloads::big_push(ctx, t, st, true).await,
        Workload::Pull => workloads::pull(ctx, t, st).await,
        Workload::Concurrent => workloads::concurrent(ctx, t, st).await,
        Workload::ManifestPut => workloads::manifest_puts(ctx, t, st).await,
        Workload::ManifestGet => workloads::manifest_get(ctx, t, st).await,
        Workload::BlobHead => workloads::blob_head(ctx, t, st).await,
        Workload::Tags => workloads::tags(ctx, t, st).await,
        Workload::Catalog => workloads::catalog(ctx, t, st).await,
        Workload::Ui => ui::run(ctx, t, st).await,
        Workload::Auth => auth::run(ctx, t, st).await,
        Workload::Scale | Workload::Gc | Workload::ScaleOut => {
            anyhow::bail!(
                "the {} workload runs apart from the side-by-side table",
                w.name()
            )
        }
    }
}

fn hammer_figures(what: &str, conns: usize) -> Vec<FigureSpec> {
    vec![
        fig(format!("{what}, {conns} conns (req/s)"), Better::Higher),
        fig(format!("{what}, {conns} conns: p99 (ms)"), Better::Lower),
        fig(format!("{what}: server CPU per req (µs)"), Better::Lower),
    ]
}
