//! The dashboard: the analytics API's figures for a range, per account or overall, as
//! numbers, a chart of messages in and out (uPlot), and the same series as a table for
//! readers without JavaScript.

use actix_web::web::{Data, Query};
use actix_web::{HttpResponse, get};
use chrono::{TimeDelta, Utc};
use insta_router_domain::{Bucket, TimeRange};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;

use crate::layout::{Nav, account_picker, no_account, page};
use crate::session::Session;
use crate::{Failure, State};

pub(crate) fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(dashboard);
}

#[derive(Deserialize)]
struct DashboardQuery {
    account: Option<String>,
    range: Option<String>,
}

/// The ranges offered: name, label, length, bucket.
const RANGES: [(&str, &str, i64, Bucket); 3] = [
    ("24h", "Last 24 hours", 1, Bucket::Hour),
    ("7d", "Last 7 days", 7, Bucket::Day),
    ("30d", "Last 30 days", 30, Bucket::Day),
];

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".to_owned()
    } else {
        #[allow(clippy::cast_precision_loss, reason = "a share shown to people")]
        let share = part as f64 * 100.0 / whole as f64;
        format!("{share:.1}%")
    }
}

fn duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "–".to_owned(),
        Some(s) if s < 90.0 => format!("{s:.0} s"),
        Some(s) if s < 5400.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn figure(label: &str, value: &str, id: &str) -> Markup {
    html! {
        div class="figure" {
            dt { (label) }
            dd id=(id) { (value) }
        }
    }
}

#[get("")]
async fn dashboard(
    state: Data<State>,
    session: Session,
    query: Query<DashboardQuery>,
) -> Result<HttpResponse, Failure> {
    let accounts = session.accounts(&state).await?;
    if accounts.is_empty() {
        return Ok(page(
            &session,
            Nav::Dashboard,
            "Dashboard",
            no_account(&session),
        ));
    }
    // An account key always sees its account; an admin sees all unless they pick one.
    let selected = match (session.scope.account(), query.account.as_deref()) {
        (Some(_), _) => accounts.first(),
        (None, Some(id)) if !id.is_empty() => accounts.iter().find(|a| a.id.as_str() == id),
        (None, _) => None,
    };
    let account = selected.map(|a| &a.id);
    let (range_name, _, days, bucket) = RANGES
        .iter()
        .find(|(name, ..)| Some(*name) == query.range.as_deref())
        .copied()
        .unwrap_or(RANGES[0]);
    let now = Utc::now();
    let range = TimeRange::new(now - TimeDelta::days(days), now, bucket)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    let analytics = &state.app.analytics;
    let messages = analytics.messages(account, range).await?;
    let responses = analytics.response_times(account, range).await?;
    let sends = analytics.sends(account, range).await?;
    let deliveries = analytics.deliveries(account, range).await?;
    let hits = analytics.rule_hits(account, &range).await?;
    let evaluations = analytics.evaluations(account, &range).await?;

    let series = serde_json::json!({
        "x": messages.buckets.iter().map(|b| b.start.timestamp()).collect::<Vec<_>>(),
        "inbound": messages.buckets.iter().map(|b| b.inbound.values().sum::<u64>()).collect::<Vec<_>>(),
        "outbound": messages.buckets.iter().map(|b| b.outbound.values().sum::<u64>()).collect::<Vec<_>>(),
    });
    let sent = sends.by_status.get("sent").copied().unwrap_or(0);
    let failed = sends.by_status.get("failed").copied().unwrap_or(0);
    let body = html! {
        div class="toolbar" {
            (account_picker("", &accounts, selected, session.scope.is_admin()))
            form method="get" action=(crate::PREFIX) class="picker" data-autosubmit {
                @if let Some(a) = selected { input type="hidden" name="account" value=(a.id.as_str()); }
                label for="range" { "Range" }
                select id="range" name="range" {
                    @for (name, label, ..) in RANGES {
                        option value=(name) selected[name == range_name] { (label) }
                    }
                }
                button type="submit" { "Show" }
            }
        }
        section aria-labelledby="h-messages" {
            h2 id="h-messages" { "Messages" }
            dl class="figures" {
                (figure("Received", &messages.inbound.to_string(), "fig-inbound"))
                (figure("Sent", &messages.outbound.to_string(), "fig-outbound"))
                (figure("Customers", &messages.unique_customers.to_string(), "fig-customers"))
                (figure("New conversations", &messages.new_conversations.to_string(), "fig-new"))
                (figure("Comments", &messages.comments.to_string(), "fig-comments"))
            }
            div class="chart" data-chart="volume-data" role="img"
                aria-label="Messages received and sent per bucket; the same figures are in the table below" {}
            script type="application/json" id="volume-data" { (PreEscaped(series.to_string())) }
            details {
                summary { "Messages per " (bucket.as_str()) " as a table" }
                table {
                    thead { tr { th scope="col" { "From" } th scope="col" { "Received" } th scope="col" { "Sent" } } }
                    tbody {
                        @for b in messages.buckets.iter().filter(|b| !b.inbound.is_empty() || !b.outbound.is_empty()) {
                            tr {
                                td { (crate::layout::time(b.start)) }
                                td { (b.inbound.values().sum::<u64>()) }
                                td { (b.outbound.values().sum::<u64>()) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-responses" {
            h2 id="h-responses" { "Response times" }
            p class="help" { "From a customer's message to the business's first answer." }
            dl class="figures" {
                (figure("Customer turns", &responses.turns.to_string(), "fig-turns"))
                (figure("Unanswered", &responses.unanswered.to_string(), "fig-unanswered"))
                (figure("Median", &duration(responses.overall.p50_seconds), "fig-p50"))
                (figure("90th percentile", &duration(responses.overall.p90_seconds), "fig-p90"))
                (figure("Within 5 min", &format!("{:.0}%", responses.overall.within[0] * 100.0), "fig-5min"))
                (figure("Within 1 h", &format!("{:.0}%", responses.overall.within[1] * 100.0), "fig-1h"))
            }
            @if !responses.by_responder.is_empty() {
                table {
                    thead { tr { th scope="col" { "Answered by" } th scope="col" { "Answers" } th scope="col" { "Median" } th scope="col" { "90th percentile" } } }
                    tbody {
                        @for (who, a) in &responses.by_responder {
                            tr { td { (who.replace('_', " ")) } td { (a.answered) } td { (duration(a.p50_seconds)) } td { (duration(a.p90_seconds)) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-delivery" {
            h2 id="h-delivery" { "CRM deliveries" }
            dl class="figures" {
                (figure("Events", &deliveries.total.to_string(), "fig-deliveries"))
                (figure("Delivered", &percent(deliveries.delivered, deliveries.total), "fig-delivered"))
                (figure("First attempt", &percent(deliveries.first_attempt, deliveries.total), "fig-first"))
                (figure("Waiting", &deliveries.pending.to_string(), "fig-pending"))
                (figure("Dead letters", &deliveries.dead.to_string(), "fig-dead"))
                (figure("Latency p50 / p99", &deliveries.latency_ms.map_or("–".to_owned(), |(p50, p99)| format!("{p50} / {p99} ms")), "fig-latency"))
            }
        }
        section aria-labelledby="h-sends" {
            h2 id="h-sends" { "Sends through the API" }
            dl class="figures" {
                (figure("Accepted", &sends.accepted.to_string(), "fig-accepted"))
                (figure("Sent", &sent.to_string(), "fig-sent"))
                (figure("Failed", &failed.to_string(), "fig-failed"))
            }
            @if !sends.by_code.is_empty() {
                p { "Failures by Meta code: "
                    @for (i, (code, n)) in sends.by_code.iter().enumerate() {
                        @if i > 0 { ", " } code { (code) } " × " (n)
                    }
                }
            }
        }
        section aria-labelledby="h-rules" {
            h2 id="h-rules" { "Auto-replies" }
            @if !evaluations.is_empty() {
                p { "Messages checked against the rules: "
                    @for (i, (outcome, n)) in evaluations.iter().enumerate() {
                        @if i > 0 { ", " } (outcome.replace('_', " ")) ": " (n)
                    }
                }
            }
            @if hits.is_empty() {
                p class="help" { "No rule answered in this range. Rules are made on the " a href={ (crate::PREFIX) "/rules" } { "Rules" } " page." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Rule" } th scope="col" { "Replies" } th scope="col" { "By status" } } }
                    tbody {
                        @for hit in &hits {
                            tr {
                                td { (hit.name.as_deref().unwrap_or(&hit.rule_id)) }
                                td { (hit.by_status.iter().map(|(_, n)| n).sum::<u64>()) }
                                td { @for (status, n) in &hit.by_status { span class="tag" { (status) " " (n) } " " } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&session, Nav::Dashboard, "Dashboard", body))
}
