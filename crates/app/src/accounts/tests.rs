//! Accounts against a mocked repository: sealing, updates, secret rotation, missing accounts.

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::Secret;
use insta_router_ports::{MockAccountRepository, MockClock};
use mockall::predicate::always;

use super::*;
use crate::PlaintextCipher;

fn clock_at(secs: i64) -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock
        .expect_now()
        .returning(move || DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs));
    Arc::new(clock)
}

fn service(repo: MockAccountRepository, secs: i64) -> AccountService {
    AccountService::new(Arc::new(repo), Arc::new(PlaintextCipher), clock_at(secs))
}

fn draft() -> AccountDraft {
    AccountDraft::parse(
        "17841400000000001",
        "shop",
        Secret::new("token".into()),
        Some("https://crm.example/hook"),
        Some(Secret::new("s3cret".into())),
    )
    .unwrap()
}

#[tokio::test]
async fn create_seals_credentials_and_stamps_times() {
    let mut repo = MockAccountRepository::new();
    repo.expect_insert()
        .withf(|a| {
            a.access_token.as_str() == "plain:token"
                && a.webhook_secret.as_ref().map(|s| s.as_str()) == Some("plain:s3cret")
                && a.created_at.timestamp() == 7
                && a.id.as_str().starts_with("acc_")
        })
        .times(1)
        .returning(|_| Ok(()));
    let account = service(repo, 7).create(draft()).await.unwrap();
    assert_eq!(account.created_at, account.updated_at);
}

#[tokio::test]
async fn create_maps_a_store_conflict() {
    let mut repo = MockAccountRepository::new();
    repo.expect_insert().returning(|_| {
        Err(RepoError::Conflict {
            field: "instagram_account_id",
        })
    });
    let err = service(repo, 0).create(draft()).await.unwrap_err();
    assert!(matches!(
        err,
        AccountError::Conflict {
            field: "instagram_account_id"
        }
    ));
}

fn stored() -> Account {
    let now = DateTime::<Utc>::UNIX_EPOCH;
    let d = draft();
    Account {
        id: AccountId::from_u128(9),
        instagram_account_id: d.instagram_account_id,
        username: d.username,
        crm_webhook_url: d.crm_webhook_url,
        access_token: PlaintextCipher.seal(&d.access_token).unwrap(),
        webhook_secret: None,
        delivery: Default::default(),
        token_failure: None,
        token_life: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn update_changes_only_the_given_fields() {
    let mut repo = MockAccountRepository::new();
    repo.expect_get().returning(|_| Ok(Some(stored())));
    repo.expect_update()
        .withf(|a| {
            a.username.as_str() == "renamed"
                && a.access_token.as_str() == "plain:token"
                && a.webhook_secret.as_ref().map(|s| s.as_str()) == Some("plain:new")
                && a.updated_at.timestamp() == 50
        })
        .times(1)
        .returning(|_| Ok(true));
    let patch = AccountPatch::parse(
        None,
        Some("renamed"),
        None,
        None,
        Some(Secret::new("new".into())),
    )
    .unwrap();
    let updated = service(repo, 50)
        .update(&AccountId::from_u128(9), patch)
        .await
        .unwrap();
    assert_eq!(updated.created_at.timestamp(), 0);
}

#[tokio::test]
async fn a_new_secret_keeps_the_old_one_signing_for_the_grace_period_and_re_enables() {
    let mut repo = MockAccountRepository::new();
    repo.expect_get().returning(|_| {
        let mut account = stored();
        account.webhook_secret = Some(PlaintextCipher.seal(&Secret::new("old".into())).unwrap());
        account.delivery.disabled_at = Some(DateTime::<Utc>::UNIX_EPOCH);
        Ok(Some(account))
    });
    repo.expect_update().times(1).returning(|_| Ok(true));
    let patch =
        AccountPatch::parse(None, None, None, None, Some(Secret::new("new".into()))).unwrap();
    let updated = service(repo, 50)
        .with_secret_grace(Duration::from_secs(3600))
        .update(&AccountId::from_u128(9), patch)
        .await
        .unwrap();
    assert_eq!(
        updated.webhook_secret.as_ref().map(|s| s.as_str()),
        Some("plain:new")
    );
    let delivery = &updated.delivery;
    assert_eq!(delivery.disabled_at, None);
    assert_eq!(
        delivery.previous_secret.as_ref().map(|s| s.as_str()),
        Some("plain:old")
    );
    let until = delivery.previous_secret_until.unwrap();
    assert_eq!(until.timestamp(), 50 + 3600);
    assert!(
        delivery
            .previous_secret_at(until - TimeDelta::seconds(1))
            .is_some()
    );
    assert!(delivery.previous_secret_at(until).is_none());
}

#[tokio::test]
async fn update_of_a_missing_account_is_not_found() {
    let mut repo = MockAccountRepository::new();
    repo.expect_get().with(always()).returning(|_| Ok(None));
    repo.expect_update().never();
    let patch = AccountPatch::parse(None, Some("x"), None, None, None).unwrap();
    let err = service(repo, 0)
        .update(&AccountId::from_u128(1), patch)
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::NotFound(_)));
}

#[tokio::test]
async fn delete_reports_a_missing_account() {
    let mut repo = MockAccountRepository::new();
    repo.expect_delete().returning(|_| Ok(false));
    let err = service(repo, 0)
        .delete(&AccountId::from_u128(1))
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::NotFound(_)));
}
