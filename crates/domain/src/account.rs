//! Connected Instagram accounts.

use chrono::{DateTime, Utc};
use url::Url;

use crate::error::collect;
use crate::{AccountId, FieldError, InstagramAccountId, SealedSecret, Secret, ValidationErrors};

/// Longest secret or access token we accept, in bytes.
const MAX_SECRET_LEN: usize = 4096;
/// Longest CRM URL we accept, in bytes.
const MAX_URL_LEN: usize = 2048;

/// A connected Instagram professional account, as stored.
///
/// Credentials are kept sealed (see [`SealedSecret`]); only the code that uses them opens them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Our id.
    pub id: AccountId,
    /// The id Meta puts in webhooks for this account; unique among accounts.
    pub instagram_account_id: InstagramAccountId,
    /// The account's Instagram username, without `@`.
    pub username: Username,
    /// Where this account's events are forwarded, if anywhere.
    pub crm_webhook_url: Option<CrmWebhookUrl>,
    /// The Graph API access token, sealed.
    pub access_token: SealedSecret,
    /// The secret that signs CRM deliveries, sealed. Present whenever a CRM URL is.
    pub webhook_secret: Option<SealedSecret>,
    /// Where deliveries to its CRM stand: disabled, rotating secrets.
    pub delivery: CrmDeliveryState,
    /// Set when Meta said the access token no longer works (code 190): sends fail until a
    /// new token is set.
    pub token_failure: Option<TokenFailure>,
    /// When the access token was set and when it expires.
    pub token_life: crate::TokenLife,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Meta refused the account's access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailure {
    /// When.
    pub at: DateTime<Utc>,
    /// What Meta said.
    pub message: String,
}

/// The state of an account's CRM endpoint that deliveries change or depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmDeliveryState {
    /// Set when the CRM answered 410 Gone: nothing is sent until the URL or secret is set
    /// again. Deliveries meanwhile are dead-lettered, to be replayed.
    pub disabled_at: Option<DateTime<Utc>>,
    /// The signing secret before the last change, sealed; it keeps signing alongside the new
    /// one until `previous_secret_until`, so a CRM can switch over without rejecting anything.
    pub previous_secret: Option<SealedSecret>,
    /// The end of the rotation's grace period.
    pub previous_secret_until: Option<DateTime<Utc>>,
}

impl CrmDeliveryState {
    /// The previous secret while it still signs at `now`.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&SealedSecret> {
        match (&self.previous_secret, self.previous_secret_until) {
            (Some(secret), Some(until)) if now < until => Some(secret),
            _ => None,
        }
    }
}

/// A validated request to connect an account, credentials still in plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDraft {
    /// See [`Account::instagram_account_id`].
    pub instagram_account_id: InstagramAccountId,
    /// See [`Account::username`].
    pub username: Username,
    /// The Graph API access token.
    pub access_token: Secret,
    /// See [`Account::crm_webhook_url`].
    pub crm_webhook_url: Option<CrmWebhookUrl>,
    /// The secret that signs CRM deliveries.
    pub webhook_secret: Option<Secret>,
}

impl AccountDraft {
    /// Validates every field of a new account at once.
    ///
    /// # Errors
    ///
    /// Returns every field that is invalid, and `webhook_secret` when a CRM URL is given
    /// without a secret to sign its deliveries.
    pub fn parse(
        instagram_account_id: &str,
        username: &str,
        access_token: Secret,
        crm_webhook_url: Option<&str>,
        webhook_secret: Option<Secret>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let instagram_account_id = collect(
            InstagramAccountId::parse("instagram_account_id", instagram_account_id),
            &mut errors,
        );
        let username = collect(Username::parse(username), &mut errors);
        let access_token = collect(check_access_token(access_token), &mut errors);
        let crm_webhook_url = crm_webhook_url
            .map(|raw| collect(CrmWebhookUrl::parse(raw), &mut errors))
            .unwrap_or(None);
        let webhook_secret = webhook_secret
            .map(|secret| collect(check_webhook_secret(secret), &mut errors))
            .unwrap_or(None);
        if crm_webhook_url.is_some()
            && webhook_secret.is_none()
            && !has_field(&errors, "webhook_secret")
        {
            errors.push(missing_secret());
        }
        ValidationErrors::check(errors)?;
        match (instagram_account_id, username, access_token) {
            (Some(instagram_account_id), Some(username), Some(access_token)) => Ok(Self {
                instagram_account_id,
                username,
                access_token,
                crm_webhook_url,
                webhook_secret,
            }),
            // Unreachable: every `None` above pushed an error.
            _ => Err(FieldError::new("account", "is invalid").into()),
        }
    }
}

/// A validated partial update of an account. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    /// A new webhook id for the account.
    pub instagram_account_id: Option<InstagramAccountId>,
    /// A new username.
    pub username: Option<Username>,
    /// A new access token.
    pub access_token: Option<Secret>,
    /// `Some(None)` removes the CRM URL; `Some(Some(url))` sets it.
    pub crm_webhook_url: Option<Option<CrmWebhookUrl>>,
    /// A new CRM signing secret.
    pub webhook_secret: Option<Secret>,
}

impl AccountPatch {
    /// Validates the fields a client sent; absent fields stay `None`.
    ///
    /// `crm_webhook_url` is `Some(None)` when the client sent an explicit `null`.
    ///
    /// # Errors
    ///
    /// Returns every field that is invalid.
    pub fn parse(
        instagram_account_id: Option<&str>,
        username: Option<&str>,
        access_token: Option<Secret>,
        crm_webhook_url: Option<Option<&str>>,
        webhook_secret: Option<Secret>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let patch = Self {
            instagram_account_id: instagram_account_id.and_then(|raw| {
                collect(
                    InstagramAccountId::parse("instagram_account_id", raw),
                    &mut errors,
                )
            }),
            username: username.and_then(|raw| collect(Username::parse(raw), &mut errors)),
            access_token: access_token.and_then(|s| collect(check_access_token(s), &mut errors)),
            crm_webhook_url: match crm_webhook_url {
                None => None,
                Some(None) => Some(None),
                Some(Some(raw)) => collect(CrmWebhookUrl::parse(raw), &mut errors).map(Some),
            },
            webhook_secret: webhook_secret
                .and_then(|s| collect(check_webhook_secret(s), &mut errors)),
        };
        ValidationErrors::check(errors)?;
        Ok(patch)
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the patch against the account it would change.
    ///
    /// # Errors
    ///
    /// Returns a `webhook_secret` error when the result would have a CRM URL and no secret.
    pub fn check_against(&self, account: &Account) -> Result<(), ValidationErrors> {
        let url_after = match &self.crm_webhook_url {
            Some(url) => url.is_some(),
            None => account.crm_webhook_url.is_some(),
        };
        let secret_after = self.webhook_secret.is_some() || account.webhook_secret.is_some();
        if url_after && !secret_after {
            return Err(missing_secret().into());
        }
        Ok(())
    }
}

fn has_field(errors: &[FieldError], field: &str) -> bool {
    errors.iter().any(|e| e.field == field)
}

fn missing_secret() -> FieldError {
    FieldError::new("webhook_secret", "is required when crm_webhook_url is set")
}

fn check_access_token(token: Secret) -> Result<Secret, FieldError> {
    let raw = token.expose();
    if raw.trim().is_empty() {
        return Err(FieldError::new("access_token", "must not be empty"));
    }
    if raw.len() > MAX_SECRET_LEN {
        return Err(FieldError::new("access_token", "is too long"));
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(FieldError::new(
            "access_token",
            "must not contain whitespace",
        ));
    }
    Ok(token)
}

fn check_webhook_secret(secret: Secret) -> Result<Secret, FieldError> {
    let raw = secret.expose();
    if raw.is_empty() {
        return Err(FieldError::new("webhook_secret", "must not be empty"));
    }
    if raw.len() > MAX_SECRET_LEN {
        return Err(FieldError::new("webhook_secret", "is too long"));
    }
    if let Some(key) = raw.strip_prefix("whsec_")
        && !is_base64(key)
    {
        return Err(FieldError::new(
            "webhook_secret",
            "a secret starting with \"whsec_\" must continue with standard base64",
        ));
    }
    Ok(secret)
}

fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && text.len().is_multiple_of(4)
        && text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// An Instagram username: 1 to 30 letters, digits, periods and underscores.
///
/// A leading `@` is accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Parses a username.
    ///
    /// # Errors
    ///
    /// Returns a `username` [`FieldError`] for anything Instagram would not accept.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        let name = name.strip_prefix('@').unwrap_or(name);
        if name.is_empty() {
            return Err(FieldError::new("username", "must not be empty"));
        }
        if name.chars().count() > 30 {
            return Err(FieldError::new("username", "must be at most 30 characters"));
        }
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '_')
        {
            return Err(FieldError::new(
                "username",
                "may hold only letters, digits, periods and underscores",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The username, without `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a CRM receives webhooks: an absolute `http` or `https` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmWebhookUrl(Url);

impl CrmWebhookUrl {
    /// Parses a CRM URL.
    ///
    /// Credentials in the URL are refused: they would be stored and logged in the clear.
    ///
    /// # Errors
    ///
    /// Returns a `crm_webhook_url` [`FieldError`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = |message: &str| FieldError::new("crm_webhook_url", message);
        if raw.len() > MAX_URL_LEN {
            return Err(invalid("is too long"));
        }
        let url =
            Url::parse(raw.trim()).map_err(|e| invalid(&format!("is not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not contain credentials"));
        }
        Ok(Self(url))
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL's host.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_owned())
    }

    fn fields(result: Result<AccountDraft, ValidationErrors>) -> Vec<String> {
        result
            .expect_err("should be invalid")
            .errors()
            .iter()
            .map(|e| e.field.to_string())
            .collect()
    }

    #[test]
    fn a_complete_draft_parses() {
        let draft = AccountDraft::parse(
            "17841400000000001",
            "@shop_example.eu",
            secret("token"),
            Some("https://crm.example/hook?x=1"),
            Some(secret("whsec_c2VjcmV0")),
        )
        .unwrap();
        assert_eq!(draft.username.as_str(), "shop_example.eu");
        assert_eq!(draft.crm_webhook_url.unwrap().host(), "crm.example");
    }

    #[test]
    fn a_draft_without_crm_is_fine() {
        assert!(AccountDraft::parse("1", "shop", secret("t"), None, None).is_ok());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let got = fields(AccountDraft::parse(
            "",
            "no spaces allowed",
            secret(" "),
            Some("ftp://crm.example"),
            Some(secret("")),
        ));
        assert_eq!(
            got,
            [
                "instagram_account_id",
                "username",
                "access_token",
                "crm_webhook_url",
                "webhook_secret"
            ]
        );
    }

    #[test]
    fn a_crm_url_needs_a_secret() {
        let got = fields(AccountDraft::parse(
            "1",
            "shop",
            secret("t"),
            Some("https://crm.example"),
            None,
        ));
        assert_eq!(got, ["webhook_secret"]);
    }

    #[test]
    fn whsec_secrets_must_be_base64() {
        for bad in [
            "whsec_",
            "whsec_not base64",
            "whsec_abc",
            "whsec_a===",
            "whsec_ab$d",
        ] {
            let got = fields(AccountDraft::parse(
                "1",
                "shop",
                secret("t"),
                None,
                Some(secret(bad)),
            ));
            assert_eq!(got, ["webhook_secret"], "{bad}");
        }
        for good in ["whsec_c2VjcmV0", "whsec_YQ==", "plain-secret"] {
            assert!(
                AccountDraft::parse("1", "shop", secret("t"), None, Some(secret(good))).is_ok()
            );
        }
    }

    #[test]
    fn usernames_follow_instagram_rules() {
        assert!(Username::parse("a").is_ok());
        assert!(Username::parse(&"a".repeat(30)).is_ok());
        for bad in ["", "@", &"a".repeat(31), "has-dash", "emoji😀"] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crm_urls_must_be_absolute_http_without_credentials() {
        for bad in [
            "crm.example/hook",
            "mailto:x@crm.example",
            "https://user:pw@crm.example/",
            "http://",
        ] {
            assert!(CrmWebhookUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(CrmWebhookUrl::parse("http://127.0.0.1:8080/crm").is_ok());
    }

    fn account(url: Option<&str>, secret: Option<&str>) -> Account {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        Account {
            id: AccountId::from_u128(1),
            instagram_account_id: InstagramAccountId::parse("f", "1").unwrap(),
            username: Username::parse("shop").unwrap(),
            crm_webhook_url: url.map(|u| CrmWebhookUrl::parse(u).unwrap()),
            access_token: SealedSecret::new("sealed".into()),
            webhook_secret: secret.map(|s| SealedSecret::new(s.into())),
            delivery: Default::default(),
            token_failure: None,
            token_life: Default::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn patches_keep_the_url_secret_pairing() {
        let set_url =
            AccountPatch::parse(None, None, None, Some(Some("https://crm.example")), None).unwrap();
        assert!(set_url.check_against(&account(None, None)).is_err());
        assert!(set_url.check_against(&account(None, Some("s"))).is_ok());
        let clear_url = AccountPatch::parse(None, None, None, Some(None), None).unwrap();
        assert_eq!(clear_url.crm_webhook_url, Some(None));
        assert!(
            clear_url
                .check_against(&account(Some("https://crm.example"), Some("s")))
                .is_ok()
        );
        assert!(
            AccountPatch::parse(None, None, None, None, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn patches_report_bad_fields() {
        let err = AccountPatch::parse(Some(""), Some("bad name"), None, Some(Some("nope")), None)
            .unwrap_err();
        let got: Vec<_> = err.errors().iter().map(|e| e.field.as_ref()).collect();
        assert_eq!(got, ["instagram_account_id", "username", "crm_webhook_url"]);
    }
}
