//! Storage lifecycle pieces: a project's usage against its quotas and its
//! rules in words, the retention preview, the confirmation of a
//! repository's deletion, and the garbage-collection runs.

use maud::{html, Markup};

use super::{image_href, repo_href};
use crate::metadata::{GcRun, GcState, ProjectPolicy, Retention};
use crate::ui::format::{duration, size_binary_cell, size_cell, when};
use crate::ui::lifecycle::{DeleteRepositoryPage, PreviewPage, Rules};
use crate::ui::view::{confirm_form, crumbs, layout};
use crate::ui::{now_ms, urlencode, Viewer};

/// "N of M" against a quota, with a meter; "N (no limit)" without one.
fn against(used: Markup, used_n: u64, limit: Option<(Markup, u64)>) -> Markup {
    html! {
        @match limit {
            Some((shown, max)) => {
                (used) " of " (shown) " "
                meter min="0" max=(max) value=(used_n.min(max)) { (used_n) " of " (max) }
                @if used_n > max { " " strong.over { "over the quota: pushes that add to it are refused" } }
            }
            None => { (used) " " span.muted { "(no limit)" } }
        }
    }
}

/// Usage against the quotas exactly as they are enforced, then the rules.
pub fn usage_and_rules(rules: &Rules, project: &str) -> Markup {
    let (p, u) = (&rules.policy, &rules.usage);
    let count = |n: u64| html! { (n) };
    html! {
        h2 #usage-heading { "Usage and quotas" }
        dl.facts #usage {
            dt { "Storage" }
            dd #usage-storage {
                (against(size_binary_cell(u.bytes), u.bytes, p.quota_bytes.map(|q| (size_binary_cell(q), q))))
                br;
                span.muted { "Distinct blobs linked by this project's repositories; a blob shared by two repositories counts once." }
            }
            dt { "Repositories" }
            dd #usage-repositories { (against(count(u.repositories), u.repositories, p.quota_repositories.map(|q| (count(q), q)))) }
            dt { "Tags" }
            dd #usage-tags { (against(count(u.tags), u.tags, p.quota_tags.map(|q| (count(q), q)))) }
        }
        h2 { "Rules" }
        dl.facts #rules {
            dt { "Immutable tags" }
            dd #rule-immutable {
                @if p.immutable_tags.is_empty() { "none: any tag may be moved or deleted" } @else {
                    "tags matching " (patterns(&p.immutable_tags)) " are pushed once, never moved or deleted"
                }
            }
            dt { "Untagged manifests" }
            dd #rule-untagged { (untagged_words(p.untagged_days)) }
            dt { "Retention" }
            dd #rule-retention {
                (retention_words(p))
                @if !p.retention.is_empty() {
                    " " a href={ "/ui/projects/" (urlencode(project)) "/retention" } { "Preview retention" }
                }
            }
        }
    }
}

fn untagged_words(after: Option<u32>) -> String {
    match after {
        None => "kept".into(),
        Some(d) => format!("deleted {} after push", days(d)),
    }
}

/// `a`, `b` as code, joined with commas and "or".
fn patterns(list: &[String]) -> Markup {
    html! {
        @for (i, p) in list.iter().enumerate() {
            @if i > 0 { (if i + 1 == list.len() { " or " } else { ", " }) }
            code { (p) }
        }
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn days(d: u32) -> String {
    format!("{d}{}", plural(d.into(), " day", " days"))
}

/// The retention rules in one sentence: what garbage collection deletes,
/// then what it keeps whatever the delete rules say.
fn retention_words(policy: &ProjectPolicy) -> Markup {
    let r: &Retention = &policy.retention;
    if r.is_empty() {
        return html! { "none: tags stay until someone deletes them" };
    }
    let mut selects = Vec::new();
    if let Some(d) = r.delete_older_than_days {
        selects.push(format!("pushed more than {} ago", days(d)));
    }
    if let Some(d) = r.delete_unpulled_days {
        selects.push(format!(
            "not pulled for {} (a tag never pulled counts from its push)",
            days(d)
        ));
    }
    let mut keeps: Vec<Markup> = Vec::new();
    match r.keep_last {
        Some(0) | None => {}
        Some(1) => keeps.push(html! { "the most recently pushed tag of each repository" }),
        Some(n) => keeps.push(html! { "the " (n) " most recently pushed tags of each repository" }),
    }
    if !r.keep_patterns.is_empty() {
        keeps.push(html! { "tags matching " (patterns(&r.keep_patterns)) });
    }
    if !policy.immutable_tags.is_empty() {
        keeps.push(html! { "immutable tags" });
    }
    html! {
        "Garbage collection deletes "
        @if selects.is_empty() { "every tag" } @else { "tags " (selects.join(" or ")) }
        @if !keeps.is_empty() {
            (if selects.is_empty() { " except " } else { ", but keeps " })
            @for (i, k) in keeps.iter().enumerate() {
                @if i > 0 { (if i + 1 == keeps.len() { " and " } else { ", " }) }
                (k)
            }
        }
        "."
    }
}

/// What the project's retention rules would delete now, per repository.
pub fn retention_preview(page: &PreviewPage, viewer: &Viewer) -> Markup {
    let name = page.project.as_str();
    let p = &page.preview;
    let body = html! {
        (crumbs(&[(name, Some(format!("/ui/projects/{}", urlencode(name)))), ("Retention preview", None)]))
        h1 { "Retention preview" }
        p { "Rules of " strong { (name) } ": " (retention_words(&page.policy)) }
        p #retention-summary { "Applied now, the rules would delete " strong { (p.tags_deleted) } (plural(p.tags_deleted, " tag", " tags")) " and keep " (p.tags_kept) ". "
            span.muted { "This page deletes nothing; garbage collection applies the rules when it runs." } }
        @if p.repositories.is_empty() {
            p.empty { "Nothing would be deleted." }
        } @else {
            table #retention {
                thead { tr { th { "Repository" } th { "Tags that would be deleted" } th.num { "Tags kept" } } }
                tbody { @for r in &p.repositories { tr data-name=(r.name) {
                    td { a href=(repo_href(&r.name)) { (r.name) } }
                    td { @for t in &r.delete { a.tag href=(image_href(&r.name, t)) { (t) } " " } }
                    td.num { (r.kept) }
                } } }
            }
            @if p.truncated { p.muted { "Only the first tags are listed; the totals above count them all." } }
        }
    };
    layout("Retention preview", Some(viewer), body)
}

/// "Delete repository X with its N tags?", and a refusal if one was given.
pub fn confirm_delete_repository(page: &DeleteRepositoryPage, viewer: &Viewer) -> Markup {
    let repo = &page.repo;
    let name = repo.as_str();
    let project_href = format!("/ui/projects/{}", urlencode(repo.project()));
    let body = html! {
        (crumbs(&[(repo.project(), Some(project_href)), (name, Some(repo_href(name))), ("Delete", None)]))
        h1 { "Delete repository " (name) }
        @if let Some(why) = &page.refused {
            p.alert role="alert" #refused { "The repository was not deleted: " (why) }
        }
        p #confirm-question { "Delete repository " strong { (name) } " with its " (page.tags) (plural(page.tags, " tag", " tags")) "? This cannot be undone." }
        p.muted { "Its tags and manifests go at once and it leaves the catalog; garbage collection frees the storage no other repository uses." }
        form.inline #delete-repository method="post" action={ (repo_href(name)) "/-/delete" } {
            input type="hidden" name="csrf" value=(viewer.csrf);
            button.danger type="submit" { "Delete repository" }
        }
        " " a href=(repo_href(name)) { "Cancel" }
    };
    layout(&format!("Delete {name}"), Some(viewer), body)
}

/// The "Delete repository" button of a repository page.
pub fn delete_repository_button(name: &str) -> Markup {
    html! {
        h2 { "Delete" }
        form.inline method="get" action={ (repo_href(name)) "/-/delete" } {
            button.danger type="submit" { "Delete repository" }
        }
        " " span.muted { "All its tags and manifests; you are asked to confirm." }
    }
}

fn gc_state(run: &GcRun) -> String {
    match (&run.state, &run.phase) {
        (GcState::Running, Some(phase)) => format!("running ({phase})"),
        (state, _) => state.as_str().to_string(),
    }
}

/// The last garbage-collection runs and the forms that request one.
pub fn gc_section(runs: &[GcRun], notice: Option<&str>, csrf: &str) -> Markup {
    let now = now_ms();
    html! {
        h2 #gc { "Garbage collection" }
        @if let Some(n) = notice { p.alert role="status" #gc-notice { (n) } }
        p {
            (confirm_form("/ui/admin/gc", csrf, "Run garbage collection now? Unreferenced blobs are deleted for good, and retention and untagged rules are applied.",
                "Run garbage collection now", html! {}))
            " "
            form.inline method="post" action="/ui/admin/gc" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="dry_run" value="1";
                button type="submit" { "Dry run" }
            }
        }
        p.muted { "A dry run counts what a run would sweep and free, and changes nothing." }
        @if runs.is_empty() { p.empty { "No garbage collection has run yet." } } @else {
            table #gc-runs {
                thead { tr { th.num { "Run" } th { "State" } th { "Kind" } th { "Requested by" } th { "Requested" } th.num { "Duration" } th.num { "Blobs swept" } th.num { "Bytes freed" } th { "Error" } } }
                tbody { @for r in runs { tr data-name=(r.id) {
                    td.num { (r.id) }
                    td { (gc_state(r)) }
                    td { (if r.dry_run { "dry run" } else { "run" }) }
                    td { (r.requested_by) }
                    td { (when(Some(r.requested_at), now)) }
                    td.num { @match r.started_at.zip(r.finished_at) { Some((s, f)) => (duration(f - s)), None => span.muted { "—" } } }
                    td.num { (r.stats.blobs_swept) }
                    td.num { (size_cell(r.stats.bytes_freed)) }
                    td { (r.error.as_deref().unwrap_or("")) }
                } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(policy: &ProjectPolicy) -> String {
        retention_words(policy).into_string()
    }

    #[test]
    fn retention_rules_read_as_a_sentence() {
        let mut policy = ProjectPolicy::default();
        assert_eq!(words(&policy), "none: tags stay until someone deletes them");
        policy.retention.keep_last = Some(1);
        policy.immutable_tags = vec!["v*".into()];
        assert_eq!(
            words(&policy),
            "Garbage collection deletes every tag except the most recently pushed tag \
             of each repository and immutable tags."
        );
        policy.immutable_tags.clear();
        policy.retention = Retention {
            keep_last: Some(3),
            keep_patterns: vec!["stable".into(), "lts-*".into()],
            delete_older_than_days: Some(30),
            delete_unpulled_days: Some(1),
        };
        assert_eq!(
            words(&policy),
            "Garbage collection deletes tags pushed more than 30 days ago or not pulled \
             for 1 day (a tag never pulled counts from its push), but keeps the 3 most \
             recently pushed tags of each repository and tags matching <code>stable</code> \
             or <code>lts-*</code>."
        );
    }

    #[test]
    fn untagged_policy_reads_as_kept_or_deleted() {
        assert_eq!(untagged_words(None), "kept");
        assert_eq!(untagged_words(Some(7)), "deleted 7 days after push");
        assert_eq!(untagged_words(Some(1)), "deleted 1 day after push");
    }
}
