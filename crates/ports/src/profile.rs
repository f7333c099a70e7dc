//! The account's messaging profile at Meta (`/me/messenger_profile`, `platform: instagram`):
//! ice breakers and the persistent menu.

use async_trait::async_trait;
use insta_router_domain::{IceBreaker, MenuItem, Secret};

use crate::GraphError;

/// Which part of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    /// `ice_breakers`.
    IceBreakers,
    /// `persistent_menu`.
    PersistentMenu,
}

impl ProfileField {
    /// Meta's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IceBreakers => "ice_breakers",
            Self::PersistentMenu => "persistent_menu",
        }
    }
}

/// Reads and writes an account's messaging profile with its token.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessengerProfile: Send + Sync {
    /// The ice breakers set (empty when none).
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn ice_breakers(&self, token: &Secret) -> Result<Vec<IceBreaker>, GraphError>;

    /// Replaces the ice breakers.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn set_ice_breakers(
        &self,
        token: &Secret,
        items: &[IceBreaker],
    ) -> Result<(), GraphError>;

    /// The persistent menu's items (empty when none).
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn persistent_menu(&self, token: &Secret) -> Result<Vec<MenuItem>, GraphError>;

    /// Replaces the persistent menu.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn set_persistent_menu(
        &self,
        token: &Secret,
        items: &[MenuItem],
    ) -> Result<(), GraphError>;

    /// Removes a part of the profile.
    ///
    /// # Errors
    ///
    /// [`GraphError`].
    async fn delete_profile_field(
        &self,
        token: &Secret,
        field: ProfileField,
    ) -> Result<(), GraphError>;
}
