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
