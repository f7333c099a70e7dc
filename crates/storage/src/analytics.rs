//! [`AnalyticsStore`] on sea-orm: aggregates over `messages`, `conversations` and
//! `inbound_events`, the same statements on every backend (times are microseconds, so a
//! bucket is `timestamp - timestamp % length`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use insta_router_domain::{AccountId, Direction, InstagramAccountId, TimeRange};

use insta_router_ports::{
    AnalyticsStore, DeliveryStats, LATENCY_BOUNDS_MS, MessageVolume, RepoError, Responder,
    RollupReport, RuleHits, SendCount, TurnBucket, VolumeCount,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use crate::error::unavailable;
use crate::rollup::{self, Family};
use crate::sql::{int_at, statement};
use crate::time::{from_micros, to_micros};

/// Analytics over the stored rows.
#[derive(Debug, Clone)]
pub struct SeaAnalyticsStore {
    db: DatabaseConnection,
}

impl SeaAnalyticsStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// `count(...)` of `table` where `time_column` is in `range` (and the account matches),
    /// with `extra` conditions.
    async fn count(
        &self,
        select: &str,
        table: &str,
        time_column: &str,
        extra: &str,
        account: Option<&InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<u64, RepoError> {
        let (filter, values) = scope(time_column, account, range);
        let row = self
            .db
            .query_one_raw(statement(
                self.db.get_database_backend(),
                &format!("SELECT {select} FROM {table} WHERE {filter}{extra}"),
                values,
            ))
            .await
            .map_err(unavailable)?;
        Ok(row
            .and_then(|r| int_at(&r, 0))
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}

/// The range (and account) condition on `time_column`, with its values.
fn scope(
    time_column: &str,
    account: Option<&InstagramAccountId>,
    range: &TimeRange,
) -> (String, Vec<Value>) {
    scoped(
        time_column,
        "instagram_account_id",
        account.map(InstagramAccountId::as_str),
        range,
    )
}

/// The range condition on `time_column`, and `account_column = account` when given.
fn scoped(
    time_column: &str,
    account_column: &str,
    account: Option<&str>,
    range: &TimeRange,
) -> (String, Vec<Value>) {
    let mut values: Vec<Value> = vec![to_micros(range.from).into(), to_micros(range.to).into()];
    let mut filter = format!("{time_column} >= ? AND {time_column} < ?");
    if let Some(account) = account {
        filter.push_str(&format!(" AND {account_column} = ?"));
        values.push(account.into());
    }
    (filter, values)
}

#[async_trait]
impl AnalyticsStore for SeaAnalyticsStore {
    async fn message_volume(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<MessageVolume, RepoError> {
        let account = account.as_ref();
        let hours = rollup::hourly(
            &self.db,
            Family::Messages,
            account.map(InstagramAccountId::as_str),
            to_micros(range.from),
            to_micros(range.to),
        )
        .await?;
        // (bucket, inbound, kind)
        let mut folded: BTreeMap<(i64, bool, String), u64> = BTreeMap::new();
        let mut comments = 0;
        for (hour, metric, n) in hours {
            let bucket = hour - hour.rem_euclid(range.bucket.micros());
            match metric.split_once(':') {
                Some(("in", kind)) => {
                    *folded.entry((bucket, true, kind.to_owned())).or_default() += n;
                }
                Some(("out", kind)) => {
                    *folded.entry((bucket, false, kind.to_owned())).or_default() += n;
                }
                _ if metric == "comment" => comments += n,
                _ => return Err(RepoError::Corrupt(format!("message metric {metric}"))),
            }
        }
        let counts = folded
            .into_iter()
            .map(|((bucket, inbound, kind), messages)| {
                Ok(VolumeCount {
                    bucket: from_micros(bucket)?,
                    direction: if inbound {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    },
                    kind,
                    messages,
                })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        // Customers who wrote in a range that runs to now are the conversations whose last
        // customer message is in it (one conversation per customer and account): a count
        // over conversations instead of a distinct count over every message.
        let unique_customers = if range.to >= chrono::Utc::now() {
            self.count(
                "count(*)",
                "conversations",
                "last_inbound_at",
                "",
                account,
                range,
            )
            .await?
        } else {
            self.count(
                "count(DISTINCT sender_id)",
                "messages",
                "timestamp",
                " AND direction = 'inbound'",
                account,
                range,
            )
            .await?
        };
        let new_conversations = self
            .count(
                "count(*)",
                "conversations",
                "started_at",
                "",
                account,
                range,
            )
            .await?;
        Ok(MessageVolume {
            counts,
            unique_customers,
            new_conversations,
            comments,
        })
    }

    async fn send_counts(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<SendCount>, RepoError> {
        let (filter, scoped_values) = scoped(
            "created_at",
            "account_id",
            account.as_ref().map(AccountId::as_str),
            range,
        );
        let mut values: Vec<Value> = vec![range.bucket.micros().into()];
        values.extend(scoped_values);
        let rows = self
            .db
            .query_all_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "SELECT created_at - (created_at % ?) AS bucket, status, error_code, \
                     count(*) AS n FROM outbound_messages WHERE {filter} \
                     GROUP BY 1, status, error_code ORDER BY 1"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(SendCount {
                    bucket: from_micros(int_at(row, 0).unwrap_or(0))?,
                    status: row.try_get("", "status").map_err(unavailable)?,
                    code: row.try_get("", "error_code").map_err(unavailable)?,
                    sends: u64::try_from(int_at(row, 3).unwrap_or(0)).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn delivery_stats(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<DeliveryStats, RepoError> {
        let hours = rollup::hourly(
            &self.db,
            Family::Deliveries,
            account.as_ref().map(AccountId::as_str),
            to_micros(range.from),
            to_micros(range.to),
        )
        .await?;
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut latency: BTreeMap<u64, u64> = BTreeMap::new();
        let mut stats = DeliveryStats::default();
        for (_, metric, n) in hours {
            match metric.split_once(':') {
                Some(("status", status)) => *by_status.entry(status.to_owned()).or_default() += n,
                // Past the last bound: counted at it.
                Some(("latency", bound)) => {
                    let bound = bound
                        .parse()
                        .unwrap_or(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]);
                    *latency.entry(bound).or_default() += n;
                }
                _ if metric == "first" => stats.first_attempt += n,
                _ => return Err(RepoError::Corrupt(format!("delivery metric {metric}"))),
            }
        }
        stats.by_status = by_status.into_iter().collect();
        let delivered: u64 = latency.values().sum();
        if delivered > 0 {
            // The bound of the bucket that holds the rank: an upper estimate.
            let at = |share: u64| {
                let rank = (delivered * share).div_ceil(100).max(1);
                let mut seen = 0;
                latency
                    .iter()
                    .find(|(_, n)| {
                        seen += **n;
                        seen >= rank
                    })
                    .map_or(0, |(bound, _)| *bound)
            };
            stats.latency_ms = Some((at(50), at(99)));
        }
        Ok(stats)
    }

    async fn turn_buckets(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<Vec<TurnBucket>, RepoError> {
        let hours = rollup::hourly(
            &self.db,
            Family::Turns,
            account.as_ref().map(InstagramAccountId::as_str),
            to_micros(range.from),
            to_micros(range.to),
        )
        .await?;
        let mut buckets: BTreeMap<(Option<Responder>, Option<u64>), u64> = BTreeMap::new();
        for (_, metric, n) in hours {
            let (who, within) = metric.split_once(':').unwrap_or((metric.as_str(), ""));
            let responder = match who {
                "none" => None,
                "auto_reply" => Some(Responder::AutoReply),
                "api" => Some(Responder::Api),
                "human" => Some(Responder::Human),
                _ => return Err(RepoError::Corrupt(format!("turn metric {metric}"))),
            };
            *buckets.entry((responder, within.parse().ok())).or_default() += n;
        }
        Ok(buckets
            .into_iter()
            .map(|((responder, within_seconds), turns)| TurnBucket {
                responder,
                within_seconds,
                turns,
            })
            .collect())
    }

    async fn refresh_rollup(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        recent_hours: u32,
    ) -> Result<RollupReport, RepoError> {
        rollup::refresh(&self.db, to_micros(now), recent_hours).await
    }

    async fn rule_hits(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<RuleHits>, RepoError> {
        let (filter, values) = scoped(
            "h.created_at",
            "r.account_id",
            account.as_ref().map(AccountId::as_str),
            range,
        );
        let rows = self
            .db
            .query_all_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "SELECT h.rule_id, h.status, count(*) AS n, max(r.definition) AS definition \
                     FROM auto_replies h LEFT JOIN rules r ON r.id = h.rule_id \
                     WHERE {filter} GROUP BY h.rule_id, h.status ORDER BY h.rule_id, h.status"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        let mut hits: Vec<RuleHits> = Vec::new();
        for row in &rows {
            let rule_id: String = row.try_get("", "rule_id").map_err(unavailable)?;
            let status: String = row.try_get("", "status").map_err(unavailable)?;
            let n = u64::try_from(int_at(row, 2).unwrap_or(0)).unwrap_or(0);
            let definition: Option<String> = row.try_get("", "definition").map_err(unavailable)?;
            let name = definition
                .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                .and_then(|d| d["name"].as_str().map(str::to_owned));
            match hits.last_mut() {
                Some(last) if last.rule_id == rule_id => last.by_status.push((status, n)),
                _ => hits.push(RuleHits {
                    rule_id,
                    name,
                    by_status: vec![(status, n)],
                }),
            }
        }
        Ok(hits)
    }

    async fn evaluations(
        &self,
        account: Option<AccountId>,
        range: &TimeRange,
    ) -> Result<Vec<(String, u64)>, RepoError> {
        let (filter, values) = scoped(
            "hour",
            "account_id",
            account.as_ref().map(AccountId::as_str),
            range,
        );
        let backend = self.db.get_database_backend();
        // `sum` of integers is a decimal on PostgreSQL and MySQL: cast it back.
        let total = match backend {
            sea_orm::DatabaseBackend::Postgres => "CAST(sum(evaluations) AS BIGINT)",
            sea_orm::DatabaseBackend::MySql => "CAST(sum(evaluations) AS SIGNED)",
            _ => "sum(evaluations)",
        };
        let rows = self
            .db
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT outcome, {total} AS n FROM rule_evaluations \
                     WHERE {filter} GROUP BY outcome ORDER BY outcome"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.try_get("", "outcome").map_err(unavailable)?;
                Ok((
                    outcome,
                    u64::try_from(int_at(row, 1).unwrap_or(0)).unwrap_or(0),
                ))
            })
            .collect()
    }
}
