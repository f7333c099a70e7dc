//! The hourly rollup of the analytics: counts per family, account, hour and metric.
//!
//! - One SQL statement per family computes the counts from the stored rows for a range of
//!   hours (`source`); the same statement answers a query live and rebuilds the rollup.
//! - `analytics_rollup` says which hours `[covered_from, covered_to)` the rollup holds. A
//!   query reads the rollup for the hours it covers and the stored rows for the rest (in
//!   practice the current hour, and history older than the first pass).
//! - A pass (`refresh`) rebuilds every hour since the last pass and the recent hours before
//!   it (which may still change), a day per transaction, under a lease in that row so that
//!   one instance at a time does it. A row that lands in a covered hour older than the recent
//!   ones (a message timestamped days ago, a dead letter replayed a week later) is not
//!   counted: the rollup's documented limit (docs/PERFORMANCE.md).

use insta_router_ports::{LATENCY_BOUNDS_MS, RESPONSE_BOUNDS_SECONDS, RepoError, RollupReport};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};

use crate::error::unavailable;
use crate::sql::{int_at, statement};

/// An hour, in microseconds.
pub(crate) const HOUR: i64 = 3_600_000_000;
/// Hours rebuilt per transaction.
const CHUNK_HOURS: i64 = 24;
/// How long a pass may hold the lease before another instance may take over.
const LEASE: i64 = 10 * 60 * 1_000_000;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Messages by direction and kind (`in:text`, `out:image`), and comments (`comment`);
    /// by Instagram account.
    Messages,
    /// CRM deliveries by status (`status:done`), first-attempt successes (`first`) and
    /// latency bucket (`latency:500`); by account.
    Deliveries,
    /// Customer turns by who answered and within how many seconds (`api:300`), or `none`;
    /// by Instagram account.
    Turns,
}

impl Family {
    const ALL: [Self; 3] = [Self::Messages, Self::Deliveries, Self::Turns];

    fn name(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Deliveries => "deliveries",
            Self::Turns => "turns",
        }
    }
}

/// Counts: (hour, metric, count).
pub(crate) type Counts = Vec<(i64, String, u64)>;

/// `CASE` over `expr` (microseconds) giving the label of its bucket: the first bound (in
/// `unit` microseconds) it does not exceed, or `-`.
fn bucket_case(expr: &str, bounds: &[u64], unit: u64) -> String {
    let mut sql = String::from("CASE");
    for bound in bounds {
        sql.push_str(&format!(" WHEN {expr} <= {} THEN '{bound}'", bound * unit));
    }
    sql.push_str(" ELSE '-' END");
    sql
}

/// The statement counting `family` in `[from, to)` by account, hour and metric (`m1`, `m2`),
/// with the values it takes.
fn source(family: Family, from: i64, to: i64, account: Option<&str>) -> (String, Vec<Value>) {
    let hour = |column: &str| format!("{column} - ({column} % {HOUR})");
    let only = |column: &str| account.map_or_else(String::new, |_| format!(" AND {column} = ?"));
    let range = |extra_to: i64| -> Vec<Value> {
        let mut values: Vec<Value> = vec![from.into(), (to + extra_to).into()];
        if let Some(account) = account {
            values.push(account.into());
        }
        values
    };
    match family {
        Family::Messages => {
            let sql = format!(
                "SELECT account, hour, m1, m2, count(*) AS n FROM (\
                   SELECT instagram_account_id AS account, {} AS hour, \
                     CASE WHEN direction = 'inbound' THEN 'in' ELSE 'out' END AS m1, kind AS m2 \
                   FROM messages WHERE timestamp >= ? AND timestamp < ?{} \
                   UNION ALL \
                   SELECT instagram_account_id, {}, 'comment', '' \
                   FROM inbound_events WHERE kind = 'comment' AND occurred_at >= ? AND occurred_at < ?{}\
                 ) t GROUP BY account, hour, m1, m2",
                hour("timestamp"),
                only("instagram_account_id"),
                hour("occurred_at"),
                only("instagram_account_id"),
            );
            let mut values = range(0);
            values.extend(range(0));
            (sql, values)
        }
        Family::Deliveries => {
            let jobs = format!(
                "FROM jobs j WHERE j.kind = 'crm_delivery' AND j.account_id IS NOT NULL \
                 AND j.created_at >= ? AND j.created_at < ?{}",
                only("j.account_id")
            );
            let latency = bucket_case(
                "(a.started_at + a.duration_ms * 1000) - j.created_at",
                &LATENCY_BOUNDS_MS,
                1000,
            );
            let sql = format!(
                "SELECT account, hour, m1, m2, count(*) AS n FROM (\
                   SELECT j.account_id AS account, {h} AS hour, 'status' AS m1, j.status AS m2 {jobs} \
                   UNION ALL \
                   SELECT j.account_id, {h}, 'first', '' {jobs} AND j.status = 'done' AND j.attempts = 1 \
                   UNION ALL \
                   SELECT j.account_id, {h}, 'latency', {latency} \
                   FROM delivery_attempts a, jobs j WHERE a.job_id = j.id AND a.outcome = 'delivered' \
                     AND j.kind = 'crm_delivery' AND j.account_id IS NOT NULL \
                     AND j.created_at >= ? AND j.created_at < ?{only}\
                 ) t GROUP BY account, hour, m1, m2",
                h = hour("j.created_at"),
                only = only("j.account_id"),
            );
            let mut values = range(0);
            values.extend(range(0));
            values.extend(range(0));
            (sql, values)
        }
        Family::Turns => {
            // A turn begins with a customer message whose previous message in the
            // conversation is the business's (or none); it is answered by the business's
            // next message. Each business message carries `timestamp * 4 + who` (1 an
            // auto-reply, 2 an API send, 3 a person), so the smallest of those after a turn's
            // first message is its answer and who wrote it: window functions over each
            // conversation, no join (a join of turns to answers was planned as a nested loop
            // on PostgreSQL). Answers up to a day after the range count.
            let within = bucket_case(
                "next_answer - (next_answer % 4) - timestamp * 4",
                &RESPONSE_BOUNDS_SECONDS,
                4_000_000,
            );
            let sql = format!(
                "WITH classified AS (\
                   SELECT instagram_account_id, conversation_id, direction, timestamp, id, \
                     CASE WHEN direction = 'outbound' THEN timestamp * 4 + \
                       CASE WHEN EXISTS (SELECT 1 FROM auto_replies r WHERE r.reply_message_id = messages.id) THEN 1 \
                            WHEN EXISTS (SELECT 1 FROM outbound_messages o WHERE o.id = messages.id) THEN 2 \
                            ELSE 3 END \
                     END AS answer_key \
                   FROM messages WHERE timestamp >= ? AND timestamp < ?{only}), \
                 flagged AS (\
                   SELECT instagram_account_id, direction, timestamp, \
                     LAG(direction) OVER (PARTITION BY conversation_id ORDER BY timestamp, id) AS previous, \
                     min(answer_key) OVER (PARTITION BY conversation_id ORDER BY timestamp, id \
                       ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS next_answer \
                   FROM classified), \
                 marked AS (\
                   SELECT instagram_account_id AS account, {h} AS hour, \
                     CASE WHEN next_answer IS NULL THEN 'none' \
                          WHEN next_answer % 4 = 1 THEN 'auto_reply' \
                          WHEN next_answer % 4 = 2 THEN 'api' ELSE 'human' END AS m1, \
                     CASE WHEN next_answer IS NULL THEN '' ELSE {within} END AS m2 \
                   FROM flagged WHERE direction = 'inbound' \
                     AND (previous IS NULL OR previous = 'outbound') \
                     AND timestamp >= ? AND timestamp < ?) \
                 SELECT account, hour, m1, m2, count(*) AS n FROM marked \
                 GROUP BY account, hour, m1, m2",
                only = only("instagram_account_id"),
                h = hour("timestamp"),
            );
            let mut values = range(86_400_000_000);
            values.extend([from.into(), to.into()]);
            (sql, values)
        }
    }
}

/// The metric of a row: `m1`, or `m1:m2`.
fn metric(m1: String, m2: &str) -> String {
    if m2.is_empty() {
        m1
    } else {
        format!("{m1}:{m2}")
    }
}

/// Counts of `family` in `[from, to)` from the stored rows: (account, hour, metric, count).
async fn live(
    db: &impl ConnectionTrait,
    family: Family,
    account: Option<&str>,
    from: i64,
    to: i64,
) -> Result<Vec<(String, i64, String, u64)>, RepoError> {
    let (sql, values) = source(family, from, to, account);
    let rows = db
        .query_all_raw(statement(db.get_database_backend(), &sql, values))
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            let m1: String = row.try_get("", "m1").map_err(unavailable)?;
            let m2: Option<String> = row.try_get("", "m2").map_err(unavailable)?;
            Ok((
                row.try_get("", "account").map_err(unavailable)?,
                int_at(row, 1).unwrap_or(0),
                metric(m1, m2.as_deref().unwrap_or_default()),
                u64::try_from(int_at(row, 4).unwrap_or(0)).unwrap_or(0),
            ))
        })
        .collect()
}

/// Counts of `family` in `[from, to)` from the rollup, summed over accounts.
async fn rolled(
    db: &DatabaseConnection,
    family: Family,
    account: Option<&str>,
    from: i64,
    to: i64,
) -> Result<Counts, RepoError> {
    let backend = db.get_database_backend();
    // `sum` of integers is a decimal on PostgreSQL and MySQL: cast it back.
    let total = match backend {
        sea_orm::DatabaseBackend::Postgres => "CAST(sum(value) AS BIGINT)",
        sea_orm::DatabaseBackend::MySql => "CAST(sum(value) AS SIGNED)",
        _ => "sum(value)",
    };
    let mut values: Vec<Value> = vec![family.name().into(), from.into(), to.into()];
    let mut filter = String::new();
    if let Some(account) = account {
        filter.push_str(" AND account = ?");
        values.push(account.into());
    }
    let rows = db
        .query_all_raw(statement(
            backend,
            &format!(
                "SELECT hour, metric, {total} AS n FROM analytics_hourly \
                 WHERE family = ? AND hour >= ? AND hour < ?{filter} GROUP BY hour, metric"
            ),
            values,
        ))
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok((
                int_at(row, 0).unwrap_or(0),
                row.try_get("", "metric").map_err(unavailable)?,
                u64::try_from(int_at(row, 2).unwrap_or(0)).unwrap_or(0),
            ))
        })
        .collect()
}

/// The hours the rollup holds, `[from, to)`.
async fn coverage(db: &impl ConnectionTrait) -> Result<Option<(i64, i64)>, RepoError> {
    let row = db
        .query_one_raw(statement(
            db.get_database_backend(),
            "SELECT covered_from, covered_to FROM analytics_rollup WHERE id = 1",
            vec![],
        ))
        .await
        .map_err(unavailable)?;
    Ok(row.and_then(|r| Some((int_at(&r, 0)?, int_at(&r, 1)?))))
}

/// Counts of `family` in `[from, to)` (whole hours), for `account` or all: from the rollup
/// where it covers the range, from the stored rows elsewhere.
pub(crate) async fn hourly(
    db: &DatabaseConnection,
    family: Family,
    account: Option<&str>,
    from: i64,
    to: i64,
) -> Result<Counts, RepoError> {
    let mut parts = vec![(from, to, false)];
    if let Some((covered_from, covered_to)) = coverage(db).await? {
        let (start, end) = (from.max(covered_from), to.min(covered_to));
        if start < end {
            parts = vec![(from, start, false), (start, end, true), (end, to, false)];
        }
    }
    let covered_from = parts.get(1).map(|(start, _, _)| *start);
    let mut counts = Counts::new();
    for (start, end, from_rollup) in parts.into_iter().filter(|(s, e, _)| s < e) {
        // Before the rollup there are rows only when they came late: look before counting
        // (counting turns reads a day past the part's end).
        if !from_rollup && Some(end) == covered_from && !any_rows(db, family, start, end).await? {
            continue;
        }
        if from_rollup {
            counts.extend(rolled(db, family, account, start, end).await?);
        } else {
            counts.extend(
                live(db, family, account, start, end)
                    .await?
                    .into_iter()
                    .map(|(_, hour, metric, n)| (hour, metric, n)),
            );
        }
    }
    Ok(counts)
}

/// Whether `family` has any row in `[from, to)`.
async fn any_rows(
    db: &DatabaseConnection,
    family: Family,
    from: i64,
    to: i64,
) -> Result<bool, RepoError> {
    let (sql, values): (&str, Vec<Value>) = match family {
        Family::Messages | Family::Turns => (
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM messages WHERE timestamp >= ? AND timestamp < ?) \
               OR EXISTS (SELECT 1 FROM inbound_events WHERE kind = 'comment' \
                 AND occurred_at >= ? AND occurred_at < ?) THEN 1 ELSE 0 END",
            vec![from.into(), to.into(), from.into(), to.into()],
        ),
        Family::Deliveries => (
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM jobs WHERE kind = 'crm_delivery' \
               AND created_at >= ? AND created_at < ?) THEN 1 ELSE 0 END",
            vec![from.into(), to.into()],
        ),
    };
    let row = db
        .query_one_raw(statement(db.get_database_backend(), sql, values))
        .await
        .map_err(unavailable)?;
    Ok(row.and_then(|r| int_at(&r, 0)) == Some(1))
}

/// The earliest hour any family has rows in, if any.
async fn earliest(db: &DatabaseConnection) -> Result<Option<i64>, RepoError> {
    let row = db
        .query_one_raw(statement(
            db.get_database_backend(),
            "SELECT (SELECT min(timestamp) FROM messages), \
                    (SELECT min(created_at) FROM jobs WHERE kind = 'crm_delivery'), \
                    (SELECT min(occurred_at) FROM inbound_events WHERE kind = 'comment')",
            vec![],
        ))
        .await
        .map_err(unavailable)?;
    Ok(row.and_then(|r| (0..3).filter_map(|i| int_at(&r, i)).min()))
}

/// One pass: see the module's comment.
pub(crate) async fn refresh(
    db: &DatabaseConnection,
    now: i64,
    recent_hours: u32,
) -> Result<RollupReport, RepoError> {
    let backend = db.get_database_backend();
    let claimed = db
        .execute_raw(statement(
            backend,
            "UPDATE analytics_rollup SET lease_until = ? \
             WHERE id = 1 AND (lease_until IS NULL OR lease_until < ?)",
            vec![(now + LEASE).into(), now.into()],
        ))
        .await
        .map_err(unavailable)?;
    if claimed.rows_affected() == 0 {
        return Ok(RollupReport {
            busy: true,
            ..RollupReport::default()
        });
    }
    let result = rebuild(db, now, recent_hours).await;
    db.execute_raw(statement(
        backend,
        "UPDATE analytics_rollup SET lease_until = NULL WHERE id = 1",
        vec![],
    ))
    .await
    .map_err(unavailable)?;
    result
}

async fn rebuild(
    db: &DatabaseConnection,
    now: i64,
    recent_hours: u32,
) -> Result<RollupReport, RepoError> {
    let backend = db.get_database_backend();
    let until = now - now.rem_euclid(HOUR);
    let recent = until - i64::from(recent_hours) * HOUR;
    let (mut covered_from, covered_to) = match coverage(db).await? {
        Some(covered) => covered,
        None => {
            let first = earliest(db)
                .await?
                .map_or(until, |t| t - t.rem_euclid(HOUR));
            (first.min(until), first.min(until))
        }
    };
    // Every hour since the last pass, and the recent ones before it.
    let start = covered_to.min(recent.max(covered_from));
    covered_from = covered_from.min(start);
    let mut report = RollupReport::default();
    let mut at = start;
    while at < until {
        let end = (at + CHUNK_HOURS * HOUR).min(until);
        // Counted before the write transaction, so writers wait only for the writes (on
        // SQLite there is one writer at a time); what lands in between is counted at the
        // next pass.
        let mut counted = Vec::with_capacity(Family::ALL.len());
        for family in Family::ALL {
            counted.push((family, live(db, family, None, at, end).await?));
        }
        let txn = db.begin().await.map_err(unavailable)?;
        txn.execute_raw(statement(
            backend,
            "DELETE FROM analytics_hourly WHERE hour >= ? AND hour < ?",
            vec![at.into(), end.into()],
        ))
        .await
        .map_err(unavailable)?;
        for (family, rows) in counted {
            report.rows += rows.len() as u64;
            for chunk in rows.chunks(200) {
                let marks = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
                for (account, hour, metric, n) in chunk {
                    values.extend([
                        family.name().into(),
                        account.as_str().into(),
                        (*hour).into(),
                        metric.as_str().into(),
                        i64::try_from(*n).unwrap_or(i64::MAX).into(),
                    ]);
                }
                txn.execute_raw(statement(
                    backend,
                    &format!(
                        "INSERT INTO analytics_hourly (family, account, hour, metric, value) VALUES {marks}"
                    ),
                    values,
                ))
                .await
                .map_err(unavailable)?;
            }
        }
        txn.execute_raw(statement(
            backend,
            "UPDATE analytics_rollup SET covered_from = ?, covered_to = ? WHERE id = 1",
            vec![covered_from.into(), end.max(covered_to).into()],
        ))
        .await
        .map_err(unavailable)?;
        txn.commit().await.map_err(unavailable)?;
        report.hours += u64::try_from((end - at) / HOUR).unwrap_or(0);
        at = end;
    }
    if start >= until {
        // Nothing to rebuild, but the coverage is known from now on.
        db.execute_raw(statement(
            backend,
            "UPDATE analytics_rollup SET covered_from = ?, covered_to = ? WHERE id = 1",
            vec![covered_from.into(), covered_to.into()],
        ))
        .await
        .map_err(unavailable)?;
    }
    Ok(report)
}
