//! [`RuleRepository`] on sea-orm.

use async_trait::async_trait;
use insta_router_domain::{AccountId, RuleId};
use insta_router_ports::{RepoError, RuleRepository, StoredRule};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult};

use crate::error::unavailable;
use crate::time::{from_micros, to_micros};

const COLUMNS: [&str; 7] = [
    "id",
    "account_id",
    "priority",
    "enabled",
    "definition",
    "created_at",
    "updated_at",
];

fn col(name: &str) -> Alias {
    Alias::new(name)
}

/// Rules in the `rules` table.
#[derive(Debug, Clone)]
pub struct SeaRuleRepository {
    db: DatabaseConnection,
}

impl SeaRuleRepository {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn select(&self) -> SelectStatement {
        let mut select = Query::select();
        select.columns(COLUMNS.map(col)).from(col("rules"));
        select
    }

    async fn query(&self, select: &SelectStatement) -> Result<Vec<StoredRule>, RepoError> {
        let statement = self.db.get_database_backend().build(select);
        self.db
            .query_all_raw(statement)
            .await
            .map_err(unavailable)?
            .iter()
            .map(rule_from_row)
            .collect()
    }
}

fn rule_from_row(row: &QueryResult) -> Result<StoredRule, RepoError> {
    let text = |c: &str| row.try_get::<String>("", c).map_err(unavailable);
    let id = text("id")?;
    let corrupt =
        |e: insta_router_domain::FieldError| RepoError::Corrupt(format!("rule {id}: {e}"));
    Ok(StoredRule {
        id: RuleId::parse("id", &id).map_err(corrupt)?,
        account_id: AccountId::parse("account_id", &text("account_id")?).map_err(corrupt)?,
        priority: row.try_get("", "priority").map_err(unavailable)?,
        enabled: row.try_get("", "enabled").map_err(unavailable)?,
        definition: text("definition")?,
        created_at: from_micros(row.try_get("", "created_at").map_err(unavailable)?)?,
        updated_at: from_micros(row.try_get("", "updated_at").map_err(unavailable)?)?,
    })
}

#[async_trait]
impl RuleRepository for SeaRuleRepository {
    async fn insert(&self, rule: &StoredRule) -> Result<(), RepoError> {
        let mut insert = Query::insert();
        insert
            .into_table(col("rules"))
            .columns(COLUMNS.map(col))
            .values([
                rule.id.as_str().into(),
                rule.account_id.as_str().into(),
                rule.priority.into(),
                rule.enabled.into(),
                rule.definition.as_str().into(),
                to_micros(rule.created_at).into(),
                to_micros(rule.updated_at).into(),
            ])
            .map_err(|e| RepoError::Corrupt(format!("rule row: {e}")))?;
        let statement = self.db.get_database_backend().build(&insert);
        self.db.execute_raw(statement).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &RuleId) -> Result<Option<StoredRule>, RepoError> {
        let mut select = self.select();
        select.and_where(Expr::col(col("id")).eq(id.as_str()));
        Ok(self.query(&select).await?.pop())
    }

    async fn list_by_account(&self, account: &AccountId) -> Result<Vec<StoredRule>, RepoError> {
        let mut select = self.select();
        select
            .and_where(Expr::col(col("account_id")).eq(account.as_str()))
            .order_by(col("created_at"), Order::Asc)
            .order_by(col("id"), Order::Asc);
        self.query(&select).await
    }

    async fn update(&self, rule: &StoredRule) -> Result<bool, RepoError> {
        let mut update = Query::update();
        update
            .table(col("rules"))
            .value(col("priority"), rule.priority)
            .value(col("enabled"), rule.enabled)
            .value(col("definition"), rule.definition.as_str())
            .value(col("updated_at"), to_micros(rule.updated_at))
            .and_where(Expr::col(col("id")).eq(rule.id.as_str()));
        let statement = self.db.get_database_backend().build(&update);
        let result = self.db.execute_raw(statement).await.map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete(&self, id: &RuleId) -> Result<bool, RepoError> {
        let mut delete = Query::delete();
        delete
            .from_table(col("rules"))
            .and_where(Expr::col(col("id")).eq(id.as_str()));
        let statement = self.db.get_database_backend().build(&delete);
        let result = self.db.execute_raw(statement).await.map_err(unavailable)?;
        Ok(result.rows_affected() == 1)
    }
}
