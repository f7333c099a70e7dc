//! The message store contract.

use insta_router_domain::{
    Attachment, AttachmentKind, ConversationId, Direction, InstagramAccountId, InstagramMessageId,
    InstagramUserId, Message, MessageContext, MessageId, MessageKind, Referral, ReplyTo,
};
use insta_router_ports::{MessageRepository, PageRequest, RepoError};

use crate::{at, migrated};

fn message(n: u128, account: &str, mid: Option<&str>, secs: i64) -> Message {
    let account = InstagramAccountId::parse("a", account).unwrap();
    let customer = InstagramUserId::parse("c", "1234567890123456").unwrap();
    Message {
        id: MessageId::from_u128(n),
        conversation_id: ConversationId::for_pair(&account, &customer),
        recipient_id: InstagramUserId::parse("r", account.as_str()).unwrap(),
        instagram_account_id: account,
        mid: mid.map(|m| InstagramMessageId::parse("mid", m).unwrap()),
        direction: Direction::Inbound,
        sender_id: customer,
        kind: MessageKind::Text,
        text: Some(format!("hello {n} ünïcode ❤️")),
        attachments: Vec::new(),
        reply_to: None,
        context: MessageContext::default(),
        sent_at: at(secs),
        created_at: at(secs + 1),
        deleted_at: None,
    }
}

#[tokio::test]
async fn messages_round_trip_with_attachments_and_reply_context() {
    for (test_db, db) in migrated().await {
        let repo = db.messages();
        let mut m = message(1, "17841400000000001", Some("mid.img.0001"), 0);
        m.kind = MessageKind::StoryReply;
        m.context = MessageContext {
            payload: Some("CONFIRM_YES".into()),
            referral: Some(Referral {
                ref_param: Some("ad_ref_42".into()),
                source: Some("ADS".into()),
                kind: Some("OPEN_THREAD".into()),
                ad_id: Some("120200000000000001".into()),
                ad_title: Some("Summer sneakers".into()),
            }),
            standby: true,
        };
        m.attachments = vec![
            Attachment {
                kind: AttachmentKind::Image,
                url: Some("https://cdn.example/a.jpg".into()),
                title: None,
            },
            Attachment {
                kind: AttachmentKind::LikeHeart,
                url: None,
                title: None,
            },
            Attachment {
                kind: AttachmentKind::Other("fallback".into()),
                url: None,
                title: Some("t".into()),
            },
        ];
        m.reply_to = Some(ReplyTo::Story {
            id: "179".into(),
            url: Some("https://cdn.example/s".into()),
        });
        m.deleted_at = Some(at(9));
        assert!(repo.insert_if_absent(&m).await.unwrap());
        assert_eq!(
            repo.get(&m.id).await.unwrap(),
            Some(m),
            "{:?}",
            test_db.backend()
        );

        let mut inline = message(2, "17841400000000001", Some("mid.2"), 1);
        inline.reply_to = Some(ReplyTo::Message(
            InstagramMessageId::parse("r", "mid.img.0001").unwrap(),
        ));
        inline.direction = Direction::Outbound;
        assert!(repo.insert_if_absent(&inline).await.unwrap());
        assert_eq!(repo.get(&inline.id).await.unwrap(), Some(inline));
    }
}

#[tokio::test]
async fn a_mid_is_stored_once_per_account() {
    for (test_db, db) in migrated().await {
        let repo = db.messages();
        let backend = test_db.backend();
        assert!(
            repo.insert_if_absent(&message(1, "acct.a", Some("mid.A"), 0))
                .await
                .unwrap()
        );
        assert!(
            !repo
                .insert_if_absent(&message(2, "acct.a", Some("mid.A"), 0))
                .await
                .unwrap(),
            "{backend:?}"
        );
        assert_eq!(repo.get(&MessageId::from_u128(2)).await.unwrap(), None);
        // The same mid under another account is that account's copy.
        assert!(
            repo.insert_if_absent(&message(3, "acct.b", Some("mid.A"), 0))
                .await
                .unwrap()
        );
        // Messages without a mid (not yet sent) never collide.
        assert!(
            repo.insert_if_absent(&message(4, "acct.a", None, 0))
                .await
                .unwrap()
        );
        assert!(
            repo.insert_if_absent(&message(5, "acct.a", None, 0))
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn a_conversation_lists_newest_first_across_pages() {
    for (test_db, db) in migrated().await {
        let repo = db.messages();
        // Two messages share a timestamp: the id breaks the tie, and paging must not skip one.
        for (n, secs) in [(1, 10), (2, 20), (3, 20), (4, 30), (5, 5)] {
            repo.insert_if_absent(&message(n, "acct", Some(&format!("m{n}")), secs))
                .await
                .unwrap();
        }
        repo.insert_if_absent(&message(6, "other", Some("m6"), 99))
            .await
            .unwrap();
        let conversation = message(1, "acct", None, 0).conversation_id;
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = repo
                .list_by_conversation(&conversation, PageRequest { after, limit: 2 })
                .await
                .unwrap();
            seen.extend(
                page.items
                    .iter()
                    .map(|m| m.mid.as_ref().unwrap().to_string()),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            seen,
            ["m4", "m3", "m2", "m1", "m5"],
            "{:?}",
            test_db.backend()
        );
        let bad = repo
            .list_by_conversation(
                &conversation,
                PageRequest {
                    after: Some("nonsense".into()),
                    limit: 2,
                },
            )
            .await;
        assert!(matches!(bad, Err(RepoError::InvalidCursor)));
    }
}
