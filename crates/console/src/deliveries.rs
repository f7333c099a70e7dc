//! Deliveries to the CRM: waiting, failing and dead ones with their attempts, retrying one
//! now, replaying an account's dead letters, and each endpoint's state. The lists refresh in
//! place while a delivery is in progress.

use actix_web::web::{Data, Form, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use insta_router_domain::{Account, AccountId, Job, JobId, JobStatus};
use insta_router_ports::{DeliveryFilter, PageRequest};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{
    Nav, account_picker, empty, html_response, live, no_account, notice, page, see_other, time,
};
use crate::session::Session;
use crate::{Failure, PREFIX, State};

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(list)
        .service(delivery)
        .service(retry)
        .service(replay);
}

/// The tabs: query value, label, status filter.
const TABS: [(&str, &str, Option<JobStatus>); 4] = [
    ("waiting", "Waiting", Some(JobStatus::Queued)),
    ("dead", "Dead letters", Some(JobStatus::Dead)),
    ("done", "Delivered", Some(JobStatus::Done)),
    ("all", "All", None),
];

#[derive(Deserialize)]
struct ListQuery {
    account: Option<String>,
    status: Option<String>,
    fragment: Option<u8>,
    done: Option<String>,
}

fn endpoint(state: &State, account: &Account) -> Markup {
    let paused = account
        .crm_webhook_url
        .as_ref()
        .and_then(|url| state.app.deliveries.endpoint_paused_until(url.as_str()));
    html! {
        p class="endpoint" id="endpoint" {
            "CRM endpoint of @" (account.username.as_str()) ": "
            @match (&account.crm_webhook_url, account.delivery.disabled_at, paused) {
                (None, _, _) => { span class="tag closed" { "none set" } " (events are stored, not delivered; set a URL on the Accounts page)" }
                (Some(_), Some(at), _) => { span class="tag closed" { "disabled" } " since " (time(at)) " (the CRM answered 410 Gone; saving its URL again on the Accounts page enables it)" }
                (Some(_), None, Some(until)) => { span class="tag queued" { "paused" } " until " (time(until)) " after failures in a row (this instance; deliveries wait, nothing is lost)" }
                (Some(url), None, None) => { span class="tag open" { "enabled" } " · " code { (url.as_str().split('?').next().unwrap_or_default()) } }
            }
        }
    }
}

fn rows(jobs: &[Job]) -> Markup {
    html! {
        table class="deliveries" {
            thead { tr {
                th scope="col" { "Delivery" } th scope="col" { "State" } th scope="col" { "Attempts" }
                th scope="col" { "Next or last" } th scope="col" { "Last error" }
            } }
            tbody {
                @for job in jobs {
                    tr {
                        td { a href={ (PREFIX) "/deliveries/" (job.id.as_str()) } { (job.subject) } }
                        td { span class={ "tag " (job.status.as_str()) } { (state_of(job)) } }
                        td { (job.attempts) }
                        td { (time(job.run_at)) }
                        td class="error-text" { (job.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// A delivery's state in words: a queued one that has been tried is failing.
fn state_of(job: &Job) -> &'static str {
    match job.status {
        JobStatus::Queued if job.attempts > 0 => "failing, will retry",
        JobStatus::Queued => "waiting",
        JobStatus::Running => "sending",
        JobStatus::Done => "delivered",
        JobStatus::Dead => "dead",
    }
}

#[get("/deliveries")]
async fn list(
    state: Data<State>,
    session: Session,
    query: Query<ListQuery>,
) -> Result<HttpResponse, Failure> {
    let accounts = session.accounts(&state).await?;
    let Some(account) = session.pick(&accounts, query.account.as_deref()) else {
        return Ok(page(
            &session,
            Nav::Deliveries,
            "Deliveries",
            no_account(&session),
        ));
    };
    let (tab, _, status) = TABS
        .iter()
        .find(|(name, ..)| Some(*name) == query.status.as_deref())
        .copied()
        .unwrap_or(TABS[0]);
    let jobs = state
        .app
        .deliveries
        .list(
            &DeliveryFilter {
                account_id: Some(account.id.clone()),
                status,
                since: None,
                until: None,
            },
            PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await?
        .items;
    let content = html! {
        @if jobs.is_empty() {
            (empty("Nothing here.", html! {
                @if tab == "dead" { "No dead letters: every event reached the CRM or is still being tried." }
                @else { "Deliveries appear when Instagram events arrive for this account." }
            }))
        } @else { (rows(&jobs)) }
    };
    if query.fragment == Some(1) {
        return Ok(html_response(content));
    }
    let done = match query.done.as_deref() {
        Some("retried") => Some("Queued to be sent now.".to_owned()),
        Some(n) if n.starts_with("replayed-") => Some(format!(
            "{} dead letters queued again.",
            n.trim_start_matches("replayed-")
        )),
        _ => None,
    };
    let source = format!(
        "{PREFIX}/deliveries?account={}&status={tab}&fragment=1",
        account.id.as_str()
    );
    let body = html! {
        (notice(done.as_deref()))
        (account_picker("/deliveries", &accounts, Some(account), false))
        (endpoint(&state, account))
        nav aria-label="Delivery states" class="tabs" {
            @for (name, label, _) in TABS {
                a href={ (PREFIX) "/deliveries?account=" (account.id.as_str()) "&status=" (name) }
                    aria-current=[(name == tab).then_some("page")] { (label) }
            }
        }
        (live("deliveries", &source, content))
        @if tab == "dead" {
            form method="post" action={ (PREFIX) "/deliveries/replay" } {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="account" value=(account.id.as_str());
                button type="submit" { "Replay every dead letter of this account" }
            }
        }
    };
    Ok(page(&session, Nav::Deliveries, "Deliveries", body))
}

#[derive(Deserialize)]
struct DetailQuery {
    fragment: Option<u8>,
    done: Option<String>,
}

/// The delivery `raw` when the key sees its account.
async fn visible(
    state: &State,
    session: &Session,
    raw: &str,
) -> Result<insta_router_app::DeliveryDetail, Failure> {
    let hidden = || Failure::NotFound(format!("no delivery {raw}"));
    let id = JobId::parse("delivery_id", raw).map_err(|_| hidden())?;
    let detail = state.app.deliveries.get(&id).await.map_err(|_| hidden())?;
    match &detail.job.account_id {
        Some(account) if session.scope.covers(account) => Ok(detail),
        None if session.scope.is_admin() => Ok(detail),
        _ => Err(hidden()),
    }
}

#[get("/deliveries/{id}")]
async fn delivery(
    state: Data<State>,
    session: Session,
    path: Path<String>,
    query: Query<DetailQuery>,
) -> Result<HttpResponse, Failure> {
    let detail = visible(&state, &session, &path).await?;
    let job = &detail.job;
    let content = html! {
        p { "Event " code { (job.subject) } " · " span class={ "tag " (job.status.as_str()) } id="delivery-state" { (state_of(job)) }
            " · queued " (time(job.created_at)) }
        @if detail.attempts.is_empty() {
            p class="help" { "Not tried yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "#" } th scope="col" { "Started" } th scope="col" { "Outcome" }
                    th scope="col" { "Status" } th scope="col" { "Took" } th scope="col" { "Answer (start)" } } }
                tbody {
                    @for a in &detail.attempts {
                        tr {
                            td { (a.attempt) } td { (time(a.started_at)) } td { (a.outcome) }
                            td { (a.status_code.map(|s| s.to_string()).unwrap_or_default()) }
                            td { (a.duration_ms) " ms" }
                            td { code { (a.response_body.as_deref().or(a.error.as_deref()).unwrap_or("")) } }
                        }
                    }
                }
            }
        }
    };
    if query.fragment == Some(1) {
        return Ok(html_response(content));
    }
    let done = (query.done.as_deref() == Some("retried"))
        .then_some("Queued to be sent now; this page follows it.");
    let source = format!("{PREFIX}/deliveries/{}?fragment=1", job.id.as_str());
    let back = job
        .account_id
        .as_ref()
        .map(AccountId::as_str)
        .unwrap_or_default();
    let body = html! {
        (notice(done))
        p { a href={ (PREFIX) "/deliveries?account=" (back) "&status=all" } { "All deliveries of this account" } }
        (live("delivery", &source, content))
        @if matches!(job.status, JobStatus::Queued | JobStatus::Dead) {
            form method="post" action={ (PREFIX) "/deliveries/" (job.id.as_str()) "/retry" } {
                input type="hidden" name="csrf" value=(session.csrf);
                button type="submit" { "Retry now" }
            }
        }
    };
    Ok(page(&session, Nav::Deliveries, "Delivery", body))
}

#[derive(Deserialize)]
struct RetryForm {
    csrf: String,
}

#[post("/deliveries/{id}/retry")]
async fn retry(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    path: Path<String>,
    form: Form<RetryForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let detail = visible(&state, &session, &path).await?;
    state.app.deliveries.retry_now(&detail.job.id).await?;
    Ok(see_other(&format!(
        "{PREFIX}/deliveries/{}?done=retried",
        detail.job.id.as_str()
    )))
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    account: String,
}

#[post("/deliveries/replay")]
async fn replay(
    req: HttpRequest,
    state: Data<State>,
    session: Session,
    form: Form<ReplayForm>,
) -> Result<HttpResponse, Failure> {
    session.check(&req, &form.csrf)?;
    let account = session.account(&form.account)?;
    let replayed = state.app.deliveries.replay(&account, None, None).await?;
    Ok(see_other(&format!(
        "{PREFIX}/deliveries?account={}&status=dead&done=replayed-{replayed}",
        account.as_str()
    )))
}
