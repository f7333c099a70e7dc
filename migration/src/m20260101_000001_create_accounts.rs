//! `accounts`: the original service's table, with `updated_at` added and the CRM URL and
//! secret optional (an account may be connected before its CRM is).

use sea_orm_migration::prelude::*;

use crate::{ID_LEN, META_ID_LEN};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(
                        ColumnDef::new(Accounts::Id)
                            .string_len(ID_LEN)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Accounts::InstagramAccountId)
                            .string_len(META_ID_LEN)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Accounts::Username).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Accounts::AccessTokenEncrypted)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Accounts::CrmWebhookUrl).text().null())
                    .col(ColumnDef::new(Accounts::WebhookSecret).text().null())
                    .col(ColumnDef::new(Accounts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Accounts::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_accounts_instagram_account_id")
                    .table(Accounts::Table)
                    .col(Accounts::InstagramAccountId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    InstagramAccountId,
    Username,
    AccessTokenEncrypted,
    CrmWebhookUrl,
    WebhookSecret,
    CreatedAt,
    UpdatedAt,
}
