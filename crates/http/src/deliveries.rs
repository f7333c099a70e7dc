//! `/api/v1/deliveries`: what was forwarded to CRMs, every attempt, retries and replays.
//!
//! A delivery's public id is `dlv_` followed by its job's id.

use actix_web::web::{Bytes, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use chrono::{DateTime, Utc};
use insta_router_app::DeliveryError;
use insta_router_domain::{AccountId, FieldError, Job, JobId, JobStatus, ValidationErrors};
use insta_router_ports::{DeliveryAttempt, DeliveryFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, rfc3339};
use crate::auth::Caller;
use crate::pagination::{PageBody, PageQuery};
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(list_deliveries)
        .service(get_delivery)
        .service(retry_delivery)
        .service(replay_deliveries);
}

const PREFIX: &str = "dlv_";

fn public_id(job: &JobId) -> String {
    let hex = job.as_str().strip_prefix("job_").unwrap_or(job.as_str());
    format!("{PREFIX}{hex}")
}

fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.strip_prefix(PREFIX)
        .and_then(|hex| JobId::parse("delivery_id", &format!("job_{hex}")).ok())
        .ok_or_else(|| ApiError::NotFound(format!("delivery {raw} not found")))
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryStatus {
    /// Waiting for its next attempt (the first, or a retry).
    Pending,
    /// Being sent right now.
    Sending,
    /// The CRM accepted it (2xx).
    Delivered,
    /// Given up on: attempts exhausted, endpoint gone (410) or disabled. Replayable.
    Dead,
}

impl From<JobStatus> for DeliveryStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => Self::Pending,
            JobStatus::Running => Self::Sending,
            JobStatus::Done => Self::Delivered,
            JobStatus::Dead => Self::Dead,
        }
    }
}

impl From<DeliveryStatus> for JobStatus {
    fn from(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => Self::Queued,
            DeliveryStatus::Sending => Self::Running,
            DeliveryStatus::Delivered => Self::Done,
            DeliveryStatus::Dead => Self::Dead,
        }
    }
}

/// One event forwarded (or to be forwarded) to an account's CRM.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryResponse {
    #[schema(example = "dlv_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    delivery_id: String,
    account_id: Option<String>,
    /// The `webhook-id` header: the same for every attempt and replay.
    #[schema(example = "msg_0193a4e1c1a07c3e8b5e2f4d6a8c0e12")]
    webhook_id: String,
    /// The body's `type`.
    #[schema(example = "message.received")]
    event_type: Option<String>,
    status: DeliveryStatus,
    /// Attempts in the current round (a replay starts a new round).
    attempts: u32,
    /// When the next attempt is due, while pending.
    next_attempt_at: Option<String>,
    last_error: Option<String>,
    created_at: String,
}

impl From<Job> for DeliveryResponse {
    fn from(job: Job) -> Self {
        let event_type = serde_json::from_str::<serde_json::Value>(job.work.payload())
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
        Self {
            delivery_id: public_id(&job.id),
            account_id: job.account_id.map(|a| a.to_string()),
            webhook_id: job.subject,
            event_type,
            status: job.status.into(),
            attempts: job.attempts,
            next_attempt_at: (job.status == JobStatus::Queued).then(|| rfc3339(job.run_at)),
            last_error: job.last_error,
            created_at: rfc3339(job.created_at),
        }
    }
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptResponse {
    /// 1 for the first attempt ever made, across replays.
    attempt: u32,
    started_at: String,
    duration_ms: u64,
    /// `delivered`, `http_error`, `throttled`, `gone`, `timeout`, `unreachable`, `refused`,
    /// or why nothing was sent (`endpoint_disabled`, `no_crm_url`, `account_deleted`).
    outcome: String,
    status_code: Option<u16>,
    /// The start of the CRM's answer (at most 2 KiB).
    response_body: Option<String>,
    error: Option<String>,
}

impl From<DeliveryAttempt> for AttemptResponse {
    fn from(a: DeliveryAttempt) -> Self {
        Self {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            status_code: a.status_code,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// A delivery with its attempts and the exact body sent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryDetailResponse {
    #[serde(flatten)]
    delivery: DeliveryResponse,
    /// The body, exactly as every attempt sends it.
    payload: String,
    attempts_made: Vec<AttemptResponse>,
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only in this state.
    status: Option<DeliveryStatus>,
    /// Only this account's.
    account_id: Option<String>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
}

fn instant(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, FieldError> {
    raw.map(|r| {
        DateTime::parse_from_rfc3339(r)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| FieldError::new(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

/// A time range's ends, each optional.
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn range(since: Option<&str>, until: Option<&str>) -> Result<Range, ApiError> {
    let mut errors = Vec::new();
    let since = instant("since", since).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let until = instant("until", until).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    ValidationErrors::check(errors).map_err(ApiError::Invalid)?;
    Ok((since, until))
}

/// List deliveries, newest first.
#[utoipa::path(
    tag = "deliveries",
    params(DeliveryQuery, PageQuery),
    responses(
        (status = 200, description = "One page", body = PageBody<DeliveryResponse>),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/deliveries")]
async fn list_deliveries(
    state: Data<State>,
    caller: Caller,
    filter: Query<DeliveryQuery>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (since, until) = range(filter.since.as_deref(), filter.until.as_deref())?;
    let account_id = filter
        .account_id
        .as_deref()
        .map(|raw| AccountId::parse("account_id", raw))
        .transpose()
        .map_err(|e| ApiError::Invalid(e.into()))?;
    let request = page.to_request()?;
    // An account key lists its own account's deliveries, whatever the filter asks for.
    let account_id = match (caller.scope.account(), account_id) {
        (None, asked) => asked,
        (Some(own), Some(asked)) if &asked != own => {
            return Ok(
                HttpResponse::Ok().json(PageBody::<DeliveryResponse>::from_page(
                    insta_router_ports::Page {
                        items: Vec::<insta_router_domain::Job>::new(),
                        next: None,
                    },
                    DeliveryResponse::from,
                )),
            );
        }
        (Some(own), _) => Some(own.clone()),
    };
    let filter = DeliveryFilter {
        account_id,
        status: filter.status.map(JobStatus::from),
        since,
        until,
    };
    let page = state.app.deliveries.list(&filter, request).await?;
    Ok(HttpResponse::Ok().json(PageBody::from_page(page, DeliveryResponse::from)))
}

/// Read one delivery with its attempts.
#[utoipa::path(
    tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery's id (`dlv_...`)")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetailResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/deliveries/{delivery_id}")]
async fn get_delivery(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let detail = visible_delivery(&state, &caller, &path).await?;
    let payload = detail.job.work.payload().to_owned();
    Ok(HttpResponse::Ok().json(DeliveryDetailResponse {
        delivery: detail.job.into(),
        payload,
        attempts_made: detail.attempts.into_iter().map(Into::into).collect(),
    }))
}

/// Send a pending or dead delivery now. A dead one starts a new round of attempts.
#[utoipa::path(
    tag = "deliveries",
    params(("delivery_id" = String, Path, description = "The delivery's id (`dlv_...`)")),
    responses(
        (status = 202, description = "Queued to be sent now", body = DeliveryResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Being sent right now, or delivered already", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/deliveries/{delivery_id}/retry")]
async fn retry_delivery(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = visible_delivery(&state, &caller, &path).await?.job.id;
    let job = state.app.deliveries.retry_now(&id).await?;
    state.app.deliveries.wake();
    Ok(HttpResponse::Accepted().json(DeliveryResponse::from(job)))
}

/// Which dead-lettered deliveries to replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct ReplayRequest {
    /// Only deliveries created at or after (RFC 3339).
    since: Option<String>,
    /// Only deliveries created before (RFC 3339).
    until: Option<String>,
}

/// How many deliveries were queued again.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayResponse {
    replayed: u64,
}

/// Replay an account's dead-lettered deliveries (all, or those created in a time range):
/// each starts a new round of attempts with the same `webhook-id` and body.
#[utoipa::path(
    tag = "deliveries",
    params(("account_id" = String, Path, description = "Our account id")),
    request_body(content = Option<ReplayRequest>, description = "An optional time range"),
    responses(
        (status = 202, description = "Queued again", body = ReplayResponse),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad time range", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[post("/accounts/{account_id}/deliveries/replay")]
async fn replay_deliveries(
    state: Data<State>,
    caller: Caller,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let account = account_id(&path)?;
    caller.require(&account, || crate::accounts::not_found(&account))?;
    // 404 for an account that does not exist.
    state.app.accounts.get(&account).await?;
    // The body is optional: none replays everything dead.
    let body: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        // `null` is no range too.
        serde_json::from_slice::<Option<ReplayRequest>>(&body)
            .map_err(|e| ApiError::Unprocessable(format!("the body is not a replay request: {e}")))?
            .unwrap_or_default()
    };
    let (since, until) = range(body.since.as_deref(), body.until.as_deref())?;
    let replayed = state.app.deliveries.replay(&account, since, until).await?;
    state.app.deliveries.wake();
    Ok(HttpResponse::Accepted().json(ReplayResponse { replayed }))
}

/// The delivery `raw` with its attempts, when the caller may see it: an account key sees
/// its own account's only; others are not found.
async fn visible_delivery(
    state: &State,
    caller: &Caller,
    raw: &str,
) -> Result<insta_router_app::DeliveryDetail, ApiError> {
    let detail = state.app.deliveries.get(&job_id(raw)?).await?;
    let visible = caller.scope.is_admin()
        || detail
            .job
            .account_id
            .as_ref()
            .is_some_and(|account| caller.sees(account));
    if visible {
        Ok(detail)
    } else {
        Err(ApiError::NotFound(format!("delivery {raw} not found")))
    }
}

impl From<DeliveryError> for ApiError {
    fn from(err: DeliveryError) -> Self {
        match err {
            DeliveryError::NotFound(id) => {
                Self::NotFound(format!("delivery {} not found", public_id(&id)))
            }
            DeliveryError::Running(id) => Self::Conflict {
                field: "status",
                detail: format!("delivery {} is being sent right now", public_id(&id)),
            },
            DeliveryError::AlreadyDelivered(id) => Self::Conflict {
                field: "status",
                detail: format!("delivery {} was delivered already", public_id(&id)),
            },
            DeliveryError::Storage(source) => source.into(),
        }
    }
}
