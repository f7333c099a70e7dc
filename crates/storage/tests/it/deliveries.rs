//! Deliveries: attempts recorded with the job's resolution, fenced on the lease; listings;
//! retries and replays.

use std::time::Duration;

use insta_router_domain::{AccountId, JobId, JobKind, JobLease, JobStatus, JobWork, NewJob};
use insta_router_ports::{
    AccountRepository, AttemptRecord, DeliveryAttempt, DeliveryFilter, DeliveryResolution,
    DeliveryStore, JobQueue, PageRequest, RetryNow,
};
use insta_router_storage::Database;

use crate::inbound::add_account;
use crate::{at, migrated};

const LEASE: Duration = Duration::from_secs(30);

fn delivery(n: u128, account: u128, created_secs: i64) -> NewJob {
    NewJob {
        id: JobId::from_u128(n),
        work: JobWork::CrmDelivery { body: "{}".into() },
        account_id: Some(AccountId::from_u128(account)),
        subject: format!("msg_{n:032x}"),
        run_at: at(created_secs),
    }
}

fn attempt(job: &JobId, status: Option<u16>, body: &str) -> DeliveryAttempt {
    DeliveryAttempt {
        job_id: job.clone(),
        attempt: 0,
        started_at: at(100),
        duration_ms: 12,
        outcome: if status == Some(200) {
            "delivered"
        } else {
            "http_error"
        }
        .to_owned(),
        status_code: status,
        response_body: Some(body.to_owned()),
        error: None,
    }
}

/// Records one attempt through the batch API; whether it was recorded.
async fn record_one(
    store: &impl DeliveryStore,
    lease: &JobLease,
    attempt: &DeliveryAttempt,
    resolution: &DeliveryResolution,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let record = AttemptRecord {
        lease: lease.clone(),
        attempt: attempt.clone(),
        resolution: resolution.clone(),
    };
    let recorded = store.record(&[record], now).await.unwrap();
    assert_eq!(recorded.len(), 1);
    recorded[0]
}

async fn claim_one(db: &Database, secs: i64) -> JobLease {
    db.jobs()
        .claim(&[JobKind::CrmDelivery], 1, LEASE, at(secs))
        .await
        .unwrap()
        .remove(0)
        .lease
}

#[tokio::test]
async fn attempts_are_recorded_with_the_resolution_and_only_by_the_lease_holder() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        db.jobs().enqueue(&[delivery(1, 1, 0)]).await.unwrap();
        let store = db.deliveries();
        let id = JobId::from_u128(1);
        let lease = claim_one(&db, 0).await;
        let stale = JobLease {
            job_id: id.clone(),
            token: "lease_not_mine".to_owned(),
        };
        let retry = DeliveryResolution::RetryAt(at(60));
        assert!(!record_one(&store, &stale, &attempt(&id, Some(500), "x"), &retry, at(1)).await);
        assert!(store.attempts(&id).await.unwrap().is_empty(), "{backend:?}");
        let long = "e".repeat(10_000);
        assert!(
            record_one(
                &store,
                &lease,
                &attempt(&id, Some(503), &long),
                &retry,
                at(1)
            )
            .await
        );
        // The lease is spent: the same holder cannot record twice.
        assert!(
            !record_one(
                &store,
                &lease,
                &attempt(&id, Some(503), "again"),
                &retry,
                at(1)
            )
            .await
        );
        let job = db.jobs().get(&id).await.unwrap().unwrap();
        assert_eq!((job.status, job.run_at), (JobStatus::Queued, at(60)));
        assert_eq!(job.last_error.as_deref(), Some("HTTP 503 (http_error)"));
        // Retried by hand while it waits: moved up, keeping its attempts (one assignment per
        // column, which PostgreSQL insists on).
        match store.retry_now(&id, at(2)).await.unwrap() {
            RetryNow::Queued(job) => assert_eq!(
                (job.status, job.attempts, job.run_at),
                (JobStatus::Queued, 1, at(2)),
                "{backend:?}"
            ),
            other => panic!("{backend:?}: {other:?}"),
        }

        let lease = claim_one(&db, 60).await;
        assert!(
            record_one(
                &store,
                &lease,
                &attempt(&id, Some(200), "ok"),
                &DeliveryResolution::Done,
                at(61)
            )
            .await
        );
        assert_eq!(
            db.jobs().get(&id).await.unwrap().unwrap().status,
            JobStatus::Done
        );
        let attempts = store.attempts(&id).await.unwrap();
        let summary: Vec<(u32, Option<u16>)> = attempts
            .iter()
            .map(|a| (a.attempt, a.status_code))
            .collect();
        assert_eq!(summary, vec![(1, Some(503)), (2, Some(200))], "{backend:?}");
        assert_eq!(
            attempts[0].response_body.as_ref().map(String::len),
            Some(insta_router_storage::MAX_RESPONSE_BODY)
        );
        assert_eq!(
            (attempts[1].started_at, attempts[1].duration_ms),
            (at(100), 12)
        );
        // Done stays done.
        assert_eq!(
            store.retry_now(&id, at(70)).await.unwrap(),
            RetryNow::AlreadyDelivered
        );
    }
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_dead_letters_replay() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        add_account(&db, 1, "17841400000000001", true).await;
        let jobs: Vec<NewJob> = (1..=3).map(|n| delivery(n, 1, n as i64)).collect();
        db.jobs().enqueue(&jobs).await.unwrap();
        let store = db.deliveries();
        for n in 1..=3_u128 {
            let lease = claim_one(&db, 10).await;
            let resolution = if n == 1 {
                DeliveryResolution::DeadAndDisable(AccountId::from_u128(1))
            } else {
                DeliveryResolution::Dead
            };
            assert!(
                record_one(
                    &store,
                    &lease,
                    &attempt(&lease.job_id, Some(410), ""),
                    &resolution,
                    at(20)
                )
                .await
            );
        }
        let account = db
            .accounts()
            .get(&AccountId::from_u128(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(account.delivery.disabled_at, Some(at(20)), "{backend:?}");
        assert_eq!(
            store.counts().await.unwrap(),
            vec![(JobStatus::Dead, 3)],
            "{backend:?}"
        );
        // Replay a time range: only the jobs created in [2, 3).
        let replayed = store
            .replay_dead(&AccountId::from_u128(1), Some(at(2)), Some(at(3)), at(30))
            .await
            .unwrap();
        assert_eq!(replayed, 1);
        let job = db.jobs().get(&JobId::from_u128(2)).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.attempts, job.run_at),
            (JobStatus::Queued, 0, at(30))
        );
        // Another account's replay touches nothing.
        assert_eq!(
            store
                .replay_dead(&AccountId::from_u128(2), None, None, at(30))
                .await
                .unwrap(),
            0
        );
        // Retry one dead delivery now.
        match store.retry_now(&JobId::from_u128(3), at(31)).await.unwrap() {
            RetryNow::Queued(job) => {
                assert_eq!((job.status, job.attempts), (JobStatus::Queued, 0));
            }
            other => panic!("{backend:?}: {other:?}"),
        }
        assert_eq!(
            store
                .retry_now(&JobId::from_u128(99), at(31))
                .await
                .unwrap(),
            RetryNow::NotFound
        );
        let lease = claim_one(&db, 40).await;
        assert_eq!(
            store.retry_now(&lease.job_id, at(41)).await.unwrap(),
            RetryNow::Running
        );
    }
}

#[tokio::test]
async fn deliveries_list_newest_first_filtered_and_in_pages() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let mut jobs: Vec<NewJob> = (1..=5).map(|n| delivery(n, 1, n as i64)).collect();
        jobs.push(delivery(6, 2, 6));
        // An auto-reply job is not a delivery.
        let mut reply = delivery(7, 1, 7);
        reply.work = JobWork::AutoReply;
        jobs.push(reply);
        db.jobs().enqueue(&jobs).await.unwrap();
        let store = db.deliveries();
        let filter = DeliveryFilter {
            account_id: Some(AccountId::from_u128(1)),
            ..DeliveryFilter::default()
        };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list(&filter, PageRequest { after, limit: 2 })
                .await
                .unwrap();
            seen.extend(page.items.into_iter().map(|j| j.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let want: Vec<JobId> = (1..=5).rev().map(JobId::from_u128).collect();
        assert_eq!(seen, want, "{backend:?}");
        let ranged = store
            .list(
                &DeliveryFilter {
                    since: Some(at(2)),
                    until: Some(at(4)),
                    status: Some(JobStatus::Queued),
                    ..DeliveryFilter::default()
                },
                PageRequest {
                    after: None,
                    limit: 50,
                },
            )
            .await
            .unwrap();
        let ids: Vec<JobId> = ranged.items.into_iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![JobId::from_u128(3), JobId::from_u128(2)]);
        assert!(
            store
                .list(
                    &DeliveryFilter::default(),
                    PageRequest {
                        after: Some("garbage".to_owned()),
                        limit: 2
                    }
                )
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn a_batch_is_recorded_in_one_call_each_record_fenced_on_its_lease() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        add_account(&db, 1, "17841400000000001", true).await;
        let jobs: Vec<NewJob> = (1..=5).map(|n| delivery(n, 1, n as i64)).collect();
        db.jobs().enqueue(&jobs).await.unwrap();
        let store = db.deliveries();
        let claimed = db
            .jobs()
            .claim(&[JobKind::CrmDelivery], 4, LEASE, at(10))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 4, "{backend:?}");
        let record =
            |lease: &JobLease, status: u16, resolution: DeliveryResolution| AttemptRecord {
                lease: lease.clone(),
                attempt: attempt(&lease.job_id, Some(status), "answer"),
                resolution,
            };
        let lease_of = |n: u128| {
            claimed
                .iter()
                .find(|c| c.job.id == JobId::from_u128(n))
                .unwrap()
                .lease
                .clone()
        };
        let stale = JobLease {
            job_id: JobId::from_u128(5),
            token: "lease_not_mine".to_owned(),
        };
        let first = [
            record(&lease_of(1), 503, DeliveryResolution::RetryAt(at(15))),
            record(&lease_of(2), 200, DeliveryResolution::Done),
            record(&stale, 200, DeliveryResolution::Done),
            record(&lease_of(3), 200, DeliveryResolution::Done),
            record(
                &lease_of(4),
                410,
                DeliveryResolution::DeadAndDisable(AccountId::from_u128(1)),
            ),
        ];
        assert_eq!(
            store.record(&first, at(11)).await.unwrap(),
            [true, true, false, true, true],
            "{backend:?}"
        );
        assert_eq!(
            state(&db, 1).await,
            (JobStatus::Queued, vec![(1, Some(503))]),
            "{backend:?}"
        );
        assert_eq!(state(&db, 2).await, (JobStatus::Done, vec![(1, Some(200))]));
        assert_eq!(state(&db, 3).await, (JobStatus::Done, vec![(1, Some(200))]));
        assert_eq!(state(&db, 4).await, (JobStatus::Dead, vec![(1, Some(410))]));
        assert_eq!(
            state(&db, 5).await,
            (JobStatus::Queued, vec![]),
            "{backend:?}"
        );
        let account = db
            .accounts()
            .get(&AccountId::from_u128(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(account.delivery.disabled_at, Some(at(11)), "{backend:?}");

        // The retry and the untouched job come due together; a spent lease records nothing.
        let claimed = db
            .jobs()
            .claim(&[JobKind::CrmDelivery], 10, LEASE, at(15))
            .await
            .unwrap();
        let mut due: Vec<JobId> = claimed.iter().map(|c| c.job.id.clone()).collect();
        due.sort();
        assert_eq!(
            due,
            [JobId::from_u128(1), JobId::from_u128(5)],
            "{backend:?}"
        );
        let second: Vec<AttemptRecord> = claimed
            .iter()
            .map(|c| record(&c.lease, 200, DeliveryResolution::Done))
            .chain([record(&lease_of(2), 200, DeliveryResolution::Done)])
            .collect();
        assert_eq!(
            store.record(&second, at(16)).await.unwrap(),
            [true, true, false],
            "{backend:?}"
        );
        assert_eq!(
            state(&db, 1).await,
            (JobStatus::Done, vec![(1, Some(503)), (2, Some(200))]),
            "{backend:?}"
        );
        assert_eq!(state(&db, 2).await, (JobStatus::Done, vec![(1, Some(200))]));
        assert_eq!(state(&db, 5).await, (JobStatus::Done, vec![(1, Some(200))]));
        assert_eq!(store.record(&[], at(17)).await.unwrap(), Vec::<bool>::new());
    }
}

/// Job `n`'s status and the (number, status) of its attempts.
async fn state(db: &Database, n: u128) -> (JobStatus, Vec<(u32, Option<u16>)>) {
    let id = JobId::from_u128(n);
    let job = db.jobs().get(&id).await.unwrap().unwrap();
    let attempts = db
        .deliveries()
        .attempts(&id)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.attempt, a.status_code))
        .collect();
    (job.status, attempts)
}
