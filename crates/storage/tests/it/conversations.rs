//! The conversation store contract.

use insta_router_domain::{Conversation, InstagramAccountId, InstagramUserId};
use insta_router_ports::{ConversationRepository, PageRequest};

use crate::{at, migrated};

fn conversation(account: &str, customer: &str, secs: i64, inbound: bool) -> Conversation {
    Conversation::start(
        InstagramAccountId::parse("a", account).unwrap(),
        InstagramUserId::parse("c", customer).unwrap(),
        at(secs),
        inbound,
    )
}

#[tokio::test]
async fn recording_merges_timestamps_whatever_the_order() {
    for (test_db, db) in migrated().await {
        let repo = db.conversations();
        let backend = test_db.backend();
        repo.record(&conversation("acct", "cust", 100, false))
            .await
            .unwrap();
        let id = conversation("acct", "cust", 0, false).id;
        let got = repo.get(&id).await.unwrap().unwrap();
        assert_eq!(
            (got.started_at, got.last_message_at, got.last_inbound_at),
            (at(100), at(100), None),
            "{backend:?}"
        );

        repo.record(&conversation("acct", "cust", 50, true))
            .await
            .unwrap();
        repo.record(&conversation("acct", "cust", 200, false))
            .await
            .unwrap();
        repo.record(&conversation("acct", "cust", 150, true))
            .await
            .unwrap();
        repo.record(&conversation("acct", "cust", 120, true))
            .await
            .unwrap();
        let got = repo.get(&id).await.unwrap().unwrap();
        assert_eq!(
            (got.started_at, got.last_message_at, got.last_inbound_at),
            (at(50), at(200), Some(at(150))),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn several_conversations_are_read_with_one_query() {
    for (test_db, db) in migrated().await {
        let repo = db.conversations();
        let backend = test_db.backend();
        let first = conversation("acct", "c1", 10, true);
        let second = conversation("acct", "c2", 20, false);
        repo.record(&first).await.unwrap();
        repo.record(&second).await.unwrap();
        let unknown = conversation("acct", "c3", 0, false).id;
        let mut found = repo
            .get_many(&[second.id.clone(), unknown, first.id.clone()])
            .await
            .unwrap();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        let mut expected = vec![first, second];
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(found, expected, "{backend:?}");
    }
}

#[tokio::test]
async fn an_account_lists_its_conversations_most_recent_first() {
    for (test_db, db) in migrated().await {
        let repo = db.conversations();
        for (customer, secs) in [("c1", 10), ("c2", 30), ("c3", 20), ("c4", 30)] {
            repo.record(&conversation("acct", customer, secs, true))
                .await
                .unwrap();
        }
        repo.record(&conversation("other", "c9", 99, true))
            .await
            .unwrap();
        let account = InstagramAccountId::parse("a", "acct").unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = repo
                .list_by_account(&account, PageRequest { after, limit: 3 })
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|c| c.customer_id.to_string()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["c4", "c2", "c3", "c1"], "{:?}", test_db.backend());
    }
}
