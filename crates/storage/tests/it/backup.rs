//! Online SQLite backups: a copy taken while webhooks are written holds every row
//! committed before it began, reads back as a migrated database, and never overwrites.

use insta_router_ports::{InboundBatch, InboundStore, JournalEntry, JournalStatus};
use insta_router_storage::{BackupError, DatabaseUrl, backup_sqlite, testing};

use crate::at;
use crate::inbound::message;

fn batch(n: u128) -> InboundBatch {
    InboundBatch {
        journal: (0..4)
            .map(|i| JournalEntry {
                id: insta_router_domain::WebhookId::from_u128(n * 10 + i),
                received_at: at(0),
                body: br#"{"object":"instagram"}"#.to_vec(),
                status: JournalStatus::Accepted,
                error: None,
                events: 1,
            })
            .collect(),
        messages: (0..4)
            .map(|i| message(n * 10 + i, &format!("mid.{n}.{i}"), 0))
            .collect(),
        ..InboundBatch::default()
    }
}

#[tokio::test]
async fn a_backup_under_writes_holds_what_was_committed_before_it() {
    let test_db = testing::sqlite();
    let db = test_db.connect().await;
    db.migrate_up().await.unwrap();
    for n in 0..50 {
        db.inbound().store(batch(n)).await.unwrap();
    }
    let source = DatabaseUrl::parse(&test_db.url)
        .unwrap()
        .sqlite_file()
        .unwrap();
    let target = source.with_file_name("copy.db");
    let before = db.row_count("messages").await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 1_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.inbound().store(batch(n)).await.unwrap();
                n += 1;
            }
            n - 1_000
        })
    };
    let (from, to) = (source.clone(), target.clone());
    let report = tokio::task::spawn_blocking(move || backup_sqlite(&from, &to))
        .await
        .unwrap()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written_meanwhile = writer.await.unwrap();
    let after = db.row_count("messages").await.unwrap();

    let copied = report
        .rows
        .iter()
        .find(|(table, _)| table == "messages")
        .map(|(_, n)| *n)
        .unwrap();
    assert!(copied >= before, "{copied} < {before}");
    assert!(copied <= after, "{copied} > {after}");
    assert!(
        written_meanwhile > 0,
        "the writer never ran beside the backup"
    );
    let applied: Vec<String> = db
        .migration_status()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(name, applied)| applied.then_some(name))
        .collect();
    assert_eq!(report.migrations, applied);
    assert_eq!(report.path, target);
    assert!(!target.with_file_name("copy.db.partial").exists());

    // The copy opens as a database of this release: nothing pending, nothing newer.
    let copy_url = DatabaseUrl::parse(&format!("sqlite://{}", target.display())).unwrap();
    let copy = insta_router_storage::Database::connect(&copy_url, &Default::default())
        .await
        .unwrap();
    let state = copy.schema_state().await.unwrap();
    assert!(
        state.pending.is_empty() && state.unknown.is_empty(),
        "{state:?}"
    );
    assert_eq!(copy.row_count("messages").await.unwrap(), copied);
    let _ = copy.close().await;

    // A second backup to the same name is refused, and leaves the first as it was.
    let bytes = std::fs::read(&target).unwrap();
    let again = backup_sqlite(&source, &target).unwrap_err();
    assert!(matches!(again, BackupError::TargetExists(_)), "{again}");
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
}

#[tokio::test]
async fn a_backup_names_what_is_missing() {
    let test_db = testing::sqlite();
    let db = test_db.connect().await;
    db.migrate_up().await.unwrap();
    let source = DatabaseUrl::parse(&test_db.url)
        .unwrap()
        .sqlite_file()
        .unwrap();
    let no_dir = source.with_file_name("absent").join("copy.db");
    let err = backup_sqlite(&source, &no_dir).unwrap_err();
    assert!(matches!(err, BackupError::NoDirectory(_)), "{err}");
    assert!(err.to_string().contains("absent"), "{err}");

    let no_source = source.with_file_name("nothing.db");
    let err = backup_sqlite(&no_source, &source.with_file_name("copy.db")).unwrap_err();
    assert!(matches!(err, BackupError::NoSource(_)), "{err}");
    assert!(!source.with_file_name("copy.db").exists());
}
