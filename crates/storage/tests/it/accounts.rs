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
        token_life: Default::default(),
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
async fn which_of_several_accounts_exist_is_one_answer() {
    for (test_db, db) in migrated().await {
        let repo = db.accounts();
        repo.insert(&account(1, "17841400000000001")).await.unwrap();
        repo.insert(&account(2, "17841400000000002")).await.unwrap();
        let asked = [
            AccountId::from_u128(2),
            AccountId::from_u128(3),
            AccountId::from_u128(1),
        ];
        let mut found = repo.existing(&asked).await.unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![AccountId::from_u128(1), AccountId::from_u128(2)],
            "{:?}",
            test_db.backend()
        );
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

#[tokio::test]
async fn a_refused_token_is_marked_once_and_a_refresh_replaces_only_the_token_it_read() {
    use insta_router_domain::{TokenFailure, TokenLife};

    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let repo = db.accounts();
        let mut stored = account(1, "17841400000000001");
        stored.token_life = TokenLife::set(at(0), Some(at(5_184_000)));
        repo.insert(&stored).await.unwrap();
        assert_eq!(
            repo.get(&stored.id).await.unwrap().unwrap().token_life,
            stored.token_life,
            "{backend:?}"
        );

        // Compare-and-set on the sealed token: the second refresh read a token that is gone.
        let old = stored.access_token.clone();
        let new = SealedSecret::new("plain:token-2".into());
        let life = TokenLife::set(at(100), Some(at(100 + 5_184_000)));
        assert!(
            repo.replace_token(&stored.id, &old, &new, life, at(100))
                .await
                .unwrap()
        );
        let other = SealedSecret::new("plain:token-3".into());
        assert!(
            !repo
                .replace_token(&stored.id, &old, &other, life, at(101))
                .await
                .unwrap(),
            "{backend:?}"
        );
        let refreshed = repo.get(&stored.id).await.unwrap().unwrap();
        assert_eq!(refreshed.access_token, new, "{backend:?}");
        assert_eq!(refreshed.token_life, life, "{backend:?}");
        assert_eq!(refreshed.updated_at, at(100), "{backend:?}");

        let failure = |secs| TokenFailure {
            at: at(secs),
            message: "Session has expired".into(),
        };
        assert!(
            repo.mark_token_failure(&stored.id, &failure(200))
                .await
                .unwrap(),
            "{backend:?}"
        );
        assert!(
            !repo
                .mark_token_failure(&stored.id, &failure(201))
                .await
                .unwrap(),
            "{backend:?}"
        );
        let marked = repo.get(&stored.id).await.unwrap().unwrap();
        assert_eq!(
            marked.token_failure.unwrap().at,
            at(200),
            "the first refusal stands"
        );
    }
}
