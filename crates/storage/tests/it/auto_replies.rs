//! The record of auto-replies: one claim per message, and the facts the rules need.

use chrono::TimeDelta;
use insta_router_domain::{Direction, InstagramMessageId, MessageId, RuleId};
use insta_router_ports::{AutoReplyStore, MessageRepository, ReplyClaim};

use crate::inbound::message;
use crate::{at, migrated};

#[tokio::test]
async fn a_message_is_answered_at_most_once_and_facts_follow_the_replies() {
    for (test_db, db) in migrated().await {
        let backend = test_db.backend();
        let store = db.auto_replies();
        let messages = db.messages();
        let first = message(1, "mid.1", 0);
        messages.insert_if_absent(&first).await.unwrap();
        let facts = store.facts(&first, at(10)).await.unwrap();
        assert!(facts.first_message, "{backend:?}");
        assert_eq!(facts.auto_replies_last_hour, 0);
        assert_eq!(facts.last_human_reply_at, None);

        let claim = ReplyClaim {
            trigger: first.id.clone(),
            conversation: first.conversation_id.clone(),
            rule: RuleId::from_u128(7),
            at: at(10),
        };
        assert!(store.begin(&claim).await.unwrap(), "{backend:?}");
        assert!(
            !store.begin(&claim).await.unwrap(),
            "{backend:?}: answered twice"
        );
        // A temporary failure gives the claim back.
        store.abandon(&first.id).await.unwrap();
        assert!(store.begin(&claim).await.unwrap());

        // Our reply is stored as outbound, and is not a human's.
        let mut reply = message(2, "mid.reply", 11);
        reply.direction = Direction::Outbound;
        store.sent(&first.id, &reply).await.unwrap();
        assert!(!store.begin(&claim).await.unwrap());
        assert!(messages.get(&reply.id).await.unwrap().is_some());

        let second = message(3, "mid.3", 20);
        messages.insert_if_absent(&second).await.unwrap();
        let facts = store.facts(&second, at(30)).await.unwrap();
        assert!(!facts.first_message);
        assert_eq!(facts.auto_replies_last_hour, 1, "{backend:?}");
        assert_eq!(facts.last_fired.get(&RuleId::from_u128(7)), Some(&at(10)));
        assert_eq!(facts.last_human_reply_at, None, "{backend:?}");
        // An hour later the reply no longer counts toward the cap.
        let later = store
            .facts(&second, at(10) + TimeDelta::minutes(61))
            .await
            .unwrap();
        assert_eq!(later.auto_replies_last_hour, 0);

        // A message typed in the Instagram app (an echo we did not send) is a human's.
        let mut human = message(4, "mid.human", 25);
        human.direction = Direction::Outbound;
        human.mid = Some(InstagramMessageId::parse("m", "mid.human").unwrap());
        messages.insert_if_absent(&human).await.unwrap();
        let facts = store.facts(&second, at(30)).await.unwrap();
        assert_eq!(facts.last_human_reply_at, Some(at(25)), "{backend:?}");

        // Settled failures do not count, and are not answered again.
        let claim3 = ReplyClaim {
            trigger: MessageId::from_u128(3),
            conversation: second.conversation_id.clone(),
            rule: RuleId::from_u128(8),
            at: at(31),
        };
        assert!(store.begin(&claim3).await.unwrap());
        store
            .settle(&claim3.trigger, "failed", "Meta code 551")
            .await
            .unwrap();
        assert!(!store.begin(&claim3).await.unwrap());
        let facts = store.facts(&second, at(32)).await.unwrap();
        assert_eq!(facts.auto_replies_last_hour, 1);
        assert!(!facts.last_fired.contains_key(&RuleId::from_u128(8)));
    }
}
