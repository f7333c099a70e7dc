//! Rules as JSON documents, and their validation into domain rule specs.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One condition, as JSON: `{"type": "keywords", "any_of": ["order66"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A comment on the account's media (on one of `media_ids`, when any are given): the rule
    /// answers comments, with a private reply, and never messages.
    Comment {
        /// The media ids; any media when empty.
        #[serde(default)]
        media_ids: Vec<String>,
    },
    /// The comment is its author's first on the account's media.
    FirstComment,
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
#[serde(deny_unknown_fields)]
pub struct QuickReplyDocument {
    /// The button's text (at most 20 characters).
    pub title: String,
    /// What Meta sends back when it is tapped.
    pub payload: String,
}

/// A reply, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyDocument {
    /// The text, with `{username}`, `{name}`, `{first_name}` and `{text}` placeholders.
    pub text: String,
    /// Buttons offered with it (at most 13).
    #[serde(default)]
    pub quick_replies: Vec<QuickReplyDocument>,
    /// Comment rules only: also answer the comment publicly with this text (placeholders as
    /// in `text`; at most 2,200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_reply: Option<String>,
}

/// A rule, as JSON: what the API takes and returns, the rules file holds, and the database
/// stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
                public_reply: self.reply.public_reply.clone(),
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
pub(super) fn invalid(errors: Vec<FieldError>) -> ValidationErrors {
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
        ConditionDocument::Comment { media_ids } => {
            if media_ids.iter().any(|m| m.trim().is_empty()) {
                return Err(FieldError::new(
                    field("media_ids"),
                    "must not hold a blank id",
                ));
            }
            Condition::Kind(KindCondition::Comment(media_ids.clone()))
        }
        ConditionDocument::FirstComment => Condition::FirstComment,
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
