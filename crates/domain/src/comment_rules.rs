//! Auto-reply rules for comments: a comment rule (one with a `Comment` kind condition) answers
//! a comment with a private reply, and optionally a public one; message rules never answer
//! comments, nor comment rules messages.
//!
//! Safety first, as for messages: never the account's own comments (its public replies would
//! answer themselves); never past Meta's window for a private reply (7 days; a live comment
//! only while its broadcast can last, 4 hours); never more than the hourly cap per author;
//! never the same rule to the same author within its cooldown.

use chrono::{DateTime, TimeDelta, Utc};

use crate::ReceivedComment;
use crate::rules::{
    Condition, ConversationFacts, Evaluation, KindCondition, Reason, Rule, Safety, normalize,
    select, text_holds,
};

/// How long after a comment Meta takes a private reply to it.
pub const PRIVATE_REPLY_WINDOW: TimeDelta = TimeDelta::days(7);

/// The longest an Instagram live broadcast lasts: private replies to a live comment are taken
/// only while its broadcast lasts.
pub const LIVE_BROADCAST_LIMIT: TimeDelta = TimeDelta::hours(4);

/// Whether Meta still takes a private reply at `now` to a comment made at `at` (`live`: on a
/// live broadcast).
pub fn private_reply_open(live: bool, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let limit = if live {
        LIVE_BROADCAST_LIMIT
    } else {
        PRIVATE_REPLY_WINDOW
    };
    now - at <= limit
}

/// Evaluates `rules` against `comment`, made at `at`; `facts.first_message` says whether it
/// is its author's first comment on the account.
pub fn evaluate_comment(
    rules: &[Rule],
    comment: &ReceivedComment,
    at: DateTime<Utc>,
    facts: &ConversationFacts,
    safety: &Safety,
    now: DateTime<Utc>,
) -> Evaluation {
    let blocked = |reason| Evaluation {
        fired: None,
        blocked: Some(reason),
        skipped: Vec::new(),
    };
    if comment.by_account() {
        return blocked(Reason::NotInbound);
    }
    if !private_reply_open(comment.live, at, now) {
        return blocked(Reason::WindowClosed);
    }
    if facts.auto_replies_last_hour >= safety.hourly_cap {
        return blocked(Reason::HourlyCap);
    }
    let text = comment.text.as_deref().map(normalize);
    let comment_rule = |rule: &Rule| {
        rule.conditions
            .iter()
            .any(|c| matches!(c, Condition::Kind(KindCondition::Comment(_))))
    };
    let rules: Vec<Rule> = rules.iter().filter(|r| comment_rule(r)).cloned().collect();
    select(&rules, facts, now, |c| {
        holds(c, comment, text.as_deref(), facts, now)
    })
}

fn holds(
    condition: &Condition,
    comment: &ReceivedComment,
    text: Option<&str>,
    facts: &ConversationFacts,
    now: DateTime<Utc>,
) -> bool {
    if let Some(holds) = text_holds(condition, comment.text.as_deref(), text) {
        return holds;
    }
    match condition {
        Condition::Kind(KindCondition::Comment(media)) => {
            media.is_empty()
                || comment
                    .media_id
                    .as_ref()
                    .is_some_and(|m| media.iter().any(|w| w == m))
        }
        Condition::FirstComment => facts.first_message,
        Condition::Schedule(schedule) => schedule.covers(now),
        // Message conditions never hold for a comment.
        Condition::Kind(_)
        | Condition::FirstMessage
        | Condition::Keywords { .. }
        | Condition::Exact(_)
        | Condition::StartsWith(_)
        | Condition::Regex(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::rules::{Pattern, Reply, keywords};
    use crate::{
        AccountId, InstagramAccountId, InstagramCommentId, InstagramUserId, Parties, RuleId,
    };

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn comment(text: &str, author: &str, media: &str, live: bool) -> ReceivedComment {
        ReceivedComment {
            parties: Parties {
                account: InstagramAccountId::parse("a", "1784").unwrap(),
                customer: InstagramUserId::parse("c", author).unwrap(),
            },
            comment_id: InstagramCommentId::parse("id", "179").unwrap(),
            username: Some("jane".into()),
            text: Some(text.into()),
            media_id: Some(media.into()),
            media_product_type: None,
            parent_id: None,
            live,
            ad_id: None,
            ad_title: None,
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
                text: "Sent you the link!".into(),
                quick_replies: Vec::new(),
                public_reply: None,
            },
            cooldown: Duration::from_secs(3600),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn on_media(ids: &[&str]) -> Condition {
        Condition::Kind(KindCondition::Comment(
            ids.iter().map(|s| (*s).to_owned()).collect(),
        ))
    }

    #[test]
    fn a_comment_rule_answers_comments_on_its_media_with_the_words_it_wants() {
        let price = keywords("any_of", &["price"], true).unwrap();
        let rules = [
            rule(1, 0, vec![price.clone()]),
            rule(2, 5, vec![on_media(&["178"]), price.clone()]),
            rule(3, 1, vec![on_media(&[]), price]),
        ];
        let facts = ConversationFacts::default();
        let safety = Safety::default();
        let fired =
            |c: &ReceivedComment| evaluate_comment(&rules, c, now(), &facts, &safety, now()).fired;
        // On media 178: the higher rule; elsewhere the any-media rule; never the message rule.
        assert_eq!(
            fired(&comment("PRICE?", "42", "178", false)),
            Some(RuleId::from_u128(2))
        );
        assert_eq!(
            fired(&comment("Price please", "42", "999", false)),
            Some(RuleId::from_u128(3))
        );
        assert_eq!(fired(&comment("nice pic", "42", "178", false)), None);
        let regex = [rule(
            4,
            0,
            vec![
                on_media(&[]),
                Condition::Regex(Pattern::parse("p", r"\bsize\s+\d+").unwrap()),
            ],
        )];
        let eval = evaluate_comment(
            &regex,
            &comment("Size 38?", "42", "1", false),
            now(),
            &facts,
            &safety,
            now(),
        );
        assert_eq!(eval.fired, Some(RuleId::from_u128(4)));
    }

    #[test]
    fn first_comment_and_cooldowns_hold_per_author() {
        let rules = [rule(1, 0, vec![on_media(&[]), Condition::FirstComment])];
        let safety = Safety::default();
        let first = ConversationFacts {
            first_message: true,
            ..ConversationFacts::default()
        };
        let c = comment("hi", "42", "1", false);
        assert!(
            evaluate_comment(&rules, &c, now(), &first, &safety, now())
                .fired
                .is_some()
        );
        let again = ConversationFacts::default();
        let eval = evaluate_comment(&rules, &c, now(), &again, &safety, now());
        assert_eq!(eval.skipped, [(RuleId::from_u128(1), Reason::NoMatch(1))]);
        let cooling = ConversationFacts {
            first_message: true,
            last_fired: [(RuleId::from_u128(1), now() - TimeDelta::minutes(5))].into(),
            ..ConversationFacts::default()
        };
        let eval = evaluate_comment(&rules, &c, now(), &cooling, &safety, now());
        assert_eq!(eval.skipped, [(RuleId::from_u128(1), Reason::Cooldown)]);
    }

    #[test]
    fn safety_blocks_own_comments_closed_windows_and_the_hourly_cap() {
        let rules = [rule(1, 0, vec![on_media(&[])])];
        let facts = ConversationFacts::default();
        let safety = Safety::default();
        let eval = |c: &ReceivedComment, at: DateTime<Utc>, facts: &ConversationFacts| {
            evaluate_comment(&rules, c, at, facts, &safety, now()).blocked
        };
        assert_eq!(
            eval(&comment("x", "1784", "1", false), now(), &facts),
            Some(Reason::NotInbound)
        );
        let old = now() - TimeDelta::days(7) - TimeDelta::minutes(1);
        assert_eq!(
            eval(&comment("x", "42", "1", false), old, &facts),
            Some(Reason::WindowClosed)
        );
        let ended = now() - TimeDelta::hours(5);
        assert_eq!(
            eval(&comment("x", "42", "1", true), ended, &facts),
            Some(Reason::WindowClosed)
        );
        assert_eq!(
            eval(
                &comment("x", "42", "1", true),
                now() - TimeDelta::hours(3),
                &facts
            ),
            None
        );
        let capped = ConversationFacts {
            auto_replies_last_hour: 3,
            ..ConversationFacts::default()
        };
        assert_eq!(
            eval(&comment("x", "42", "1", false), now(), &capped),
            Some(Reason::HourlyCap)
        );
    }
}
