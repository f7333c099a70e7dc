//! [`ApiKeyStore`] on sea-orm: the `api_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, ApiKey, ApiKeyId, KeyName, KeyScope};
use insta_router_ports::{ApiKeyStore, RepoError};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult};

use crate::error::{map_err, unavailable};
use crate::sql::{MAX_PARAMS, insert_into};
use crate::time::{from_micros, to_micros};

/// The `api_keys` table.
#[derive(Debug, Clone)]
pub struct SeaApiKeyStore {
    db: DatabaseConnection,
}

impl SeaApiKeyStore {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn select() -> SelectStatement {
        Query::select()
            .columns(
                [
                    "id",
                    "name",
                    "scope",
                    "account_id",
                    "created_at",
                    "last_used_at",
                    "revoked_at",
                ]
                .map(Alias::new),
            )
            .from(Alias::new("api_keys"))
            .to_owned()
    }

    async fn rows(&self, select: &SelectStatement) -> Result<Vec<QueryResult>, RepoError> {
        self.db
            .query_all_raw(self.db.get_database_backend().build(select))
            .await
            .map_err(unavailable)
    }

    async fn one(&self, select: &SelectStatement) -> Result<Option<ApiKey>, RepoError> {
        let row = self
            .db
            .query_one_raw(self.db.get_database_backend().build(select))
            .await
            .map_err(unavailable)?;
        row.as_ref().map(key_from_row).transpose()
    }
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

fn key_from_row(row: &QueryResult) -> Result<ApiKey, RepoError> {
    let corrupt = |e: insta_router_domain::FieldError| RepoError::Corrupt(format!("api key: {e}"));
    let get = |c: &str| row.try_get::<String>("", c).map_err(unavailable);
    let time = |c: &str| -> Result<Option<DateTime<Utc>>, RepoError> {
        row.try_get::<Option<i64>>("", c)
            .map_err(unavailable)?
            .map(from_micros)
            .transpose()
    };
    let scope = match get("scope")?.as_str() {
        "admin" => KeyScope::Admin,
        "account" => {
            let account: Option<String> = row.try_get("", "account_id").map_err(unavailable)?;
            KeyScope::Account(
                AccountId::parse("account_id", account.as_deref().unwrap_or_default())
                    .map_err(corrupt)?,
            )
        }
        other => return Err(RepoError::Corrupt(format!("api key scope {other:?}"))),
    };
    let name: Option<String> = row.try_get("", "name").map_err(unavailable)?;
    Ok(ApiKey {
        id: ApiKeyId::parse("id", &get("id")?).map_err(corrupt)?,
        name: name
            .as_deref()
            .map(KeyName::parse)
            .transpose()
            .map_err(corrupt)?,
        scope,
        created_at: time("created_at")?
            .ok_or_else(|| RepoError::Corrupt("api key without created_at".to_owned()))?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
    })
}

#[async_trait]
impl ApiKeyStore for SeaApiKeyStore {
    async fn insert(&self, key: &ApiKey, hash: &str) -> Result<(), RepoError> {
        let (scope, account) = match &key.scope {
            KeyScope::Admin => ("admin", None),
            KeyScope::Account(account) => ("account", Some(account.as_str().to_owned())),
        };
        let insert = insert_into(
            "api_keys",
            &[
                "id",
                "name",
                "scope",
                "account_id",
                "key_hash",
                "created_at",
                "last_used_at",
                "revoked_at",
            ],
            vec![vec![
                key.id.as_str().into(),
                key.name.as_ref().map(|n| n.as_str().to_owned()).into(),
                scope.into(),
                account.into(),
                hash.into(),
                to_micros(key.created_at).into(),
                key.last_used_at.map(to_micros).into(),
                key.revoked_at.map(to_micros).into(),
            ]],
        )?;
        self.db
            .execute_raw(self.db.get_database_backend().build(&insert))
            .await
            .map_err(map_err("key"))?;
        Ok(())
    }

    async fn find_by_hashes(&self, hashes: &[String]) -> Result<Vec<(String, ApiKey)>, RepoError> {
        let mut found = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(MAX_PARAMS) {
            let select = Self::select()
                .column(col("key_hash"))
                .and_where(Expr::col(col("key_hash")).is_in(chunk.iter().map(String::as_str)))
                .to_owned();
            for row in &self.rows(&select).await? {
                let hash = row.try_get::<String>("", "key_hash").map_err(unavailable)?;
                found.push((hash, key_from_row(row)?));
            }
        }
        Ok(found)
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, RepoError> {
        self.one(
            &Self::select()
                .and_where(Expr::col(col("id")).eq(id.as_str()))
                .to_owned(),
        )
        .await
    }

    async fn list(&self) -> Result<Vec<ApiKey>, RepoError> {
        let select = Self::select()
            .order_by(col("created_at"), Order::Asc)
            .order_by(col("id"), Order::Asc)
            .to_owned();
        self.rows(&select).await?.iter().map(key_from_row).collect()
    }

    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, RepoError> {
        let update = Query::update()
            .table(col("api_keys"))
            .value(col("revoked_at"), to_micros(at))
            .and_where(Expr::col(col("id")).eq(id.as_str()))
            .and_where(Expr::col(col("revoked_at")).is_null())
            .to_owned();
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(self.get(id).await?.is_some())
    }

    async fn revoke_account_keys(
        &self,
        account: &AccountId,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let update = Query::update()
            .table(col("api_keys"))
            .value(col("revoked_at"), to_micros(at))
            .and_where(Expr::col(col("account_id")).eq(account.as_str()))
            .and_where(Expr::col(col("revoked_at")).is_null())
            .to_owned();
        let result = self
            .db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected())
    }

    async fn touch(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        let update = Query::update()
            .table(col("api_keys"))
            .value(col("last_used_at"), to_micros(at))
            .and_where(Expr::col(col("id")).eq(id.as_str()))
            .to_owned();
        self.db
            .execute_raw(self.db.get_database_backend().build(&update))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn count(&self) -> Result<u64, RepoError> {
        let select = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from(col("api_keys"))
            .to_owned();
        let row = self
            .db
            .query_one_raw(self.db.get_database_backend().build(&select))
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RepoError::Corrupt("COUNT(*) returned no row".to_owned()))?;
        let n: i64 = row.try_get_by_index(0).map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}
