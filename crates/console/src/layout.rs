//! The page shell (navigation, sign-out, skip link) and the small pieces every page uses.

use actix_web::HttpResponse;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use chrono::{DateTime, Utc};
use insta_router_domain::Account;
use maud::{DOCTYPE, Markup, html};

use crate::PREFIX;
use crate::assets::url;
use crate::session::Session;

/// The pages in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    Conversations,
    Deliveries,
    Rules,
    Accounts,
}

impl Nav {
    const ALL: [(Self, &'static str, &'static str); 5] = [
        (Self::Dashboard, "", "Dashboard"),
        (Self::Conversations, "/conversations", "Conversations"),
        (Self::Deliveries, "/deliveries", "Deliveries"),
        (Self::Rules, "/rules", "Rules"),
        (Self::Accounts, "/accounts", "Accounts"),
    ];
}

/// A whole page.
pub(crate) fn page(session: &Session, nav: Nav, title: &str, body: Markup) -> HttpResponse {
    let scope = match session.scope.account() {
        None => "admin key".to_owned(),
        Some(account) => format!("account key · {account}"),
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No favicon request: the icon is empty.
                link rel="icon" href="data:,";
                title { (title) " · insta-router" }
                link rel="stylesheet" href=(url("console.css"));
                link rel="stylesheet" href=(url("uPlot.min.css"));
                script src=(url("uPlot.iife.min.js")) defer {}
                script src=(url("console.js")) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href=(PREFIX) { "insta-router" }
                    nav aria-label="Console" {
                        ul {
                            @for (item, path, label) in Nav::ALL {
                                li {
                                    a href={ (PREFIX) (path) }
                                        aria-current=[(item == nav).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span class="scope" { (scope) }
                        form method="post" action={ (PREFIX) "/logout" } {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" class="link" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(markup)
}

/// An HTML response.
pub(crate) fn html_response(markup: Markup) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(markup.into_string())
}

/// A redirect after a form (303, so the browser follows with GET).
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location.to_owned()))
        .finish()
}

/// A part of a page that the script refreshes from `source` every few seconds.
pub(crate) fn live(id: &str, source: &str, content: Markup) -> Markup {
    html! {
        div id=(id) data-poll=(source) aria-live="polite" { (content) }
    }
}

/// An instant, in UTC for readers without JavaScript and in the viewer's zone with it.
pub(crate) fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M UTC"))
        }
    }
}

/// A page's empty state: what there is not yet, and what to do.
pub(crate) fn empty(what: &str, next: Markup) -> Markup {
    html! {
        div class="empty" {
            p { strong { (what) } }
            p { (next) }
        }
    }
}

/// "No account yet": the empty state of every page that needs an account.
pub(crate) fn no_account(session: &Session) -> Markup {
    empty(
        "No account yet.",
        html! {
            @if session.scope.is_admin() {
                a href={ (PREFIX) "/accounts#new" } { "Create one" }
                " on the Accounts page: its Instagram account id, username and access token."
            } @else {
                "Your key's account no longer exists; ask an administrator."
            }
        },
    )
}

/// A form (GET) that picks the account a page shows, kept in the URL.
pub(crate) fn account_picker(
    path: &str,
    accounts: &[Account],
    selected: Option<&Account>,
    all: bool,
) -> Markup {
    html! {
        @if accounts.len() > 1 || all {
            form method="get" action={ (PREFIX) (path) } class="picker" data-autosubmit {
                label for="account" { "Account" }
                select id="account" name="account" {
                    @if all {
                        option value="" selected[selected.is_none()] { "All accounts" }
                    }
                    @for account in accounts {
                        option value=(account.id.as_str())
                            selected[selected.is_some_and(|s| s.id == account.id)] {
                            "@" (account.username.as_str()) " (" (account.id.as_str()) ")"
                        }
                    }
                }
                button type="submit" { "Show" }
            }
        }
    }
}

/// A notice at the top of a page after a form (`?done=...`), from a fixed set of texts.
pub(crate) fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p class="notice" role="status" { (text) }
        }
    }
}
