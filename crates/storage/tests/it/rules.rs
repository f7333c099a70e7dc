//! Rules round-trip on every backend.

use insta_router_domain::{AccountId, RuleId};
use insta_router_ports::{RuleRepository, StoredRule};

use crate::{at, migrated};

fn rule(n: u128, account: u128, secs: i64) -> StoredRule {
    StoredRule {
        id: RuleId::from_u128(n),
        account_id: AccountId::from_u128(account),
        priority: i32::try_from(n).unwrap(),
        enabled: true,
        definition: format!(r#"{{"name":"rule {n}","text":"it's ☕"}}"#),
        created_at: at(secs),
        updated_at: at(secs),
    }
}

#[tokio::test]
async fn rules_round_trip_per_account_in_creation_order() {
    for (test_db, db) in migrated().await {
        let repo = db.rules();
        for (n, account, secs) in [(1, 1, 5), (2, 1, 1), (3, 2, 3)] {
            repo.insert(&rule(n, account, secs)).await.unwrap();
        }
        assert_eq!(
            repo.get(&RuleId::from_u128(1)).await.unwrap(),
            Some(rule(1, 1, 5)),
            "{:?}",
            test_db.backend()
        );
        let ids: Vec<RuleId> = repo
            .list_by_account(&AccountId::from_u128(1))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![RuleId::from_u128(2), RuleId::from_u128(1)]);

        let mut changed = rule(1, 1, 5);
        changed.enabled = false;
        changed.priority = -4;
        changed.definition = "{}".to_owned();
        changed.updated_at = at(9);
        assert!(repo.update(&changed).await.unwrap());
        assert_eq!(repo.get(&changed.id).await.unwrap(), Some(changed.clone()));
        assert!(!repo.update(&rule(99, 1, 0)).await.unwrap());

        assert!(repo.delete(&changed.id).await.unwrap());
        assert!(!repo.delete(&changed.id).await.unwrap());
        assert_eq!(repo.get(&changed.id).await.unwrap(), None);
    }
}
