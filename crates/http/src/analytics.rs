//! `GET /api/v1/analytics/messages`: message volumes per hour or day, for one account or all.

use std::collections::BTreeMap;

use actix_web::web::{Data, Query};
use actix_web::{HttpResponse, get};
use chrono::{DateTime, TimeDelta, Utc};
use insta_router_app::{AnalyticsError, MessageVolumes};
use insta_router_domain::{Bucket, FieldError, TimeRange};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::accounts::{account_id, not_found, rfc3339};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::{ApiError, State};

pub(crate) fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(messages)
        .service(sends)
        .service(deliveries)
        .service(response_times)
        .service(auto_replies);
}

/// Which rows: an account (an account key's own by default; every account for an admin key
/// without one), a range and a bucket.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeQuery {
    /// The account (`acc_...`).
    account_id: Option<String>,
    /// RFC 3339; by default 7 days (with `bucket=hour`, 24 hours) before `to`.
    from: Option<String>,
    /// RFC 3339, exclusive; now by default.
    to: Option<String>,
    /// `hour` or `day` (default), in UTC.
    bucket: Option<String>,
}

/// One bucket.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VolumeBucketBody {
    start: String,
    /// Customers' messages by kind (`text`, `image`, `story_mention`, `postback`, ...).
    inbound: BTreeMap<String, u64>,
    /// The business's messages (API sends, auto-replies, what it wrote in Instagram) by kind.
    outbound: BTreeMap<String, u64>,
}

/// Totals over the range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VolumeTotals {
    inbound: u64,
    outbound: u64,
    /// Customers who wrote.
    unique_customers: u64,
    /// Conversations that began.
    new_conversations: u64,
    /// Comments on the account's media.
    comments: u64,
}

/// Message volumes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageVolumesBody {
    /// The account, or `null` for every account.
    account_id: Option<String>,
    /// The range, widened to whole buckets.
    from: String,
    to: String,
    #[schema(example = "day")]
    bucket: String,
    totals: VolumeTotals,
    /// Every bucket of the range, empty ones included, oldest first.
    buckets: Vec<VolumeBucketBody>,
}

fn time(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::Invalid(FieldError::new(field, "must be an RFC 3339 time").into())
            })
    })
    .transpose()
}

/// Message volumes per bucket.
///
/// Counts of stored messages in and out by kind, unique customers, new conversations and
/// comments, computed from the stored rows. An account key sees its own account only.
#[utoipa::path(
    tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "The volumes", body = MessageVolumesBody),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time, bucket, or a range of more than 2,000 buckets", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/analytics/messages")]
async fn messages(
    state: Data<State>,
    caller: Caller,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (account, range) = resolve(&caller, query.into_inner())?;
    let volumes = state
        .app
        .analytics
        .messages(account.as_ref(), range)
        .await?;
    Ok(HttpResponse::Ok().json(body(account.map(|a| a.to_string()), volumes)))
}

/// The account a request may see, and its range.
fn resolve(
    caller: &Caller,
    query: RangeQuery,
) -> Result<(Option<insta_router_domain::AccountId>, TimeRange), ApiError> {
    let account = match (&query.account_id, caller.scope.account()) {
        (Some(raw), _) => {
            let id = account_id(raw)?;
            caller.require(&id, || not_found(&id))?;
            Some(id)
        }
        (None, own) => own.cloned(),
    };
    let bucket = Bucket::parse(query.bucket.as_deref().unwrap_or("day"))
        .map_err(|e| ApiError::Invalid(e.into()))?;
    let to = time("to", query.to.as_deref())?.unwrap_or_else(Utc::now);
    let span = match bucket {
        Bucket::Hour => TimeDelta::hours(24),
        Bucket::Day => TimeDelta::days(7),
    };
    let from = time("from", query.from.as_deref())?.unwrap_or(to - span);
    let range = TimeRange::new(from, to, bucket).map_err(ApiError::Invalid)?;
    Ok((account, range))
}

/// One bucket of sends.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendBucketBody {
    start: String,
    /// Sends accepted in the bucket, by where they stand now (`pending`, `sent`, `failed`,
    /// `unknown`).
    by_status: BTreeMap<String, u64>,
}

/// Sends accepted over a range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SendVolumesBody {
    account_id: Option<String>,
    from: String,
    to: String,
    bucket: String,
    /// Sends accepted (API sends and private replies, rule-made ones included).
    accepted: u64,
    /// By where they stand now.
    by_status: BTreeMap<String, u64>,
    /// Failed and unknown sends by error code: Meta's (`"10"`, `"190"`, `"551"`) or ours
    /// (`outside_window`, `token_invalid`, `temporary_failure`, `outcome_unknown`).
    by_code: BTreeMap<String, u64>,
    buckets: Vec<SendBucketBody>,
}

/// Sends per bucket.
///
/// Sends accepted in each bucket by where they stand now, with failures by error code,
/// computed from the stored sends. An account key sees its own account only.
#[utoipa::path(
    tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "The sends", body = SendVolumesBody),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time, bucket, or a range of more than 2,000 buckets", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/analytics/sends")]
async fn sends(
    state: Data<State>,
    caller: Caller,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (account, range) = resolve(&caller, query.into_inner())?;
    let v = state.app.analytics.sends(account.as_ref(), range).await?;
    Ok(HttpResponse::Ok().json(SendVolumesBody {
        account_id: account.map(|a| a.to_string()),
        from: rfc3339(v.range.from),
        to: rfc3339(v.range.to),
        bucket: v.range.bucket.as_str().to_owned(),
        accepted: v.accepted,
        by_status: v.by_status,
        by_code: v.by_code,
        buckets: v
            .buckets
            .into_iter()
            .map(|b| SendBucketBody {
                start: rfc3339(b.start),
                by_status: b.by_status,
            })
            .collect(),
    }))
}

/// CRM deliveries of the events that arrived in a range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveriesBody {
    account_id: Option<String>,
    from: String,
    to: String,
    /// Deliveries queued for the events.
    total: u64,
    delivered: u64,
    /// Given up: dead letters, to be replayed.
    dead: u64,
    /// Still to deliver.
    pending: u64,
    /// Delivered over delivered and dead, 0 to 1; `null` when none finished.
    success_rate: Option<f64>,
    /// Delivered at the first attempt, over delivered and dead.
    first_attempt_rate: Option<f64>,
    /// From the event's arrival to the CRM's 2xx, in milliseconds.
    latency_p50_ms: Option<u64>,
    latency_p99_ms: Option<u64>,
}

/// CRM deliveries.
///
/// Of the events that arrived in the range: how many reached the CRM, at the first attempt,
/// how fast, and how many were given up. Delivered deliveries are pruned after
/// `RETENTION_DELIVERIES` (30 days), so older ranges count fewer. An account key sees its own
/// account only.
#[utoipa::path(
    tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "The deliveries", body = DeliveriesBody),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time or bucket", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/analytics/deliveries")]
async fn deliveries(
    state: Data<State>,
    caller: Caller,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (account, range) = resolve(&caller, query.into_inner())?;
    let d = state
        .app
        .analytics
        .deliveries(account.as_ref(), range)
        .await?;
    let finished = d.delivered + d.dead;
    #[allow(clippy::cast_precision_loss, reason = "a rate shown to people")]
    let rate = |n: u64| (finished > 0).then(|| n as f64 / finished as f64);
    Ok(HttpResponse::Ok().json(DeliveriesBody {
        account_id: account.map(|a| a.to_string()),
        from: rfc3339(d.range.from),
        to: rfc3339(d.range.to),
        total: d.total,
        delivered: d.delivered,
        dead: d.dead,
        pending: d.pending,
        success_rate: rate(d.delivered),
        first_attempt_rate: rate(d.first_attempt),
        latency_p50_ms: d.latency_ms.map(|l| l.0),
        latency_p99_ms: d.latency_ms.map(|l| l.1),
    }))
}

/// How fast turns were answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AnsweringBody {
    answered: u64,
    /// Median time to the first answer, in seconds.
    p50_seconds: Option<f64>,
    /// 90th percentile, in seconds.
    p90_seconds: Option<f64>,
    /// Share of all turns answered within 5 minutes.
    within_5m: f64,
    /// Within an hour.
    within_1h: f64,
    /// Within a day.
    within_24h: f64,
}

impl From<insta_router_app::Answering> for AnsweringBody {
    fn from(a: insta_router_app::Answering) -> Self {
        Self {
            answered: a.answered,
            p50_seconds: a.p50_seconds,
            p90_seconds: a.p90_seconds,
            within_5m: a.within[0],
            within_1h: a.within[1],
            within_24h: a.within[2],
        }
    }
}

/// Response times over a range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResponseTimesBody {
    account_id: Option<String>,
    from: String,
    to: String,
    /// Customer turns (the customer's messages since the business last wrote) that began in
    /// the range.
    turns: u64,
    /// Not answered (within a day after the range).
    unanswered: u64,
    overall: AnsweringBody,
    /// By who answered first: `human` (in Instagram), `api`, `auto_reply`.
    by_responder: BTreeMap<String, AnsweringBody>,
}

/// Response times.
///
/// For each customer turn that began in the range (the customer's messages since the
/// business last wrote), the time to the business's first answer: percentiles, shares
/// answered within 5 minutes, an hour and a day, overall and by who answered (a person in
/// Instagram, an API send, an auto-reply). An account key sees its own account only.
#[utoipa::path(
    tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "The response times", body = ResponseTimesBody),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time or bucket", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/analytics/response-times")]
async fn response_times(
    state: Data<State>,
    caller: Caller,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (account, range) = resolve(&caller, query.into_inner())?;
    let r = state
        .app
        .analytics
        .response_times(account.as_ref(), range)
        .await?;
    Ok(HttpResponse::Ok().json(ResponseTimesBody {
        account_id: account.map(|a| a.to_string()),
        from: rfc3339(r.range.from),
        to: rfc3339(r.range.to),
        turns: r.turns,
        unanswered: r.unanswered,
        overall: r.overall.into(),
        by_responder: r
            .by_responder
            .into_iter()
            .map(|(who, a)| (who.to_owned(), a.into()))
            .collect(),
    }))
}

/// One rule's auto-replies.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleHitsBody {
    rule_id: String,
    /// `null` when the rule was deleted since.
    name: Option<String>,
    /// Replies made.
    total: u64,
    /// By status: `sent`, `queued` (a comment's private reply handed to the send path),
    /// `failed`, `unknown`, `pending`.
    by_status: BTreeMap<String, u64>,
}

/// Auto-replies over a range.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AutoRepliesBody {
    account_id: Option<String>,
    from: String,
    to: String,
    /// Replies made in all.
    total: u64,
    /// By rule, the busiest first.
    rules: Vec<RuleHitsBody>,
    /// How every evaluation of the rules ended (counted by the hour): `fired`,
    /// `no_rule_matched`, or the safety limit that stopped every rule (`window_closed`,
    /// `human_replied`, `hourly_cap`, `standby`, `not_inbound`, `deleted`).
    evaluations: BTreeMap<String, u64>,
}

/// Auto-replies per rule.
///
/// The replies each rule made in the range (to messages and to comments), by status. An
/// account key sees its own account only.
#[utoipa::path(
    tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "The auto-replies", body = AutoRepliesBody),
        (status = 401, description = "No API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad time or bucket", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
#[get("/analytics/auto-replies")]
async fn auto_replies(
    state: Data<State>,
    caller: Caller,
    query: Query<RangeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (account, range) = resolve(&caller, query.into_inner())?;
    let hits = state
        .app
        .analytics
        .rule_hits(account.as_ref(), &range)
        .await?;
    let evaluations = state
        .app
        .analytics
        .evaluations(account.as_ref(), &range)
        .await?;
    let mut rules: Vec<RuleHitsBody> = hits
        .into_iter()
        .map(|h| RuleHitsBody {
            total: h.by_status.iter().map(|(_, n)| n).sum(),
            rule_id: h.rule_id,
            name: h.name,
            by_status: h.by_status.into_iter().collect(),
        })
        .collect();
    rules.sort_by(|a, b| b.total.cmp(&a.total).then(a.rule_id.cmp(&b.rule_id)));
    Ok(HttpResponse::Ok().json(AutoRepliesBody {
        account_id: account.map(|a| a.to_string()),
        from: rfc3339(range.from),
        to: rfc3339(range.to),
        total: rules.iter().map(|r| r.total).sum(),
        rules,
        evaluations,
    }))
}

fn body(account_id: Option<String>, v: MessageVolumes) -> MessageVolumesBody {
    MessageVolumesBody {
        account_id,
        from: rfc3339(v.range.from),
        to: rfc3339(v.range.to),
        bucket: v.range.bucket.as_str().to_owned(),
        totals: VolumeTotals {
            inbound: v.inbound,
            outbound: v.outbound,
            unique_customers: v.unique_customers,
            new_conversations: v.new_conversations,
            comments: v.comments,
        },
        buckets: v
            .buckets
            .into_iter()
            .map(|b| VolumeBucketBody {
                start: rfc3339(b.start),
                inbound: b.inbound,
                outbound: b.outbound,
            })
            .collect(),
    }
}

impl From<AnalyticsError> for ApiError {
    fn from(err: AnalyticsError) -> Self {
        match err {
            AnalyticsError::AccountNotFound(id) => not_found(&id),
            AnalyticsError::Storage(source) => source.into(),
        }
    }
}
