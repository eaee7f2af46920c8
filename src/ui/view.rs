//! Shared page pieces: the layout, navigation, error and login pages.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use super::Viewer;

/// A whole page around `body`.
pub fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · berth" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/ui.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { "berth" }
                    @if let Some(v) = viewer {
                        form.search role="search" action="/ui/search" method="get" {
                            label.visually-hidden for="q" { "Search repositories" }
                            input #q type="search" name="q" placeholder="Search repositories";
                        }
                        nav aria-label="Account" {
                            @if v.is_admin() { a href="/ui/admin" { "Admin" } }
                            @if let Some(next) = &v.login_next {
                                a href={ "/ui/login?next=" (super::urlencode(next)) } { "Sign in" }
                            } @else {
                                span.who { "Signed in as " strong { (v.name()) } }
                            }
                            @if !v.csrf.is_empty() {
                                form.inline method="post" action="/ui/logout" {
                                    input type="hidden" name="csrf" value=(v.csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// `Home / a / b` links above a page title.
pub fn crumbs(items: &[(&str, Option<String>)]) -> Markup {
    html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui" { "Projects" }
            @for (label, href) in items {
                " / "
                @match href {
                    Some(h) => a href=(h) { (label) },
                    None => span aria-current="page" { (label) },
                }
            }
        }
    }
}

/// A value with a button that copies it.
pub fn copyable(value: &str, label: &str) -> Markup {
    html! {
        span.copy {
            code { (value) }
            button.copy-btn type="button" data-copy=(value) aria-label={ "Copy " (label) } hidden { "Copy" }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        title,
        None,
        html! {
            section.error {
                h1 { (status.as_u16()) " · " (title) }
                p { (message) }
                p { a href="/ui" { "Back to the projects" } }
            }
        },
    )
}

pub fn login_page(csrf: &str, next: &str, message: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.login {
                h1 { "Sign in to berth" }
                @if let Some(m) = message { p.alert role="alert" { (m) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label for="username" { "User name" }
                    input #username name="username" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A POST form with the CSRF token and a confirmation question.
pub fn confirm_form(
    action: &str,
    csrf: &str,
    question: &str,
    label: &str,
    extra: Markup,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=(question) {
            input type="hidden" name="csrf" value=(csrf);
            (extra)
            button.danger type="submit" { (label) }
        }
    }
}
