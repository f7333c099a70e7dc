//! Migrations round-trip on every backend.

use crate::migrated;

const TABLES: [&str; 7] = [
    "accounts",
    "conversations",
    "messages",
    "outbound_messages",
    "delivery_attempts",
    "rules",
    "auto_replies",
];

#[tokio::test]
async fn migrations_go_down_to_zero_and_up_again() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let status = db.migration_status().await.unwrap();
        assert!(
            status.iter().all(|(_, applied)| *applied),
            "{backend:?}: {status:?}"
        );
        let tables = db.table_names().await.unwrap();
        for table in TABLES {
            assert!(
                tables.iter().any(|t| t == table),
                "{backend:?} lacks {table}: {tables:?}"
            );
        }

        db.migrate_down(None).await.expect("down to zero");
        let status = db.migration_status().await.unwrap();
        assert!(
            status.iter().all(|(_, applied)| !*applied),
            "{backend:?}: {status:?}"
        );
        let tables = db.table_names().await.unwrap();
        for table in TABLES {
            assert!(
                !tables.iter().any(|t| t == table),
                "{backend:?} kept {table}: {tables:?}"
            );
        }

        db.migrate_up().await.expect("up again");
        db.migrate_down(Some(1)).await.expect("one step down");
        let status = db.migration_status().await.unwrap();
        let applied = status.iter().filter(|(_, applied)| *applied).count();
        assert_eq!(applied, status.len() - 1, "{backend:?}");
        db.migrate_up().await.expect("up again");
        assert_eq!(
            db.table_names()
                .await
                .unwrap()
                .iter()
                .filter(|t| TABLES.contains(&t.as_str()))
                .count(),
            TABLES.len()
        );
    }
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    for test_db in insta_router_storage::testing::all().await {
        let backend = test_db.backend();
        let mut instances = Vec::new();
        for _ in 0..4 {
            instances.push(test_db.connect().await);
        }
        let [a, b, c, d] = &instances[..] else {
            unreachable!()
        };
        let results = tokio::join!(
            a.migrate_up(),
            b.migrate_up(),
            c.migrate_up(),
            d.migrate_up()
        );
        for result in [results.0, results.1, results.2, results.3] {
            result.unwrap_or_else(|e| panic!("{backend:?}: {e:?}"));
        }
        let db = &instances[0];
        assert!(db.schema_state().await.unwrap().is_current(), "{backend:?}");
        let known = db.migration_status().await.unwrap().len();
        assert_eq!(
            db.row_count("seaql_migrations").await.unwrap(),
            u64::try_from(known).unwrap(),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_schema_migrated_by_a_newer_release_is_refused() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        insta_router_storage::testing::execute(
            &db,
            "INSERT INTO seaql_migrations (version, applied_at) \
             VALUES ('m20991231_000001_from_a_newer_release', 0)",
        )
        .await;
        let state = db.schema_state().await.unwrap();
        assert!(state.pending.is_empty(), "{backend:?}");
        assert_eq!(state.unknown, ["m20991231_000001_from_a_newer_release"]);
        for result in [db.migrate_up().await, db.migrate_down(Some(1)).await] {
            let error = result.unwrap_err();
            assert!(
                matches!(error, insta_router_storage::StorageError::SchemaNewer(_)),
                "{backend:?}: {error:?}"
            );
            assert!(
                error
                    .to_string()
                    .contains("m20991231_000001_from_a_newer_release"),
                "{error}"
            );
        }
        // Nothing was rolled back.
        assert!(
            db.migration_status()
                .await
                .unwrap()
                .iter()
                .all(|(_, applied)| *applied),
            "{backend:?}"
        );
    }
}
