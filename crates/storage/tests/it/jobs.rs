//! The job queue: claims with leases, on every backend, never overlapping.

use std::collections::HashSet;
use std::time::Duration;

use insta_router_domain::{InstagramUserId, JobId, JobKind, JobStatus, JobWork, NewJob};
use insta_router_ports::JobQueue;
use insta_router_storage::testing;

use crate::{at, migrated};

fn job(n: u128, kind: JobKind, run_at_secs: i64) -> NewJob {
    NewJob {
        id: JobId::from_u128(n),
        work: match kind {
            JobKind::CrmDelivery => JobWork::CrmDelivery {
                body: format!("{{\"n\":{n}}}"),
            },
            JobKind::Send => JobWork::Send {
                recipient: InstagramUserId::parse("r", &n.to_string()).unwrap(),
            },
            other => JobWork::from_stored(other, "").unwrap(),
        },
        account_id: None,
        subject: format!("msg_{n:032x}"),
        run_at: at(run_at_secs),
    }
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn claims_take_due_jobs_of_the_asked_kinds_oldest_first() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        queue
            .enqueue(&[
                job(1, JobKind::CrmDelivery, 2),
                job(2, JobKind::CrmDelivery, 1),
                job(3, JobKind::AutoReply, 0),
                job(4, JobKind::CrmDelivery, 100),
            ])
            .await
            .unwrap();
        let claimed = queue
            .claim(&[JobKind::CrmDelivery], 10, LEASE, at(10))
            .await
            .unwrap();
        let ids: HashSet<JobId> = claimed.iter().map(|c| c.job.id.clone()).collect();
        assert_eq!(
            ids,
            HashSet::from([JobId::from_u128(1), JobId::from_u128(2)]),
            "{:?}",
            test_db.backend()
        );
        for c in &claimed {
            assert_eq!(c.job.status, JobStatus::Running);
            assert_eq!(c.job.attempts, 1);
            assert_eq!(c.job.lease_until, Some(at(40)));
        }
        // Nothing more is due for these kinds while the leases hold.
        assert!(
            queue
                .claim(&[JobKind::CrmDelivery], 10, LEASE, at(11))
                .await
                .unwrap()
                .is_empty()
        );
        // The limit is honoured.
        let one = queue
            .claim(&[JobKind::AutoReply], 1, LEASE, at(11))
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].job.subject, format!("msg_{:032x}", 3));
    }
}

/// Also the deadlock test: claims at InnoDB's REPEATABLE READ failed it in four runs of ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_get_the_same_job() {
    const JOBS: u128 = 240;
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        let jobs: Vec<NewJob> = (1..=JOBS)
            .map(|n| job(n, JobKind::CrmDelivery, 0))
            .collect();
        queue.enqueue(&jobs).await.unwrap();
        let mut workers = Vec::new();
        for _ in 0..8 {
            let queue = db.jobs();
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = queue
                        .claim(&[JobKind::CrmDelivery], 5, LEASE, at(1))
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.job.id));
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.await.unwrap());
        }
        let distinct: HashSet<&JobId> = all.iter().collect();
        assert_eq!(
            all.len(),
            JOBS as usize,
            "every job claimed once, {:?}",
            test_db.backend()
        );
        assert_eq!(distinct.len(), JOBS as usize);
    }
}

/// A claim takes expired leases first, then the oldest queued jobs, and never more than its
/// limit in all: each status is its own ordered range of the due index.
#[tokio::test]
async fn a_claim_fills_its_limit_from_expired_leases_then_the_oldest_queued_jobs() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        let jobs: Vec<NewJob> = (1..=6)
            .map(|n| job(n, JobKind::CrmDelivery, i64::try_from(n).unwrap()))
            .collect();
        queue.enqueue(&jobs).await.unwrap();
        let first: HashSet<JobId> = queue
            .claim(&[JobKind::CrmDelivery], 2, LEASE, at(10))
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.job.id)
            .collect();
        assert_eq!(
            first,
            HashSet::from([JobId::from_u128(1), JobId::from_u128(2)]),
            "{:?}",
            test_db.backend()
        );
        // At 41 s both leases have expired: they come first, then queued job 3 fills the
        // limit; jobs 4 to 6 wait.
        let second = queue
            .claim(&[JobKind::CrmDelivery], 3, LEASE, at(41))
            .await
            .unwrap();
        let ids: HashSet<JobId> = second.iter().map(|c| c.job.id.clone()).collect();
        assert_eq!(
            ids,
            HashSet::from([1, 2, 3].map(JobId::from_u128)),
            "{:?}",
            test_db.backend()
        );
        let attempts: Vec<u32> = second.iter().map(|c| c.job.attempts).collect();
        assert_eq!(attempts, vec![2, 2, 1], "{:?}", test_db.backend());
        // Three left, and a limit larger than that takes exactly them.
        let rest = queue
            .claim(&[JobKind::CrmDelivery], 10, LEASE, at(42))
            .await
            .unwrap();
        let ids: HashSet<JobId> = rest.into_iter().map(|c| c.job.id).collect();
        assert_eq!(ids, HashSet::from([4, 5, 6].map(JobId::from_u128)));
    }
}

/// Completing a group is one transaction, each job fenced on its own lease.
#[tokio::test]
async fn a_group_of_completions_marks_only_the_jobs_still_held() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        queue
            .enqueue(&[job(1, JobKind::Send, 0), job(2, JobKind::Send, 0)])
            .await
            .unwrap();
        let claimed = queue
            .claim(&[JobKind::Send], 2, LEASE, at(1))
            .await
            .unwrap();
        let mut leases: Vec<_> = claimed.into_iter().map(|c| c.lease).collect();
        leases.sort_by(|a, b| a.job_id.as_str().cmp(b.job_id.as_str()));
        let mut stale = leases[1].clone();
        stale.token = "lease_stale".into();
        let done = queue
            .complete_many(&[stale, leases[0].clone()], at(2))
            .await
            .unwrap();
        assert_eq!(done, [false, true], "{:?}", test_db.backend());
        let status = |n| {
            let queue = queue.clone();
            async move {
                queue
                    .get(&JobId::from_u128(n))
                    .await
                    .unwrap()
                    .unwrap()
                    .status
            }
        };
        assert_eq!(status(1).await, JobStatus::Done);
        assert_eq!(status(2).await, JobStatus::Running);
    }
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_the_stale_holder_is_refused() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        queue
            .enqueue(&[job(1, JobKind::AutoReply, 0)])
            .await
            .unwrap();
        let first = queue
            .claim(&[JobKind::AutoReply], 1, LEASE, at(0))
            .await
            .unwrap()
            .remove(0);
        assert!(
            queue
                .claim(&[JobKind::AutoReply], 1, LEASE, at(29))
                .await
                .unwrap()
                .is_empty()
        );
        let second = queue
            .claim(&[JobKind::AutoReply], 1, LEASE, at(31))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(second.job.attempts, 2, "{:?}", test_db.backend());
        assert_ne!(first.lease, second.lease);
        assert!(!queue.complete(&first.lease, at(32)).await.unwrap());
        assert!(queue.complete(&second.lease, at(32)).await.unwrap());
        let done = queue.get(&JobId::from_u128(1)).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Done);
        assert!(
            queue
                .claim(&[JobKind::AutoReply], 1, LEASE, at(999))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn retries_reschedule_and_dead_letters_stop_for_good() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        queue
            .enqueue(&[
                job(1, JobKind::CrmDelivery, 0),
                job(2, JobKind::CrmDelivery, 0),
            ])
            .await
            .unwrap();
        let claimed = queue
            .claim(&[JobKind::CrmDelivery], 2, LEASE, at(0))
            .await
            .unwrap();
        let (a, b) = (&claimed[0], &claimed[1]);
        assert!(
            queue
                .retry_at(&a.lease, at(300), "HTTP 503", at(1))
                .await
                .unwrap()
        );
        assert!(
            queue
                .dead_letter(&b.lease, "HTTP 410", at(1))
                .await
                .unwrap()
        );
        // A finished lease cannot be used twice.
        assert!(!queue.complete(&a.lease, at(2)).await.unwrap());

        let retried = queue.get(&a.job.id).await.unwrap().unwrap();
        assert_eq!(retried.status, JobStatus::Queued, "{:?}", test_db.backend());
        assert_eq!(retried.run_at, at(300));
        assert_eq!(retried.last_error.as_deref(), Some("HTTP 503"));
        let dead = queue.get(&b.job.id).await.unwrap().unwrap();
        assert_eq!(dead.status, JobStatus::Dead);

        assert!(
            queue
                .claim(&[JobKind::CrmDelivery], 5, LEASE, at(299))
                .await
                .unwrap()
                .is_empty()
        );
        let again = queue
            .claim(&[JobKind::CrmDelivery], 5, LEASE, at(300))
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].job.id, a.job.id);
        assert_eq!(again[0].job.attempts, 2);
    }
}

#[tokio::test]
async fn a_released_claim_does_not_count_as_an_attempt() {
    for (test_db, db) in migrated().await {
        let queue = db.jobs();
        queue
            .enqueue(&[job(1, JobKind::CrmDelivery, 0)])
            .await
            .unwrap();
        let first = queue
            .claim(&[JobKind::CrmDelivery], 1, LEASE, at(0))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(first.job.attempts, 1);
        assert!(
            queue
                .release(&first.lease, at(120), "endpoint paused", at(1))
                .await
                .unwrap()
        );
        assert!(
            !queue
                .release(&first.lease, at(120), "twice", at(1))
                .await
                .unwrap()
        );
        let job = queue.get(&first.job.id).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.attempts, job.run_at),
            (JobStatus::Queued, 0, at(120)),
            "{:?}",
            test_db.backend()
        );
        assert_eq!(job.last_error.as_deref(), Some("endpoint paused"));
        let again = queue
            .claim(&[JobKind::CrmDelivery], 1, LEASE, at(120))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(again.job.attempts, 1);
    }
}

#[tokio::test]
async fn counts_give_the_open_jobs_by_kind_and_status() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let queue = db.jobs();
        queue
            .enqueue(&[
                job(1, JobKind::CrmDelivery, 0),
                job(2, JobKind::CrmDelivery, 0),
                job(3, JobKind::CrmDelivery, 0),
                job(4, JobKind::AutoReply, 0),
                job(5, JobKind::Send, 100),
            ])
            .await
            .unwrap();
        let claimed = queue
            .claim(
                &[JobKind::CrmDelivery, JobKind::AutoReply],
                10,
                LEASE,
                at(1),
            )
            .await
            .unwrap();
        for c in &claimed {
            match c.job.id.as_str() {
                id if id == JobId::from_u128(1).as_str() => {
                    assert!(queue.complete(&c.lease, at(2)).await.unwrap());
                }
                id if id == JobId::from_u128(2).as_str() => {
                    assert!(queue.dead_letter(&c.lease, "gone", at(2)).await.unwrap());
                }
                _ => {}
            }
        }
        let mut counts = queue.counts().await.unwrap();
        counts.sort_by_key(|(k, s, _)| (k.as_str(), s.as_str()));
        assert_eq!(
            counts,
            [
                (JobKind::AutoReply, JobStatus::Running, 1),
                (JobKind::CrmDelivery, JobStatus::Dead, 1),
                (JobKind::CrmDelivery, JobStatus::Running, 1),
                (JobKind::Send, JobStatus::Queued, 1),
            ],
            "{backend:?}"
        );
    }
}

/// On PostgreSQL the queue's dead rows do not wait for autovacuum (off on this machine): past
/// 20,000 of them the store vacuums `jobs` itself.
#[tokio::test]
async fn postgres_vacuums_the_queue_once_dead_rows_pile_up() {
    for (test_db, db) in migrated().await {
        if test_db.backend() != insta_router_storage::Backend::Postgres {
            continue;
        }
        let vacuums = async || {
            testing::rows(
                &db,
                "SELECT vacuum_count + autovacuum_count AS n FROM pg_stat_user_tables \
                 WHERE relid = 'jobs'::regclass",
            )
            .await[0]["n"]
                .as_i64()
                .unwrap()
        };
        let before = vacuums().await;
        // 12,000 jobs, each written three times, as a claim and a resolution do: 24,000
        // dead row versions.
        testing::execute(
            &db,
            "INSERT INTO jobs (id, kind, account_id, subject, payload, status, attempts, run_at, \
             lease_token, last_error, created_at, updated_at) \
             SELECT 'job_' || lpad(g::text, 32, '0'), 'crm_delivery', NULL, 'msg_x', '{}', \
             'queued', 0, g, NULL, NULL, g, g FROM generate_series(1, 12000) g",
        )
        .await;
        testing::execute(&db, "UPDATE jobs SET status = 'running'").await;
        testing::execute(&db, "UPDATE jobs SET status = 'done'").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while vacuums().await == before {
            assert!(
                std::time::Instant::now() < deadline,
                "jobs was not vacuumed within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let dead = testing::rows(
            &db,
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass",
        )
        .await;
        assert!(dead[0]["n_dead_tup"].as_i64().unwrap() < 20_000, "{dead:?}");
    }
}
