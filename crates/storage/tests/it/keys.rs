//! The API key store contract: keys looked up by the hashes of their texts, several at once.

use insta_router_domain::{AccountId, ApiKey, ApiKeyId, KeyScope};
use insta_router_ports::ApiKeyStore;

use crate::{at, migrated};

fn key(n: u128, scope: KeyScope) -> ApiKey {
    ApiKey {
        id: ApiKeyId::from_u128(n),
        name: None,
        scope,
        created_at: at(0),
        last_used_at: None,
        revoked_at: None,
    }
}

#[tokio::test]
async fn keys_are_found_by_their_hashes_several_at_once_revoked_or_not() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.api_keys();
        let admin = key(1, KeyScope::Admin);
        let scoped = key(2, KeyScope::Account(AccountId::from_u128(9)));
        store.insert(&admin, "hash-admin").await.unwrap();
        store.insert(&scoped, "hash-scoped").await.unwrap();
        assert!(
            store.revoke(&scoped.id, at(5)).await.unwrap(),
            "{backend:?}"
        );
        let asked = ["hash-scoped", "hash-unknown", "hash-admin"].map(String::from);
        let mut found = store.find_by_hashes(&asked).await.unwrap();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut revoked = scoped.clone();
        revoked.revoked_at = Some(at(5));
        assert_eq!(
            found,
            vec![
                ("hash-admin".to_owned(), admin.clone()),
                ("hash-scoped".to_owned(), revoked),
            ],
            "{backend:?}"
        );
        assert!(
            store.find_by_hashes(&[]).await.unwrap().is_empty(),
            "{backend:?}"
        );
    }
}
