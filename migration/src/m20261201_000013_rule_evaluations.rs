//! `rule_evaluations`: how each inbound message's or comment's evaluation against its
//! account's rules ended (`fired`, `no_rule_matched`, or the safety limit that stopped every
//! rule), counted per account, hour and outcome, for analytics.

use sea_orm_migration::prelude::*;

use crate::ID_LEN;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RuleEvaluations::Table)
                    .col(
                        ColumnDef::new(RuleEvaluations::AccountId)
                            .string_len(ID_LEN)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuleEvaluations::Hour)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuleEvaluations::Outcome)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RuleEvaluations::Evaluations)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RuleEvaluations::AccountId)
                            .col(RuleEvaluations::Hour)
                            .col(RuleEvaluations::Outcome),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RuleEvaluations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RuleEvaluations {
    Table,
    AccountId,
    Hour,
    Outcome,
    Evaluations,
}
