//! Conversations: one customer and one business account.

use chrono::{DateTime, Utc};

use crate::{ConversationId, Direction, InstagramAccountId, InstagramUserId, Message};

/// One customer talking to one Instagram account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Derived from the pair, see [`ConversationId::for_pair`].
    pub id: ConversationId,
    /// The business side.
    pub instagram_account_id: InstagramAccountId,
    /// The customer side.
    pub customer_id: InstagramUserId,
    /// When the first message of the conversation happened.
    pub started_at: DateTime<Utc>,
    /// When its latest message, in either direction, happened.
    pub last_message_at: DateTime<Utc>,
    /// When the customer last wrote, which opens Meta's 24-hour reply window.
    pub last_inbound_at: Option<DateTime<Utc>>,
}

impl Conversation {
    /// A conversation whose first message happened at `at`.
    pub fn start(
        instagram_account_id: InstagramAccountId,
        customer_id: InstagramUserId,
        at: DateTime<Utc>,
        inbound: bool,
    ) -> Self {
        Self {
            id: ConversationId::for_pair(&instagram_account_id, &customer_id),
            instagram_account_id,
            customer_id,
            started_at: at,
            last_message_at: at,
            last_inbound_at: inbound.then_some(at),
        }
    }

    /// Records a message at `at`; timestamps only move forward, whatever order events arrive in.
    pub fn record(&mut self, at: DateTime<Utc>, inbound: bool) {
        self.started_at = self.started_at.min(at);
        self.last_message_at = self.last_message_at.max(at);
        if inbound {
            self.last_inbound_at = Some(self.last_inbound_at.map_or(at, |last| last.max(at)));
        }
    }

    /// The conversation as `message` alone makes it.
    pub fn of_message(message: &Message) -> Self {
        Self::start(
            message.instagram_account_id.clone(),
            message.customer_id().clone(),
            message.sent_at,
            message.direction == Direction::Inbound,
        )
    }

    /// Merges `message` in (see [`Conversation::record`]).
    pub fn record_message(&mut self, message: &Message) {
        self.record(message.sent_at, message.direction == Direction::Inbound);
    }

    /// True while Meta's standard 24-hour messaging window is open at `now`.
    pub fn window_open(&self, now: DateTime<Utc>) -> bool {
        self.last_inbound_at
            .is_some_and(|last| now.signed_duration_since(last) < chrono::TimeDelta::hours(24))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(secs)
    }

    fn conversation(at: i64, inbound: bool) -> Conversation {
        Conversation::start(
            InstagramAccountId::parse("a", "17841400000000001").unwrap(),
            InstagramUserId::parse("c", "1234567890123456").unwrap(),
            t(at),
            inbound,
        )
    }

    #[test]
    fn timestamps_only_move_forward() {
        let mut c = conversation(100, false);
        assert_eq!(c.last_inbound_at, None);
        c.record(t(50), true);
        c.record(t(200), false);
        c.record(t(150), true);
        assert_eq!(
            (c.started_at, c.last_message_at, c.last_inbound_at),
            (t(50), t(200), Some(t(150)))
        );
    }

    #[test]
    fn the_window_is_open_for_24_hours_after_the_customer_wrote() {
        let day = 24 * 3600;
        assert!(!conversation(0, false).window_open(t(1)));
        let c = conversation(0, true);
        assert!(c.window_open(t(day - 1)));
        assert!(!c.window_open(t(day)));
    }
}
