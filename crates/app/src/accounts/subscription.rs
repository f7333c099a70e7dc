//! An account's webhook subscription at Meta: until an Instagram account is subscribed to
//! the app's webhook fields (`POST /me/subscribed_apps`), Meta sends nothing for it.

use std::sync::Arc;

use insta_router_domain::{Account, AccountId, Secret};
use insta_router_ports::{AccountRepository, CredentialCipher, GraphError, Messenger, RepoError};

/// The fields every account is subscribed to: messages and their events, and comments.
pub const SUBSCRIBED_FIELDS: &[&str] = &[
    "messages",
    "messaging_postbacks",
    "messaging_seen",
    "messaging_reactions",
    "messaging_referral",
    "comments",
    "live_comments",
];

/// Why a subscription could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The account's token cannot be opened.
    #[error("the account's access token cannot be opened: {0}")]
    Token(String),
    /// Meta refused or did not answer.
    #[error(transparent)]
    Graph(GraphError),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// Subscribes accounts to the app's webhook fields, and reads what they are subscribed to.
pub struct SubscriptionService {
    accounts: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    messenger: Arc<dyn Messenger>,
    on_create: bool,
}

impl SubscriptionService {
    /// A service over these ports; `on_create`: subscribe every account when it is created.
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        messenger: Arc<dyn Messenger>,
        on_create: bool,
    ) -> Self {
        Self {
            accounts,
            cipher,
            messenger,
            on_create,
        }
    }

    /// Subscribes account `id` to [`SUBSCRIBED_FIELDS`]; returns the fields Meta reports
    /// afterwards.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError`].
    pub async fn subscribe(&self, id: &AccountId) -> Result<Vec<String>, SubscriptionError> {
        let token = self.token(&self.account(id).await?)?;
        self.subscribe_with(&token).await?;
        self.fields_with(&token).await
    }

    /// The fields account `id` is subscribed to, as Meta reports them.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError`].
    pub async fn current(&self, id: &AccountId) -> Result<Vec<String>, SubscriptionError> {
        let token = self.token(&self.account(id).await?)?;
        self.fields_with(&token).await
    }

    /// Subscribes a newly created account when configured to; a failure is logged, not
    /// returned (the account exists either way, and `POST .../subscribe` tries again).
    pub async fn account_created(&self, account: &Account) {
        if !self.on_create {
            return;
        }
        let subscribed = match self.token(account) {
            Ok(token) => self.subscribe_with(&token).await,
            Err(error) => Err(error),
        };
        match subscribed {
            Ok(()) => {
                tracing::info!(account_id = %account.id, "account subscribed to the app's webhook fields")
            }
            Err(error) => tracing::warn!(
                account_id = %account.id,
                %error,
                "cannot subscribe the new account to the app's webhook fields; Meta sends it nothing until POST /api/v1/accounts/{}/subscribe succeeds",
                account.id
            ),
        }
    }

    async fn account(&self, id: &AccountId) -> Result<Account, SubscriptionError> {
        self.accounts
            .get(id)
            .await?
            .ok_or_else(|| SubscriptionError::AccountNotFound(id.clone()))
    }

    fn token(&self, account: &Account) -> Result<Secret, SubscriptionError> {
        self.cipher
            .open(&account.access_token)
            .map_err(|e| SubscriptionError::Token(e.to_string()))
    }

    async fn subscribe_with(&self, token: &Secret) -> Result<(), SubscriptionError> {
        let fields: Vec<String> = SUBSCRIBED_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        self.messenger
            .subscribe(token, &fields)
            .await
            .map_err(SubscriptionError::Graph)
    }

    async fn fields_with(&self, token: &Secret) -> Result<Vec<String>, SubscriptionError> {
        self.messenger
            .subscribed_fields(token)
            .await
            .map_err(SubscriptionError::Graph)
    }
}
