//! Accounts: each connected Instagram account's token and CRM state, changing its CRM URL
//! and rotating its secrets (written, never shown), and connecting a new one (admin keys).

use actix_web::web::{Data, Form, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use chrono::Utc;
use insta_router_app::SUBSCRIBED_FIELDS;
use insta_router_domain::{Account, AccountDraft, AccountPatch, Secret};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Nav, no_account, notice, page, see_other, time};
use crate::session::Session;
use crate::{Failure, PREFIX, State};

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(subscribe)
        .service(update);
}

#[derive(Deserialize)]
struct ListQuery {
    done: Option<String>,
    /// An account whose webhook subscription at Meta to read.
    check: Option<String>,
}

/// What Meta says an account is subscribed to, or why it could not be read.
type Subscription = Result<Vec<String>, String>;

fn subscription(session: &Session, account: &Account, checked: Option<&Subscription>) -> Markup {
    let id = account.id.as_str();
    html! {
        div class="subscription" id={ "subscription-" (id) } {
            strong { "Webhooks at Meta: " }
            @match checked {
                None => { "not checked. " }
                Some(Ok(fields)) => {
                    @let missing: Vec<&str> = SUBSCRIBED_FIELDS.iter().copied().filter(|f| !fields.iter().any(|g| g == f)).collect();
                    @if missing.is_empty() {
                        span class="tag open" { "subscribed" } " to " (fields.join(", ")) ". "
                    } @else {
                        span class="tag closed" { "missing " (missing.join(", ")) } " (subscribed: " (if fields.is_empty() { "nothing".to_owned() } else { fields.join(", ") }) "). "
                    }
                }
                Some(Err(why)) => { span class="tag closed" { "cannot tell" } " " (why) ". " }
            }
            a href={ (PREFIX) "/accounts?check=" (id) "#account-" (id) } { "Check now" }
            form method="post" action={ (PREFIX) "/accounts/" (id) "/subscribe" } class="inline" {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" class="secondary" { "Subscribe" }
            }
        }
    }
}

fn card(session: &Session, account: &Account, checked: Option<&Subscription>) -> Markup {
    let now = Utc::now();
    let token = account
        .token_life
        .state(account.token_failure.as_ref(), now);
    let id = account.id.as_str();
    html! {
        article class="account" id={ "account-" (id) } aria-labelledby={ "h-" (id) } {
            h2 id={ "h-" (id) } { "@" (account.username.as_str()) }
            dl class="facts" {
                dt { "Account id" } dd { code { (id) } }
                dt { "Instagram account id" } dd { code { (account.instagram_account_id.as_str()) } }
                dt { "Access token" } dd {
                    span class={ "tag token-" (token.as_str()) } { (token.as_str()) }
                    @if let Some(at) = account.token_life.expires_at { " · expires " (time(at)) }
                    @if let Some(failure) = &account.token_failure { " · refused " (time(failure.at)) ": " (failure.message) }
                }
                dt { "CRM webhook" } dd {
                    @match &account.crm_webhook_url {
                        // The query string may hold a credential: only the address is shown.
                        Some(url) => code { (url.as_str().split('?').next().unwrap_or_default()) },
                        None => "none: events are stored but not delivered",
                    }
                    @if let Some(at) = account.delivery.disabled_at { " · " span class="tag closed" { "disabled" } " since " (time(at)) " (410 Gone)" }
                }
                dt { "Signing secret" } dd { @if account.webhook_secret.is_some() { "set" } @else { "not set" } }
                dt { "Connected" } dd { (time(account.created_at)) }
            }
            (subscription(session, account, checked))
            details {
                summary { "Change the CRM URL or rotate secrets" }
                form method="post" action={ (PREFIX) "/accounts/" (id) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label for={ "crm-" (id) } { "CRM webhook URL (empty: stop delivering)" }
                    input id={ "crm-" (id) } name="crm_webhook_url" type="url"
                        value=(account.crm_webhook_url.as_ref().map(|u| u.as_str()).unwrap_or(""));
                    label for={ "secret-" (id) } { "New signing secret (empty: keep the current one)" }
                    input id={ "secret-" (id) } name="webhook_secret" type="password" autocomplete="new-password";
                    label for={ "token-" (id) } { "New access token (empty: keep the current one)" }
                    input id={ "token-" (id) } name="access_token" type="password" autocomplete="off";
                    p class="help" { "Secrets are written here and never shown again. After a rotation the CRM should accept both signatures for a while: the previous secret keeps signing alongside the new one." }
                    p { button type="submit" { "Save" } }
                }
            }
        }
    }
}

fn new_account_form(session: &Session) -> Markup {
    html! {
        section id="new" aria-labelledby="h-new" {
            h2 id="h-new" { "Connect an account" }
            form method="post" action={ (PREFIX) "/accounts" } {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="instagram_account_id" { "Instagram account id" }
                input id="instagram_account_id" name="instagram_account_id" type="text" inputmode="numeric" required;
                label for="username" { "Username" }
                input id="username" name="username" type="text" required;
                label for="access_token" { "Access token" }
                input id="access_token" name="access_token" type="password" autocomplete="off" required;
                label for="crm_webhook_url" { "CRM webhook URL (optional)" }
                input id="crm_webhook_url" name="crm_webhook_url" type="url";
                label for="webhook_secret" { "Signing secret (needed with a CRM URL)" }
                input id="webhook_secret" name="webhook_secret" type="password" autocomplete="new-password";
                p { button type="submit" { "Connect" } }
            }
        }
    }
}

#[get("/accounts")]
async fn list(
    state: Data<State>,
    session: Session,
    query: Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    let accounts = session.accounts(&state).await?;
    let done = match query.done.as_deref() {
        Some("created") => Some(
            "Account connected. Its webhooks are subscribed at Meta when SUBSCRIBE_ON_CREATE is on.",
        ),
        Some("saved") => Some("Account saved."),
        Some("subscribed") => Some("Subscribed at Meta."),
        _ => None,
    };
    // Meta is asked only when someone asks, for one account.
    let checked = match accounts
        .iter()
        .find(|a| Some(a.id.as_str()) == query.check.as_deref())
    {
        Some(account) => Some((
            account.id.clone(),
            state
                .app
                .subscriptions
                .current(&account.id)
                .await
                .map_err(|e| Failure::from(e).to_string()),
        )),
        None => None,
    };
    let body = html! {
        (notice(done))
        @if accounts.is_empty() { (no_account(&session)) }
        @for account in &accounts {
            (card(&session, account, checked.as_ref().filter(|(id, _)| *id == account.id).map(|(_, s)| s)))
        }
        @if session.scope.is_admin() { (new_account_form(&session)) }
    };
    Ok(page(&session, Nav::Accounts, "Accounts", body))
}

/// An empty field is "not given".
fn given(field: &str) -> Option<&str> {
    Some(field.trim()).filter(|f| !f.is_empty())
}

#[derive(Deserialize)]
struct NewAccountForm {
    csrf: String,
    instagram_account_id: String,
    username: String,
    access_token: String,
    #[serde(default)]
    crm_webhook_url: String,
    #[serde(default)]
    webhook_secret: String,
}

#[post("/accounts")]
async fn create(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    form: Form<NewAccountForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    session.admin_only()?;
    let draft = AccountDraft::parse(
        form.instagram_account_id.trim(),
        form.username.trim(),
        Secret::new(form.access_token.trim().to_owned()),
        given(&form.crm_webhook_url),
        given(&form.webhook_secret).map(|s| Secret::new(s.to_owned())),
    )
    .map_err(|e| Failure::Invalid(e.to_string()))?;
    let account = state.app.accounts.create(draft).await?;
    state.app.subscriptions.account_created(&account).await;
    Ok(see_other(&format!("{PREFIX}/accounts?done=created")))
}

#[post("/accounts/{id}/subscribe")]
async fn subscribe(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<crate::session::CsrfForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let id = session.account(&path)?;
    state.app.subscriptions.subscribe(&id).await?;
    Ok(see_other(&format!(
        "{PREFIX}/accounts?done=subscribed&check={}#account-{}",
        id.as_str(),
        id.as_str()
    )))
}

#[derive(Deserialize)]
struct UpdateForm {
    csrf: String,
    #[serde(default)]
    crm_webhook_url: String,
    #[serde(default)]
    webhook_secret: String,
    #[serde(default)]
    access_token: String,
}

#[post("/accounts/{id}")]
async fn update(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<UpdateForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let id = session.account(&path)?;
    let before = state.app.accounts.get(&id).await?;
    let url = given(&form.crm_webhook_url);
    // Only a changed URL is sent, so saving the form as it is changes nothing — except that
    // saving the URL of a disabled endpoint enables it again.
    let unchanged = url == before.crm_webhook_url.as_ref().map(|u| u.as_str());
    let crm = (!unchanged || before.delivery.disabled_at.is_some()).then_some(url);
    let patch = AccountPatch::parse(
        None,
        None,
        given(&form.access_token).map(|t| Secret::new(t.to_owned())),
        crm,
        given(&form.webhook_secret).map(|s| Secret::new(s.to_owned())),
    )
    .map_err(|e| Failure::Invalid(e.to_string()))?;
    state.app.accounts.update(&id, patch).await?;
    Ok(see_other(&format!("{PREFIX}/accounts?done=saved")))
}
