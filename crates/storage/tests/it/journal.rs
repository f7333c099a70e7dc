//! The journal beyond the inbound batch: failed requests kept with their replay jobs, a replay
//! turning an entry `accepted`, listings; and the spool directory.

use insta_router_domain::{JobId, JobKind, JobStatus, JobWork, NewJob, WebhookId};
use insta_router_ports::{
    InboundBatch, InboundStore, JobQueue, JournalEntry, JournalStatus, WebhookJournal, WebhookSpool,
};
use insta_router_storage::DirSpool;

use crate::inbound::message;
use crate::{at, migrated};

fn entry(n: u128, secs: i64, status: JournalStatus, error: Option<&str>) -> JournalEntry {
    JournalEntry {
        id: WebhookId::from_u128(n),
        received_at: at(secs),
        body: format!("{{\"n\":{n}}} \u{1F600}").into_bytes(),
        status,
        error: error.map(str::to_owned),
        events: 1,
    }
}

fn replay(n: u128, secs: i64) -> NewJob {
    let id = WebhookId::from_u128(n);
    NewJob {
        id: JobId::replaying(&id),
        work: JobWork::WebhookReplay,
        account_id: None,
        subject: id.to_string(),
        run_at: at(secs),
    }
}

#[tokio::test]
async fn failed_entries_are_kept_with_one_replay_job_and_listed_until_replayed() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let journal = db.journal();
        // An accepted entry, written the usual way.
        db.inbound()
            .store(InboundBatch {
                journal: vec![entry(1, 0, JournalStatus::Accepted, None)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let failed = entry(2, 1, JournalStatus::Failed, Some("constraint failed: x"));
        journal
            .keep_for_replay(std::slice::from_ref(&failed), &[replay(2, 2)])
            .await
            .unwrap();
        // Kept twice (a spooled request moved by two instances): still one entry, one job.
        journal
            .keep_for_replay(std::slice::from_ref(&failed), &[replay(2, 2)])
            .await
            .unwrap();
        assert_eq!(
            db.row_count("webhook_journal").await.unwrap(),
            2,
            "{backend:?}"
        );
        let jobs = db.jobs().list_by_subject(failed.id.as_str()).await.unwrap();
        assert_eq!(jobs.len(), 1, "{backend:?}");
        assert_eq!(jobs[0].work, JobWork::WebhookReplay);
        assert_eq!(journal.awaiting_replay().await.unwrap(), 1, "{backend:?}");

        let got = journal.get(&failed.id).await.unwrap().unwrap();
        assert_eq!(got, failed, "{backend:?}: body byte for byte");
        assert_eq!(journal.get(&WebhookId::from_u128(99)).await.unwrap(), None);

        let listed = journal.list(Some(JournalStatus::Failed), 10).await.unwrap();
        assert_eq!(listed.len(), 1, "{backend:?}");
        assert_eq!(listed[0].id, failed.id);
        assert_eq!(listed[0].bytes, failed.body.len() as u64, "{backend:?}");
        assert_eq!(listed[0].error.as_deref(), Some("constraint failed: x"));
        let replay_state = listed[0].replay.clone().unwrap();
        assert_eq!((replay_state.attempts, replay_state.next_at), (0, at(2)));
        let all = journal.list(None, 10).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            vec![failed.id.clone(), WebhookId::from_u128(1)],
            "{backend:?}: newest first"
        );
        assert!(all[1].replay.is_none());
        assert_eq!(
            journal
                .list(Some(JournalStatus::Accepted), 10)
                .await
                .unwrap()
                .len(),
            1
        );

        journal
            .record_error(&failed.id, "still failing")
            .await
            .unwrap();
        assert_eq!(
            journal
                .get(&failed.id)
                .await
                .unwrap()
                .unwrap()
                .error
                .as_deref(),
            Some("still failing")
        );

        // The replay: the same id through the inbound batch, with its events.
        let replayed = entry(2, 1, JournalStatus::Accepted, None);
        let outcome = db
            .inbound()
            .store(InboundBatch {
                journal: vec![replayed.clone()],
                messages: vec![message(7, "mid.replayed", 1)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome.new_messages.len(), 1, "{backend:?}");
        let got = journal.get(&failed.id).await.unwrap().unwrap();
        assert_eq!(got.status, JournalStatus::Accepted, "{backend:?}");
        assert_eq!(got.error, None);
        assert_eq!(got.body, failed.body, "the body stays");
        assert_eq!(db.row_count("webhook_journal").await.unwrap(), 2);

        // Replayed by hand: its job is closed, and nothing is left to claim.
        journal.close_replay(&failed.id, at(10)).await.unwrap();
        assert_eq!(journal.awaiting_replay().await.unwrap(), 0, "{backend:?}");
        assert!(
            journal
                .list(Some(JournalStatus::Failed), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let claimed = db
            .jobs()
            .claim(
                &[JobKind::WebhookReplay],
                10,
                std::time::Duration::from_secs(60),
                at(10),
            )
            .await
            .unwrap();
        assert!(claimed.is_empty(), "{backend:?}");
        let job = db
            .jobs()
            .get(&JobId::replaying(&failed.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.status, JobStatus::Done);
    }
}

#[tokio::test]
async fn the_spool_keeps_bodies_byte_for_byte_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = DirSpool::open(dir.path().join("nested/spool")).unwrap();
    let mut later = entry(20, 5, JournalStatus::Spooled, None);
    later.body = vec![0, 159, 146, 150, b'\n', b'\n', 255];
    let earlier = entry(10, 1, JournalStatus::Spooled, None);
    spool.put(&later).await.unwrap();
    spool.put(&earlier).await.unwrap();
    // Files of others and unfinished writes are not entries.
    std::fs::write(spool.dir().join("README"), "x").unwrap();
    std::fs::write(spool.dir().join(".whk_1.tmp"), "half").unwrap();
    assert_eq!(spool.count().await.unwrap(), 2);
    let listed = spool.list(10).await.unwrap();
    let expect = |e: &JournalEntry| JournalEntry {
        events: 0,
        error: None,
        ..e.clone()
    };
    assert_eq!(listed, vec![expect(&earlier), expect(&later)]);
    assert_eq!(spool.list(1).await.unwrap().len(), 1);
    assert_eq!(spool.get(&later.id).await.unwrap(), Some(expect(&later)));
    spool.remove(&earlier.id).await.unwrap();
    spool.remove(&earlier.id).await.unwrap();
    assert_eq!(spool.count().await.unwrap(), 1);
    assert_eq!(spool.get(&earlier.id).await.unwrap(), None);

    // Reopened (a restart), it still holds what was kept.
    let reopened = DirSpool::open(spool.dir()).unwrap();
    assert_eq!(reopened.list(10).await.unwrap(), vec![expect(&later)]);
}

#[tokio::test]
async fn a_spool_that_cannot_be_written_refuses_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    assert!(DirSpool::open(&file).is_err());
}
