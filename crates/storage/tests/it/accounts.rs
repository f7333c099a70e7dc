//! The account store contract.

use insta_router_domain::{
    Account, AccountId, CrmWebhookUrl, InstagramAccountId, SealedSecret, Username,
};
use insta_router_ports::{AccountRepository, PageRequest, RepoError};

use crate::{at, migrated};

fn account(n: u128, instagram_id: &str) -> Account {
    Account {
        id: AccountId::from_u128(n),
        instagram_account_id: InstagramAccountId::parse("f", instagram_id).unwrap(),
        username: Username::parse(&format!("shop{n}")).unwrap(),
        crm_webhook_url: Some(CrmWebhookUrl::parse("https://crm.example/hook").unwrap()),
        access_token: SealedSecret::new("plain:token".into()),
        webhook_secret: Some(SealedSecret::new("plain:secret".into())),
        delivery: Default::default(),
        token_failure: None,
        created_at: at(0),
        updated_at: at(1),
    }
}

#[tokio::test]
async fn accounts_round_trip_and_are_found_by_both_ids() {
    for (test_db, db) in migrated().await {
        let repo = db.accounts();
        let stored = account(1, "17841400000000001");
        repo.insert(&stored).await.unwrap();
        assert_eq!(
            repo.get(&stored.id).await.unwrap().as_ref(),
            Some(&stored),
            "{:?}",
            test_db.backend()
        );
        let found = repo
            .find_by_instagram_id(&stored.instagram_account_id)
            .await
            .unwrap();
        assert_eq!(found, Some(stored));
        assert_eq!(repo.get(&AccountId::from_u128(99)).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_duplicate_instagram_account_id_is_a_conflict_and_stores_nothing() {
    for (test_db, db) in migrated().await {
        let repo = db.accounts();
        repo.insert(&account(1, "same")).await.unwrap();
        let err = repo.insert(&account(2, "same")).await.unwrap_err();
        assert!(
            matches!(
                err,
                RepoError::Conflict {
                    field: "instagram_account_id"
                }
            ),
            "{:?}: {err:?}",
            test_db.backend()
        );
        assert_eq!(repo.get(&AccountId::from_u128(2)).await.unwrap(), None);
    }
}

#[tokio::test]
async fn listing_pages_through_every_account_once_in_creation_order() {
    for (test_db, db) in migrated().await {
        let repo = db.accounts();
        for n in 1..=5 {
            repo.insert(&account(n, &format!("ig{n}"))).await.unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = repo.list(PageRequest { after, limit: 2 }).await.unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(
                page.items
                    .iter()
                    .map(|a| a.instagram_account_id.to_string()),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            seen,
            ["ig1", "ig2", "ig3", "ig4", "ig5"],
            "{:?}",
            test_db.backend()
        );
    }
}

#[tokio::test]
async fn update_replaces_fields_and_keeps_uniqueness() {
    for (test_db, db) in migrated().await {
        let repo = db.accounts();
        repo.insert(&account(1, "a")).await.unwrap();
        repo.insert(&account(2, "b")).await.unwrap();

        let mut changed = account(1, "a2");
        changed.crm_webhook_url = None;
        changed.webhook_secret = None;
        changed.updated_at = at(50);
        assert!(repo.update(&changed).await.unwrap());
        let got = repo.get(&changed.id).await.unwrap().unwrap();
        assert_eq!(got, changed, "{:?}", test_db.backend());

        let clash = account(2, "a2");
        assert!(matches!(
            repo.update(&clash).await,
            Err(RepoError::Conflict { .. })
        ));
        assert!(!repo.update(&account(3, "c")).await.unwrap());
    }
}

#[tokio::test]
async fn delete_removes_once() {
    for (_test_db, db) in migrated().await {
        let repo = db.accounts();
        repo.insert(&account(1, "a")).await.unwrap();
        assert!(repo.delete(&AccountId::from_u128(1)).await.unwrap());
        assert!(!repo.delete(&AccountId::from_u128(1)).await.unwrap());
        assert_eq!(
            repo.find_by_instagram_id(&InstagramAccountId::parse("f", "a").unwrap())
                .await
                .unwrap(),
            None
        );
    }
}
