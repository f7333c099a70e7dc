//! Managing auto-reply rules, and trying them out.
//!
//! A rule travels as one JSON document ([`RuleDocument`]): in the API, in the rules file, and
//! in the database. [`RuleDocument::to_spec`] is the one place that turns it into a validated
//! domain rule, naming every field at fault.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use insta_router_domain::rules::{
    self, Condition, ConversationFacts, KindCondition, Pattern, QuickReply, Recipient, Reply, Rule,
    RuleSpec, Safety, Schedule,
};
use insta_router_domain::{
    AccountId, AttachmentKind, ConversationId, Direction, FieldError, InstagramAccountId,
    InstagramUserId, Message, MessageContext, MessageId, MessageKind, Referral, RuleId,
    ValidationErrors,
};
use insta_router_ports::{AccountRepository, Clock, RepoError, RuleRepository, StoredRule};
use serde::{Deserialize, Serialize};

use crate::new_id_bits;

mod document;
mod stored;

pub use document::{ConditionDocument, QuickReplyDocument, ReplyDocument, RuleDocument};
use stored::{encode, sample_comment, sample_message, valid_rules, view};

/// Most rules one account may have.
pub const MAX_RULES_PER_ACCOUNT: usize = 200;

/// Why a rule operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// No such rule.
    #[error("rule {0} not found")]
    NotFound(RuleId),
    /// No such account.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The rule is invalid.
    #[error("invalid rule: {0}")]
    Invalid(ValidationErrors),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// A stored rule with its document.
#[derive(Debug, Clone)]
pub struct RuleView {
    /// The rule's id.
    pub id: RuleId,
    /// Its account.
    pub account_id: AccountId,
    /// The rule as its document.
    pub document: RuleDocument,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A message to try an account's rules against.
#[derive(Debug, Clone, Default)]
pub struct TrialMessage {
    /// Its text.
    pub text: Option<String>,
    /// `text`, `story_mention`, `image`, `postback`, `quick_reply`, ...
    pub message_type: Option<String>,
    /// A postback or quick-reply payload.
    pub payload: Option<String>,
    /// The `ref` of a link or ad that opened the conversation.
    pub referral: Option<String>,
    /// Whether it opens the conversation (a comment: its author's first).
    pub first_message: bool,
    /// For a comment (`message_type: comment`): the media commented on.
    pub media_id: Option<String>,
    /// When it arrives (now when absent).
    pub at: Option<DateTime<Utc>>,
}

/// What a dry run decided.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    /// The rule that would answer.
    pub rule: Option<RuleView>,
    /// The reply it would send, placeholders filled with sample values.
    pub reply: Option<String>,
    /// Why nothing answers at all, when a safety limit says so.
    pub blocked: Option<String>,
    /// Why each rule looked at first was passed over.
    pub skipped: Vec<(RuleId, String)>,
}

/// Creates, reads, changes and removes rules, and tries them out.
pub struct RuleService {
    rules: Arc<dyn RuleRepository>,
    accounts: Arc<dyn AccountRepository>,
    clock: Arc<dyn Clock>,
    fallback_name: String,
}

impl RuleService {
    /// A service over these ports; `fallback_name` stands in for an unknown customer name.
    pub fn new(
        rules: Arc<dyn RuleRepository>,
        accounts: Arc<dyn AccountRepository>,
        clock: Arc<dyn Clock>,
        fallback_name: String,
    ) -> Self {
        Self {
            rules,
            accounts,
            clock,
            fallback_name,
        }
    }

    async fn require_account(&self, account: &AccountId) -> Result<(), RuleError> {
        match self.accounts.get(account).await? {
            Some(_) => Ok(()),
            None => Err(RuleError::AccountNotFound(account.clone())),
        }
    }

    /// Adds a rule to an account.
    ///
    /// # Errors
    ///
    /// [`RuleError::AccountNotFound`], [`RuleError::Invalid`] (also when the account has
    /// [`MAX_RULES_PER_ACCOUNT`] rules), or [`RuleError::Storage`].
    pub async fn create(
        &self,
        account: &AccountId,
        document: RuleDocument,
    ) -> Result<RuleView, RuleError> {
        self.require_account(account).await?;
        let spec = document.to_spec().map_err(RuleError::Invalid)?;
        if self.rules.list_by_account(account).await?.len() >= MAX_RULES_PER_ACCOUNT {
            return Err(RuleError::Invalid(
                FieldError::new(
                    "rules",
                    format!("an account may have at most {MAX_RULES_PER_ACCOUNT} rules"),
                )
                .into(),
            ));
        }
        let now = self.clock.now();
        let stored = StoredRule {
            id: RuleId::from_u128(new_id_bits()),
            account_id: account.clone(),
            priority: spec.priority,
            enabled: spec.enabled,
            definition: encode(&document, &spec),
            created_at: now,
            updated_at: now,
        };
        self.rules.insert(&stored).await?;
        tracing::info!(rule_id = %stored.id, account_id = %account, "rule created");
        view(stored)
    }

    /// The account's rules, oldest first.
    ///
    /// # Errors
    ///
    /// [`RuleError::AccountNotFound`] or [`RuleError::Storage`].
    pub async fn list(&self, account: &AccountId) -> Result<Vec<RuleView>, RuleError> {
        self.require_account(account).await?;
        self.rules
            .list_by_account(account)
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    /// One rule of the account.
    ///
    /// # Errors
    ///
    /// [`RuleError::NotFound`] (also for another account's rule) or [`RuleError::Storage`].
    pub async fn get(&self, account: &AccountId, id: &RuleId) -> Result<RuleView, RuleError> {
        self.stored(account, id).await.and_then(view)
    }

    async fn stored(&self, account: &AccountId, id: &RuleId) -> Result<StoredRule, RuleError> {
        self.rules
            .get(id)
            .await?
            .filter(|r| &r.account_id == account)
            .ok_or_else(|| RuleError::NotFound(id.clone()))
    }

    /// Replaces a rule's document.
    ///
    /// # Errors
    ///
    /// [`RuleError::NotFound`], [`RuleError::Invalid`] or [`RuleError::Storage`].
    pub async fn replace(
        &self,
        account: &AccountId,
        id: &RuleId,
        document: RuleDocument,
    ) -> Result<RuleView, RuleError> {
        let mut stored = self.stored(account, id).await?;
        let spec = document.to_spec().map_err(RuleError::Invalid)?;
        stored.priority = spec.priority;
        stored.enabled = spec.enabled;
        stored.definition = encode(&document, &spec);
        stored.updated_at = self.clock.now();
        if !self.rules.update(&stored).await? {
            return Err(RuleError::NotFound(id.clone()));
        }
        tracing::info!(rule_id = %id, "rule replaced");
        view(stored)
    }

    /// Deletes a rule.
    ///
    /// # Errors
    ///
    /// [`RuleError::NotFound`] or [`RuleError::Storage`].
    pub async fn delete(&self, account: &AccountId, id: &RuleId) -> Result<(), RuleError> {
        self.stored(account, id).await?;
        if !self.rules.delete(id).await? {
            return Err(RuleError::NotFound(id.clone()));
        }
        tracing::info!(rule_id = %id, "rule deleted");
        Ok(())
    }

    /// The account's rules as domain rules, for evaluation. A stored document that no longer
    /// validates is skipped with a warning rather than stopping every other rule.
    ///
    /// # Errors
    ///
    /// [`RuleError::Storage`].
    pub async fn active_rules(&self, account: &AccountId) -> Result<Vec<Rule>, RuleError> {
        Ok(valid_rules(&self.rules.list_by_account(account).await?))
    }

    /// Evaluates the account's rules against a sample message, without sending anything.
    /// Safety limits that depend on the conversation's history (human takeover, hourly cap,
    /// cooldowns) are not applied: the trial has no history.
    ///
    /// # Errors
    ///
    /// [`RuleError::AccountNotFound`] or [`RuleError::Storage`].
    pub async fn try_out(
        &self,
        account: &AccountId,
        trial: TrialMessage,
    ) -> Result<TrialOutcome, RuleError> {
        self.require_account(account).await?;
        let stored = self.rules.list_by_account(account).await?;
        let rules = valid_rules(&stored);
        let now = trial.at.unwrap_or_else(|| self.clock.now());
        let facts = ConversationFacts {
            first_message: trial.first_message,
            ..ConversationFacts::default()
        };
        let evaluation = if trial.message_type.as_deref() == Some("comment") {
            let comment = sample_comment(&trial).map_err(|e| RuleError::Invalid(e.into()))?;
            insta_router_domain::evaluate_comment(
                &rules,
                &comment,
                now,
                &facts,
                &Safety::default(),
                now,
            )
        } else {
            let message = sample_message(&trial, now).map_err(|e| RuleError::Invalid(e.into()))?;
            rules::evaluate(&rules, &message, &facts, &Safety::default(), now)
        };
        let fired = evaluation
            .fired
            .as_ref()
            .and_then(|id| stored.iter().find(|s| &s.id == id).cloned());
        let reply = evaluation
            .fired
            .as_ref()
            .and_then(|id| rules.iter().find(|r| &r.id == id))
            .map(|r| {
                rules::render(
                    &r.reply.text,
                    &Recipient {
                        username: Some("customer".to_owned()),
                        name: Some("Customer".to_owned()),
                    },
                    trial.text.as_deref().unwrap_or_default(),
                    &self.fallback_name,
                )
            });
        Ok(TrialOutcome {
            rule: fired.map(view).transpose()?,
            reply,
            blocked: evaluation.blocked.map(|r| r.to_string()),
            skipped: evaluation
                .skipped
                .into_iter()
                .map(|(id, reason)| (id, reason.to_string()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
