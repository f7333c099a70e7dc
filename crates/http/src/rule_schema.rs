//! The OpenAPI schemas of the rule documents: the shape of `insta_router_app::RuleDocument`
//! (the JSON the API takes and returns), declared here so that `app` knows nothing of OpenAPI.
//! `the_rule_schemas_match_the_documents` checks that they agree.

use utoipa::ToSchema;

fn yes() -> bool {
    true
}

fn default_cooldown() -> u64 {
    3600
}

/// One condition, as JSON: `{"type": "keywords", "any_of": ["order66"]}`.
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code, reason = "a schema: only its shape is read")]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = ConditionDocument)]
pub(crate) enum ConditionDocumentSchema {
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
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code, reason = "a schema: only its shape is read")]
#[serde(deny_unknown_fields)]
#[schema(as = QuickReplyDocument)]
pub(crate) struct QuickReplyDocumentSchema {
    /// The button's text (at most 20 characters).
    pub title: String,
    /// What Meta sends back when it is tapped.
    pub payload: String,
}

/// A reply, as JSON.
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code, reason = "a schema: only its shape is read")]
#[serde(deny_unknown_fields)]
#[schema(as = ReplyDocument)]
pub(crate) struct ReplyDocumentSchema {
    /// The text, with `{username}`, `{name}`, `{first_name}` and `{text}` placeholders.
    pub text: String,
    /// Buttons offered with it (at most 13).
    #[serde(default)]
    pub quick_replies: Vec<QuickReplyDocumentSchema>,
    /// Comment rules only: also answer the comment publicly with this text (placeholders as
    /// in `text`; at most 2,200 characters).
    #[serde(default)]
    pub public_reply: Option<String>,
}

/// A rule, as JSON: what the API takes and returns, the rules file holds, and the database
/// stores.
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code, reason = "a schema: only its shape is read")]
#[serde(deny_unknown_fields)]
#[schema(as = RuleDocument)]
pub(crate) struct RuleDocumentSchema {
    /// A name for people.
    pub name: String,
    /// Higher first; ties by creation order.
    #[serde(default)]
    pub priority: i32,
    /// Off rules are kept but never fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// All must hold.
    pub conditions: Vec<ConditionDocumentSchema>,
    /// What it answers.
    pub reply: ReplyDocumentSchema,
    /// The rule does not answer the same customer again within this many seconds (default
    /// one hour).
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
}
