//! Identifiers.
//!
//! Two families:
//!
//! - **Our public ids** are opaque prefixed strings (`acc_...`, `msg_...`), as in the service
//!   insta-router replaces. Fresh ids are made from a caller-supplied 128-bit value (a UUIDv7 in
//!   the service, so that ids sort by creation time); stored ids, including the original
//!   service's shorter `acc_<12 hex>` form, are accepted by [`AccountId::parse`] and friends.
//! - **Meta's ids** (the business account id, Instagram-scoped user ids, message ids) are kept
//!   verbatim as strings and never parsed as numbers.

use std::fmt;

use crate::FieldError;

/// Longest id we accept, ours or Meta's, in bytes.
pub const MAX_ID_LEN: usize = 255;

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with, including the underscore.
            pub const PREFIX: &'static str = concat!($prefix, "_");

            /// Makes a fresh id from 128 caller-supplied bits (the service passes a UUIDv7).
            pub fn from_u128(bits: u128) -> Self {
                Self(format!("{}{bits:032x}", Self::PREFIX))
            }

            /// Parses a stored or client-supplied id.
            ///
            /// # Errors
            ///
            /// Returns a [`FieldError`] naming `field` when `raw` lacks the prefix, is too long,
            /// or holds characters other than ASCII letters, digits and underscores.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
                let rest = raw.strip_prefix(Self::PREFIX).ok_or_else(|| {
                    FieldError::new(field, concat!("must start with \"", $prefix, "_\""))
                })?;
                if rest.is_empty() || raw.len() > MAX_ID_LEN {
                    return Err(FieldError::new(field, "has an invalid length"));
                }
                if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(FieldError::new(field, "may hold only letters, digits and underscores"));
                }
                Ok(Self(raw.to_owned()))
            }

            /// The id as text, prefix included.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! meta_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses an id as Meta sends it.
            ///
            /// # Errors
            ///
            /// Returns a [`FieldError`] naming `field` when `raw` is empty, longer than
            /// [`MAX_ID_LEN`] bytes, or holds whitespace or control characters.
            pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
                if raw.is_empty() {
                    return Err(FieldError::new(field, "must not be empty"));
                }
                if raw.len() > MAX_ID_LEN {
                    return Err(FieldError::new(field, "is too long"));
                }
                if !raw.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(FieldError::new(field, "must be printable ASCII without spaces"));
                }
                Ok(Self(raw.to_owned()))
            }

            /// The id, verbatim.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

public_id!(
    /// Our id of a connected Instagram account (`acc_...`).
    AccountId,
    "acc"
);
public_id!(
    /// Our id of a stored message (`msg_...`).
    MessageId,
    "msg"
);

public_id!(
    /// Our id of one received webhook request, as kept in the journal (`whk_...`).
    WebhookId,
    "whk"
);
public_id!(
    /// Our id of a stored inbound event that is not a message (`evt_...`): a reaction, a read,
    /// a deletion, a referral, or a kind this version does not know.
    EventId,
    "evt"
);
public_id!(
    /// Our id of a queued job (`job_...`).
    JobId,
    "job"
);
impl JobId {
    /// The id of the job that replays the journaled webhook `webhook`: one per webhook, so
    /// queuing it twice is a conflict, not a second job.
    pub fn replaying(webhook: &WebhookId) -> Self {
        Self(format!(
            "{}{}",
            Self::PREFIX,
            &webhook.0[WebhookId::PREFIX.len()..]
        ))
    }
}

public_id!(
    /// Our id of an API key (`key_...`); not secret, unlike the key itself.
    ApiKeyId,
    "key"
);
public_id!(
    /// Our id of an auto-reply rule (`rule_...`).
    RuleId,
    "rule"
);

meta_id!(
    /// The id of an Instagram professional account as Meta puts it in webhooks
    /// (`entry[].id`, the recipient of inbound messages).
    InstagramAccountId
);
meta_id!(
    /// An Instagram-scoped user id (IGSID): a customer, or the business itself on echoes.
    InstagramUserId
);
meta_id!(
    /// Meta's message id (`mid`).
    InstagramMessageId
);
meta_id!(
    /// Meta's id of a comment on a post, reel or live broadcast (or of a reply to one).
    InstagramCommentId
);

impl InstagramAccountId {
    /// The same id as a user id: the account is the sender of its own messages.
    pub fn to_user_id(&self) -> InstagramUserId {
        InstagramUserId(self.0.clone())
    }
}

/// The id of a conversation: one customer and one business account.
///
/// Derived, not random: `conv_{customer}_{account}`, the form the original service sent to
/// CRMs, so the same pair always has the same id and integrations keep matching it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(String);

impl ConversationId {
    /// The prefix of every conversation id.
    pub const PREFIX: &'static str = "conv_";

    /// The id of the conversation between `customer` and `account`.
    pub fn for_pair(account: &InstagramAccountId, customer: &InstagramUserId) -> Self {
        Self(format!(
            "{}{}_{}",
            Self::PREFIX,
            customer.as_str(),
            account.as_str()
        ))
    }

    /// Parses a stored or client-supplied conversation id.
    ///
    /// # Errors
    ///
    /// Returns a [`FieldError`] naming `field` when `raw` lacks the prefix, is too long or
    /// holds whitespace or control characters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        let rest = raw
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| FieldError::new(field, "must start with \"conv_\""))?;
        if rest.is_empty() || raw.len() > 2 * MAX_ID_LEN + Self::PREFIX.len() + 1 {
            return Err(FieldError::new(field, "has an invalid length"));
        }
        if !rest.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_has_one_replay_job_id() {
        let webhook = WebhookId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00ab);
        let job = JobId::replaying(&webhook);
        assert_eq!(job.as_str(), "job_019000000000700080000000000000ab");
        assert_eq!(JobId::parse("id", job.as_str()), Ok(job.clone()));
        assert_ne!(job, JobId::replaying(&WebhookId::from_u128(1)));
    }

    #[test]
    fn fresh_ids_are_prefixed_fixed_width_hex_and_sort_by_bits() {
        let a = AccountId::from_u128(1);
        let b = AccountId::from_u128(2);
        assert_eq!(a.as_str(), "acc_00000000000000000000000000000001");
        assert!(a < b);
        assert_eq!(MessageId::from_u128(255).as_str().len(), 4 + 32);
    }

    #[test]
    fn public_ids_round_trip_and_accept_the_original_short_form() {
        let fresh = AccountId::from_u128(0xdead_beef);
        assert_eq!(AccountId::parse("id", fresh.as_str()), Ok(fresh));
        assert!(AccountId::parse("id", "acc_e64519c90192").is_ok());
    }

    #[test]
    fn public_ids_reject_bad_input_naming_the_field() {
        for raw in ["", "acc_", "msg_123", "acc_12 3", "acc_é", "acc_../x"] {
            let err = AccountId::parse("account_id", raw).expect_err(raw);
            assert_eq!(err.field, "account_id", "{raw}");
        }
        let long = format!("acc_{}", "a".repeat(MAX_ID_LEN));
        assert!(AccountId::parse("id", &long).is_err());
    }

    #[test]
    fn meta_ids_are_kept_verbatim() {
        for raw in [
            "17841400000000001",
            "0012",
            "mid.batch.A",
            "aWdfZAG1faXRlbTo=",
            "1e10",
        ] {
            assert_eq!(
                InstagramUserId::parse("f", raw).map(|id| id.to_string()),
                Ok(raw.to_owned())
            );
        }
    }

    #[test]
    fn meta_ids_reject_empty_spaces_and_control_characters() {
        for raw in ["", " ", "12 34", "12\n", "\u{0}", "ü"] {
            assert!(InstagramMessageId::parse("mid", raw).is_err(), "{raw:?}");
        }
        assert!(InstagramMessageId::parse("mid", &"m".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn conversation_ids_match_the_original_form() {
        let account = InstagramAccountId::parse("a", "17841400000000777").unwrap();
        let customer = InstagramUserId::parse("c", "555").unwrap();
        let id = ConversationId::for_pair(&account, &customer);
        assert_eq!(id.as_str(), "conv_555_17841400000000777");
        assert_eq!(ConversationId::parse("id", id.as_str()), Ok(id));
        assert!(ConversationId::parse("id", "conv_").is_err());
        assert!(ConversationId::parse("id", "acc_1").is_err());
    }
}
