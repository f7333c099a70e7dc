//! Retention on every backend: old rows go in batches, recent, undelivered and awaiting ones
//! stay, and pruning beside the webhook writes makes neither fail.

use insta_router_domain::{JobId, JobKind, JobWork, NewJob, WebhookId};
use insta_router_ports::{
    InboundBatch, InboundStore, JobQueue, JournalEntry, JournalStatus, Prunable, RetentionStore,
};
use insta_router_storage::{Database, testing};

use crate::inbound::message;
use crate::{at, migrated};

fn journal(n: u128, secs: i64, status: JournalStatus) -> JournalEntry {
    JournalEntry {
        id: WebhookId::from_u128(n),
        received_at: at(secs),
        body: b"{}".to_vec(),
        status,
        error: None,
        events: 0,
    }
}

/// A job of `kind` in `status`, last changed at `secs`.
async fn job(db: &Database, n: u128, kind: JobKind, status: &str, secs: i64) {
    let work = match kind {
        JobKind::CrmDelivery => JobWork::CrmDelivery { body: "{}".into() },
        JobKind::Send => JobWork::Send {
            recipient: insta_router_domain::InstagramUserId::parse("r", "1234").unwrap(),
        },
        other => JobWork::from_stored(other, "").unwrap(),
    };
    db.jobs()
        .enqueue(&[NewJob {
            id: JobId::from_u128(n),
            work,
            account_id: None,
            subject: format!("msg_{n:032x}"),
            run_at: at(secs),
        }])
        .await
        .unwrap();
    let micros = at(secs).timestamp_micros();
    let id = JobId::from_u128(n);
    testing::execute(
        db,
        &format!(
            "UPDATE jobs SET status = '{status}', updated_at = {micros} WHERE id = '{}'",
            id.as_str()
        ),
    )
    .await;
    if kind == JobKind::CrmDelivery {
        testing::execute(
            db,
            &format!(
                "INSERT INTO delivery_attempts (job_id, attempt, started_at, duration_ms, outcome) \
                 VALUES ('{}', 1, {micros}, 5, 'delivered')",
                id.as_str()
            ),
        )
        .await;
    }
}

async fn ids(db: &Database, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = testing::rows(db, &format!("SELECT id FROM {table}"))
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn attempts(db: &Database) -> u64 {
    db.row_count("delivery_attempts").await.unwrap()
}

#[tokio::test]
async fn old_rows_go_and_recent_undelivered_and_awaiting_ones_stay() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        db.inbound()
            .store(InboundBatch {
                journal: vec![
                    journal(1, 0, JournalStatus::Accepted),
                    journal(2, 0, JournalStatus::Unusable),
                    // Awaiting replay: never pruned.
                    journal(3, 0, JournalStatus::Failed),
                    journal(4, 100, JournalStatus::Accepted),
                ],
                messages: vec![message(1, "mid.old", 0), message(2, "mid.new", 100)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        job(&db, 1, JobKind::AutoReply, "done", 0).await;
        job(&db, 2, JobKind::AutoReply, "done", 100).await;
        job(&db, 3, JobKind::CrmDelivery, "done", 0).await;
        job(&db, 4, JobKind::CrmDelivery, "done", 100).await;
        // Not delivered yet, however old: stays.
        job(&db, 5, JobKind::CrmDelivery, "queued", 0).await;
        job(&db, 6, JobKind::CrmDelivery, "dead", 0).await;
        job(&db, 7, JobKind::Send, "running", 0).await;

        let store = db.retention();
        let before = at(50);
        let counts = [
            (Prunable::Journal, 2),
            (Prunable::DoneJobs, 1),
            (Prunable::Deliveries, 1),
            (Prunable::DeadLetters, 1),
            (Prunable::Messages, 1),
            (Prunable::Events, 0),
        ];
        for (what, want) in counts {
            assert_eq!(
                store.count_older(what, before).await.unwrap(),
                want,
                "{backend:?} {what:?}"
            );
        }
        assert_eq!(attempts(&db).await, 4, "{backend:?}");

        // One row per delete: the journal takes two.
        assert_eq!(
            store
                .delete_older(Prunable::Journal, before, 1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .delete_older(Prunable::Journal, before, 1)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .delete_older(Prunable::Journal, before, 1)
                .await
                .unwrap(),
            0
        );
        let journal = ids(&db, "webhook_journal").await;
        assert_eq!(
            journal,
            [WebhookId::from_u128(3), WebhookId::from_u128(4)].map(|w| w.as_str().to_owned()),
            "{backend:?}"
        );

        for what in [Prunable::DoneJobs, Prunable::Deliveries] {
            assert_eq!(
                store.delete_older(what, before, 100).await.unwrap(),
                1,
                "{what:?}"
            );
        }
        let jobs = ids(&db, "jobs").await;
        let want: Vec<String> = [2, 4, 5, 6, 7]
            .map(|n| JobId::from_u128(n).as_str().to_owned())
            .into();
        assert_eq!(jobs, want, "{backend:?}");
        // The delivered delivery's attempt went with it.
        assert_eq!(attempts(&db).await, 3, "{backend:?}");

        assert_eq!(
            store
                .delete_older(Prunable::DeadLetters, before, 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(attempts(&db).await, 2, "{backend:?}");
        assert_eq!(
            store
                .delete_older(Prunable::Messages, before, 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(db.row_count("messages").await.unwrap(), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn pruning_beside_webhook_writes_fails_neither() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let writes = async {
            for n in 0..40_u128 {
                let batch = InboundBatch {
                    journal: (0..5)
                        .map(|i| journal(n * 10 + i, 0, JournalStatus::Accepted))
                        .collect(),
                    messages: (0..5)
                        .map(|i| message(n * 10 + i, &format!("mid.{n}.{i}"), 0))
                        .collect(),
                    ..InboundBatch::default()
                };
                db.inbound().store(batch).await.unwrap();
            }
        };
        let prunes = async {
            let store = db.retention();
            let mut deleted = 0;
            for _ in 0..40 {
                for what in [Prunable::Journal, Prunable::Messages] {
                    deleted += store.delete_older(what, at(1_000), 7).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
            deleted
        };
        let ((), deleted) = tokio::join!(writes, prunes);
        // Whatever the interleaving, every row was either pruned or is still there.
        let left = db.row_count("webhook_journal").await.unwrap()
            + db.row_count("messages").await.unwrap();
        assert_eq!(deleted + left, 400, "{backend:?}");
    }
}
