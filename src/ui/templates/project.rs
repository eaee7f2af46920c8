//! The project page: its repositories, usage against its quotas and its
//! rules, and for those who manage it, its members, robot accounts and
//! settings.

use maud::{html, Markup};

use super::lifecycle::usage_and_rules;
use super::{cursor_pager, repo_table};
use crate::auth::RobotView;
use crate::metadata::{Member, Role};
use crate::ui::format::when;
use crate::ui::loaders::ProjectPage;
use crate::ui::view::{confirm_form, copyable, crumbs, layout};
use crate::ui::{now_ms, urlencode, Viewer};

pub fn project(page: &ProjectPage, viewer: &Viewer) -> Markup {
    let name = page.name.as_str();
    let csrf = &viewer.csrf;
    let base = format!("/ui/projects/{}", urlencode(name));
    let body = html! {
        (crumbs(&[(name, None)]))
        h1 { (name) " " span.badge { (if page.public { "public" } else { "private" }) } }
        @if let Some(deleted) = &page.deleted {
            p.alert role="status" #deleted-notice { "Repository " strong { (deleted) } " was deleted. Garbage collection frees the storage no other repository uses." }
        }
        @if let Some((robot, secret)) = &page.created_robot {
            section.alert role="status" {
                p { "Robot " strong { (robot) } " was created. Its secret is shown only now:" }
                p { (copyable(secret, "robot secret")) }
            }
        }
        h2 { "Repositories" }
        @if page.repos.is_empty() && page.after.is_empty() {
            p.empty { "No repositories yet: push with " code { "docker push " (viewer.host) "/" (name) "/IMAGE:TAG" } }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="repos" placeholder="repository name"; }
            (repo_table(&page.repos, "repos"))
            (cursor_pager(&base, &page.after, page.next.as_deref()))
        }
        (usage_and_rules(&page.rules, name))
        @if let Some(members) = &page.members {
            (members_section(name, members, page.robots.is_some(), &base, csrf))
        }
        @if let Some(robots) = &page.robots {
            (robots_section(robots, &base, csrf))
            (settings(page, &base, csrf))
        }
    };
    layout(name, Some(viewer), body)
}

/// Members, with role changes, removal and a form to add one when `manage`.
fn members_section(name: &str, members: &[Member], manage: bool, base: &str, csrf: &str) -> Markup {
    html! {
        h2 { "Members" }
        @if members.is_empty() { p.empty { "No members." } } @else {
            table #members {
                thead { tr { th { "User" } th { "Role" } @if manage { th { span.visually-hidden { "Remove" } } } } }
                tbody { @for m in members { tr data-name=(m.user) {
                    td { (m.user) }
                    @if manage {
                        td { form.inline method="post" action={ (base) "/members" } {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="user" value=(m.user);
                            label.visually-hidden for={ "role-" (m.user) } { "Role of " (m.user) }
                            (role_select(&format!("role-{}", m.user), Some(m.role)))
                            " " button type="submit" { "Change" }
                        } }
                        td { (confirm_form(&format!("{base}/remove-member"), csrf, &format!("Remove {} from {name}?", m.user), "Remove",
                            html! { input type="hidden" name="user" value=(m.user); })) }
                    } @else {
                        td { (m.role.as_str()) }
                    }
                } } }
            }
        }
        @if manage {
            form.card #add-member method="post" action={ (base) "/members" } {
                h3 { "Add a member" }
                input type="hidden" name="csrf" value=(csrf);
                label for="member-user" { "User name" }
                input #member-user name="user" required autocomplete="off";
                label for="member-role" { "Role" }
                (role_select("member-role", None))
                button type="submit" { "Add member" }
            }
        }
    }
}

/// Robot accounts with their revocation, and the form for a new one.
fn robots_section(robots: &[RobotView], base: &str, csrf: &str) -> Markup {
    let now = now_ms();
    html! {
        h2 { "Robot accounts" }
        @if robots.is_empty() { p.empty { "No robot accounts." } } @else {
            table #robots {
                thead { tr { th { "Name" } th { "Actions" } th { "Expires" } th { "Created by" } th { span.visually-hidden { "Revoke" } } } }
                tbody { @for r in robots { tr data-name=(r.name) {
                    td { code { (r.name) } }
                    td { (r.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")) }
                    td { @if r.expires_at.is_some() { (when(r.expires_at, now)) } @else { "never" } }
                    td { (r.created_by) }
                    td { (confirm_form(&format!("{base}/revoke-robot"), csrf, &format!("Revoke {}? Clients using it stop working.", r.name), "Revoke",
                        html! { input type="hidden" name="robot" value=(r.name); })) }
                } } }
            }
        }
        form.card method="post" action={ (base) "/robots" } {
            h3 { "New robot account" }
            input type="hidden" name="csrf" value=(csrf);
            label for="robot-name" { "Name" }
            input #robot-name name="name" required pattern="[a-z0-9]+([._-][a-z0-9]+)*";
            fieldset { legend { "May" }
                label { input type="checkbox" name="pull" value="1" checked; " pull" }
                label { input type="checkbox" name="push" value="1"; " push" }
                label { input type="checkbox" name="delete" value="1"; " delete" }
            }
            label for="robot-expires" { "Expires after (days; empty: never)" }
            input #robot-expires type="number" name="expires_days" min="1" max="36500" inputmode="numeric";
            button type="submit" { "Create robot" }
        }
    }
}

/// Visibility and deletion.
fn settings(page: &ProjectPage, base: &str, csrf: &str) -> Markup {
    let name = page.name.as_str();
    html! {
        h2 { "Settings" }
        form.inline method="post" action={ (base) "/visibility" } {
            input type="hidden" name="csrf" value=(csrf);
            @if page.public {
                button type="submit" { "Make private" }
            } @else {
                input type="hidden" name="public" value="1";
                button type="submit" { "Make public" }
            }
        }
        " "
        (confirm_form(&format!("{base}/delete"), csrf, &format!("Delete project {name} with its repositories, members and robots?"), "Delete project", html! {}))
    }
}

/// A `<select name="role">` with every role, `selected` chosen.
fn role_select(id: &str, selected: Option<Role>) -> Markup {
    html! {
        select id=(id) name="role" {
            @for r in Role::ALL {
                option value=(r.as_str()) selected[selected == Some(r) || (selected.is_none() && r == Role::Developer)] { (r.as_str()) }
            }
        }
    }
}
