//! An account's ice breakers and persistent menu, kept at Meta (`/me/messenger_profile`):
//! validated against Meta's limits here, then read and written with the account's token.

use std::sync::Arc;

use insta_router_domain::{AccountId, IceBreaker, MenuItem, Secret, ValidationErrors};
use insta_router_ports::{
    AccountRepository, CredentialCipher, GraphError, MessengerProfile, ProfileField, RepoError,
};

/// Why a profile operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The items break Meta's limits.
    #[error("invalid: {0}")]
    Invalid(ValidationErrors),
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

/// Ice breakers and the persistent menu of accounts.
pub struct ProfileService {
    accounts: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    profile: Arc<dyn MessengerProfile>,
}

impl ProfileService {
    /// A service over these ports.
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        profile: Arc<dyn MessengerProfile>,
    ) -> Self {
        Self {
            accounts,
            cipher,
            profile,
        }
    }

    async fn token(&self, id: &AccountId) -> Result<Secret, ProfileError> {
        let account = self
            .accounts
            .get(id)
            .await?
            .ok_or_else(|| ProfileError::AccountNotFound(id.clone()))?;
        self.cipher
            .open(&account.access_token)
            .map_err(|e| ProfileError::Token(e.to_string()))
    }

    /// The account's ice breakers, as Meta has them.
    ///
    /// # Errors
    ///
    /// [`ProfileError`].
    pub async fn ice_breakers(&self, id: &AccountId) -> Result<Vec<IceBreaker>, ProfileError> {
        let token = self.token(id).await?;
        self.profile
            .ice_breakers(&token)
            .await
            .map_err(ProfileError::Graph)
    }

    /// Replaces the account's ice breakers (none: removes them); returns what Meta has then.
    ///
    /// # Errors
    ///
    /// [`ProfileError::Invalid`] before anything is sent, else [`ProfileError`].
    pub async fn set_ice_breakers(
        &self,
        id: &AccountId,
        items: &[IceBreaker],
    ) -> Result<Vec<IceBreaker>, ProfileError> {
        IceBreaker::check_all(items).map_err(ProfileError::Invalid)?;
        let token = self.token(id).await?;
        let result = if items.is_empty() {
            self.profile
                .delete_profile_field(&token, ProfileField::IceBreakers)
                .await
        } else {
            self.profile.set_ice_breakers(&token, items).await
        };
        result.map_err(ProfileError::Graph)?;
        self.profile
            .ice_breakers(&token)
            .await
            .map_err(ProfileError::Graph)
    }

    /// The account's persistent menu, as Meta has it.
    ///
    /// # Errors
    ///
    /// [`ProfileError`].
    pub async fn persistent_menu(&self, id: &AccountId) -> Result<Vec<MenuItem>, ProfileError> {
        let token = self.token(id).await?;
        self.profile
            .persistent_menu(&token)
            .await
            .map_err(ProfileError::Graph)
    }

    /// Replaces the account's persistent menu; returns what Meta has then.
    ///
    /// # Errors
    ///
    /// [`ProfileError::Invalid`] before anything is sent, else [`ProfileError`].
    pub async fn set_persistent_menu(
        &self,
        id: &AccountId,
        items: &[MenuItem],
    ) -> Result<Vec<MenuItem>, ProfileError> {
        MenuItem::check_all(items).map_err(ProfileError::Invalid)?;
        let token = self.token(id).await?;
        self.profile
            .set_persistent_menu(&token, items)
            .await
            .map_err(ProfileError::Graph)?;
        self.profile
            .persistent_menu(&token)
            .await
            .map_err(ProfileError::Graph)
    }

    /// Removes the account's ice breakers or persistent menu.
    ///
    /// # Errors
    ///
    /// [`ProfileError`].
    pub async fn delete(&self, id: &AccountId, field: ProfileField) -> Result<(), ProfileError> {
        let token = self.token(id).await?;
        self.profile
            .delete_profile_field(&token, field)
            .await
            .map_err(ProfileError::Graph)
    }
}
