//! One image: its facts, platforms or layers, configuration, annotations
//! and referrers.

use maud::{html, Markup};

use super::{image_href, repo_href};
use crate::oci::Reference;
use crate::ui::format::{short_digest, size_cell};
use crate::ui::loaders::ImagePage;
use crate::ui::view::{copyable, crumbs, layout};
use crate::ui::{urlencode, Viewer};

pub fn image(page: &ImagePage, viewer: &Viewer) -> Markup {
    let repo = &page.repo;
    let name = repo.as_str();
    let digest = page.digest.as_str();
    let shown = match &page.reference {
        Reference::Tag(t) => format!("{name}:{t}"),
        Reference::Digest(_) => format!("{name}@{}", short_digest(digest)),
    };
    let pull = match &page.reference {
        Reference::Tag(t) => format!("docker pull {}/{name}:{t}", viewer.host),
        Reference::Digest(d) => format!("docker pull {}/{name}@{d}", viewer.host),
    };
    let body = html! {
        (crumbs(&[(repo.project(), Some(format!("/ui/projects/{}", urlencode(repo.project())))), (name, Some(repo_href(name))), (&shown[name.len() + 1..], None)]))
        h1 { (shown) }
        dl.facts {
            dt { "Digest" } dd { (copyable(digest, "digest")) }
            dt { "Media type" } dd { code { (page.media_type) } }
            @if let Some(t) = &page.doc.artifact_type { dt { "Artifact type" } dd { code { (t) } } }
            @if !page.doc.is_index { dt { "Compressed size" } dd #compressed-size { (size_cell(page.doc.compressed_size())) } }
            dt { "Tags" } dd { @if page.tags.is_empty() { "none" } @for t in &page.tags { a.tag href=(image_href(name, t)) { (t) } " " } }
            dt { "Pull" } dd { (copyable(&pull, "pull command")) }
            @if let Some(c) = &page.config {
                @if let Some(p) = &c.platform { dt { "Platform" } dd { (p) } }
                @if let Some(created) = &c.created { dt { "Created" } dd { time datetime=(created) { (created) } } }
            }
            @if let Some(s) = &page.doc.subject { dt { "Subject" } dd { a href=(image_href(name, &s.digest)) { code.digest { (s.digest) } } } }
        }
        (contents(page))
        (configuration(page))
        @if !page.doc.annotations.is_empty() { h2 { "Annotations" } (pairs_table(&page.doc.annotations)) }
        h2 { "Referrers" }
        @if page.referrers.is_empty() { p.empty { "No signatures, SBOMs or other artifacts refer to this manifest." } } @else {
            table #referrers {
                thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } } }
                tbody { @for r in &page.referrers { tr {
                    td { code { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) } }
                    td { a href=(image_href(name, &r.digest)) { code title=(r.digest) { (short_digest(&r.digest)) } } }
                    td.num { (size_cell(r.size)) }
                } } }
            }
        }
    };
    layout(&shown, Some(viewer), body)
}

/// An index's platforms, or an image's layers and config.
fn contents(page: &ImagePage) -> Markup {
    let name = page.repo.as_str();
    html! {
        @if page.doc.is_index {
            h2 { "Platforms" }
            table #children {
                thead { tr { th { "Platform" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                tbody { @for (c, size) in page.doc.children.iter().zip(&page.child_sizes) { tr {
                    td { (c.platform.as_deref().unwrap_or("—")) }
                    td { a href=(image_href(name, &c.digest)) { code title=(c.digest) { (short_digest(&c.digest)) } } }
                    td.num { @match size { Some(s) => (size_cell(*s)), None => "—" } }
                    td { code { (c.media_type) } }
                } } }
            }
        } @else {
            h2 { "Layers" }
            @if page.doc.layers.is_empty() { p.empty { "No layers." } } @else {
                table #layers {
                    thead { tr { th.num { "#" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                    tbody { @for (i, l) in page.doc.layers.iter().enumerate() { tr {
                        td.num { (i + 1) }
                        td { code.digest title=(l.digest) data-digest=(l.digest) { (short_digest(&l.digest)) } }
                        td.num { (size_cell(l.size)) }
                        td { code { (l.media_type) } }
                    } } }
                }
            }
            @if let Some(c) = &page.doc.config {
                p.muted { "Config " code title=(c.digest) { (short_digest(&c.digest)) } " (" (size_cell(c.size)) ", " code { (c.media_type) } ")" }
            }
        }
    }
}

/// What `docker inspect` shows of the image config, and its history.
fn configuration(page: &ImagePage) -> Markup {
    html! {
        @if let Some(c) = &page.config {
            h2 { "Configuration" }
            dl.facts #config {
                dt { "Entrypoint" } dd { @if c.entrypoint.is_empty() { "—" } @else { code { (c.entrypoint.join(" ")) } } }
                dt { "Command" } dd { @if c.cmd.is_empty() { "—" } @else { code { (c.cmd.join(" ")) } } }
                dt { "User" } dd { (c.user.as_deref().unwrap_or("—")) }
                dt { "Working directory" } dd { (c.working_dir.as_deref().unwrap_or("—")) }
                dt { "Exposed ports" } dd { @if c.exposed_ports.is_empty() { "—" } @else { (c.exposed_ports.join(", ")) } }
            }
            @if !c.env.is_empty() { h3 { "Environment" } ul.env { @for e in &c.env { li { code { (e) } } } } }
            @if !c.labels.is_empty() { h3 { "Labels" } (pairs_table(&c.labels)) }
            @if !c.history.is_empty() {
                h2 { "History" }
                ol.history { @for h in &c.history { li {
                    code { (h.created_by) }
                    @if h.empty_layer { " " span.muted { "(no layer)" } }
                    @if let Some(comment) = &h.comment { " " span.muted { (comment) } }
                } } }
            }
        }
    }
}

fn pairs_table(rows: &[(String, String)]) -> Markup {
    html! { table.kv { tbody { @for (k, v) in rows { tr { th scope="row" { (k) } td { code { (v) } } } } } } }
}
