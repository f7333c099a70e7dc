//! Retention on a mocked store: ages per class, batches, the preview, errors.

use std::sync::Mutex;

use insta_router_ports::{MockClock, MockRetentionStore};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn service(store: MockRetentionStore, policy: RetentionPolicy) -> RetentionService {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    RetentionService::new(Arc::new(store), Arc::new(clock), policy)
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        pause: Duration::ZERO,
        pace: 0,
        batch: 10,
        ..RetentionPolicy::default()
    }
}

#[tokio::test]
async fn each_class_is_pruned_by_its_own_age_and_kept_ones_are_not_touched() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut store = MockRetentionStore::new();
    let seen = asked.clone();
    store
        .expect_delete_older()
        .returning(move |what, before, limit| {
            assert_eq!(limit, 10);
            seen.lock().unwrap().push((what, before));
            Ok(0)
        });
    let pruned = service(store, policy()).prune().await.unwrap();
    let days = |n| now() - chrono::Duration::days(n);
    assert_eq!(
        *asked.lock().unwrap(),
        [
            (Prunable::Journal, days(14)),
            (Prunable::DoneJobs, days(7)),
            (Prunable::Deliveries, days(30)),
        ]
    );
    // Dead letters and messages are kept unless configured.
    assert_eq!(pruned.len(), 3);
}

#[tokio::test]
async fn a_class_is_deleted_in_batches_until_one_comes_back_short() {
    let mut store = MockRetentionStore::new();
    let left = Arc::new(Mutex::new(25_u64));
    store
        .expect_delete_older()
        .returning(move |what, _, limit| {
            if what != Prunable::Journal {
                return Ok(0);
            }
            let mut left = left.lock().unwrap();
            let n = (*left).min(u64::from(limit));
            *left -= n;
            Ok(n)
        });
    let policy = RetentionPolicy {
        done_jobs: None,
        deliveries: None,
        ..policy()
    };
    let pruned = service(store, policy).prune().await.unwrap();
    assert_eq!(pruned, [(Prunable::Journal, 25)]);
}

#[tokio::test]
async fn the_preview_counts_without_deleting_and_names_what_is_kept() {
    let mut store = MockRetentionStore::new();
    store.expect_delete_older().never();
    store
        .expect_count_older()
        .returning(|what, _| Ok(if what == Prunable::Journal { 3 } else { 0 }));
    let policy = RetentionPolicy {
        messages: Some(Duration::from_secs(86_400)),
        ..policy()
    };
    let preview = service(store, policy).preview().await.unwrap();
    assert_eq!(
        preview,
        [
            (Prunable::Journal, Some(3)),
            (Prunable::DoneJobs, Some(0)),
            (Prunable::Deliveries, Some(0)),
            (Prunable::DeadLetters, None),
            (Prunable::Messages, Some(0)),
            (Prunable::Events, Some(0)),
        ]
    );
}

#[tokio::test]
async fn a_failing_store_stops_the_pass_with_its_error() {
    let mut store = MockRetentionStore::new();
    store
        .expect_delete_older()
        .times(1)
        .returning(|_, _, _| Err(RepoError::Unavailable("locked".into())));
    assert!(service(store, policy()).prune().await.is_err());
}
