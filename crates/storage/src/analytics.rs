//! [`AnalyticsStore`] on sea-orm: aggregates over `messages`, `conversations` and
//! `inbound_events`, the same statements on every backend (times are microseconds, so a
//! bucket is `timestamp - timestamp % length`).

use async_trait::async_trait;
use insta_router_domain::{AccountId, Direction, InstagramAccountId, TimeRange};
use insta_router_ports::{AnalyticsStore, MessageVolume, RepoError, SendCount, VolumeCount};
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
}
