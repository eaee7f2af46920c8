//! maud templates: each renders one page's view (built by `loaders`) for
//! a viewer; no template reads a service.

mod admin;
mod browse;
mod image;
mod lifecycle;
mod project;

use maud::{html, Markup};

pub use admin::admin;
pub use browse::{overview, repository, search};
pub use image::image;
pub use lifecycle::{confirm_delete_repository, retention_preview};
pub use project::project;

use super::format::{size_cell, when};
use super::{now_ms, urlencode};
use crate::metadata::RepoSummary;

pub fn repo_href(repo: &str) -> String {
    format!("/ui/r/{}", urlencode(repo))
}

pub fn image_href(repo: &str, reference: &str) -> String {
    format!("/ui/r/{}/-/image/{}", urlencode(repo), urlencode(reference))
}

/// "First page" and "Next" links of a page listed by name after a cursor;
/// `next` is the cursor of the following page, if there is one.
pub fn cursor_pager(base: &str, after: &str, next: Option<&str>) -> Markup {
    html! {
        @if !after.is_empty() || next.is_some() {
            nav.pager aria-label="Pages" {
                @if !after.is_empty() { a href=(base) { "← First page" } }
                @if let Some(next) = next { a rel="next" href={ (base) "?after=" (urlencode(next)) } { "Next →" } }
            }
        }
    }
}

pub fn repo_table(repos: &[RepoSummary], id: &str) -> Markup {
    let now = now_ms();
    html! {
        table id=(id) {
            thead { tr { th { "Repository" } th.num { "Tags" } th.num { "Size" } th { "Last push" } } }
            tbody {
                @for r in repos {
                    tr data-name=(r.name) {
                        td { a href=(repo_href(&r.name)) { (r.name) } }
                        td.num { (r.tags) }
                        td.num { (size_cell(r.storage_bytes)) }
                        td { (when(r.last_push, now)) }
                    }
                }
            }
        }
    }
}
