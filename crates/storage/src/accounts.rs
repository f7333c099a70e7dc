//! [`AccountRepository`] on sea-orm.

use async_trait::async_trait;
use insta_router_domain::{
    Account, AccountId, CrmDeliveryState, CrmWebhookUrl, InstagramAccountId, SealedSecret,
    TokenFailure, TokenLife, Username,
};
use insta_router_ports::{AccountRepository, Page, PageRequest, RepoError};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::accounts::{ActiveModel, Column, Entity, Model};
use crate::error::{map_err, unavailable};
use crate::page::into_page;
use crate::sql::MAX_PARAMS;
use crate::time::{from_micros, to_micros};

const UNIQUE_FIELD: &str = "instagram_account_id";

/// Accounts in the `accounts` table.
#[derive(Debug, Clone)]
pub struct SeaAccountRepository {
    db: DatabaseConnection,
}

impl SeaAccountRepository {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl AccountRepository for SeaAccountRepository {
    #[tracing::instrument(skip_all, fields(account_id = %account.id))]
    async fn insert(&self, account: &Account) -> Result<(), RepoError> {
        Entity::insert(to_active(account))
            .exec_without_returning(&self.db)
            .await
            .map_err(map_err(UNIQUE_FIELD))?;
        Ok(())
    }

    async fn get(&self, id: &AccountId) -> Result<Option<Account>, RepoError> {
        let row = Entity::find_by_id(id.as_str().to_owned())
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(from_model).transpose()
    }

    async fn existing(&self, ids: &[AccountId]) -> Result<Vec<AccountId>, RepoError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PARAMS) {
            let rows: Vec<String> = Entity::find()
                .select_only()
                .column(Column::Id)
                .filter(Column::Id.is_in(chunk.iter().map(|id| id.as_str().to_owned())))
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(unavailable)?;
            for id in rows {
                let parsed = AccountId::parse("id", &id)
                    .map_err(|e| RepoError::Corrupt(format!("account {id}: {e}")))?;
                found.push(parsed);
            }
        }
        Ok(found)
    }

    async fn find_by_instagram_id(
        &self,
        instagram_account_id: &InstagramAccountId,
    ) -> Result<Option<Account>, RepoError> {
        let row = Entity::find()
            .filter(Column::InstagramAccountId.eq(instagram_account_id.as_str()))
            .one(&self.db)
            .await
            .map_err(unavailable)?;
        row.map(from_model).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<Page<Account>, RepoError> {
        let limit = page.effective_limit();
        let mut query = Entity::find()
            .order_by_asc(Column::Id)
            .limit(u64::from(limit) + 1);
        if let Some(after) = &page.after {
            // The cursor is the last account id of the previous page.
            let after = AccountId::parse("cursor", after).map_err(|_| RepoError::InvalidCursor)?;
            query = query.filter(Column::Id.gt(after.as_str()));
        }
        let rows = query.all(&self.db).await.map_err(unavailable)?;
        into_page(rows, limit, |r| r.id.clone(), from_model)
    }

    #[tracing::instrument(skip_all, fields(account_id = %account.id))]
    async fn update(&self, account: &Account) -> Result<bool, RepoError> {
        let mut active = to_active(account);
        active.created_at = sea_orm::ActiveValue::NotSet;
        let result = Entity::update_many()
            .set(active)
            .filter(Column::Id.eq(account.id.as_str()))
            .exec(&self.db)
            .await
            .map_err(map_err(UNIQUE_FIELD))?;
        Ok(result.rows_affected > 0)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    async fn delete(&self, id: &AccountId) -> Result<bool, RepoError> {
        let result = Entity::delete_by_id(id.as_str().to_owned())
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected > 0)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    async fn mark_token_failure(
        &self,
        id: &AccountId,
        failure: &TokenFailure,
    ) -> Result<bool, RepoError> {
        // Only the first refusal marks it: the caller tells the CRM once.
        let result = Entity::update_many()
            .set(ActiveModel {
                token_invalid_at: Set(Some(to_micros(failure.at))),
                token_error: Set(Some(failure.message.clone())),
                ..Default::default()
            })
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::TokenInvalidAt.is_null())
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected > 0)
    }

    #[tracing::instrument(skip_all, fields(account_id = %id))]
    async fn replace_token(
        &self,
        id: &AccountId,
        old: &SealedSecret,
        new: &SealedSecret,
        life: TokenLife,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, RepoError> {
        let result = Entity::update_many()
            .set(ActiveModel {
                access_token_encrypted: Set(new.as_str().to_owned()),
                token_set_at: Set(life.set_at.map(to_micros)),
                token_expires_at: Set(life.expires_at.map(to_micros)),
                updated_at: Set(to_micros(now)),
                ..Default::default()
            })
            .filter(Column::Id.eq(id.as_str()))
            .filter(Column::AccessTokenEncrypted.eq(old.as_str()))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(result.rows_affected > 0)
    }
}

fn to_active(account: &Account) -> ActiveModel {
    ActiveModel {
        id: Set(account.id.as_str().to_owned()),
        instagram_account_id: Set(account.instagram_account_id.as_str().to_owned()),
        username: Set(account.username.as_str().to_owned()),
        access_token_encrypted: Set(account.access_token.as_str().to_owned()),
        crm_webhook_url: Set(account
            .crm_webhook_url
            .as_ref()
            .map(|u| u.as_str().to_owned())),
        webhook_secret: Set(account
            .webhook_secret
            .as_ref()
            .map(|s| s.as_str().to_owned())),
        crm_disabled_at: Set(account.delivery.disabled_at.map(to_micros)),
        previous_webhook_secret: Set(account
            .delivery
            .previous_secret
            .as_ref()
            .map(|s| s.as_str().to_owned())),
        previous_secret_until: Set(account.delivery.previous_secret_until.map(to_micros)),
        token_invalid_at: Set(account.token_failure.as_ref().map(|f| to_micros(f.at))),
        token_error: Set(account.token_failure.as_ref().map(|f| f.message.clone())),
        token_set_at: Set(account.token_life.set_at.map(to_micros)),
        token_expires_at: Set(account.token_life.expires_at.map(to_micros)),
        created_at: Set(to_micros(account.created_at)),
        updated_at: Set(to_micros(account.updated_at)),
    }
}

fn from_model(row: Model) -> Result<Account, RepoError> {
    let corrupt =
        |e: insta_router_domain::FieldError| RepoError::Corrupt(format!("account {}: {e}", row.id));
    Ok(Account {
        id: AccountId::parse("id", &row.id).map_err(corrupt)?,
        instagram_account_id: InstagramAccountId::parse(
            "instagram_account_id",
            &row.instagram_account_id,
        )
        .map_err(corrupt)?,
        username: Username::parse(&row.username).map_err(corrupt)?,
        crm_webhook_url: row
            .crm_webhook_url
            .as_deref()
            .map(CrmWebhookUrl::parse)
            .transpose()
            .map_err(corrupt)?,
        access_token: SealedSecret::new(row.access_token_encrypted.clone()),
        webhook_secret: row.webhook_secret.clone().map(SealedSecret::new),
        delivery: CrmDeliveryState {
            disabled_at: row.crm_disabled_at.map(from_micros).transpose()?,
            previous_secret: row.previous_webhook_secret.clone().map(SealedSecret::new),
            previous_secret_until: row.previous_secret_until.map(from_micros).transpose()?,
        },
        token_failure: match (row.token_invalid_at, &row.token_error) {
            (Some(at), message) => Some(TokenFailure {
                at: from_micros(at)?,
                message: message.clone().unwrap_or_default(),
            }),
            (None, _) => None,
        },
        token_life: TokenLife {
            set_at: row.token_set_at.map(from_micros).transpose()?,
            expires_at: row.token_expires_at.map(from_micros).transpose()?,
        },
        created_at: from_micros(row.created_at)?,
        updated_at: from_micros(row.updated_at)?,
    })
}
