//! `insta-router doctor`'s checks of what lies outside the process: each account's token
//! (Meta's `me`) and each CRM URL (does it answer at all). Configuration and the database are
//! checked by the binary, which owns them.

use std::sync::Arc;

use insta_router_domain::{Account, AttemptOutcome, CrmWebhookUrl};
use insta_router_ports::{
    AccountRepository, CredentialCipher, CrmSender, GraphError, Messenger, RepoError,
};

/// One check's result: what was checked, whether it passed, and what was found or what to
/// do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked (`account acc_... token`).
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found; for a failure, the cause and what to fix.
    pub detail: String,
}

impl Finding {
    /// A passed check.
    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn fail(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Checks every account's token and CRM URL.
pub struct Doctor {
    accounts: Arc<dyn AccountRepository>,
    cipher: Arc<dyn CredentialCipher>,
    messenger: Arc<dyn Messenger>,
    crm: Arc<dyn CrmSender>,
}

impl Doctor {
    /// A doctor over these ports.
    pub fn new(
        accounts: Arc<dyn AccountRepository>,
        cipher: Arc<dyn CredentialCipher>,
        messenger: Arc<dyn Messenger>,
        crm: Arc<dyn CrmSender>,
    ) -> Self {
        Self {
            accounts,
            cipher,
            messenger,
            crm,
        }
    }

    /// Two findings per account (its token, its CRM URL), in the accounts' order; one
    /// finding saying so when there is no account.
    ///
    /// # Errors
    ///
    /// When the accounts cannot be read.
    pub async fn check_accounts(&self) -> Result<Vec<Finding>, RepoError> {
        let mut findings = Vec::new();
        for account in crate::accounts::all_accounts(&*self.accounts).await? {
            findings.push(self.check_token(&account).await);
            findings.push(self.check_crm(&account).await);
        }
        if findings.is_empty() {
            findings.push(Finding::pass(
                "accounts",
                "none yet: create one with POST /api/v1/accounts (docs/API.md)",
            ));
        }
        Ok(findings)
    }

    async fn check_token(&self, account: &Account) -> Finding {
        let check = format!(
            "account {} (@{}) token",
            account.id,
            account.username.as_str()
        );
        let token = match self.cipher.open(&account.access_token) {
            Ok(token) => token,
            Err(err) => {
                return Finding::fail(
                    check,
                    format!(
                        "cannot open it ({err}); set the ENCRYPTION_KEY that sealed it, or add \
                         that key to ENCRYPTION_KEY_PREVIOUS"
                    ),
                );
            }
        };
        match self.messenger.me(&token).await {
            Ok(owner) => Finding::pass(
                check,
                format!(
                    "Meta accepts it (user {}{})",
                    owner.id,
                    owner
                        .username
                        .map(|u| format!(", @{u}"))
                        .unwrap_or_default()
                ),
            ),
            Err(
                err @ GraphError::Permanent {
                    code: Some(190), ..
                },
            ) => Finding::fail(
                check,
                format!(
                    "Meta refused it: {err}; give the account a new token with PATCH \
                     /api/v1/accounts/{} {{\"access_token\": ...}}",
                    account.id
                ),
            ),
            Err(err @ GraphError::Permanent { .. }) => Finding::fail(
                check,
                format!("Meta refused the check: {err}; check the token's permissions"),
            ),
            Err(err) => Finding::fail(
                check,
                format!(
                    "the Graph API did not answer: {err}; check outbound HTTPS and \
                     INSTAGRAM_API_BASE_URL"
                ),
            ),
        }
    }

    async fn check_crm(&self, account: &Account) -> Finding {
        let check = format!("account {} CRM", account.id);
        let Some(url) = &account.crm_webhook_url else {
            return Finding::pass(check, "no CRM URL: events are stored, not forwarded");
        };
        let shown = without_query(url);
        if account.delivery.disabled_at.is_some() {
            return Finding::fail(
                check,
                format!(
                    "{shown} answered 410 Gone, so deliveries are paused; set the CRM URL or \
                     secret again to resume, then replay the dead letters"
                ),
            );
        }
        let response = self.crm.probe(url.as_str()).await;
        let error = response.error.unwrap_or_default();
        match response.outcome {
            AttemptOutcome::Answered { status, .. } if status < 500 => Finding::pass(
                check,
                format!("{shown} answers (HTTP {status} to a HEAD request)"),
            ),
            AttemptOutcome::Answered { status, .. } => Finding::fail(
                check,
                format!(
                    "{shown} answers HTTP {status}: the CRM or its proxy is failing; \
                     deliveries are retried until it recovers"
                ),
            ),
            AttemptOutcome::Timeout => Finding::fail(
                check,
                format!("{shown} did not answer in time ({error}); check that the CRM runs"),
            ),
            AttemptOutcome::Refused => {
                Finding::fail(check, format!("{shown} may not be called: {error}"))
            }
            AttemptOutcome::Unreachable => Finding::fail(
                check,
                format!(
                    "{shown} is unreachable ({error}); check that the CRM runs and that the \
                     URL's host and port are right"
                ),
            ),
        }
    }
}

/// The URL without its query: a query may carry a token.
fn without_query(url: &CrmWebhookUrl) -> &str {
    let text = url.as_str();
    text.split(['?', '#']).next().unwrap_or(text)
}

#[cfg(test)]
mod tests;
