//! Jobs: work queued in the same transaction as the data it is about (a transactional outbox),
//! done later by workers that claim it with a lease.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{AccountId, FieldError, InstagramUserId, JobId};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Deliver one event to the account's CRM.
    CrmDelivery,
    /// Evaluate the auto-reply rules against one inbound message.
    AutoReply,
    /// Send one message a CRM asked for through the Graph API.
    Send,
    /// Store again the events of a journaled webhook whose first write failed.
    WebhookReplay,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::CrmDelivery,
        Self::AutoReply,
        Self::Send,
        Self::WebhookReplay,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrmDelivery => "crm_delivery",
            Self::AutoReply => "auto_reply",
            Self::Send => "send",
            Self::WebhookReplay => "webhook_replay",
        }
    }

    /// Parses [`JobKind::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// What a job does, with what it needs beyond its subject: the typed form of the stored
/// kind and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobWork {
    /// Deliver this body to the account's CRM: the exact bytes of every attempt and replay.
    CrmDelivery {
        /// The body, JSON.
        body: String,
    },
    /// Evaluate the auto-reply rules against the message that is the job's subject.
    AutoReply,
    /// Send the message that is the job's subject; one recipient's sends go in order.
    Send {
        /// Who receives it.
        recipient: InstagramUserId,
    },
    /// Store again the events of the journaled webhook that is the job's subject.
    WebhookReplay,
}

impl JobWork {
    /// Its kind.
    pub fn kind(&self) -> JobKind {
        match self {
            Self::CrmDelivery { .. } => JobKind::CrmDelivery,
            Self::AutoReply => JobKind::AutoReply,
            Self::Send { .. } => JobKind::Send,
            Self::WebhookReplay => JobKind::WebhookReplay,
        }
    }

    /// The stored payload: the body of a delivery, the recipient of a send, else empty.
    pub fn payload(&self) -> &str {
        match self {
            Self::CrmDelivery { body } => body,
            Self::Send { recipient } => recipient.as_str(),
            Self::AutoReply | Self::WebhookReplay => "",
        }
    }

    /// The work of a stored job of `kind` with `payload` (what [`JobWork::payload`] wrote;
    /// the payload of kinds that need none is ignored).
    ///
    /// # Errors
    ///
    /// When a send's payload is not a recipient id.
    pub fn from_stored(kind: JobKind, payload: &str) -> Result<Self, FieldError> {
        Ok(match kind {
            JobKind::CrmDelivery => Self::CrmDelivery {
                body: payload.to_owned(),
            },
            JobKind::AutoReply => Self::AutoReply,
            JobKind::Send => Self::Send {
                recipient: InstagramUserId::parse("payload", payload)?,
            },
            JobKind::WebhookReplay => Self::WebhookReplay,
        })
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for its `run_at`.
    Queued,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Done.
    Done,
    /// Given up on; kept for inspection and replay.
    Dead,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    /// Parses [`JobStatus::as_str`]'s output.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// A job to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id.
    pub id: JobId,
    /// What it does.
    pub work: JobWork,
    /// The account it works for, when there is one.
    pub account_id: Option<AccountId>,
    /// The id of what it is about (`msg_...`, `evt_...`).
    pub subject: String,
    /// When it may run first.
    pub run_at: DateTime<Utc>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What it does.
    pub work: JobWork,
    /// The account it works for.
    pub account_id: Option<AccountId>,
    /// The id of what it is about.
    pub subject: String,
    /// Where it stands.
    pub status: JobStatus,
    /// How many times it has been claimed.
    pub attempts: u32,
    /// When it may run next.
    pub run_at: DateTime<Utc>,
    /// While running: when the lease runs out and another worker may claim it.
    pub lease_until: Option<DateTime<Utc>>,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

impl NewJob {
    /// What it does.
    pub fn kind(&self) -> JobKind {
        self.work.kind()
    }
}

impl Job {
    /// What it does.
    pub fn kind(&self) -> JobKind {
        self.work.kind()
    }
}

/// Proof of a claim: only the holder of the current lease may complete, reschedule or
/// dead-letter the job, so a worker whose lease ran out cannot undo its successor's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    /// The job.
    pub job_id: JobId,
    /// Unique to this claim.
    pub token: String,
}

/// A job a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job, as claimed (status running, attempts counted).
    pub job: Job,
    /// The lease to finish it with.
    pub lease: JobLease,
}

/// The pauses before the replays of a webhook whose events could not be stored: the first
/// within a second (most failures are a moment's: a dropped connection, a restart), then
/// longer, up to an hour, and hourly from then on. A webhook Meta was told we received is
/// never given up on; one that keeps failing stays in sight (see the journal commands).
pub const REPLAY_DELAYS: [TimeDelta; 7] = [
    TimeDelta::seconds(1),
    TimeDelta::seconds(5),
    TimeDelta::seconds(30),
    TimeDelta::minutes(2),
    TimeDelta::minutes(10),
    TimeDelta::minutes(30),
    TimeDelta::hours(1),
];

/// The pause after the `failures`-th failed write of a webhook's events (the first failure is
/// 1): [`REPLAY_DELAYS`], then its last delay for ever.
pub fn replay_delay(failures: u32) -> TimeDelta {
    let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
    REPLAY_DELAYS
        .get(index)
        .or(REPLAY_DELAYS.last())
        .copied()
        .unwrap_or(TimeDelta::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_round_trips_through_its_stored_kind_and_payload() {
        let recipient = InstagramUserId::parse("r", "1234").unwrap();
        for work in [
            JobWork::CrmDelivery {
                body: r#"{"type":"message.received"}"#.into(),
            },
            JobWork::AutoReply,
            JobWork::Send { recipient },
            JobWork::WebhookReplay,
        ] {
            assert_eq!(
                JobWork::from_stored(work.kind(), work.payload()).unwrap(),
                work
            );
        }
        // Payloads of kinds that need none are ignored (older rows carried some JSON).
        assert_eq!(
            JobWork::from_stored(JobKind::AutoReply, r#"{"event":"message.received"}"#).unwrap(),
            JobWork::AutoReply
        );
        assert!(JobWork::from_stored(JobKind::Send, "").is_err());
    }

    #[test]
    fn names_round_trip() {
        for kind in [
            JobKind::CrmDelivery,
            JobKind::AutoReply,
            JobKind::Send,
            JobKind::WebhookReplay,
        ] {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        for status in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Done,
            JobStatus::Dead,
        ] {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(JobKind::parse("mine_bitcoin"), None);
    }

    #[test]
    fn replays_start_within_a_second_and_settle_hourly() {
        assert_eq!(replay_delay(0), TimeDelta::seconds(1));
        assert_eq!(replay_delay(1), TimeDelta::seconds(1));
        assert_eq!(replay_delay(2), TimeDelta::seconds(5));
        assert_eq!(replay_delay(7), TimeDelta::hours(1));
        assert_eq!(replay_delay(8), TimeDelta::hours(1));
        assert_eq!(replay_delay(u32::MAX), TimeDelta::hours(1));
        assert!(REPLAY_DELAYS.windows(2).all(|w| w[0] < w[1]));
    }
}
