//! Auto-reply rules: what a rule matches, what it answers, and the pure evaluation of an
//! account's rules against one message.
//!
//! [`evaluate`] is a function of (rules, message, conversation facts, now) and returns at most
//! one decision, with the reason for every rule it passed over, so a dry run can say why.
//! Safety comes first: never answer echoes, deleted or standby messages; never after a human
//! replied recently; never more than a few times an hour per conversation; never outside
//! Meta's 24-hour window; never the same rule to the same customer within its cooldown.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::{
    AccountId, AttachmentKind, Direction, FieldError, Message, MessageKind, ReplyTo, RuleId,
    ValidationErrors,
};

/// Longest regular expression source accepted, in bytes.
pub const MAX_REGEX_LEN: usize = 512;
/// Most memory a compiled regular expression may take.
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
/// Longest reply text, in bytes (Meta's limit for a text message is 1,000).
pub const MAX_REPLY_LEN: usize = 1000;
/// Most quick replies on one reply (Meta's limit is 13).
pub const MAX_QUICK_REPLIES: usize = 13;
/// The placeholders a reply may use.
pub const PLACEHOLDERS: [&str; 4] = ["username", "name", "first_name", "text"];

/// A regular expression, compiled once, with a size limit; matched case-insensitively
/// against the message text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`.
    ///
    /// # Errors
    ///
    /// A [`FieldError`] on `field` when it is too long, too large compiled, or not a regular
    /// expression.
    pub fn parse(
        field: impl Into<std::borrow::Cow<'static, str>>,
        source: &str,
    ) -> Result<Self, FieldError> {
        let field = field.into();
        if source.is_empty() || source.len() > MAX_REGEX_LEN {
            return Err(FieldError::new(
                field,
                format!("must be 1 to {MAX_REGEX_LEN} bytes"),
            ));
        }
        let regex = regex::RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(MAX_REGEX_SIZE)
            .dfa_size_limit(MAX_REGEX_SIZE)
            .build()
            .map_err(|e| {
                FieldError::new(field, format!("is not a valid regular expression: {e}"))
            })?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

/// When a rule may fire: on some days, between two times of day, in a time zone; or, with
/// `outside`, at every other time (an after-hours rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The time zone the times are in.
    pub time_zone: Tz,
    /// The days it covers (the day the window starts, for windows past midnight).
    pub days: Vec<Weekday>,
    /// Start of the window.
    pub from: NaiveTime,
    /// End of the window (exclusive); before `from` for a window past midnight.
    pub to: NaiveTime,
    /// Match outside the window instead of inside it.
    pub outside: bool,
}

impl Schedule {
    /// Whether `now` is in the window (or outside it, with `outside`).
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.time_zone);
        let time = local.time();
        let today = local.weekday();
        let inside = if self.from <= self.to {
            self.days.contains(&today) && time >= self.from && time < self.to
        } else {
            // Past midnight: the evening part belongs to today, the morning part to the day
            // before.
            (self.days.contains(&today) && time >= self.from)
                || (self.days.contains(&today.pred()) && time < self.to)
        };
        inside != self.outside
    }
}

/// What kind of message a rule answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindCondition {
    /// The customer mentioned the account in their story.
    StoryMention,
    /// The customer replied to one of the account's stories.
    StoryReply,
    /// The message has an attachment (of this type, when given).
    Attachment(Option<AttachmentKind>),
    /// A tap on a postback button (with this payload, when given).
    Postback(Option<String>),
    /// A tap on a quick reply (with this payload, when given).
    QuickReply(Option<String>),
    /// The conversation was opened from a link or ad (with this `ref`, when given).
    Referral(Option<String>),
    /// A comment on the account's media (on one of these media ids, when any are given): the
    /// rule answers comments, with a private reply, and never messages.
    Comment(Vec<String>),
}

/// One condition of a rule; a rule fires when all of its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The text contains any of these keywords, ignoring case and accents; with
    /// `whole_word`, only as whole words.
    Keywords {
        /// The keywords, normalised (lower case, accents removed).
        any_of: Vec<String>,
        /// Only whole words match.
        whole_word: bool,
    },
    /// The whole text equals this, ignoring case, accents and surrounding spaces.
    Exact(String),
    /// The text starts with this, ignoring case and accents.
    StartsWith(String),
    /// The text matches this regular expression (case-insensitive).
    Regex(Pattern),
    /// The message is of this kind.
    Kind(KindCondition),
    /// The message opens the conversation.
    FirstMessage,
    /// The message arrives within (or outside) these hours.
    Schedule(Schedule),
    /// The comment is its author's first on the account's media.
    FirstComment,
}

/// A quick-reply button offered with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickReply {
    /// The button's text.
    pub title: String,
    /// What Meta sends back when it is tapped.
    pub payload: String,
}

/// What a rule answers: a text template and optional quick replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The text, with `{username}`, `{name}`, `{first_name}` and `{text}` placeholders.
    pub text: String,
    /// Buttons offered with it.
    pub quick_replies: Vec<QuickReply>,
    /// For a comment rule: also answer the comment publicly with this text (the private
    /// reply is [`Reply::text`]).
    pub public_reply: Option<String>,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its id.
    pub id: RuleId,
    /// The account it answers for.
    pub account_id: AccountId,
    /// A name for people.
    pub name: String,
    /// Higher first; ties by creation order.
    pub priority: i32,
    /// Off rules are kept but never fire.
    pub enabled: bool,
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// What it answers.
    pub reply: Reply,
    /// The same rule does not answer the same customer again within this.
    pub cooldown: Duration,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a rule is, before it is stored: validated, without id and timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// See [`Rule::name`].
    pub name: String,
    /// See [`Rule::priority`].
    pub priority: i32,
    /// See [`Rule::enabled`].
    pub enabled: bool,
    /// See [`Rule::conditions`].
    pub conditions: Vec<Condition>,
    /// See [`Rule::reply`].
    pub reply: Reply,
    /// See [`Rule::cooldown`].
    pub cooldown: Duration,
}

impl RuleSpec {
    /// Checks what the constructors of the parts cannot: a name, at least one condition, a
    /// reply within Meta's limits that uses only known placeholders.
    ///
    /// # Errors
    ///
    /// Every problem, each naming its field (`name`, `conditions`, `reply.text`,
    /// `reply.quick_replies[1].title`, ...).
    pub fn check(self) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(FieldError::new("name", "must be 1 to 100 characters"));
        }
        if self.conditions.is_empty() {
            errors.push(FieldError::new(
                "conditions",
                "must hold at least one condition",
            ));
        }
        if self.reply.text.trim().is_empty() || self.reply.text.len() > MAX_REPLY_LEN {
            errors.push(FieldError::new(
                "reply.text",
                format!("must be 1 to {MAX_REPLY_LEN} bytes"),
            ));
        }
        if let Err(e) = check_placeholders(&self.reply.text) {
            errors.push(e);
        }
        check_quick_replies(
            "reply.quick_replies",
            &self.reply.quick_replies,
            &mut errors,
        );
        self.check_comment_parts(&mut errors);
        ValidationErrors::check(errors)?;
        Ok(Self {
            name: name.to_owned(),
            ..self
        })
    }
}

impl RuleSpec {
    /// Whether it answers comments (it has a `Comment` condition).
    pub fn answers_comments(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| matches!(c, Condition::Kind(KindCondition::Comment(_))))
    }

    /// A comment rule has no message conditions; a public reply belongs to a comment rule and
    /// fits an Instagram comment.
    fn check_comment_parts(&self, errors: &mut Vec<FieldError>) {
        let comments = self.answers_comments();
        for (i, c) in self.conditions.iter().enumerate() {
            let for_messages = matches!(c, Condition::FirstMessage)
                || matches!(c, Condition::Kind(k) if !matches!(k, KindCondition::Comment(_)));
            if comments && for_messages {
                errors.push(FieldError::new(
                    format!("conditions[{i}]"),
                    "is about messages; a comment rule (with a comment condition) never sees one",
                ));
            }
            if !comments && matches!(c, Condition::FirstComment) {
                errors.push(FieldError::new(
                    format!("conditions[{i}]"),
                    "needs a comment condition in the same rule",
                ));
            }
        }
        if let Some(public) = &self.reply.public_reply {
            if !comments {
                errors.push(FieldError::new(
                    "reply.public_reply",
                    "is for comment rules only (add a comment condition)",
                ));
            }
            if public.trim().is_empty() || public.chars().count() > MAX_PUBLIC_REPLY_CHARS {
                errors.push(FieldError::new(
                    "reply.public_reply",
                    format!("must be 1 to {MAX_PUBLIC_REPLY_CHARS} characters"),
                ));
            }
            if let Err(mut e) = check_placeholders(public) {
                e.field = "reply.public_reply".into();
                errors.push(e);
            }
        }
    }
}

/// Longest public reply to a comment, in characters (Instagram's comment limit).
pub const MAX_PUBLIC_REPLY_CHARS: usize = 2200;

/// Checks quick replies against Meta's limits (at most 13; titles of 1 to 20 characters;
/// payloads of 1 to 1,000 bytes), naming each fault under `field`.
pub(crate) fn check_quick_replies(
    field: &str,
    quick_replies: &[QuickReply],
    errors: &mut Vec<FieldError>,
) {
    if quick_replies.len() > MAX_QUICK_REPLIES {
        errors.push(FieldError::new(
            field.to_owned(),
            format!("may hold at most {MAX_QUICK_REPLIES} buttons"),
        ));
    }
    for (i, q) in quick_replies.iter().enumerate() {
        if q.title.trim().is_empty() || q.title.chars().count() > 20 {
            errors.push(FieldError::new(
                format!("{field}[{i}].title"),
                "must be 1 to 20 characters",
            ));
        }
        if q.payload.is_empty() || q.payload.len() > 1000 {
            errors.push(FieldError::new(
                format!("{field}[{i}].payload"),
                "must be 1 to 1000 bytes",
            ));
        }
    }
}

/// Builds a keyword condition, normalising the keywords.
///
/// # Errors
///
/// A [`FieldError`] on `field` when there is no keyword or one is blank.
pub fn keywords(
    field: impl Into<std::borrow::Cow<'static, str>>,
    any_of: &[&str],
    whole_word: bool,
) -> Result<Condition, FieldError> {
    let any_of: Vec<String> = any_of.iter().map(|k| normalize(k.trim())).collect();
    if any_of.is_empty() || any_of.iter().any(String::is_empty) {
        return Err(FieldError::new(
            field,
            "needs at least one non-blank keyword",
        ));
    }
    Ok(Condition::Keywords { any_of, whole_word })
}

/// Lower case, accents removed: what text conditions compare.
pub fn normalize(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn check_placeholders(template: &str) -> Result<(), FieldError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| FieldError::new("reply.text", "has a '{' without its '}'"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(FieldError::new(
                "reply.text",
                format!(
                    "uses {{{name}}}; the placeholders are {{username}}, {{name}}, {{first_name}} and {{text}}"
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// What a reply's placeholders become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The customer's Instagram username, when the profile lookup worked.
    pub username: Option<String>,
    /// Their display name, when known.
    pub name: Option<String>,
}

/// Fills a reply's placeholders. A value that is unknown (a failed profile lookup) becomes
/// `fallback`, never an empty string: "Order 66 confirmed, there!", not "confirmed, !".
pub fn render(template: &str, recipient: &Recipient, text: &str, fallback: &str) -> String {
    let username = recipient
        .username
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| format!("@{u}"));
    let name = recipient.name.as_deref().filter(|n| !n.trim().is_empty());
    let first_name = name.and_then(|n| n.split_whitespace().next());
    let or_fallback = |v: Option<&str>| v.unwrap_or(fallback).to_owned();
    template
        .replace("{username}", &or_fallback(username.as_deref()))
        .replace("{first_name}", &or_fallback(first_name.or(name)))
        .replace(
            "{name}",
            &or_fallback(name.or(recipient.username.as_deref())),
        )
        .replace("{text}", text)
}

/// What the evaluation needs to know about the conversation besides the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFacts {
    /// The message is the first of the conversation.
    pub first_message: bool,
    /// When a human last wrote to this customer (an echo not sent by us, or a CRM send).
    pub last_human_reply_at: Option<DateTime<Utc>>,
    /// How many auto-replies this conversation got in the past hour.
    pub auto_replies_last_hour: u32,
    /// When each rule last answered this customer.
    pub last_fired: HashMap<RuleId, DateTime<Utc>>,
}

/// The safety limits every evaluation applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Safety {
    /// No auto-reply for this long after a human wrote to the customer.
    pub human_pause: Duration,
    /// At most this many auto-replies per conversation per hour.
    pub hourly_cap: u32,
    /// Meta's messaging window: no reply to a message older than this.
    pub window: Duration,
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            human_pause: Duration::from_secs(30 * 60),
            hourly_cap: 3,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why nothing was answered, or why a rule was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Only inbound messages are answered; this one is an echo of what the account sent.
    NotInbound,
    /// The customer unsent it.
    Deleted,
    /// It came on the standby channel: another app controls the conversation.
    Standby,
    /// A human wrote to the customer recently.
    HumanReplied,
    /// The conversation reached its hourly cap.
    HourlyCap,
    /// The message is older than Meta's messaging window.
    WindowClosed,
    /// The rule is off.
    Disabled,
    /// Its condition number `n` (from 0) does not hold.
    NoMatch(usize),
    /// The rule answered this customer within its cooldown.
    Cooldown,
}

impl Reason {
    /// A short stable name, for metric labels: `not_inbound`, `deleted`, `standby`,
    /// `human_replied`, `hourly_cap`, `window_closed`, `disabled`, `no_match`, `cooldown`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotInbound => "not_inbound",
            Self::Deleted => "deleted",
            Self::Standby => "standby",
            Self::HumanReplied => "human_replied",
            Self::HourlyCap => "hourly_cap",
            Self::WindowClosed => "window_closed",
            Self::Disabled => "disabled",
            Self::NoMatch(_) => "no_match",
            Self::Cooldown => "cooldown",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInbound => f.write_str("not an inbound message (echoes are never answered)"),
            Self::Deleted => f.write_str("the message was unsent"),
            Self::Standby => f.write_str("another app controls the conversation (standby)"),
            Self::HumanReplied => f.write_str("a human replied recently"),
            Self::HourlyCap => f.write_str("the conversation reached its hourly auto-reply cap"),
            Self::WindowClosed => f.write_str("outside Meta's 24-hour messaging window"),
            Self::Disabled => f.write_str("the rule is disabled"),
            Self::NoMatch(n) => write!(f, "condition {n} does not match"),
            Self::Cooldown => f.write_str("the rule answered this customer within its cooldown"),
        }
    }
}

/// The outcome of evaluating an account's rules against a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The rule that answers, if any.
    pub fired: Option<RuleId>,
    /// Why nothing answers at all (a safety limit), if that is the case.
    pub blocked: Option<Reason>,
    /// Why each rule looked at before the one that fired was passed over.
    pub skipped: Vec<(RuleId, Reason)>,
}

/// Evaluates `rules` (any order; evaluated by priority, then age) against `message`.
pub fn evaluate(
    rules: &[Rule],
    message: &Message,
    facts: &ConversationFacts,
    safety: &Safety,
    now: DateTime<Utc>,
) -> Evaluation {
    let blocked = |reason| Evaluation {
        fired: None,
        blocked: Some(reason),
        skipped: Vec::new(),
    };
    if message.direction != Direction::Inbound {
        return blocked(Reason::NotInbound);
    }
    if message.deleted_at.is_some() {
        return blocked(Reason::Deleted);
    }
    if message.context.standby {
        return blocked(Reason::Standby);
    }
    if since(message.sent_at, now) >= safety.window {
        return blocked(Reason::WindowClosed);
    }
    if facts
        .last_human_reply_at
        .is_some_and(|at| since(at, now) < safety.human_pause)
    {
        return blocked(Reason::HumanReplied);
    }
    if facts.auto_replies_last_hour >= safety.hourly_cap {
        return blocked(Reason::HourlyCap);
    }
    let text = message.text.as_deref().map(normalize);
    select(rules, facts, now, |c| {
        holds(c, message, text.as_deref(), facts, now)
    })
}

/// Picks the first rule, by priority then age, whose conditions all hold (by `holds`) and
/// that is not in its cooldown; says why each one before it was passed over.
pub(crate) fn select(
    rules: &[Rule],
    facts: &ConversationFacts,
    now: DateTime<Utc>,
    holds: impl Fn(&Condition) -> bool,
) -> Evaluation {
    let mut ordered: Vec<&Rule> = rules.iter().collect();
    ordered.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.as_str().cmp(b.id.as_str()))
    });
    let mut skipped = Vec::new();
    for rule in ordered {
        if !rule.enabled {
            skipped.push((rule.id.clone(), Reason::Disabled));
            continue;
        }
        if let Some(n) = rule.conditions.iter().position(|c| !holds(c)) {
            skipped.push((rule.id.clone(), Reason::NoMatch(n)));
            continue;
        }
        if facts
            .last_fired
            .get(&rule.id)
            .is_some_and(|at| since(*at, now) < rule.cooldown)
        {
            skipped.push((rule.id.clone(), Reason::Cooldown));
            continue;
        }
        return Evaluation {
            fired: Some(rule.id.clone()),
            blocked: None,
            skipped,
        };
    }
    Evaluation {
        fired: None,
        blocked: None,
        skipped,
    }
}

pub(crate) fn since(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - at).to_std().unwrap_or(Duration::ZERO)
}

fn holds(
    condition: &Condition,
    message: &Message,
    text: Option<&str>,
    facts: &ConversationFacts,
    now: DateTime<Utc>,
) -> bool {
    if let Some(holds) = text_holds(condition, message.text.as_deref(), text) {
        return holds;
    }
    match condition {
        Condition::Keywords { .. }
        | Condition::Exact(_)
        | Condition::StartsWith(_)
        | Condition::Regex(_) => false,
        Condition::Kind(kind) => kind_holds(kind, message),
        Condition::FirstMessage => facts.first_message,
        Condition::Schedule(schedule) => schedule.covers(now),
        // Comment conditions never hold for a message.
        Condition::FirstComment => false,
    }
}

/// Whether a text condition holds for `raw` (as written) and `normalized` (see [`normalize`]);
/// `None` for conditions that are not about the text.
pub(crate) fn text_holds(
    condition: &Condition,
    raw: Option<&str>,
    normalized: Option<&str>,
) -> Option<bool> {
    Some(match condition {
        Condition::Keywords { any_of, whole_word } => normalized.is_some_and(|t| {
            any_of.iter().any(|k| {
                if *whole_word {
                    has_word(t, k)
                } else {
                    t.contains(k.as_str())
                }
            })
        }),
        Condition::Exact(expected) => {
            normalized.is_some_and(|t| t.trim() == normalize(expected.trim()))
        }
        Condition::StartsWith(prefix) => {
            normalized.is_some_and(|t| t.trim_start().starts_with(&normalize(prefix)))
        }
        Condition::Regex(pattern) => raw.is_some_and(|t| pattern.regex.is_match(t)),
        _ => return None,
    })
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn kind_holds(kind: &KindCondition, message: &Message) -> bool {
    let payload = message.context.payload.as_deref();
    match kind {
        KindCondition::StoryMention => message.kind == MessageKind::StoryMention,
        KindCondition::StoryReply => {
            message.kind == MessageKind::StoryReply
                || matches!(message.reply_to, Some(ReplyTo::Story { .. }))
        }
        KindCondition::Attachment(None) => !message.attachments.is_empty(),
        KindCondition::Attachment(Some(wanted)) => {
            message.attachments.iter().any(|a| &a.kind == wanted)
        }
        KindCondition::Postback(wanted) => {
            message.kind == MessageKind::Postback
                && wanted.as_deref().is_none_or(|w| payload == Some(w))
        }
        KindCondition::QuickReply(wanted) => {
            message.kind == MessageKind::QuickReply
                && wanted.as_deref().is_none_or(|w| payload == Some(w))
        }
        KindCondition::Referral(wanted) => message.context.referral.as_ref().is_some_and(|r| {
            wanted
                .as_deref()
                .is_none_or(|w| r.ref_param.as_deref() == Some(w))
        }),
        KindCondition::Comment(_) => false,
    }
}

/// Parses an IANA time zone name (`Europe/Berlin`).
///
/// # Errors
///
/// A [`FieldError`] on `field` for an unknown name.
pub fn time_zone(
    field: impl Into<std::borrow::Cow<'static, str>>,
    name: &str,
) -> Result<Tz, FieldError> {
    name.parse::<Tz>()
        .map_err(|_| FieldError::new(field, format!("is not a time zone name: {name:?}")))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, TimeZone};

    use super::*;
    use crate::{
        Attachment, ConversationId, InstagramAccountId, InstagramMessageId, InstagramUserId,
        MessageContext, MessageId, Referral,
    };

    fn now() -> DateTime<Utc> {
        // A Wednesday, 10:00 UTC.
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn message(text: Option<&str>) -> Message {
        let account = InstagramAccountId::parse("a", "1784").unwrap();
        let customer = InstagramUserId::parse("c", "555").unwrap();
        Message {
            id: MessageId::from_u128(1),
            conversation_id: ConversationId::for_pair(&account, &customer),
            instagram_account_id: account.clone(),
            mid: Some(InstagramMessageId::parse("m", "mid.1").unwrap()),
            direction: Direction::Inbound,
            sender_id: customer,
            recipient_id: account.to_user_id(),
            kind: MessageKind::Text,
            text: text.map(str::to_owned),
            attachments: Vec::new(),
            reply_to: None,
            context: MessageContext::default(),
            sent_at: now() - TimeDelta::minutes(1),
            created_at: now(),
            deleted_at: None,
        }
    }

    fn rule(n: u128, priority: i32, conditions: Vec<Condition>) -> Rule {
        Rule {
            id: RuleId::from_u128(n),
            account_id: AccountId::from_u128(1),
            name: format!("rule {n}"),
            priority,
            enabled: true,
            conditions,
            reply: Reply {
                text: "Order 66 confirmed, {username}!".to_owned(),
                quick_replies: Vec::new(),
                public_reply: None,
            },
            cooldown: Duration::from_secs(3600),
            created_at: now() + TimeDelta::seconds(i64::try_from(n).unwrap()),
            updated_at: now(),
        }
    }

    fn fires(condition: Condition, message: &Message) -> bool {
        evaluate(
            &[rule(1, 0, vec![condition])],
            message,
            &ConversationFacts::default(),
            &Safety::default(),
            now(),
        )
        .fired
        .is_some()
    }

    use chrono::TimeDelta;

    #[test]
    fn text_conditions_ignore_case_and_accents() {
        let table: Vec<(Condition, &str, bool)> = vec![
            (
                keywords("k", &["order66"], false).unwrap(),
                "Hi ORDER66 please",
                true,
            ),
            (
                keywords("k", &["order66"], false).unwrap(),
                "Hi order 66",
                false,
            ),
            (
                keywords("k", &["cafe"], false).unwrap(),
                "Un CAFÉ, s'il vous plaît",
                true,
            ),
            (keywords("k", &["Café"], false).unwrap(), "cafe?", true),
            (
                keywords("k", &["price", "cost"], false).unwrap(),
                "what does it COST",
                true,
            ),
            (keywords("k", &["hi"], true).unwrap(), "Hi, there", true),
            (keywords("k", &["hi"], true).unwrap(), "this is it", false),
            (keywords("k", &["hi"], false).unwrap(), "this is it", true),
            (
                keywords("k", &["order 66"], true).unwrap(),
                "re: order 66!",
                true,
            ),
            (Condition::Exact("Yes".into()), "  yes ", true),
            (Condition::Exact("Yes".into()), "yes please", false),
            (
                Condition::StartsWith("Price".into()),
                "price of the red one?",
                true,
            ),
            (Condition::StartsWith("Price".into()), "the price", false),
            (
                Condition::Regex(Pattern::parse("p", r"order\s*#?\d{3,}").unwrap()),
                "Where is ORDER #12345",
                true,
            ),
            (
                Condition::Regex(Pattern::parse("p", r"^\d+$").unwrap()),
                "12a",
                false,
            ),
        ];
        for (condition, text, want) in table {
            assert_eq!(
                fires(condition.clone(), &message(Some(text))),
                want,
                "{condition:?} on {text:?}"
            );
        }
        // No text: no text condition holds.
        assert!(!fires(
            keywords("k", &["a"], false).unwrap(),
            &message(None)
        ));
        assert!(!fires(
            Condition::Regex(Pattern::parse("p", ".*").unwrap()),
            &message(None)
        ));
    }

    #[test]
    fn kind_conditions() {
        let mut mention = message(None);
        mention.kind = MessageKind::StoryMention;
        let mut story_reply = message(Some("nice"));
        story_reply.reply_to = Some(ReplyTo::Story {
            id: "s1".into(),
            url: None,
        });
        let mut image = message(None);
        image.kind = MessageKind::Image;
        image.attachments.push(Attachment {
            kind: AttachmentKind::Image,
            url: None,
            title: None,
        });
        let mut postback = message(Some("Start"));
        postback.kind = MessageKind::Postback;
        postback.context.payload = Some("GET_STARTED".into());
        let mut quick = message(Some("Red"));
        quick.kind = MessageKind::QuickReply;
        quick.context.payload = Some("COLOR_RED".into());
        let mut referred = message(Some("hi"));
        referred.context.referral = Some(Referral {
            ref_param: Some("summer_sale".into()),
            ..Referral::default()
        });
        let plain = message(Some("hi"));
        let table: Vec<(KindCondition, &Message, bool)> = vec![
            (KindCondition::StoryMention, &mention, true),
            (KindCondition::StoryMention, &plain, false),
            (KindCondition::StoryReply, &story_reply, true),
            (KindCondition::StoryReply, &plain, false),
            (KindCondition::Attachment(None), &image, true),
            (
                KindCondition::Attachment(Some(AttachmentKind::Image)),
                &image,
                true,
            ),
            (
                KindCondition::Attachment(Some(AttachmentKind::Video)),
                &image,
                false,
            ),
            (KindCondition::Attachment(None), &plain, false),
            (KindCondition::Postback(None), &postback, true),
            (
                KindCondition::Postback(Some("GET_STARTED".into())),
                &postback,
                true,
            ),
            (
                KindCondition::Postback(Some("OTHER".into())),
                &postback,
                false,
            ),
            (KindCondition::Postback(None), &quick, false),
            (
                KindCondition::QuickReply(Some("COLOR_RED".into())),
                &quick,
                true,
            ),
            (
                KindCondition::QuickReply(Some("COLOR_BLUE".into())),
                &quick,
                false,
            ),
            (KindCondition::Referral(None), &referred, true),
            (
                KindCondition::Referral(Some("summer_sale".into())),
                &referred,
                true,
            ),
            (
                KindCondition::Referral(Some("winter".into())),
                &referred,
                false,
            ),
            (KindCondition::Referral(None), &plain, false),
        ];
        for (kind, message, want) in table {
            assert_eq!(
                fires(Condition::Kind(kind.clone()), message),
                want,
                "{kind:?} on {:?}",
                message.kind
            );
        }
    }

    fn schedule(tz: &str, from: (u32, u32), to: (u32, u32), outside: bool) -> Schedule {
        Schedule {
            time_zone: time_zone("tz", tz).unwrap(),
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            from: NaiveTime::from_hms_opt(from.0, from.1, 0).unwrap(),
            to: NaiveTime::from_hms_opt(to.0, to.1, 0).unwrap(),
            outside,
        }
    }

    #[test]
    fn schedules_follow_the_time_zone_and_days() {
        let wednesday_10_utc = now();
        let saturday_10_utc = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        let table = [
            // 10:00 UTC is 11:00 in Berlin (winter time).
            (
                schedule("Europe/Berlin", (9, 0), (17, 0), false),
                wednesday_10_utc,
                true,
            ),
            (
                schedule("Europe/Berlin", (11, 30), (17, 0), false),
                wednesday_10_utc,
                false,
            ),
            (
                schedule("Europe/Berlin", (11, 0), (17, 0), false),
                wednesday_10_utc,
                true,
            ),
            // 10:00 UTC is 05:00 in New York: before opening hours.
            (
                schedule("America/New_York", (9, 0), (17, 0), false),
                wednesday_10_utc,
                false,
            ),
            (
                schedule("America/New_York", (9, 0), (17, 0), true),
                wednesday_10_utc,
                true,
            ),
            // Weekends are not in the days.
            (
                schedule("UTC", (9, 0), (17, 0), false),
                saturday_10_utc,
                false,
            ),
            (
                schedule("UTC", (9, 0), (17, 0), true),
                saturday_10_utc,
                true,
            ),
            // A night window past midnight: Tuesday 22:00 to Wednesday 06:00 in Tokyo (UTC+9).
            // 10:00 UTC Wednesday is 19:00 in Tokyo: outside it.
            (
                schedule("Asia/Tokyo", (22, 0), (6, 0), false),
                wednesday_10_utc,
                false,
            ),
            (
                schedule("Asia/Tokyo", (22, 0), (6, 0), false),
                Utc.with_ymd_and_hms(2026, 11, 25, 20, 0, 0).unwrap(), // Thu 05:00 Tokyo
                true,
            ),
        ];
        for (schedule, at, want) in table {
            assert_eq!(schedule.covers(at), want, "{schedule:?} at {at}");
        }
        assert!(time_zone("tz", "Mars/Olympus").is_err());
    }

    #[test]
    fn priority_then_age_decides_and_the_trace_says_why() {
        let low = rule(1, 0, vec![keywords("k", &["hi"], false).unwrap()]);
        let high = rule(2, 10, vec![keywords("k", &["hi"], false).unwrap()]);
        let higher_no_match = rule(3, 20, vec![keywords("k", &["price"], false).unwrap()]);
        let mut disabled = rule(4, 30, vec![keywords("k", &["hi"], false).unwrap()]);
        disabled.enabled = false;
        let rules = [
            low.clone(),
            high.clone(),
            higher_no_match.clone(),
            disabled.clone(),
        ];
        let result = evaluate(
            &rules,
            &message(Some("hi")),
            &ConversationFacts::default(),
            &Safety::default(),
            now(),
        );
        assert_eq!(result.fired, Some(high.id.clone()));
        assert_eq!(
            result.skipped,
            vec![
                (disabled.id.clone(), Reason::Disabled),
                (higher_no_match.id.clone(), Reason::NoMatch(0)),
            ]
        );
        // Same priority: the older rule first.
        let twin = rule(5, 10, vec![keywords("k", &["hi"], false).unwrap()]);
        let result = evaluate(
            &[twin, high.clone()],
            &message(Some("hi")),
            &ConversationFacts::default(),
            &Safety::default(),
            now(),
        );
        assert_eq!(result.fired, Some(high.id));
        // All conditions must hold: the second one names itself.
        let both = rule(
            6,
            0,
            vec![
                keywords("k", &["hi"], false).unwrap(),
                Condition::FirstMessage,
            ],
        );
        let result = evaluate(
            std::slice::from_ref(&both),
            &message(Some("hi")),
            &ConversationFacts::default(),
            &Safety::default(),
            now(),
        );
        assert_eq!(result.skipped, vec![(both.id.clone(), Reason::NoMatch(1))]);
        let first = ConversationFacts {
            first_message: true,
            ..ConversationFacts::default()
        };
        let result = evaluate(
            std::slice::from_ref(&both),
            &message(Some("hi")),
            &first,
            &Safety::default(),
            now(),
        );
        assert_eq!(result.fired, Some(both.id));
    }

    #[test]
    fn safety_comes_before_any_rule() {
        let rules = [rule(1, 0, vec![keywords("k", &["hi"], false).unwrap()])];
        let safety = Safety::default();
        let mut echo = message(Some("hi"));
        echo.direction = Direction::Outbound;
        let mut deleted = message(Some("hi"));
        deleted.deleted_at = Some(now());
        let mut standby = message(Some("hi"));
        standby.context.standby = true;
        let mut old = message(Some("hi"));
        old.sent_at = now() - TimeDelta::hours(24);
        let fresh = message(Some("hi"));
        let human = ConversationFacts {
            last_human_reply_at: Some(now() - TimeDelta::minutes(29)),
            ..ConversationFacts::default()
        };
        let human_long_ago = ConversationFacts {
            last_human_reply_at: Some(now() - TimeDelta::minutes(31)),
            ..ConversationFacts::default()
        };
        let capped = ConversationFacts {
            auto_replies_last_hour: 3,
            ..ConversationFacts::default()
        };
        let under_cap = ConversationFacts {
            auto_replies_last_hour: 2,
            ..ConversationFacts::default()
        };
        let none = ConversationFacts::default();
        let table: Vec<(&Message, &ConversationFacts, Option<Reason>)> = vec![
            (&echo, &none, Some(Reason::NotInbound)),
            (&deleted, &none, Some(Reason::Deleted)),
            (&standby, &none, Some(Reason::Standby)),
            (&old, &none, Some(Reason::WindowClosed)),
            (&fresh, &human, Some(Reason::HumanReplied)),
            (&fresh, &human_long_ago, None),
            (&fresh, &capped, Some(Reason::HourlyCap)),
            (&fresh, &under_cap, None),
        ];
        for (message, facts, want) in table {
            let result = evaluate(&rules, message, facts, &safety, now());
            assert_eq!(result.blocked, want, "{facts:?}");
            assert_eq!(result.fired.is_some(), want.is_none());
        }
    }

    #[test]
    fn cooldown_is_per_rule_and_customer() {
        let a = rule(1, 10, vec![keywords("k", &["hi"], false).unwrap()]);
        let b = rule(2, 0, vec![keywords("k", &["hi"], false).unwrap()]);
        let recently = ConversationFacts {
            last_fired: HashMap::from([(a.id.clone(), now() - TimeDelta::minutes(59))]),
            ..ConversationFacts::default()
        };
        let result = evaluate(
            &[a.clone(), b.clone()],
            &message(Some("hi")),
            &recently,
            &Safety::default(),
            now(),
        );
        // `a` is cooling down; `b` answers instead.
        assert_eq!(result.fired, Some(b.id));
        assert_eq!(result.skipped, vec![(a.id.clone(), Reason::Cooldown)]);
        let expired = ConversationFacts {
            last_fired: HashMap::from([(a.id.clone(), now() - TimeDelta::minutes(61))]),
            ..ConversationFacts::default()
        };
        let result = evaluate(
            std::slice::from_ref(&a),
            &message(Some("hi")),
            &expired,
            &Safety::default(),
            now(),
        );
        assert_eq!(result.fired, Some(a.id));
    }

    #[test]
    fn templates_fill_every_placeholder_and_never_leave_a_hole() {
        let known = Recipient {
            username: Some("jane.doe".into()),
            name: Some("Jane Doe".into()),
        };
        let unknown = Recipient::default();
        let table = [
            (
                "Order 66 confirmed, {username}!",
                &known,
                "Order 66 confirmed, @jane.doe!",
            ),
            (
                "Order 66 confirmed, {username}!",
                &unknown,
                "Order 66 confirmed, there!",
            ),
            ("Hi {first_name}", &known, "Hi Jane"),
            ("Hi {name}", &known, "Hi Jane Doe"),
            ("Hi {name}", &unknown, "Hi there"),
            ("You said: {text}", &unknown, "You said: ORDER66 {username}"),
        ];
        for (template, recipient, want) in table {
            assert_eq!(
                render(template, recipient, "ORDER66 {username}", "there"),
                want,
                "{template}"
            );
        }
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        let good = RuleSpec {
            name: " order66 ".into(),
            priority: 0,
            enabled: true,
            conditions: vec![keywords("conditions[0].keywords", &["order66"], false).unwrap()],
            reply: Reply {
                text: "Order 66 confirmed, {username}!".into(),
                quick_replies: vec![QuickReply {
                    title: "Track".into(),
                    payload: "TRACK".into(),
                }],
                public_reply: None,
            },
            cooldown: Duration::from_secs(60),
        };
        assert_eq!(good.clone().check().unwrap().name, "order66");
        let bad = RuleSpec {
            name: String::new(),
            conditions: Vec::new(),
            reply: Reply {
                text: "Hello {customer}".into(),
                quick_replies: vec![QuickReply {
                    title: "x".repeat(21),
                    payload: String::new(),
                }],
                public_reply: None,
            },
            ..good
        };
        let fields: Vec<String> = bad
            .check()
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "conditions",
                "reply.text",
                "reply.quick_replies[0].title",
                "reply.quick_replies[0].payload"
            ]
        );
        assert!(check_placeholders("{username").is_err());
        assert!(Pattern::parse("conditions[0].pattern", "(unclosed").is_err());
        assert!(Pattern::parse("p", &"a".repeat(MAX_REGEX_LEN + 1)).is_err());
        // Compiled size is bounded too.
        assert!(Pattern::parse("p", r"\w{200}\w{200}\w{100}").is_err());
        assert!(keywords("k", &[" "], false).is_err());
        assert!(keywords("k", &[], false).is_err());
    }
}
