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

/// Most rules one account may have.
pub const MAX_RULES_PER_ACCOUNT: usize = 200;

/// One condition, as JSON: `{"type": "keywords", "any_of": ["order66"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionDocument {
    /// The text contains any of the keywords, ignoring case and accents.
    Keywords {
        /// The keywords.
        any_of: Vec<String>,
        /// Only whole words match.
        #[serde(default)]
        whole_word: bool,
    },
    /// The whole text equals this, ignoring case, accents and surrounding spaces.
    Exact {
        /// The text.
        text: String,
    },
    /// The text starts with this, ignoring case and accents.
    StartsWith {
        /// The start.
        text: String,
    },
    /// The text matches this regular expression (case-insensitive, at most 512 bytes).
    Regex {
        /// The expression.
        pattern: String,
    },
    /// The customer mentioned the account in their story.
    StoryMention,
    /// The customer replied to one of the account's stories.
    StoryReply,
    /// The message has an attachment (of this type, when given).
    Attachment {
        /// `image`, `video`, `audio`, `file`, `share`, `ig_reel`, `ig_post`, ...
        #[serde(default)]
        attachment_type: Option<String>,
    },
    /// A tap on a postback button (with this payload, when given).
    Postback {
        /// The button's payload.
        #[serde(default)]
        payload: Option<String>,
    },
    /// A tap on a quick reply (with this payload, when given).
    QuickReply {
        /// The quick reply's payload.
        #[serde(default)]
        payload: Option<String>,
    },
    /// The conversation was opened from an ig.me link or an ad (with this `ref`, when given).
    Referral {
        /// The link's `ref` parameter.
        #[serde(default, rename = "ref")]
        ref_param: Option<String>,
    },
    /// The message opens the conversation.
    FirstMessage,
    /// The message arrives within (or, with `outside`, outside) these hours.
    Schedule {
        /// An IANA time zone name (`Europe/Berlin`).
        time_zone: String,
        /// `mon` ... `sun`; all days when empty.
        #[serde(default)]
        days: Vec<String>,
        /// `HH:MM`.
        from: String,
        /// `HH:MM`, exclusive; earlier than `from` for a window past midnight.
        to: String,
        /// Match outside the window (after hours).
        #[serde(default)]
        outside: bool,
    },
}

/// A quick reply, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuickReplyDocument {
    /// The button's text (at most 20 characters).
    pub title: String,
    /// What Meta sends back when it is tapped.
    pub payload: String,
}

/// A reply, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplyDocument {
    /// The text, with `{username}`, `{name}`, `{first_name}` and `{text}` placeholders.
    pub text: String,
    /// Buttons offered with it (at most 13).
    #[serde(default)]
    pub quick_replies: Vec<QuickReplyDocument>,
}

/// A rule, as JSON: what the API takes and returns, the rules file holds, and the database
/// stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleDocument {
    /// A name for people.
    pub name: String,
    /// Higher first; ties by creation order.
    #[serde(default)]
    pub priority: i32,
    /// Off rules are kept but never fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// All must hold.
    pub conditions: Vec<ConditionDocument>,
    /// What it answers.
    pub reply: ReplyDocument,
    /// The rule does not answer the same customer again within this many seconds (default
    /// one hour).
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
}

fn yes() -> bool {
    true
}

fn default_cooldown() -> u64 {
    3600
}

impl RuleDocument {
    /// Validates the document into a domain rule spec.
    ///
    /// # Errors
    ///
    /// Every field at fault, named as the document spells it (`conditions[1].pattern`).
    pub fn to_spec(&self) -> Result<RuleSpec, ValidationErrors> {
        let mut errors = Vec::new();
        let mut conditions = Vec::new();
        for (i, c) in self.conditions.iter().enumerate() {
            match condition(i, c) {
                Ok(c) => conditions.push(c),
                Err(e) => errors.push(e),
            }
        }
        if self.cooldown_seconds > 30 * 86_400 {
            errors.push(FieldError::new(
                "cooldown_seconds",
                "must be at most 30 days",
            ));
        }
        let spec = RuleSpec {
            name: self.name.clone(),
            priority: self.priority,
            enabled: self.enabled,
            conditions,
            reply: Reply {
                text: self.reply.text.clone(),
                quick_replies: self
                    .reply
                    .quick_replies
                    .iter()
                    .map(|q| QuickReply {
                        title: q.title.clone(),
                        payload: q.payload.clone(),
                    })
                    .collect(),
            },
            cooldown: Duration::from_secs(self.cooldown_seconds),
        };
        let condition_errors = !errors.is_empty();
        match spec.check() {
            Ok(spec) if errors.is_empty() => Ok(spec),
            Ok(_) => Err(invalid(errors)),
            Err(more) => {
                // A condition that failed to parse is not also "no conditions".
                errors.extend(
                    more.errors()
                        .iter()
                        .filter(|e| !(condition_errors && e.field == "conditions"))
                        .cloned(),
                );
                Err(invalid(errors))
            }
        }
    }
}

/// The errors of a validation that found some.
fn invalid(errors: Vec<FieldError>) -> ValidationErrors {
    ValidationErrors::check(errors)
        .err()
        .unwrap_or_else(|| FieldError::new("rule", "is invalid").into())
}

fn condition(i: usize, c: &ConditionDocument) -> Result<Condition, FieldError> {
    let field = |name: &str| format!("conditions[{i}].{name}");
    Ok(match c {
        ConditionDocument::Keywords { any_of, whole_word } => {
            let words: Vec<&str> = any_of.iter().map(String::as_str).collect();
            rules::keywords(field("any_of"), &words, *whole_word)?
        }
        ConditionDocument::Exact { text } | ConditionDocument::StartsWith { text } => {
            if text.trim().is_empty() {
                return Err(FieldError::new(field("text"), "must not be blank"));
            }
            if matches!(c, ConditionDocument::Exact { .. }) {
                Condition::Exact(text.clone())
            } else {
                Condition::StartsWith(text.clone())
            }
        }
        ConditionDocument::Regex { pattern } => {
            Condition::Regex(Pattern::parse(field("pattern"), pattern)?)
        }
        ConditionDocument::StoryMention => Condition::Kind(KindCondition::StoryMention),
        ConditionDocument::StoryReply => Condition::Kind(KindCondition::StoryReply),
        ConditionDocument::Attachment { attachment_type } => Condition::Kind(
            KindCondition::Attachment(attachment_type.as_deref().map(AttachmentKind::parse)),
        ),
        ConditionDocument::Postback { payload } => {
            Condition::Kind(KindCondition::Postback(payload.clone()))
        }
        ConditionDocument::QuickReply { payload } => {
            Condition::Kind(KindCondition::QuickReply(payload.clone()))
        }
        ConditionDocument::Referral { ref_param } => {
            Condition::Kind(KindCondition::Referral(ref_param.clone()))
        }
        ConditionDocument::FirstMessage => Condition::FirstMessage,
        ConditionDocument::Schedule {
            time_zone,
            days,
            from,
            to,
            outside,
        } => {
            let parse_time = |name: &str, raw: &str| {
                NaiveTime::parse_from_str(raw, "%H:%M")
                    .map_err(|_| FieldError::new(field(name), "must be HH:MM"))
            };
            let days = if days.is_empty() {
                vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ]
            } else {
                days.iter()
                    .map(|d| {
                        d.parse::<Weekday>().map_err(|_| {
                            FieldError::new(field("days"), format!("{d:?} is not a day"))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            Condition::Schedule(Schedule {
                time_zone: rules::time_zone(field("time_zone"), time_zone)?,
                days,
                from: parse_time("from", from)?,
                to: parse_time("to", to)?,
                outside: *outside,
            })
        }
    })
}

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
    /// Whether it opens the conversation.
    pub first_message: bool,
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
        let message = sample_message(&trial, now).map_err(|e| RuleError::Invalid(e.into()))?;
        let facts = ConversationFacts {
            first_message: trial.first_message,
            ..ConversationFacts::default()
        };
        let evaluation = rules::evaluate(&rules, &message, &facts, &Safety::default(), now);
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

/// The stored JSON: the document as sent, its name trimmed.
fn encode(document: &RuleDocument, spec: &RuleSpec) -> String {
    let mut document = document.clone();
    document.name.clone_from(&spec.name);
    serde_json::to_string(&document).unwrap_or_default()
}

fn decode(stored: &StoredRule) -> Result<RuleDocument, RepoError> {
    serde_json::from_str(&stored.definition)
        .map_err(|e| RepoError::Corrupt(format!("rule {}: {e}", stored.id)))
}

fn view(stored: StoredRule) -> Result<RuleView, RuleError> {
    let document = decode(&stored)?;
    Ok(RuleView {
        id: stored.id,
        account_id: stored.account_id,
        document,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

/// The domain rules of stored ones. A stored document that no longer validates is skipped with
/// a warning rather than stopping every other rule.
fn valid_rules(stored: &[StoredRule]) -> Vec<Rule> {
    stored
        .iter()
        .filter_map(|stored| match rule(stored) {
            Ok(rule) => Some(rule),
            Err(error) => {
                tracing::warn!(rule_id = %stored.id, %error, "stored rule no longer valid; skipped");
                None
            }
        })
        .collect()
}

/// The domain rule of a stored one.
///
/// # Errors
///
/// A message when the stored document does not parse or validate.
pub(crate) fn rule(stored: &StoredRule) -> Result<Rule, String> {
    let document = decode(stored).map_err(|e| e.to_string())?;
    let spec = document.to_spec().map_err(|e| e.to_string())?;
    Ok(Rule {
        id: stored.id.clone(),
        account_id: stored.account_id.clone(),
        name: spec.name,
        priority: spec.priority,
        enabled: spec.enabled,
        conditions: spec.conditions,
        reply: spec.reply,
        cooldown: spec.cooldown,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

fn sample_message(trial: &TrialMessage, now: DateTime<Utc>) -> Result<Message, FieldError> {
    // Placeholder parties: the evaluation looks at the content only.
    let account = InstagramAccountId::parse("account", "1")?;
    let customer = InstagramUserId::parse("customer", "2")?;
    let kind = trial
        .message_type
        .as_deref()
        .map_or(MessageKind::Text, MessageKind::parse);
    let attachments = match &kind {
        MessageKind::Image
        | MessageKind::Video
        | MessageKind::Audio
        | MessageKind::File
        | MessageKind::Share
        | MessageKind::IgReel
        | MessageKind::IgPost
        | MessageKind::StoryMention => vec![insta_router_domain::Attachment {
            kind: AttachmentKind::parse(kind.as_str()),
            url: None,
            title: None,
        }],
        _ => Vec::new(),
    };
    Ok(Message {
        id: MessageId::from_u128(0),
        conversation_id: ConversationId::for_pair(&account, &customer),
        instagram_account_id: account.clone(),
        mid: None,
        direction: Direction::Inbound,
        sender_id: customer,
        recipient_id: account.to_user_id(),
        reply_to: (kind == MessageKind::StoryReply).then(|| insta_router_domain::ReplyTo::Story {
            id: "story".to_owned(),
            url: None,
        }),
        kind,
        text: trial.text.clone(),
        attachments,
        context: MessageContext {
            payload: trial.payload.clone(),
            referral: trial.referral.as_ref().map(|r| Referral {
                ref_param: Some(r.clone()),
                ..Referral::default()
            }),
            standby: false,
        },
        sent_at: now,
        created_at: now,
        deleted_at: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document(value: serde_json::Value) -> RuleDocument {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_condition_parses_from_its_document() {
        let doc = document(json!({
            "name": "everything",
            "conditions": [
                {"type": "keywords", "any_of": ["order66", "Café"], "whole_word": true},
                {"type": "exact", "text": "yes"},
                {"type": "starts_with", "text": "price"},
                {"type": "regex", "pattern": "order\\s*\\d+"},
                {"type": "story_mention"},
                {"type": "story_reply"},
                {"type": "attachment", "attachment_type": "image"},
                {"type": "postback", "payload": "GET_STARTED"},
                {"type": "quick_reply"},
                {"type": "referral", "ref": "summer"},
                {"type": "first_message"},
                {"type": "schedule", "time_zone": "Europe/Berlin", "days": ["mon", "fri"], "from": "09:00", "to": "17:30", "outside": true}
            ],
            "reply": {"text": "Hi {first_name}", "quick_replies": [{"title": "Track", "payload": "TRACK"}]}
        }));
        let spec = doc.to_spec().unwrap();
        assert_eq!(spec.conditions.len(), 12);
        assert!(spec.enabled);
        assert_eq!(spec.cooldown, Duration::from_secs(3600));
        assert_eq!(
            spec.conditions[0],
            Condition::Keywords {
                any_of: vec!["order66".into(), "cafe".into()],
                whole_word: true
            }
        );
        // The document survives the round trip through storage.
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(serde_json::from_str::<RuleDocument>(&text).unwrap(), doc);
    }

    #[test]
    fn errors_name_the_rule_field() {
        let doc = document(json!({
            "name": "bad",
            "conditions": [
                {"type": "keywords", "any_of": ["ok"]},
                {"type": "regex", "pattern": "(unclosed"},
                {"type": "schedule", "time_zone": "Mars/Base", "from": "9am", "to": "17:00"}
            ],
            "reply": {"text": "Hello {customer}"},
            "cooldown_seconds": 99_999_999
        }));
        let fields: Vec<String> = doc
            .to_spec()
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "conditions[1].pattern",
                "conditions[2].time_zone",
                "cooldown_seconds",
                "reply.text"
            ]
        );
        // Unknown condition types and fields are refused when reading the JSON.
        assert!(
            serde_json::from_value::<RuleDocument>(json!({
                "name": "x", "conditions": [{"type": "telepathy"}], "reply": {"text": "hi"}
            }))
            .is_err()
        );
        assert!(
            serde_json::from_value::<RuleDocument>(json!({
                "name": "x", "conditions": [], "reply": {"text": "hi"}, "colour": "red"
            }))
            .is_err()
        );
        // Only bad conditions: not reported again as "no conditions".
        let only_bad = document(json!({
            "name": "x", "conditions": [{"type": "regex", "pattern": ""}], "reply": {"text": "hi"}
        }));
        let fields: Vec<String> = only_bad
            .to_spec()
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.to_string())
            .collect();
        assert_eq!(fields, ["conditions[0].pattern"]);
    }
}
