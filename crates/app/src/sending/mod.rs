//! Sending for CRMs: the idempotent send API, and the workers that hand each send to the
//! Graph API at most once.
//!
//! A send is stored (`pending`) with its job in one transaction and answered 202. A worker
//! claims the job, checks Meta's messaging window, marks the send `sending` *before* calling
//! Meta, and settles it: `sent` (with Meta's id, a copy in the conversation and a
//! `message.sent` event for the CRM), back to `pending` after a temporary failure, `failed`
//! (Meta's code, `message.failed`), or `unknown` when the request went out and no answer
//! came. A send found `sending` by a later worker was interrupted mid-call, so it becomes
//! `unknown` too: nothing is ever sent twice blindly. Unknown sends are reconciled with the
//! echo Meta sends of every message: its mid and time make the send `sent`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use insta_router_domain::{
    Account, AccountId, ClaimedJob, Conversation, ConversationId, Direction, InstagramAccountId,
    InstagramCommentId, InstagramUserId, JobId, JobKind, JobWork, Message, MessageContext,
    MessageId, MessageKind, NewJob, OutboundContent, OutboundMessage, OutboundStatus, SendError,
    SendRequest, is_token_error, messaging_type, private_reply_open,
};
use insta_router_ports::{
    Accepted, AccountRepository, Clock, CommentStore, ConversationRepository, CredentialCipher,
    GraphError, JobQueue, Messenger, OutboundStore, RepoError, Settlement,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{crm_payload, group, new_id_bits, workers};

mod worker;

use settlement::{count, fingerprint, own_error, sent_copy, unknown, unknown_error};
mod reconcile;
mod settlement;

/// How sends are worked.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// Worker tasks.
    pub workers: usize,
    /// How long a claim holds; longer than a Graph API call can take.
    pub lease: Duration,
    /// How often an idle worker looks for due retries.
    pub poll_interval: Duration,
    /// The pauses before retrying a temporary failure (a rate limit, Meta down); after the
    /// last, the send fails with `retryable: true`. Short: a stale chat message loses value.
    pub retry_delays: Vec<Duration>,
    /// How long after a send was accepted its echo is looked for when the outcome is unknown.
    pub reconcile_window: Duration,
    /// How often it is looked for meanwhile.
    pub reconcile_interval: Duration,
    /// Most sends per second per account, below Meta's 300/s per Instagram account.
    pub per_account_rate: NonZeroU32,
    /// Most private replies per hour per account: Meta's Private Replies limit is 750.
    pub private_replies_per_hour: NonZeroU32,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            retry_delays: [2, 10, 60, 300, 900]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            reconcile_window: Duration::from_secs(600),
            reconcile_interval: Duration::from_secs(30),
            per_account_rate: NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN),
            private_replies_per_hour: NonZeroU32::new(750).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The ports sending uses.
pub struct SendPorts {
    /// Stored sends.
    pub outbound: Arc<dyn OutboundStore>,
    /// Accounts.
    pub accounts: Arc<dyn AccountRepository>,
    /// Conversations, for the messaging window.
    pub conversations: Arc<dyn ConversationRepository>,
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// The Graph API.
    pub messenger: Arc<dyn Messenger>,
    /// Opens access tokens.
    pub cipher: Arc<dyn CredentialCipher>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Stored comments, for private replies.
    pub comments: Arc<dyn CommentStore>,
}

/// Why a send request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The key was used for a different request.
    #[error("idempotency key {0:?} was used for a different request")]
    KeyReused(String),
    /// A request with the same key is being stored right now.
    #[error("a request with idempotency key {0:?} is in progress")]
    KeyInFlight(String),
    /// No send has that id.
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// The account received no comment with that id.
    #[error("comment {0} not found")]
    CommentNotFound(InstagramCommentId),
    /// The comment has a private reply already (Meta allows one).
    #[error("comment {0} has a private reply already")]
    CommentAnswered(InstagramCommentId),
    /// Meta would refuse a private reply to the comment now: why.
    #[error("{0}")]
    PrivateReplyClosed(String),
    /// The store failed.
    #[error(transparent)]
    Storage(RepoError),
}

/// A send as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The stored send.
    pub message: OutboundMessage,
    /// True when the request repeated an earlier one: nothing new was queued.
    pub replayed: bool,
}

/// Accepts sends and works them.
pub struct SendService {
    ports: SendPorts,
    settings: SendSettings,
    wakeups: watch::Sender<u64>,
    limiter: DefaultKeyedRateLimiter<AccountId>,
    private_limiter: DefaultKeyedRateLimiter<AccountId>,
    crm_wake: Arc<dyn Fn() + Send + Sync>,
    /// Accepts waiting for the next group commit.
    accepts: Arc<group::Group<(OutboundMessage, NewJob), Result<Accepted, RepoError>>>,
    /// Settlements waiting for the next group commit.
    settlements: Arc<group::Group<(MessageId, OutboundStatus, Settlement), bool>>,
    /// Sends being marked `sending` before their Graph API call, likewise.
    attempts: Arc<group::Group<MessageId, bool>>,
    /// Send jobs being marked done, likewise.
    completions: Arc<group::Group<insta_router_domain::JobLease, bool>>,
    /// Whether an account exists, for the accepts: concurrent requests ask with one query.
    known: Arc<group::Group<AccountId, bool>>,
}

/// Most sends accepted, or settled, in one transaction.
const GROUP: usize = 128;

/// Most send jobs one worker claims at a time.
const CLAIM_BATCH: u32 = 16;

/// How often recording a send's outcome is tried again when the database is unavailable.
const SETTLE_TRIES: u32 = 3;

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    RetryAt(DateTime<Utc>, String),
}

impl SendService {
    /// A service over these ports; `crm_wake` tells the CRM delivery workers an event was
    /// queued.
    pub fn new(
        ports: SendPorts,
        settings: SendSettings,
        crm_wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        let limiter = RateLimiter::keyed(Quota::per_second(settings.per_account_rate));
        let private_limiter =
            RateLimiter::keyed(Quota::per_hour(settings.private_replies_per_hour));
        Self {
            settings,
            wakeups: watch::Sender::new(0),
            limiter,
            private_limiter,
            crm_wake,
            accepts: group::Group::new(GROUP, {
                let store = ports.outbound.clone();
                move |sends| {
                    let store = store.clone();
                    Box::pin(async move { store.accept_many(&sends).await })
                }
            }),
            settlements: group::Group::new(GROUP, {
                let store = ports.outbound.clone();
                move |settlements| {
                    let store = store.clone();
                    Box::pin(async move { store.settle_many(&settlements).await })
                }
            }),
            attempts: group::Group::new(GROUP, {
                let store = ports.outbound.clone();
                move |ids| {
                    let store = store.clone();
                    Box::pin(async move { store.start_attempts(&ids).await })
                }
            }),
            known: group::Group::new(GROUP, {
                let accounts = ports.accounts.clone();
                move |ids: Vec<AccountId>| {
                    let accounts = accounts.clone();
                    Box::pin(async move {
                        let found = accounts.existing(&ids).await?;
                        Ok(ids.iter().map(|id| found.contains(id)).collect())
                    })
                }
            }),
            completions: group::Group::new(GROUP, {
                let (jobs, clock) = (ports.jobs.clone(), ports.clock.clone());
                move |leases| {
                    let (jobs, now) = (jobs.clone(), clock.now());
                    Box::pin(async move { jobs.complete_many(&leases, now).await })
                }
            }),
            ports,
        }
    }

    /// Stores and queues a send, or returns the earlier send with the same key and account.
    ///
    /// # Errors
    ///
    /// [`SendFailure::AccountNotFound`]; [`SendFailure::KeyReused`] when the key was used for
    /// a different request; [`SendFailure::KeyInFlight`] while another request with the key
    /// is being stored; [`SendFailure::Storage`].
    pub async fn send(&self, request: SendRequest) -> Result<SendReceipt, SendFailure> {
        match self.known.submit(request.account_id.clone()).await {
            Ok(true) => {}
            Ok(false) => return Err(SendFailure::AccountNotFound(request.account_id)),
            Err(error) => return Err(SendFailure::Storage(error)),
        }
        self.accept(request).await
    }

    /// Stores and queues a send of an account known to exist (see [`Self::send`]).
    async fn accept(&self, request: SendRequest) -> Result<SendReceipt, SendFailure> {
        let fingerprint = fingerprint(&request);
        let key = request.idempotency_key.as_str().to_owned();
        let now = self.ports.clock.now();
        let id = MessageId::from_u128(new_id_bits());
        let message = OutboundMessage {
            id: id.clone(),
            request,
            fingerprint,
            status: OutboundStatus::Pending,
            instagram_message_id: None,
            error: None,
            attempts: 0,
            created_at: now,
            sent_at: None,
        };
        let job = NewJob {
            id: JobId::from_u128(new_id_bits()),
            // Which conversation: a worker keeps one recipient's sends in order.
            work: JobWork::Send {
                recipient: message.request.recipient_id.clone(),
            },
            account_id: Some(message.request.account_id.clone()),
            subject: id.to_string(),
            run_at: now,
        };
        match self
            .accepts
            .submit((message.clone(), job))
            .await
            .and_then(|answer| answer)
        {
            Ok(Accepted::Created) => {
                self.wakeups.send_modify(|n| *n = n.wrapping_add(1));
                metrics::counter!("insta_router_sends_accepted_total").increment(1);
                Ok(SendReceipt {
                    message,
                    replayed: false,
                })
            }
            Ok(Accepted::Existing(existing)) if existing.fingerprint == message.fingerprint => {
                Ok(SendReceipt {
                    message: *existing,
                    replayed: true,
                })
            }
            Ok(Accepted::Existing(_)) => Err(SendFailure::KeyReused(key)),
            Err(RepoError::Conflict {
                field: "comment_id",
            }) => Err(match message.request.reply_to_comment {
                Some(comment) => SendFailure::CommentAnswered(comment),
                None => SendFailure::KeyInFlight(key),
            }),
            Err(RepoError::Conflict { .. }) => Err(SendFailure::KeyInFlight(key)),
            Err(error) => Err(SendFailure::Storage(error)),
        }
    }

    /// Stores and queues a private reply to `comment`, one of `account`'s comments: a DM to
    /// the comment's author addressed to the comment, as Meta asks. `request` builds the send
    /// for the author (validating the fields); Meta's rules are checked before anything is
    /// stored: the comment was received, is not the account's own, is at most 7 days old
    /// (a live comment: at most the 4 hours a broadcast lasts), and has no private reply yet.
    /// Idempotent like [`Self::send`].
    ///
    /// # Errors
    ///
    /// [`SendFailure::AccountNotFound`], [`SendFailure::CommentNotFound`],
    /// [`SendFailure::PrivateReplyClosed`], [`SendFailure::CommentAnswered`], `E` from
    /// `request`, and those of [`Self::send`].
    pub async fn private_reply<E: From<SendFailure>>(
        &self,
        account_id: &AccountId,
        comment: &InstagramCommentId,
        request: impl FnOnce(&InstagramUserId) -> Result<SendRequest, E>,
    ) -> Result<SendReceipt, E> {
        let account = match self.ports.accounts.get(account_id).await {
            Ok(Some(account)) => account,
            Ok(None) => return Err(SendFailure::AccountNotFound(account_id.clone()).into()),
            Err(error) => return Err(SendFailure::Storage(error).into()),
        };
        let stored = self
            .ports
            .comments
            .comment(&account.instagram_account_id, comment)
            .await
            .map_err(SendFailure::Storage)?
            .ok_or_else(|| SendFailure::CommentNotFound(comment.clone()))?;
        let mut request = request(&stored.author)?;
        if stored.author.as_str() == account.instagram_account_id.as_str() {
            return Err(SendFailure::PrivateReplyClosed(format!(
                "comment {comment} is the account's own"
            ))
            .into());
        }
        if !private_reply_open(stored.live, stored.at, self.ports.clock.now()) {
            return Err(SendFailure::PrivateReplyClosed(if stored.live {
                format!(
                    "comment {comment} was made on a live broadcast over 4 hours ago: Meta takes \
                     private replies to live comments only while the broadcast lasts"
                )
            } else {
                format!(
                    "comment {comment} is more than 7 days old: Meta takes private replies \
                     within 7 days of the comment"
                )
            })
            .into());
        }
        request.reply_to_comment = Some(comment.clone());
        // The account was read above.
        self.accept(request).await.map_err(E::from)
    }

    /// The send with id `id`.
    ///
    /// # Errors
    ///
    /// [`SendFailure::NotFound`] or [`SendFailure::Storage`].
    pub async fn status(&self, id: &MessageId) -> Result<OutboundMessage, SendFailure> {
        match self.ports.outbound.get(id).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(SendFailure::NotFound(id.clone())),
            Err(error) => Err(SendFailure::Storage(error)),
        }
    }

    /// Starts the workers; they wake on accepted sends, poll otherwise, and stop when `stop`
    /// turns true. Webhook commits do not wake them: webhooks queue no sends, and the echo
    /// checks of sends of unknown outcome are due at set times, which the poll finds.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let wakers = workers::Wakers {
            commits: None,
            wakeups: Some(self.wakeups.subscribe()),
            stop,
            poll: self.settings.poll_interval,
        };
        workers::start(self, self.settings.workers, &wakers, Self::round)
    }
}

#[cfg(test)]
mod tests;
