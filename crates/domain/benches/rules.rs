//! How long evaluating an account's rules against one message takes: 100 rules of mixed
//! kinds, once with the deciding rule last in order and once with no rule matching (every
//! condition of every rule checked). `cargo bench -p insta-router-domain`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use chrono::{NaiveTime, TimeZone, Utc, Weekday};
use criterion::{Criterion, criterion_group, criterion_main};
use insta_router_domain::rules::{
    self, Condition, ConversationFacts, KindCondition, Pattern, Reply, Rule, Safety, Schedule,
};
use insta_router_domain::{
    AccountId, ConversationId, Direction, InstagramAccountId, InstagramMessageId, InstagramUserId,
    Message, MessageContext, MessageId, MessageKind, RuleId,
};

fn rule(n: u128, conditions: Vec<Condition>) -> Rule {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    Rule {
        id: RuleId::from_u128(n),
        account_id: AccountId::from_u128(1),
        name: format!("rule {n}"),
        priority: i32::try_from(n).unwrap(),
        enabled: true,
        conditions,
        reply: Reply {
            text: "Hi {first_name}!".to_owned(),
            quick_replies: Vec::new(),
            public_reply: None,
        },
        cooldown: Duration::from_secs(3600),
        created_at: now,
        updated_at: now,
    }
}

/// 100 rules; the lowest priority one matches `order66`.
fn rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for n in 1..=100_u128 {
        let condition = match n % 10 {
            0 => Condition::Regex(Pattern::parse("p", &format!(r"invoice\s*#?{n}\d+")).unwrap()),
            1 => Condition::Schedule(Schedule {
                time_zone: rules::time_zone("tz", "Europe/Berlin").unwrap(),
                days: vec![Weekday::Sat, Weekday::Sun],
                from: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                to: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
                outside: false,
            }),
            2 => Condition::Kind(KindCondition::StoryMention),
            3 => Condition::StartsWith(format!("refund {n}")),
            _ => rules::keywords(
                "k",
                &[&format!("product{n}"), &format!("größe{n}"), "wholesale"],
                n % 2 == 0,
            )
            .unwrap(),
        };
        rules.push(rule(n + 1, vec![condition]));
    }
    rules.push(rule(
        0,
        vec![rules::keywords("k", &["order66"], false).unwrap()],
    ));
    rules
}

fn message(text: &str) -> Message {
    let account = InstagramAccountId::parse("a", "17841400000000001").unwrap();
    let customer = InstagramUserId::parse("c", "1234567890123456").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    Message {
        id: MessageId::from_u128(1),
        conversation_id: ConversationId::for_pair(&account, &customer),
        instagram_account_id: account.clone(),
        mid: Some(InstagramMessageId::parse("m", "mid.1").unwrap()),
        direction: Direction::Inbound,
        sender_id: customer,
        recipient_id: account.to_user_id(),
        kind: MessageKind::Text,
        text: Some(text.to_owned()),
        attachments: Vec::new(),
        reply_to: None,
        context: MessageContext::default(),
        sent_at: now,
        created_at: now,
        deleted_at: None,
    }
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let facts = ConversationFacts::default();
    let safety = Safety::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 30).unwrap();
    let hit =
        message("Hallo! Wo ist meine Bestellung? Ich habe ORDER66 geschrieben, Größe M bitte.");
    let miss = message("Hallo! Wo ist meine Bestellung? Ich habe geschrieben, Größe M bitte.");
    assert!(
        rules::evaluate(&rules, &hit, &facts, &safety, now)
            .fired
            .is_some()
    );
    assert!(
        rules::evaluate(&rules, &miss, &facts, &safety, now)
            .fired
            .is_none()
    );
    c.bench_function("evaluate 101 rules, the last one fires", |b| {
        b.iter(|| rules::evaluate(&rules, &hit, &facts, &safety, now));
    });
    c.bench_function("evaluate 101 rules, none fires", |b| {
        b.iter(|| rules::evaluate(&rules, &miss, &facts, &safety, now));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
