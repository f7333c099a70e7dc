//! [`AnalyticsStore`] on sea-orm: aggregates over `messages`, `conversations` and
//! `inbound_events`, the same statements on every backend (times are microseconds, so a
//! bucket is `timestamp - timestamp % length`).

use async_trait::async_trait;
use insta_router_domain::{AccountId, Direction, InstagramAccountId, TimeRange};
use insta_router_ports::{
    AnalyticsStore, DeliveryStats, MessageVolume, RepoError, Responder, RuleHits, SendCount, Turn,
    VolumeCount,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use crate::error::unavailable;
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
        let (filter, scoped) = scope("timestamp", account, range);
        let mut values: Vec<Value> = vec![range.bucket.micros().into()];
        values.extend(scoped);
        let rows = self
            .db
            .query_all_raw(statement(
                self.db.get_database_backend(),
                &format!(
                    "SELECT timestamp - (timestamp % ?) AS bucket, direction, kind, count(*) AS n \
                     FROM messages WHERE {filter} GROUP BY 1, direction, kind ORDER BY 1"
                ),
                values,
            ))
            .await
            .map_err(unavailable)?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            let direction: String = row.try_get("", "direction").map_err(unavailable)?;
            let Some(direction) = Direction::parse(&direction) else {
                return Err(RepoError::Corrupt(format!("message direction {direction}")));
            };
            counts.push(VolumeCount {
                bucket: from_micros(int_at(&row, 0).unwrap_or(0))?,
                direction,
                kind: row.try_get("", "kind").map_err(unavailable)?,
                messages: u64::try_from(int_at(&row, 3).unwrap_or(0)).unwrap_or(0),
            });
        }
        let unique_customers = self
            .count(
                "count(DISTINCT sender_id)",
                "messages",
                "timestamp",
                " AND direction = 'inbound'",
                account,
                range,
            )
            .await?;
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
        let comments = self
            .count(
                "count(*)",
                "inbound_events",
                "occurred_at",
                " AND kind = 'comment'",
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
        let backend = self.db.get_database_backend();
        let (filter, values) = scoped(
            "j.created_at",
            "j.account_id",
            account.as_ref().map(AccountId::as_str),
            range,
        );
        let jobs = format!("jobs j WHERE j.kind = 'crm_delivery' AND {filter}");
        let rows = self
            .db
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT j.status, count(*) AS n, \
                     count(CASE WHEN j.status = 'done' AND j.attempts = 1 THEN 1 END) AS first \
                     FROM {jobs} GROUP BY j.status ORDER BY j.status"
                ),
                values.clone(),
            ))
            .await
            .map_err(unavailable)?;
        let mut stats = DeliveryStats::default();
        for row in &rows {
            let status: String = row.try_get("", "status").map_err(unavailable)?;
            let n = u64::try_from(int_at(row, 1).unwrap_or(0)).unwrap_or(0);
            stats.first_attempt += u64::try_from(int_at(row, 2).unwrap_or(0)).unwrap_or(0);
            stats.by_status.push((status, n));
        }
        // Percentiles by offset into the sorted latencies: the same statement everywhere.
        let delivered = format!(
            "FROM delivery_attempts a, {jobs} AND a.job_id = j.id AND a.outcome = 'delivered'"
        );
        let latency = "(a.started_at + a.duration_ms * 1000) - j.created_at";
        let n = self
            .db
            .query_one_raw(statement(
                backend,
                &format!("SELECT count(*) {delivered}"),
                values.clone(),
            ))
            .await
            .map_err(unavailable)?
            .and_then(|r| int_at(&r, 0))
            .unwrap_or(0);
        if n > 0 {
            let mut at = Vec::new();
            for share in [50, 99] {
                let offset = (n - 1) * share / 100;
                let mut with_offset = values.clone();
                with_offset.push(offset.into());
                let micros = self
                    .db
                    .query_one_raw(statement(
                        backend,
                        &format!(
                            "SELECT {latency} AS latency {delivered} ORDER BY latency LIMIT 1 OFFSET ?"
                        ),
                        with_offset,
                    ))
                    .await
                    .map_err(unavailable)?
                    .and_then(|r| int_at(&r, 0))
                    .unwrap_or(0);
                at.push(u64::try_from(micros / 1000).unwrap_or(0));
            }
            stats.latency_ms = Some((at[0], at[1]));
        }
        Ok(stats)
    }

    async fn turns(
        &self,
        account: Option<InstagramAccountId>,
        range: &TimeRange,
    ) -> Result<Vec<Turn>, RepoError> {
        // Messages from the range's start to a day past its end: answers may come later.
        let window = TimeRange {
            to: range.to + chrono::TimeDelta::days(1),
            ..*range
        };
        let (filter, mut values) = scope("timestamp", account.as_ref(), &window);
        values.push(to_micros(range.to).into());
        // Each message numbered by the business messages before it in its conversation: a
        // turn is the customer's messages with one number, answered by the business message
        // with the same number.
        let sql = format!(
            "WITH numbered AS (\
               SELECT id, conversation_id, direction, timestamp, \
                 count(CASE WHEN direction = 'outbound' THEN 1 END) OVER (\
                   PARTITION BY conversation_id ORDER BY timestamp, id \
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS outs_before \
               FROM messages WHERE {filter}), \
             turns AS (\
               SELECT conversation_id, outs_before, min(timestamp) AS asked FROM numbered \
               WHERE direction = 'inbound' GROUP BY conversation_id, outs_before), \
             answers AS (\
               SELECT conversation_id, outs_before, timestamp AS answered, id FROM numbered \
               WHERE direction = 'outbound') \
             SELECT t.asked, a.answered, \
               CASE WHEN a.id IS NULL THEN NULL \
                    WHEN EXISTS (SELECT 1 FROM auto_replies r WHERE r.reply_message_id = a.id) \
                      THEN 'auto_reply' \
                    WHEN EXISTS (SELECT 1 FROM outbound_messages o WHERE o.id = a.id) THEN 'api' \
                    ELSE 'human' END AS responder \
             FROM turns t LEFT JOIN answers a \
               ON a.conversation_id = t.conversation_id AND a.outs_before = t.outs_before \
             WHERE t.asked < ?"
        );
        let rows = self
            .db
            .query_all_raw(statement(self.db.get_database_backend(), &sql, values))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let asked = from_micros(int_at(row, 0).unwrap_or(0))?;
                let responder: Option<String> =
                    row.try_get("", "responder").map_err(unavailable)?;
                let answered = match (int_at(row, 1), responder.as_deref()) {
                    (Some(at), Some(who)) => Some((
                        from_micros(at)?,
                        match who {
                            "auto_reply" => Responder::AutoReply,
                            "api" => Responder::Api,
                            _ => Responder::Human,
                        },
                    )),
                    _ => None,
                };
                Ok(Turn { asked, answered })
            })
            .collect()
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
