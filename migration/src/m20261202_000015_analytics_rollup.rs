//! `analytics_hourly`: counts per family (`messages`, `deliveries`, `turns`), account, hour
//! and metric, rebuilt from the stored rows by the rollup (the recent hours every few
//! minutes), so analytics over a month read thousands of rows instead of millions; and
//! `analytics_rollup`, its one row: the hours it covers and the lease of the instance
//! rebuilding it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AnalyticsHourly::Table)
                    .col(
                        ColumnDef::new(AnalyticsHourly::Family)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsHourly::Account)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsHourly::Hour)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsHourly::Metric)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsHourly::Value)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(AnalyticsHourly::Family)
                            .col(AnalyticsHourly::Hour)
                            .col(AnalyticsHourly::Account)
                            .col(AnalyticsHourly::Metric),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AnalyticsRollup::Table)
                    .col(
                        ColumnDef::new(AnalyticsRollup::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsRollup::CoveredFrom)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsRollup::CoveredTo)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AnalyticsRollup::LeaseUntil)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AnalyticsRollup::Table)
                    .columns([AnalyticsRollup::Id])
                    .values_panic([1.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AnalyticsRollup::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AnalyticsHourly::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AnalyticsHourly {
    Table,
    Family,
    Account,
    Hour,
    Metric,
    Value,
}

#[derive(DeriveIden)]
enum AnalyticsRollup {
    Table,
    Id,
    CoveredFrom,
    CoveredTo,
    LeaseUntil,
}
