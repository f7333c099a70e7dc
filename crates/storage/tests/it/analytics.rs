//! Analytics over stored rows, the same on every backend: message volumes per bucket,
//! direction and kind, unique customers, new conversations, comments.

use insta_router_domain::{Bucket, Direction, InstagramAccountId, MessageKind, TimeRange};
use insta_router_ports::{AnalyticsStore, InboundBatch, InboundStore};

use crate::inbound::message;
use crate::{at, migrated};

#[tokio::test]
async fn volumes_are_counted_per_bucket_direction_and_kind_for_one_account_or_all() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let account = InstagramAccountId::parse("a", "17841400000000001").unwrap();
        let mut echo = message(3, "mid.3", 20);
        echo.direction = Direction::Outbound;
        echo.kind = MessageKind::Image;
        std::mem::swap(&mut echo.sender_id, &mut echo.recipient_id);
        let mut other = message(4, "mid.4", 0);
        other.instagram_account_id = InstagramAccountId::parse("a", "17841400000000002").unwrap();
        db.inbound()
            .store(InboundBatch {
                messages: vec![
                    message(1, "mid.1", 0),
                    message(2, "mid.2", 10),
                    echo,
                    message(5, "mid.5", 3_600),
                    other,
                ],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let range = TimeRange::new(at(-1_000), at(7_200), Bucket::Hour).unwrap();
        let analytics = db.analytics();
        let one = analytics
            .message_volume(Some(account.clone()), &range)
            .await
            .unwrap();
        let first = Bucket::Hour.start_of(at(0));
        let second = Bucket::Hour.start_of(at(3_600));
        let mut counts: Vec<(i64, &str, &str, u64)> = one
            .counts
            .iter()
            .map(|c| {
                (
                    (c.bucket - first).num_hours(),
                    c.direction.as_str(),
                    c.kind.as_str(),
                    c.messages,
                )
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                (0, "inbound", "text", 2),
                (0, "outbound", "image", 1),
                (1, "inbound", "text", 1)
            ],
            "{backend:?}"
        );
        assert_eq!(one.counts.last().unwrap().bucket, second, "{backend:?}");
        assert_eq!(one.unique_customers, 1, "{backend:?}");
        let all = analytics.message_volume(None, &range).await.unwrap();
        assert_eq!(
            all.counts.iter().map(|c| c.messages).sum::<u64>(),
            5,
            "{backend:?}"
        );
        // A range that holds none of them.
        let before = TimeRange::new(at(-300_000), at(-200_000), Bucket::Day).unwrap();
        let none = analytics
            .message_volume(Some(account.clone()), &before)
            .await
            .unwrap();
        assert!(
            none.counts.is_empty() && none.unique_customers == 0,
            "{backend:?}"
        );
    }
}

/// A customer's two messages at 0 and 10 s, a person's answer at 60 s, and the customer's
/// next message at `later` seconds.
fn answered_then_asked(later: i64) -> Vec<insta_router_domain::Message> {
    let mut answer = message(3, "mid.3", 60);
    answer.direction = Direction::Outbound;
    std::mem::swap(&mut answer.sender_id, &mut answer.recipient_id);
    vec![
        message(1, "mid.1", 0),
        message(2, "mid.2", 10),
        answer,
        message(4, "mid.4", later),
    ]
}

#[tokio::test]
async fn a_turn_runs_from_the_customers_first_message_to_the_businesss_next() {
    use insta_router_ports::{Responder, TurnBucket};

    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let account = InstagramAccountId::parse("a", "17841400000000001").unwrap();
        db.inbound()
            .store(InboundBatch {
                messages: answered_then_asked(100),
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let range = TimeRange::new(at(-1_000), at(7_200), Bucket::Hour).unwrap();
        let buckets = db
            .analytics()
            .turn_buckets(Some(account), &range)
            .await
            .unwrap();
        assert_eq!(
            buckets,
            [
                // Unanswered: the turn at 100 s.
                TurnBucket {
                    responder: None,
                    within_seconds: None,
                    turns: 1
                },
                // The turn at 0 s, answered by a person 60 s later.
                TurnBucket {
                    responder: Some(Responder::Human),
                    within_seconds: Some(60),
                    turns: 1
                },
            ],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn the_rollup_answers_as_the_stored_rows_do_and_the_rows_after_it_are_read_live() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let account = InstagramAccountId::parse("a", "17841400000000001").unwrap();
        db.inbound()
            .store(InboundBatch {
                messages: answered_then_asked(3_700),
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let analytics = db.analytics();
        let range = TimeRange::new(at(-3_600), at(7 * 3_600), Bucket::Hour).unwrap();
        let volumes = analytics
            .message_volume(Some(account.clone()), &range)
            .await
            .unwrap();
        let turns = analytics
            .turn_buckets(Some(account.clone()), &range)
            .await
            .unwrap();

        // A pass "three hours later": the hours before then are rebuilt from the rows.
        let report = analytics.refresh_rollup(at(3 * 3_600), 96).await.unwrap();
        assert!(
            !report.busy && report.hours > 0 && report.rows > 0,
            "{backend:?}: {report:?}"
        );
        assert_eq!(
            analytics
                .message_volume(Some(account.clone()), &range)
                .await
                .unwrap(),
            volumes,
            "{backend:?}"
        );
        assert_eq!(
            analytics
                .turn_buckets(Some(account.clone()), &range)
                .await
                .unwrap(),
            turns,
            "{backend:?}"
        );

        // What lands after the pass in an hour it did not cover is read live; what lands in
        // an hour it covered is counted at the next pass that rebuilds that hour.
        db.inbound()
            .store(InboundBatch {
                messages: vec![message(5, "mid.5", 4 * 3_600), message(6, "mid.6", 30)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let inbound = |v: &insta_router_ports::MessageVolume| {
            v.counts
                .iter()
                .filter(|c| c.direction == Direction::Inbound)
                .map(|c| c.messages)
                .sum::<u64>()
        };
        let now = analytics
            .message_volume(Some(account.clone()), &range)
            .await
            .unwrap();
        assert_eq!(inbound(&now), inbound(&volumes) + 1, "{backend:?}");
        analytics.refresh_rollup(at(5 * 3_600), 96).await.unwrap();
        let rebuilt = analytics
            .message_volume(Some(account.clone()), &range)
            .await
            .unwrap();
        assert_eq!(inbound(&rebuilt), inbound(&volumes) + 2, "{backend:?}");
        // The rollup sums accounts for "all".
        let all = analytics.message_volume(None, &range).await.unwrap();
        assert_eq!(inbound(&all), inbound(&rebuilt), "{backend:?}");
    }
}

#[tokio::test]
async fn one_instance_at_a_time_rebuilds_the_rollup() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        db.inbound()
            .store(InboundBatch {
                messages: vec![message(1, "mid.1", 0)],
                ..InboundBatch::default()
            })
            .await
            .unwrap();
        let analytics = db.analytics();
        // Another instance holds the lease.
        insta_router_storage::testing::execute(
            &db,
            "UPDATE analytics_rollup SET lease_until = 9000000000000000000 WHERE id = 1",
        )
        .await;
        let busy = analytics.refresh_rollup(at(3 * 3_600), 96).await.unwrap();
        assert!(busy.busy && busy.hours == 0, "{backend:?}: {busy:?}");
        let rows =
            insta_router_storage::testing::rows(&db, "SELECT metric FROM analytics_hourly").await;
        assert!(rows.is_empty(), "nothing written: {backend:?} {rows:?}");
        // Its lease ran out.
        insta_router_storage::testing::execute(
            &db,
            "UPDATE analytics_rollup SET lease_until = 1 WHERE id = 1",
        )
        .await;
        let done = analytics.refresh_rollup(at(3 * 3_600), 96).await.unwrap();
        assert!(!done.busy && done.rows > 0, "{backend:?}: {done:?}");
        let lease =
            insta_router_storage::testing::rows(&db, "SELECT lease_until FROM analytics_rollup")
                .await;
        assert!(
            lease[0]["lease_until"].is_null(),
            "released: {backend:?} {lease:?}"
        );
    }
}
