//! The overview of projects, search results, and a repository's tags.

use maud::{html, Markup};

use super::lifecycle::delete_repository_button;
use super::{cursor_pager, image_href, repo_href, repo_table};
use crate::metadata::TagOrder;
use crate::ui::format::{short_digest, size_cell, when};
use crate::ui::loaders::{Overview, RepositoryPage, SearchResults};
use crate::ui::view::{confirm_form, copyable, crumbs, layout};
use crate::ui::{now_ms, urlencode, Viewer};

pub fn overview(page: &Overview, viewer: &Viewer) -> Markup {
    let now = now_ms();
    let body = html! {
        h1 { "Projects" }
        @if page.projects.is_empty() && page.after.is_empty() {
            p.empty { "No projects you can see yet. Push an image (" code { "docker push " (viewer.host) "/PROJECT/IMAGE:TAG" } ") or ask an administrator to add you to a project." }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="projects" placeholder="project name"; }
            table #projects {
                thead { tr { th { "Project" } th { "Visibility" } th { "Your role" } th.num { "Repositories" } th.num { "Storage" } th { "Last push" } } }
                tbody {
                    @for p in &page.projects {
                        @let u = page.usage.iter().find(|u| u.project == p.name);
                        tr data-name=(p.name) {
                            td { a href={ "/ui/projects/" (urlencode(&p.name)) } { (p.name) } }
                            td { (if p.public { "public" } else { "private" }) }
                            td { (p.role.map_or("—", |r| r.as_str())) }
                            td.num { (u.map_or(0, |u| u.repositories)) }
                            td.num { (size_cell(u.map_or(0, |u| u.storage_bytes))) }
                            td { (when(u.and_then(|u| u.last_push), now)) }
                        }
                    }
                }
            }
            (cursor_pager("/ui", &page.after, page.next.as_deref()))
        }
    };
    layout("Projects", Some(viewer), body)
}

pub fn search(page: &SearchResults, viewer: &Viewer) -> Markup {
    let body = html! {
        h1 { "Search" }
        form role="search" action="/ui/search" method="get" {
            label for="search-q" { "Repository name contains" }
            input #search-q type="search" name="q" value=(page.q);
            button type="submit" { "Search" }
        }
        @if page.q.is_empty() {
            p.empty { "Type part of a repository name." }
        } @else if page.found.is_empty() {
            p.empty { "No repository you can read matches “" (page.q) "”." }
        } @else {
            (repo_table(&page.found, "results"))
        }
    };
    layout("Search", Some(viewer), body)
}

pub fn repository(page: &RepositoryPage, viewer: &Viewer) -> Markup {
    let repo = &page.repo;
    let name = repo.as_str();
    let body = html! {
        (crumbs(&[(repo.project(), Some(format!("/ui/projects/{}", urlencode(repo.project())))), (name, None)]))
        h1 { (name) }
        @if let Some(deleted) = &page.deleted { p.alert role="status" { "Tag " strong { (deleted) } " was deleted." } }
        p { (page.total) " tags · sort by "
            @if page.order == TagOrder::Name { strong { "name" } } @else { a href={ (repo_href(name)) "?sort=name" } { "name" } }
            " or "
            @if page.order == TagOrder::Pushed { strong { "push time" } } @else { a href={ (repo_href(name)) "?sort=pushed" } { "push time" } }
        }
        @if page.total == 0 {
            p.empty { "No tags yet: push with " code { "docker push " (viewer.host) "/" (name) ":TAG" } }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="tags" placeholder="tag"; }
            (tags_table(page, viewer))
            (tag_pager(page))
        }
        @if page.can_delete_repository { (delete_repository_button(name)) }
    };
    layout(name, Some(viewer), body)
}

/// One page of tags: digest, size, platforms, build and push times, the
/// pull command, and deletion for who may delete.
fn tags_table(page: &RepositoryPage, viewer: &Viewer) -> Markup {
    let name = page.repo.as_str();
    let now = now_ms();
    html! {
        label.filter { "Filter this page " input type="search" data-filter="tags" placeholder="tag"; }
        table #tags {
            thead { tr { th { "Tag" } th { "Digest" } th.num { "Size" } th { "Platforms" } th { "Created" } th { "Pushed" } th { "Pull" } @if page.can_delete { th { span.visually-hidden { "Delete" } } } } }
            tbody {
                @for (t, (created, platforms)) in page.tags.iter().zip(page.created.iter().zip(&page.platforms)) {
                    @let pull = format!("docker pull {}/{}:{}", viewer.host, name, t.name);
                    tr data-name=(t.name) {
                        td { a.tag href=(image_href(name, &t.name)) { (t.name) } }
                        td { code.digest title=(t.digest) data-digest=(t.digest) { (short_digest(&t.digest.to_string())) } }
                        td.num { (size_cell(t.size_bytes)) }
                        td { (platforms.join(", ")) }
                        td { @match created {
                            Some(c) => time datetime=(c) title=(c) { (c.get(..10).unwrap_or(c)) },
                            None => span.muted { "—" },
                        } }
                        td { (when(Some(t.pushed_at), now)) }
                        td { (copyable(&pull, "pull command")) }
                        @if page.can_delete {
                            td { (confirm_form(&format!("{}/-/tags/{}/delete", repo_href(name), urlencode(&t.name)), &viewer.csrf,
                                &format!("Delete tag {}? The image stays reachable by digest.", t.name), "Delete", html! {})) }
                        }
                    }
                }
            }
        }
    }
}

/// Previous and next pages of tags, in the page's order.
fn tag_pager(page: &RepositoryPage) -> Markup {
    let name = page.repo.as_str();
    let sort = if page.order == TagOrder::Pushed {
        "pushed"
    } else {
        "name"
    };
    html! {
    @if page.pages > 1 {
        nav.pager aria-label="Pages" {
            @if page.page_no > 1 { a rel="prev" href={ (repo_href(name)) "?sort=" (sort) "&page=" (page.page_no - 1) } { "← Previous" } }
            span { "Page " (page.page_no) " of " (page.pages) }
            @if page.page_no < page.pages { a rel="next" href={ (repo_href(name)) "?sort=" (sort) "&page=" (page.page_no + 1) } { "Next →" } }
        }
    }
    }
}
