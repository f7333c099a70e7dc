//! Where stored events go: the one place that decides which follow-up work an inbound event
//! gets (an auto-reply evaluation, a delivery to the account's CRM) and under which CRM event
//! type, and whether an account's events reach its CRM at all.

use crate::{Account, AccountId, Direction, InboundEvent, InboundEventKind, MessageKind};

/// Where an Instagram account's events go: the account configured for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The account.
    pub account_id: AccountId,
    /// Whether it has a CRM URL: only then are its events delivered.
    pub forwards_to_crm: bool,
    /// Whether it has an enabled auto-reply rule: only then are its messages and comments
    /// evaluated. An account without rules costs no auto-reply job per message.
    pub answers: bool,
}

impl Account {
    /// The account a CRM delivery of this account's events goes to: `Some` only when it has
    /// a CRM.
    pub fn crm(&self) -> Option<&AccountId> {
        self.crm_webhook_url.is_some().then_some(&self.id)
    }
}

impl Route {
    /// The account a CRM delivery goes to: `Some` only when the account has a CRM.
    pub fn crm(&self) -> Option<&AccountId> {
        self.forwards_to_crm.then_some(&self.account_id)
    }

    /// The account whose rules answer an event: `Some` only when it has enabled rules.
    pub fn answering(&self) -> Option<&AccountId> {
        self.answers.then_some(&self.account_id)
    }
}

/// The follow-up work a newly stored inbound event gets, whatever its account's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowUp {
    /// Evaluate the auto-reply rules against it: an inbound message outside standby (the
    /// worker looks the account and its rules up when it runs).
    pub auto_reply: bool,
    /// The CRM event type it is delivered as, when its account has a CRM.
    pub crm_event: Option<&'static str>,
}

impl FollowUp {
    /// What `event` gets.
    pub fn of(event: &InboundEvent) -> Self {
        match &event.kind {
            InboundEventKind::Message(m) => Self {
                auto_reply: m.direction == Direction::Inbound && !event.standby,
                crm_event: Some(match (m.direction, &m.kind) {
                    (Direction::Outbound, _) => "message.echo",
                    (Direction::Inbound, MessageKind::Postback) => "message.postback",
                    (Direction::Inbound, _) => "message.received",
                }),
            },
            // A customer's comment is evaluated against the comment rules.
            InboundEventKind::Comment(c) => Self {
                auto_reply: !c.by_account() && !event.standby,
                crm_event: Some("comment.created"),
            },
            kind => Self {
                auto_reply: false,
                crm_event: match kind {
                    InboundEventKind::Deleted { .. } => Some("message.deleted"),
                    InboundEventKind::Reaction { .. } => Some("message.reaction"),
                    InboundEventKind::Read { .. } => Some("message.read"),
                    InboundEventKind::Postback { .. } => Some("message.postback"),
                    InboundEventKind::Referral { .. } => Some("message.referral"),
                    InboundEventKind::Message(_)
                    | InboundEventKind::Comment(_)
                    | InboundEventKind::Unrecognized { .. } => None,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::{
        InstagramAccountId, InstagramMessageId, InstagramUserId, MessageContext, Parties,
        ReceivedMessage,
    };

    fn parties() -> Parties {
        Parties {
            account: InstagramAccountId::parse("a", "1784").unwrap(),
            customer: InstagramUserId::parse("c", "42").unwrap(),
        }
    }

    fn message(direction: Direction, kind: MessageKind, standby: bool) -> InboundEvent {
        InboundEvent {
            occurred_at: DateTime::UNIX_EPOCH,
            standby,
            kind: InboundEventKind::Message(ReceivedMessage {
                parties: parties(),
                mid: InstagramMessageId::parse("mid", "m.1").unwrap(),
                direction,
                kind,
                text: None,
                attachments: Vec::new(),
                reply_to: None,
                context: MessageContext::default(),
            }),
        }
    }

    #[test]
    fn inbound_messages_outside_standby_get_an_auto_reply_and_every_message_reaches_the_crm() {
        let cases = [
            (
                Direction::Inbound,
                MessageKind::Text,
                false,
                true,
                "message.received",
            ),
            (
                Direction::Inbound,
                MessageKind::Text,
                true,
                false,
                "message.received",
            ),
            (
                Direction::Inbound,
                MessageKind::Postback,
                false,
                true,
                "message.postback",
            ),
            (
                Direction::Outbound,
                MessageKind::Text,
                false,
                false,
                "message.echo",
            ),
        ];
        for (direction, kind, standby, auto_reply, crm) in cases {
            let follow_up = FollowUp::of(&message(direction, kind.clone(), standby));
            assert_eq!(
                follow_up.auto_reply, auto_reply,
                "{direction:?} {kind:?} {standby}"
            );
            assert_eq!(follow_up.crm_event, Some(crm));
        }
    }

    #[test]
    fn other_events_reach_the_crm_under_their_own_type_and_unrecognized_ones_do_not() {
        let read = InboundEvent {
            occurred_at: DateTime::UNIX_EPOCH,
            standby: false,
            kind: InboundEventKind::Read {
                parties: parties(),
                mid: None,
            },
        };
        assert_eq!(
            FollowUp::of(&read),
            FollowUp {
                auto_reply: false,
                crm_event: Some("message.read")
            }
        );
        let unknown = InboundEvent {
            kind: InboundEventKind::Unrecognized {
                account: None,
                field: "comments".into(),
                reason: "not a DM".into(),
                raw: "{}".into(),
            },
            ..read
        };
        assert_eq!(FollowUp::of(&unknown), FollowUp::default());
    }

    #[test]
    fn only_a_route_with_a_crm_takes_deliveries_and_only_one_with_rules_answers() {
        let id = AccountId::from_u128(1);
        let with = Route {
            account_id: id.clone(),
            forwards_to_crm: true,
            answers: true,
        };
        let without = Route {
            forwards_to_crm: false,
            answers: false,
            ..with.clone()
        };
        assert_eq!(with.crm(), Some(&id));
        assert_eq!(without.crm(), None);
        assert_eq!(with.answering(), Some(&id));
        assert_eq!(without.answering(), None);
    }
}
