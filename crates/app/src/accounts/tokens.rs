//! The access token's lifecycle: Instagram-login long-lived tokens are refreshed before they
//! expire, and the CRM hears once when a token is refreshed or dies.
//!
//! A refresh stores the new token sealed like the old, replacing the old only if it is still
//! the stored one (another instance may have refreshed it first, or a client set a new one).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::{Account, EventId, TokenFailure, TokenLife, is_token_error};
use insta_router_ports::{
    AccountRepository, Clock, CredentialCipher, GraphError, JobQueue, Messenger, RepoError,
};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::{crm_payload, new_id_bits};

/// Records that Meta refused `account`'s token with `message` and, the first time only (not
/// once per failed send), queues `account.token_invalid` for its CRM.
///
/// # Errors
///
/// [`RepoError`] when the mark or the event cannot be stored.
pub(crate) async fn token_refused(
    accounts: &dyn AccountRepository,
    jobs: &dyn JobQueue,
    account: &Account,
    message: &str,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    let failure = TokenFailure {
        at: now,
        message: message.to_owned(),
    };
    if !accounts.mark_token_failure(&account.id, &failure).await? {
        return Ok(());
    }
    tracing::warn!(account_id = %account.id, "Meta refused the account's access token (code 190): {message}");
    let mut details = Map::new();
    details.insert("error".into(), message.into());
    forward(jobs, account, "account.token_invalid", details, now).await
}

/// Queues `event_type` for `account`'s CRM, when it has one.
async fn forward(
    jobs: &dyn JobQueue,
    account: &Account,
    event_type: &str,
    details: Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    let Some(account_id) = account.crm() else {
        return Ok(());
    };
    let body = crm_payload::account_body(event_type, account, details, now);
    let subject = EventId::from_u128(new_id_bits());
    jobs.enqueue(&[crm_payload::delivery(
        account_id,
        subject.as_str(),
        body,
        now,
    )])
    .await
}

/// What one refresh pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    /// Tokens refreshed.
    pub refreshed: u64,
    /// Tokens Meta refused to refresh (now marked invalid).
    pub refused: u64,
    /// Refreshes that failed for a while (Meta down): tried again next pass.
    pub deferred: u64,
}

/// Refreshes Instagram-login long-lived tokens that are at least a day old and within ten
/// days of their expiry.
pub struct TokenRefresher {
    accounts: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    messenger: Arc<dyn Messenger>,
    jobs: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    interval: Duration,
}

impl TokenRefresher {
    /// A refresher over these ports, passing every `interval` once started.
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        messenger: Arc<dyn Messenger>,
        jobs: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        Self {
            accounts,
            cipher,
            messenger,
            jobs,
            clock,
            interval,
        }
    }

    /// Refreshes every due token now.
    ///
    /// # Errors
    ///
    /// [`RepoError`] when the accounts cannot be read or a result cannot be stored.
    pub async fn refresh_due(&self) -> Result<RefreshReport, RepoError> {
        let mut report = RefreshReport::default();
        for account in super::all_accounts(&*self.accounts).await? {
            self.refresh(&account, &mut report).await?;
        }
        Ok(report)
    }

    async fn refresh(
        &self,
        account: &Account,
        report: &mut RefreshReport,
    ) -> Result<(), RepoError> {
        let now = self.clock.now();
        if account.token_failure.is_some()
            || !account.token_life.refresh_due(account.created_at, now)
        {
            return Ok(());
        }
        let Ok(token) = self.cipher.open(&account.access_token) else {
            return Ok(());
        };
        // Instagram-login tokens (`IG...`); Facebook-login page tokens (`EAA...`) are
        // refreshed by other means.
        if !token.expose().starts_with("IG") {
            return Ok(());
        }
        match self.messenger.refresh_token(&token).await {
            Ok(refreshed) => {
                let Ok(sealed) = self.cipher.seal(&refreshed.token) else {
                    return Ok(());
                };
                let expires_at = refreshed
                    .expires_in
                    .and_then(|d| TimeDelta::from_std(d).ok())
                    .map(|d| now + d);
                let life = TokenLife::set(now, expires_at);
                if self
                    .accounts
                    .replace_token(&account.id, &account.access_token, &sealed, life, now)
                    .await?
                {
                    report.refreshed += 1;
                    tracing::info!(account_id = %account.id, expires_at = ?expires_at, "access token refreshed");
                    let mut details = Map::new();
                    details.insert(
                        "token_expires_at".into(),
                        expires_at.map(crm_payload::rfc3339).into(),
                    );
                    let mut updated = account.clone();
                    updated.token_life = life;
                    forward(
                        &*self.jobs,
                        &updated,
                        "account.token_refreshed",
                        details,
                        now,
                    )
                    .await?;
                }
            }
            Err(GraphError::Permanent { code, message, .. }) if is_token_error(code) => {
                report.refused += 1;
                token_refused(&*self.accounts, &*self.jobs, account, &message, now).await?;
            }
            Err(error @ GraphError::Permanent { .. }) => {
                // Refused for another reason (a permission, a token Meta will not refresh
                // yet): it still works until it expires, so it is not marked; a dead one is
                // refused with 190 on the next pass, or on the next send.
                report.deferred += 1;
                tracing::warn!(account_id = %account.id, %error, "the access token could not be refreshed; trying again next pass");
            }
            Err(error) => {
                report.deferred += 1;
                tracing::info!(account_id = %account.id, %error, "access token refresh failed; trying again next pass");
            }
        }
        Ok(())
    }

    /// Refreshes due tokens every interval until `stop` turns true.
    pub fn start(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        let this = self.clone();
        set.spawn(async move {
            loop {
                if let Err(error) = this.refresh_due().await {
                    tracing::warn!(%error, "token refresh pass failed; trying again next interval");
                }
                tokio::select! {
                    () = tokio::time::sleep(this.interval) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
        });
        set
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use insta_router_domain::{
        AccountId, CrmWebhookUrl, InstagramAccountId, JobWork, SealedSecret, Secret, Username,
    };
    use insta_router_ports::{
        MockAccountRepository, MockClock, MockJobQueue, MockMessenger, Page, RefreshedToken,
    };

    use super::*;
    use crate::PlaintextCipher;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn account(token: &str, life: TokenLife) -> Account {
        Account {
            id: AccountId::from_u128(1),
            instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
            username: Username::parse("shop").unwrap(),
            crm_webhook_url: Some(CrmWebhookUrl::parse("https://crm.example/h").unwrap()),
            access_token: SealedSecret::new(format!("plain:{token}")),
            webhook_secret: Some(SealedSecret::new("plain:s".into())),
            delivery: Default::default(),
            token_failure: None,
            token_life: life,
            created_at: now() - TimeDelta::days(100),
            updated_at: now(),
        }
    }

    /// Events queued for the CRM, by type.
    type Queued = Arc<Mutex<Vec<String>>>;

    fn refresher(
        accounts: MockAccountRepository,
        messenger: MockMessenger,
        listed: Account,
    ) -> (TokenRefresher, Queued) {
        let mut accounts = accounts;
        accounts.expect_list().returning(move |_| {
            Ok(Page {
                items: vec![listed.clone()],
                next: None,
            })
        });
        let queued: Queued = Arc::default();
        let mut jobs = MockJobQueue::new();
        let seen = queued.clone();
        jobs.expect_enqueue().returning(move |jobs| {
            for job in jobs {
                let JobWork::CrmDelivery { body } = &job.work else {
                    panic!("{job:?}")
                };
                let body: Value = serde_json::from_str(body).unwrap();
                seen.lock()
                    .unwrap()
                    .push(body["type"].as_str().unwrap().to_owned());
            }
            Ok(())
        });
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let refresher = TokenRefresher::new(
            Arc::new(accounts),
            Arc::new(PlaintextCipher),
            Arc::new(messenger),
            Arc::new(jobs),
            Arc::new(clock),
            Duration::from_secs(3600),
        );
        (refresher, queued)
    }

    fn due() -> TokenLife {
        TokenLife {
            set_at: Some(now() - TimeDelta::days(55)),
            expires_at: Some(now() + TimeDelta::days(5)),
        }
    }

    #[tokio::test]
    async fn a_due_token_is_replaced_with_metas_new_one_and_the_crm_hears_it() {
        let mut messenger = MockMessenger::new();
        messenger
            .expect_refresh_token()
            .times(1)
            .withf(|token| token.expose() == "IGQVJ-old")
            .returning(|_| {
                Ok(RefreshedToken {
                    token: Secret::new("IGQVJ-new".into()),
                    expires_in: Some(Duration::from_secs(60 * 86_400)),
                })
            });
        let mut accounts = MockAccountRepository::new();
        accounts
            .expect_replace_token()
            .times(1)
            .withf(|_, old, new, life, _| {
                old.as_str() == "plain:IGQVJ-old"
                    && new.as_str() == "plain:IGQVJ-new"
                    && *life == TokenLife::set(now(), Some(now() + TimeDelta::days(60)))
            })
            .returning(|_, _, _, _, _| Ok(true));
        let (refresher, queued) = refresher(accounts, messenger, account("IGQVJ-old", due()));
        let report = refresher.refresh_due().await.unwrap();
        assert_eq!(report.refreshed, 1);
        assert_eq!(*queued.lock().unwrap(), ["account.token_refreshed"]);
    }

    #[tokio::test]
    async fn tokens_not_due_or_not_instagram_login_are_left_alone() {
        for listed in [
            account(
                "IGQVJ-old",
                TokenLife::set(now() - TimeDelta::days(1), None),
            ),
            account("EAAB-page-token", due()),
        ] {
            let mut messenger = MockMessenger::new();
            messenger.expect_refresh_token().never();
            let (refresher, queued) = refresher(MockAccountRepository::new(), messenger, listed);
            assert_eq!(
                refresher.refresh_due().await.unwrap(),
                RefreshReport::default()
            );
            assert!(queued.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_dead_token_is_marked_and_told_once() {
        let dead = || {
            let mut messenger = MockMessenger::new();
            messenger.expect_refresh_token().returning(|_| {
                Err(GraphError::Permanent {
                    code: Some(190),
                    subcode: Some(463),
                    message: "Session has expired".into(),
                })
            });
            messenger
        };
        // The first refusal marks the token and is forwarded; one found marked already is not.
        for (newly, events) in [(true, 1), (false, 0)] {
            let mut accounts = MockAccountRepository::new();
            accounts
                .expect_mark_token_failure()
                .times(1)
                .returning(move |_, _| Ok(newly));
            let (refresher, queued) = refresher(accounts, dead(), account("IGQVJ-old", due()));
            assert_eq!(refresher.refresh_due().await.unwrap().refused, 1);
            let queued = queued.lock().unwrap();
            assert_eq!(queued.len(), events);
            assert!(queued.iter().all(|t| t == "account.token_invalid"));
        }
    }
}
