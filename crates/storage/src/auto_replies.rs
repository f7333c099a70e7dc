//! [`AutoReplyStore`] on sea-orm: the `auto_replies` table, read together with `messages`.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::rules::ConversationFacts;
use insta_router_domain::{Direction, Message, MessageId, RuleId};
use insta_router_ports::{AutoReplyStore, MessageRepository, ReplyClaim, RepoError};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, Value};

use crate::SeaMessageRepository;
use crate::error::{map_err, unavailable};
use crate::time::{from_micros, to_micros};

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// Auto-replies in the `auto_replies` table.
#[derive(Debug, Clone)]
pub struct SeaAutoReplyStore {
    db: DatabaseConnection,
}

impl SeaAutoReplyStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        crate::sql::statement(self.db.get_database_backend(), sql, values)
    }

    async fn scalar(&self, sql: &str, values: Vec<Value>) -> Result<Option<i64>, RepoError> {
        let row = self
            .db
            .query_one_raw(self.statement(sql, values))
            .await
            .map_err(unavailable)?;
        Ok(row.and_then(|r| crate::sql::int_at(&r, 0)))
    }
}

#[async_trait]
impl AutoReplyStore for SeaAutoReplyStore {
    async fn facts(
        &self,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Result<ConversationFacts, RepoError> {
        let conversation = message.conversation_id.as_str();
        let earlier = self
            .scalar(
                "SELECT count(*) FROM messages WHERE conversation_id = ? AND id <> ? AND timestamp <= ?",
                vec![
                    conversation.into(),
                    message.id.as_str().into(),
                    to_micros(message.sent_at).into(),
                ],
            )
            .await?
            .unwrap_or(0);
        let human = self
            .scalar(
                "SELECT max(m.timestamp) FROM messages m WHERE m.conversation_id = ? AND m.direction = ? \
                 AND NOT EXISTS (SELECT 1 FROM auto_replies a WHERE a.conversation_id = m.conversation_id \
                 AND (a.reply_message_id = m.id OR a.mid = m.mid))",
                vec![conversation.into(), Direction::Outbound.as_str().into()],
            )
            .await?
            .map(from_micros)
            .transpose()?;
        let hour_ago = now - TimeDelta::hours(1);
        let recent = self
            .scalar(
                "SELECT count(*) FROM auto_replies WHERE conversation_id = ? AND created_at > ? AND status <> 'failed'",
                vec![conversation.into(), to_micros(hour_ago).into()],
            )
            .await?
            .unwrap_or(0);
        let rows = self
            .db
            .query_all_raw(self.statement(
                "SELECT rule_id, max(created_at) FROM auto_replies WHERE conversation_id = ? AND status <> 'failed' GROUP BY rule_id",
                vec![conversation.into()],
            ))
            .await
            .map_err(unavailable)?;
        let mut last_fired = HashMap::new();
        for row in rows {
            let rule: String = row.try_get_by_index(0).map_err(unavailable)?;
            let at: i64 = row.try_get_by_index(1).map_err(unavailable)?;
            let rule = RuleId::parse("rule_id", &rule)
                .map_err(|e| RepoError::Corrupt(format!("auto reply: {e}")))?;
            last_fired.insert(rule, from_micros(at)?);
        }
        Ok(ConversationFacts {
            first_message: earlier == 0,
            last_human_reply_at: human,
            auto_replies_last_hour: u32::try_from(recent).unwrap_or(u32::MAX),
            last_fired,
        })
    }

    async fn begin(&self, claim: &ReplyClaim) -> Result<bool, RepoError> {
        let mut insert = Query::insert();
        insert
            .into_table(col("auto_replies"))
            .columns(
                [
                    "trigger_message_id",
                    "conversation_id",
                    "rule_id",
                    "status",
                    "created_at",
                ]
                .map(col),
            )
            .values([
                claim.trigger.as_str().into(),
                claim.conversation.as_str().into(),
                claim.rule.as_str().into(),
                "pending".into(),
                to_micros(claim.at).into(),
            ])
            .map_err(|e| RepoError::Corrupt(format!("auto reply row: {e}")))?;
        let backend = self.db.get_database_backend();
        if backend == sea_orm::DatabaseBackend::MySql {
            // No `ON CONFLICT DO NOTHING` there, and `ON DUPLICATE KEY` counts a found row as
            // changed: a duplicate-key error is the answer.
            return match self
                .db
                .execute_raw(backend.build(&insert))
                .await
                .map_err(map_err("trigger_message_id"))
            {
                Ok(_) => Ok(true),
                Err(RepoError::Conflict { .. }) => Ok(false),
                Err(other) => Err(other),
            };
        }
        insert.on_conflict(
            OnConflict::column(col("trigger_message_id"))
                .do_nothing()
                .to_owned(),
        );
        let result = self
            .db
            .execute_raw(backend.build(&insert))
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn sent(&self, trigger: &MessageId, reply: &Message) -> Result<(), RepoError> {
        // Its echo may have been stored first, under the same mid: then that row stands.
        SeaMessageRepository::new(self.db.clone())
            .insert_if_absent(reply)
            .await?;
        let mut update = Query::update();
        update
            .table(col("auto_replies"))
            .value(col("status"), "sent")
            .value(col("reply_message_id"), reply.id.as_str())
            .value(
                col("mid"),
                reply.mid.as_ref().map(|m| m.as_str().to_owned()),
            )
            .and_where(Expr::col(col("trigger_message_id")).eq(trigger.as_str()));
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn settle(
        &self,
        trigger: &MessageId,
        status: &str,
        error: &str,
    ) -> Result<(), RepoError> {
        let mut update = Query::update();
        update
            .table(col("auto_replies"))
            .value(col("status"), status)
            .value(col("error"), error)
            .and_where(Expr::col(col("trigger_message_id")).eq(trigger.as_str()));
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn abandon(&self, trigger: &MessageId) -> Result<(), RepoError> {
        let mut delete = Query::delete();
        delete
            .from_table(col("auto_replies"))
            .and_where(Expr::col(col("trigger_message_id")).eq(trigger.as_str()))
            .and_where(Expr::col(col("status")).eq("pending"));
        self.db
            .execute_raw(self.db.get_database_backend().build(&delete))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn count_evaluation(
        &self,
        account: &insta_router_domain::AccountId,
        at: DateTime<Utc>,
        outcome: &str,
    ) -> Result<(), RepoError> {
        let micros = to_micros(at);
        let hour = micros - micros.rem_euclid(3_600_000_000);
        let mut insert = Query::insert();
        insert
            .into_table(col("rule_evaluations"))
            .columns([
                col("account_id"),
                col("hour"),
                col("outcome"),
                col("evaluations"),
            ])
            .values([
                account.as_str().into(),
                hour.into(),
                outcome.into(),
                1_i64.into(),
            ])
            .map_err(|e| RepoError::Corrupt(format!("rule evaluation: {e}")))?
            .on_conflict(
                OnConflict::columns([col("account_id"), col("hour"), col("outcome")])
                    .value(
                        col("evaluations"),
                        Expr::col((col("rule_evaluations"), col("evaluations"))).add(1),
                    )
                    .to_owned(),
            );
        crate::error::retry_deadlocks(|| async {
            self.db
                .execute_raw(self.db.get_database_backend().build(&insert))
                .await
                .map(drop)
                .map_err(unavailable)
        })
        .await
    }
}
