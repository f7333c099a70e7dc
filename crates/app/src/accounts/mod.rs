//! Managing connected accounts.

use std::sync::Arc;
use std::time::Duration;

use insta_router_domain::{
    Account, AccountDraft, AccountId, AccountPatch, FieldError, InstagramAccountId, SealedSecret,
    Secret, ValidationErrors,
};
use insta_router_ports::{
    AccountRepository, CipherError, Clock, CredentialCipher, Page, PageRequest, RepoError,
};

use crate::new_id_bits;

pub(crate) mod profile;
pub(crate) mod subscription;
pub(crate) mod tokens;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// No account has that id.
    #[error("account {0} not found")]
    NotFound(AccountId),
    /// The input is invalid.
    #[error("invalid account: {0}")]
    Invalid(ValidationErrors),
    /// A unique field's value belongs to another account.
    #[error("{field} belongs to another account")]
    Conflict {
        /// The field, as an API client spells it.
        field: &'static str,
    },
    /// A credential could not be sealed.
    #[error("cannot seal a credential: {0}")]
    Sealing(#[from] CipherError),
    /// The store failed.
    #[error(transparent)]
    Storage(RepoError),
}

impl From<RepoError> for AccountError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::Conflict { field } => Self::Conflict { field },
            RepoError::InvalidCursor => {
                Self::Invalid(FieldError::new("cursor", "is not a cursor this API returned").into())
            }
            other => Self::Storage(other),
        }
    }
}

/// Every account, read page by page (for passes over all of them: re-encryption, token
/// refreshes, the doctor).
///
/// # Errors
///
/// [`RepoError`] when a page cannot be read.
pub(crate) async fn all_accounts(repo: &dyn AccountRepository) -> Result<Vec<Account>, RepoError> {
    let mut accounts = Vec::new();
    let mut after = None;
    loop {
        let page = repo
            .list(PageRequest {
                after: after.take(),
                limit: PageRequest::MAX_LIMIT,
            })
            .await?;
        accounts.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(accounts),
        }
    }
}

/// What [`AccountService::reseal`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// Accounts looked at.
    pub accounts: u64,
    /// Credentials sealed again.
    pub credentials: u64,
    /// Accounts whose credentials could not be opened, and why.
    pub unreadable: Vec<(AccountId, String)>,
}

/// Creates, reads, changes and removes connected accounts; seals credentials on the way in.
pub struct AccountService {
    repo: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    clock: Arc<dyn Clock>,
    secret_grace: Duration,
}

/// How long a replaced CRM signing secret keeps signing next to its successor, unless
/// configured otherwise.
pub const DEFAULT_SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

impl AccountService {
    /// A service over these ports.
    pub fn new(
        repo: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            cipher,
            clock,
            secret_grace: DEFAULT_SECRET_GRACE,
        }
    }

    /// Sets how long a replaced CRM signing secret keeps signing next to the new one.
    #[must_use]
    pub fn with_secret_grace(mut self, grace: Duration) -> Self {
        self.secret_grace = grace;
        self
    }

    /// Connects a new account.
    ///
    /// # Errors
    ///
    /// [`AccountError::Conflict`] when the Instagram account id is taken, or
    /// [`AccountError::Storage`].
    #[tracing::instrument(skip_all, fields(instagram_account_id = %draft.instagram_account_id))]
    pub async fn create(&self, draft: AccountDraft) -> Result<Account, AccountError> {
        let now = self.clock.now();
        let account = Account {
            id: AccountId::from_u128(new_id_bits()),
            instagram_account_id: draft.instagram_account_id,
            username: draft.username,
            crm_webhook_url: draft.crm_webhook_url,
            access_token: self.cipher.seal(&draft.access_token)?,
            webhook_secret: draft
                .webhook_secret
                .map(|s| self.cipher.seal(&s))
                .transpose()?,
            delivery: Default::default(),
            token_failure: None,
            token_life: insta_router_domain::TokenLife::set(now, None),
            created_at: now,
            updated_at: now,
        };
        self.repo.insert(&account).await?;
        tracing::info!(account_id = %account.id, "account created");
        Ok(account)
    }

    /// Makes sure the account configured by environment (`INSTAGRAM_BUSINESS_ACCOUNT_ID`
    /// with `INSTAGRAM_PAGE_ACCESS_TOKEN`, as the original service was set up) is connected
    /// and holds that token, so it can be sent from and auto-replied for like any other:
    /// created when missing (username `ig_<id>`, no CRM), its token replaced when the
    /// environment's differs.
    ///
    /// # Errors
    ///
    /// [`AccountError::Invalid`] for a malformed id or token, or [`AccountError::Storage`].
    pub async fn ensure_configured(
        &self,
        instagram_account_id: &str,
        token: Secret,
    ) -> Result<Account, AccountError> {
        let draft = AccountDraft::parse(
            instagram_account_id,
            &format!("ig_{instagram_account_id}")
                .chars()
                .take(30)
                .collect::<String>(),
            token,
            None,
            None,
        )
        .map_err(AccountError::Invalid)?;
        let instagram_id = draft.instagram_account_id.clone();
        match self.repo.find_by_instagram_id(&instagram_id).await? {
            None => match self.create(draft).await {
                // Another instance created it at the same moment.
                Err(AccountError::Conflict { .. }) => {
                    self.repo.find_by_instagram_id(&instagram_id).await?.ok_or(
                        AccountError::Conflict {
                            field: "instagram_account_id",
                        },
                    )
                }
                other => other,
            },
            Some(mut account) => {
                let current = self.cipher.open(&account.access_token).ok();
                if current.as_ref().map(Secret::expose) != Some(draft.access_token.expose()) {
                    account.access_token = self.cipher.seal(&draft.access_token)?;
                    account.token_failure = None;
                    account.updated_at = self.clock.now();
                    account.token_life =
                        insta_router_domain::TokenLife::set(account.updated_at, None);
                    self.repo.update(&account).await?;
                    tracing::info!(account_id = %account.id, "the configured account's access token was replaced by INSTAGRAM_PAGE_ACCESS_TOKEN");
                }
                Ok(account)
            }
        }
    }

    /// The account with id `id`.
    ///
    /// # Errors
    ///
    /// [`AccountError::NotFound`] or [`AccountError::Storage`].
    pub async fn get(&self, id: &AccountId) -> Result<Account, AccountError> {
        self.repo
            .get(id)
            .await?
            .ok_or_else(|| AccountError::NotFound(id.clone()))
    }

    /// The account Meta knows as `id`, if it is connected.
    ///
    /// # Errors
    ///
    /// [`AccountError::Storage`].
    pub async fn find_by_instagram_id(
        &self,
        id: &InstagramAccountId,
    ) -> Result<Option<Account>, AccountError> {
        Ok(self.repo.find_by_instagram_id(id).await?)
    }

    /// A page of accounts, oldest first.
    ///
    /// # Errors
    ///
    /// [`AccountError::Storage`].
    pub async fn list(&self, page: PageRequest) -> Result<Page<Account>, AccountError> {
        Ok(self.repo.list(page).await?)
    }

    /// Applies a partial update.
    ///
    /// # Errors
    ///
    /// [`AccountError::NotFound`], [`AccountError::Invalid`] when the result would have a CRM
    /// URL without a secret, [`AccountError::Conflict`], or [`AccountError::Storage`].
    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn update(
        &self,
        id: &AccountId,
        patch: AccountPatch,
    ) -> Result<Account, AccountError> {
        let mut account = self.get(id).await?;
        if patch.is_empty() {
            return Ok(account);
        }
        patch
            .check_against(&account)
            .map_err(AccountError::Invalid)?;
        let AccountPatch {
            instagram_account_id,
            username,
            access_token,
            crm_webhook_url,
            webhook_secret,
        } = patch;
        if let Some(value) = instagram_account_id {
            account.instagram_account_id = value;
        }
        if let Some(value) = username {
            account.username = value;
        }
        let now = self.clock.now();
        if let Some(value) = access_token {
            account.access_token = self.cipher.seal(&value)?;
            // A new token is how an account whose token Meta refused comes back.
            account.token_failure = None;
            account.token_life = insta_router_domain::TokenLife::set(now, None);
        }
        // Setting the CRM URL or secret again is how an endpoint disabled by a 410 comes back.
        if crm_webhook_url.is_some() || webhook_secret.is_some() {
            account.delivery.disabled_at = None;
        }
        if let Some(value) = crm_webhook_url {
            account.crm_webhook_url = value;
        }
        if let Some(value) = webhook_secret {
            // The old secret keeps signing next to the new one for the grace period.
            if let Some(old) = account.webhook_secret.replace(self.cipher.seal(&value)?) {
                account.delivery.previous_secret = Some(old);
                account.delivery.previous_secret_until =
                    chrono::TimeDelta::from_std(self.secret_grace)
                        .ok()
                        .and_then(|grace| now.checked_add_signed(grace));
            }
        }
        account.updated_at = now;
        if !self.repo.update(&account).await? {
            return Err(AccountError::NotFound(id.clone()));
        }
        tracing::info!("account updated");
        Ok(account)
    }

    /// Seals again the credentials not sealed under the cipher's current key (`all`), or
    /// only those still in plain text (written before encryption). Accounts whose
    /// credentials cannot be opened (a key no longer configured) are reported and left.
    ///
    /// # Errors
    ///
    /// [`AccountError::Sealing`] or [`AccountError::Storage`].
    pub async fn reseal(&self, all: bool) -> Result<ResealReport, AccountError> {
        let mut report = ResealReport::default();
        for mut account in all_accounts(&*self.repo).await? {
            report.accounts += 1;
            match self.reseal_account(&mut account, all) {
                Ok(0) => {}
                Ok(n) => {
                    account.updated_at = self.clock.now();
                    if self.repo.update(&account).await? {
                        report.credentials += n;
                    }
                }
                Err(error) => report
                    .unreadable
                    .push((account.id.clone(), error.to_string())),
            }
        }
        Ok(report)
    }

    /// Reseals `account`'s credentials in place; how many changed.
    fn reseal_account(&self, account: &mut Account, all: bool) -> Result<u64, CipherError> {
        let stale = |sealed: &SealedSecret| {
            if all {
                !self.cipher.is_current(sealed)
            } else {
                sealed.as_str().starts_with(crate::system::PLAIN_PREFIX)
            }
        };
        let mut changed = 0;
        for slot in [
            Some(&mut account.access_token),
            account.webhook_secret.as_mut(),
            account.delivery.previous_secret.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if stale(slot) {
                *slot = self.cipher.seal(&self.cipher.open(slot)?)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Disconnects an account. Its stored messages stay.
    ///
    /// # Errors
    ///
    /// [`AccountError::NotFound`] or [`AccountError::Storage`].
    #[tracing::instrument(skip_all, fields(account_id = %id))]
    pub async fn delete(&self, id: &AccountId) -> Result<(), AccountError> {
        if !self.repo.delete(id).await? {
            return Err(AccountError::NotFound(id.clone()));
        }
        tracing::info!("account deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
