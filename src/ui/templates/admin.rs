//! The administration page: users, the first projects, forms for new ones,
//! and the garbage-collection runs.

use maud::{html, Markup};

use super::lifecycle::gc_section;
use crate::ui::admin::AdminPage;
use crate::ui::format::when;
use crate::ui::view::layout;
use crate::ui::{now_ms, urlencode, Viewer};

pub fn admin(page: &AdminPage, viewer: &Viewer) -> Markup {
    let csrf = &viewer.csrf;
    let body = html! {
        h1 { "Administration" }
        p { a href="/ui/admin/audit" { "Audit log" } }
        h2 { "Users" }
        (users_table(page, csrf))
        form.card method="post" action="/ui/admin/users" {
            h3 { "New user" }
            input type="hidden" name="csrf" value=(csrf);
            label for="new-user" { "Name" } input #new-user name="name" required;
            label for="new-password" { "Password (8 characters or more)" } input #new-password type="password" name="password" minlength="8" autocomplete="new-password" required;
            label { input type="checkbox" name="admin" value="true"; " administrator" }
            button type="submit" { "Create user" }
        }
        h2 { "Projects" }
        ul { @for p in &page.projects { li { a href={ "/ui/projects/" (urlencode(&p.name)) } { (p.name) } " (" (if p.public { "public" } else { "private" }) ")" } } }
        @if page.more_projects { p { "The first " (page.projects.len()) " projects; " a href="/ui" { "the overview" } " lists them all." } }
        form.card method="post" action="/ui/admin/projects" {
            h3 { "New project" }
            input type="hidden" name="csrf" value=(csrf);
            label for="new-project" { "Name" } input #new-project name="name" required;
            label { input type="checkbox" name="public" value="true"; " public (anyone may pull)" }
            button type="submit" { "Create project" }
        }
        (gc_section(&page.gc_runs, page.gc_notice.as_deref(), csrf))
    };
    layout("Administration", Some(viewer), body)
}

/// One page of users, each with its enable, admin and password forms.
fn users_table(page: &AdminPage, csrf: &str) -> Markup {
    let now = now_ms();
    html! {
        table #users {
            thead { tr { th { "User" } th { "Administrator" } th { "Status" } th { "Created" } th { "Actions" } } }
            tbody { @for u in &page.users {
                @let action = format!("/ui/admin/users/{}", urlencode(&u.name));
                tr {
                    td { (u.name) }
                    td { (if u.admin { "yes" } else { "no" }) }
                    td { (if u.disabled { "disabled" } else { "active" }) }
                    td { (when(Some(u.created_at), now)) }
                    td {
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="disabled" value=(!u.disabled);
                            button type="submit" { (if u.disabled { "Enable" } else { "Disable" }) }
                        }
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="admin" value=(!u.admin);
                            button type="submit" { (if u.admin { "Revoke admin" } else { "Make admin" }) }
                        }
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            label.visually-hidden for={ "pw-" (u.name) } { "New password for " (u.name) }
                            input id={ "pw-" (u.name) } type="password" name="password" minlength="8" placeholder="new password" autocomplete="new-password" required;
                            button type="submit" { "Reset password" }
                        }
                    }
                }
            } }
        }
        @if !page.users_after.is_empty() || page.next_users.is_some() {
            nav.pager aria-label="Pages of users" {
                @if !page.users_after.is_empty() { a href="/ui/admin" { "← First users" } }
                @if let Some(next) = &page.next_users { a rel="next" href={ "/ui/admin?users_after=" (urlencode(next)) } { "Next users →" } }
            }
        }
    }
}
