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
    JobId, JobKind, Message, MessageContext, MessageId, MessageKind, NewJob, OutboundContent,
    OutboundMessage, OutboundStatus, SendError, SendRequest, TokenFailure, is_token_error,
    messaging_type,
};
use insta_router_ports::{
    Accepted, AccountRepository, Clock, ConversationRepository, CredentialCipher, GraphError,
    JobQueue, Messenger, OutboundStore, RepoError, Settlement,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{crm_payload, new_id_bits, workers};

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
    crm_wake: Arc<dyn Fn() + Send + Sync>,
}

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
        Self {
            ports,
            settings,
            wakeups: watch::Sender::new(0),
            limiter,
            crm_wake,
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
        let fingerprint = fingerprint(&request);
        let key = request.idempotency_key.as_str().to_owned();
        match self.ports.accounts.get(&request.account_id).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(SendFailure::AccountNotFound(request.account_id)),
            Err(error) => return Err(SendFailure::Storage(error)),
        }
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
            kind: JobKind::Send,
            account_id: Some(message.request.account_id.clone()),
            subject: id.to_string(),
            // Which conversation: a worker keeps one recipient's sends in order.
            payload: message.request.recipient_id.to_string(),
            run_at: now,
        };
        match self.ports.outbound.accept(&message, &job).await {
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
            Err(RepoError::Conflict { .. }) => Err(SendFailure::KeyInFlight(key)),
            Err(error) => Err(SendFailure::Storage(error)),
        }
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

    /// Claims a batch and works it: one recipient's sends one after the other, in the order
    /// they were queued, different recipients at the same time (a Graph API call takes tens
    /// to hundreds of milliseconds); false when nothing was due.
    async fn round(self: Arc<Self>) -> bool {
        let now = self.ports.clock.now();
        let claimed = workers::claim(
            self.ports.jobs.as_ref(),
            JobKind::Send,
            CLAIM_BATCH,
            self.settings.lease,
            now,
        )
        .await;
        if claimed.is_empty() {
            return false;
        }
        let mut by_recipient: Vec<(String, Vec<ClaimedJob>)> = Vec::new();
        for job in claimed {
            match by_recipient
                .iter_mut()
                .find(|(recipient, _)| *recipient == job.job.payload)
            {
                Some((_, jobs)) => jobs.push(job),
                None => by_recipient.push((job.job.payload.clone(), vec![job])),
            }
        }
        let mut tasks = JoinSet::new();
        for (_, jobs) in by_recipient {
            let service = self.clone();
            tasks.spawn(async move {
                for job in jobs {
                    service.run(job).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        true
    }

    async fn run(&self, claimed: ClaimedJob) {
        let ClaimedJob { job, lease } = claimed;
        let outcome = match MessageId::parse("subject", &job.subject) {
            Ok(id) => match self.work(&id).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    let at = self.ports.clock.now() + TimeDelta::seconds(5);
                    Outcome::RetryAt(at, error.to_string())
                }
            },
            Err(_) => Outcome::Done,
        };
        let now = self.ports.clock.now();
        let result = match &outcome {
            Outcome::Done => self.ports.jobs.complete(&lease, now).await,
            Outcome::RetryAt(at, error) => self.ports.jobs.retry_at(&lease, *at, error, now).await,
        };
        if let Err(error) = result {
            tracing::error!(%error, job_id = %job.id, "cannot record a send job");
        }
    }

    /// Works the send with id `id` one step further.
    async fn work(&self, id: &MessageId) -> Result<Outcome, RepoError> {
        let Some(send) = self.ports.outbound.get(id).await? else {
            return Ok(Outcome::Done);
        };
        match send.status {
            OutboundStatus::Sent | OutboundStatus::Failed => Ok(Outcome::Done),
            OutboundStatus::Unknown => self.reconcile(send).await,
            OutboundStatus::Sending => {
                // An earlier attempt was cut off mid-call: Meta may have the message.
                let error = unknown_error(
                    "the attempt was interrupted (the process stopped or its lease ran out) after the request may have reached Meta",
                );
                self.settle(&send, OutboundStatus::Sending, unknown(error))
                    .await?;
                Ok(self.reconcile_later(&send))
            }
            OutboundStatus::Pending => self.attempt(send).await,
        }
    }

    async fn attempt(&self, send: OutboundMessage) -> Result<Outcome, RepoError> {
        let now = self.ports.clock.now();
        let Some(account) = self.ports.accounts.get(&send.request.account_id).await? else {
            let error = own_error("account_deleted", "the account was deleted", false);
            self.fail(&send, None, OutboundStatus::Pending, error, now)
                .await?;
            return Ok(Outcome::Done);
        };
        if let Some(failure) = &account.token_failure {
            let error = own_error(
                "token_invalid",
                &format!(
                    "Meta refused the account's access token ({}); set a new one with PATCH /api/v1/accounts/{}",
                    failure.message, account.id
                ),
                false,
            );
            self.fail(&send, Some(&account), OutboundStatus::Pending, error, now)
                .await?;
            return Ok(Outcome::Done);
        }
        let token = match self.ports.cipher.open(&account.access_token) {
            Ok(token) => token,
            Err(e) => {
                let error = own_error(
                    "token_unavailable",
                    &format!("the account's access token cannot be opened: {e}"),
                    false,
                );
                self.fail(&send, Some(&account), OutboundStatus::Pending, error, now)
                    .await?;
                return Ok(Outcome::Done);
            }
        };
        let recipient = &send.request.recipient_id;
        let conversation_id = ConversationId::for_pair(&account.instagram_account_id, recipient);
        let last_inbound = self
            .ports
            .conversations
            .get(&conversation_id)
            .await?
            .and_then(|c| c.last_inbound_at);
        let messaging = match messaging_type(last_inbound, send.request.human_agent, now) {
            Ok(messaging) => messaging,
            Err(error) => {
                self.fail(&send, Some(&account), OutboundStatus::Pending, error, now)
                    .await?;
                return Ok(Outcome::Done);
            }
        };
        self.limiter.until_key_ready(&account.id).await;
        if !self.ports.outbound.start_attempt(&send.id).await? {
            return Ok(Outcome::Done);
        }
        let started = std::time::Instant::now();
        let result = self
            .ports
            .messenger
            .send(&token, recipient, &send.request.content, messaging)
            .await;
        metrics::histogram!("insta_router_send_seconds").record(started.elapsed().as_secs_f64());
        let now = self.ports.clock.now();
        let attempts = send.attempts + 1;
        match result {
            Ok(mid) => {
                let copy = sent_copy(&send, &account.instagram_account_id, &mid, now);
                let conversation = Conversation::start(
                    account.instagram_account_id.clone(),
                    recipient.clone(),
                    now,
                    false,
                );
                let mut sent = send.clone();
                sent.status = OutboundStatus::Sent;
                sent.instagram_message_id = Some(mid.clone());
                sent.sent_at = Some(now);
                let settlement = Settlement {
                    status: OutboundStatus::Sent,
                    instagram_message_id: Some(mid),
                    sent_at: Some(now),
                    error: None,
                    copy: Some((copy, conversation)),
                    crm_event: self.crm_event(&account, "message.sent", &sent, now),
                };
                self.settle(&send, OutboundStatus::Sending, settlement)
                    .await?;
                count("sent");
                Ok(Outcome::Done)
            }
            Err(GraphError::Transient { code, message }) => {
                let error = SendError {
                    code: code.map_or_else(|| "temporary_failure".to_owned(), |c| c.to_string()),
                    subcode: None,
                    message,
                    retryable: true,
                };
                let delay = usize::try_from(attempts.saturating_sub(1))
                    .ok()
                    .and_then(|i| self.settings.retry_delays.get(i))
                    .and_then(|d| TimeDelta::from_std(*d).ok());
                match delay {
                    Some(delay) => {
                        let text = format!("{}: {}", error.code, error.message);
                        self.settle(
                            &send,
                            OutboundStatus::Sending,
                            Settlement {
                                status: OutboundStatus::Pending,
                                instagram_message_id: None,
                                sent_at: None,
                                error: Some(error),
                                copy: None,
                                crm_event: None,
                            },
                        )
                        .await?;
                        count("retried");
                        Ok(Outcome::RetryAt(now + delay, text))
                    }
                    None => {
                        self.fail(&send, Some(&account), OutboundStatus::Sending, error, now)
                            .await?;
                        Ok(Outcome::Done)
                    }
                }
            }
            Err(GraphError::Permanent {
                code,
                subcode,
                message,
            }) => {
                if is_token_error(code) {
                    let failure = TokenFailure {
                        at: now,
                        message: message.clone(),
                    };
                    if let Err(error) = self
                        .ports
                        .accounts
                        .mark_token_failure(&account.id, &failure)
                        .await
                    {
                        tracing::error!(%error, account_id = %account.id, "cannot mark the token refused");
                    }
                    tracing::warn!(account_id = %account.id, "Meta refused the account's access token (code 190)");
                }
                let error = SendError {
                    code: code.map_or_else(|| "graph_error".to_owned(), |c| c.to_string()),
                    subcode,
                    message,
                    retryable: false,
                };
                self.fail(&send, Some(&account), OutboundStatus::Sending, error, now)
                    .await?;
                Ok(Outcome::Done)
            }
            Err(GraphError::Unknown(message)) => {
                let error = unknown_error(&format!(
                    "the request reached Meta but no answer came ({message}); it is not sent again"
                ));
                self.settle(&send, OutboundStatus::Sending, unknown(error))
                    .await?;
                count("unknown");
                Ok(self.reconcile_later(&send))
            }
        }
    }

    /// Looks for the echo of a send whose outcome is unknown.
    async fn reconcile(&self, send: OutboundMessage) -> Result<Outcome, RepoError> {
        let now = self.ports.clock.now();
        let account = self.ports.accounts.get(&send.request.account_id).await?;
        let (Some(account), Some(text)) = (account, send.request.content.text()) else {
            return Ok(Outcome::Done);
        };
        let conversation =
            ConversationId::for_pair(&account.instagram_account_id, &send.request.recipient_id);
        match self
            .ports
            .outbound
            .find_echo(
                &account.instagram_account_id,
                &conversation,
                text,
                send.created_at,
            )
            .await?
        {
            Some((mid, at)) => {
                let mut sent = send.clone();
                sent.status = OutboundStatus::Sent;
                sent.instagram_message_id = Some(mid.clone());
                sent.sent_at = Some(at);
                sent.error = None;
                let settlement = Settlement {
                    status: OutboundStatus::Sent,
                    instagram_message_id: Some(mid),
                    sent_at: Some(at),
                    error: None,
                    copy: None,
                    crm_event: self.crm_event(&account, "message.sent", &sent, now),
                };
                if self
                    .settle(&send, OutboundStatus::Unknown, settlement)
                    .await?
                {
                    count("reconciled");
                    tracing::info!(message_id = %send.id, "a send of unknown outcome was found in Meta's echo");
                }
                Ok(Outcome::Done)
            }
            None => {
                let outcome = self.reconcile_later(&send);
                if outcome == Outcome::Done {
                    // No echo within the window: tell the CRM it stays unknown.
                    if let Some(job) = self.crm_event(&account, "message.failed", &send, now) {
                        self.ports.jobs.enqueue(&[job]).await?;
                        (self.crm_wake)();
                    }
                }
                Ok(outcome)
            }
        }
    }

    /// The next echo check, while the reconcile window lasts.
    fn reconcile_later(&self, send: &OutboundMessage) -> Outcome {
        let now = self.ports.clock.now();
        let window = TimeDelta::from_std(self.settings.reconcile_window).unwrap_or_default();
        let interval = TimeDelta::from_std(self.settings.reconcile_interval).unwrap_or_default();
        if send.request.content.text().is_some() && now < send.created_at + window {
            Outcome::RetryAt(
                now + interval,
                "outcome unknown: waiting for Meta's echo".into(),
            )
        } else {
            Outcome::Done
        }
    }

    /// Settles a send as failed and tells the account's CRM, when there is one.
    async fn fail(
        &self,
        send: &OutboundMessage,
        account: Option<&Account>,
        from: OutboundStatus,
        error: SendError,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut failed = send.clone();
        failed.status = OutboundStatus::Failed;
        failed.error = Some(error.clone());
        let crm_event = account.and_then(|a| self.crm_event(a, "message.failed", &failed, now));
        tracing::info!(message_id = %send.id, code = %error.code, "send failed: {}", error.message);
        self.settle(
            send,
            from,
            Settlement {
                status: OutboundStatus::Failed,
                instagram_message_id: None,
                sent_at: None,
                error: Some(error),
                copy: None,
                crm_event,
            },
        )
        .await?;
        count("failed");
        Ok(())
    }

    async fn settle(
        &self,
        send: &OutboundMessage,
        from: OutboundStatus,
        settlement: Settlement,
    ) -> Result<bool, RepoError> {
        let queued = settlement.crm_event.is_some();
        // What Meta answered is known only here: a database hiccup must not turn a sent
        // message into an unknown one, so try a little before giving up.
        let mut tries = 0;
        let settled = loop {
            match self
                .ports
                .outbound
                .settle(&send.id, from, &settlement)
                .await
            {
                Ok(settled) => break settled,
                Err(RepoError::Unavailable(error)) if tries < SETTLE_TRIES => {
                    tries += 1;
                    tracing::warn!(%error, message_id = %send.id, "cannot record a send's outcome; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
                }
                Err(error) => return Err(error),
            }
        };
        if settled && queued {
            (self.crm_wake)();
        }
        Ok(settled)
    }

    /// The CRM event for a settled send, when the account has a CRM.
    fn crm_event(
        &self,
        account: &Account,
        event_type: &str,
        send: &OutboundMessage,
        now: DateTime<Utc>,
    ) -> Option<NewJob> {
        let route = account.route();
        let account_id = route.crm()?;
        let body = crm_payload::status_body(event_type, send, now);
        Some(crm_payload::delivery(
            account_id,
            send.id.as_str(),
            body,
            now,
        ))
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("insta_router_sends_total", "outcome" => outcome).increment(1);
}

fn own_error(code: &str, message: &str, retryable: bool) -> SendError {
    SendError {
        code: code.to_owned(),
        subcode: None,
        message: message.to_owned(),
        retryable,
    }
}

fn unknown_error(message: &str) -> SendError {
    own_error("outcome_unknown", message, false)
}

fn unknown(error: SendError) -> Settlement {
    Settlement {
        status: OutboundStatus::Unknown,
        instagram_message_id: None,
        sent_at: None,
        error: Some(error),
        copy: None,
        crm_event: None,
    }
}

/// The sent message as stored in its conversation, under the send's own id.
fn sent_copy(
    send: &OutboundMessage,
    account: &InstagramAccountId,
    mid: &insta_router_domain::InstagramMessageId,
    now: DateTime<Utc>,
) -> Message {
    let recipient = send.request.recipient_id.clone();
    let (kind, text) = match &send.request.content {
        OutboundContent::Text { text, .. } => (MessageKind::Text, Some(text.clone())),
        OutboundContent::Media(media) => (MessageKind::parse(media.kind.as_str()), None),
    };
    let attachments = match &send.request.content {
        OutboundContent::Media(media) => vec![insta_router_domain::Attachment {
            kind: insta_router_domain::AttachmentKind::parse(media.kind.as_str()),
            url: Some(media.url.clone()),
            title: None,
        }],
        OutboundContent::Text { .. } => Vec::new(),
    };
    Message {
        id: send.id.clone(),
        instagram_account_id: account.clone(),
        conversation_id: ConversationId::for_pair(account, &recipient),
        mid: Some(mid.clone()),
        direction: Direction::Outbound,
        sender_id: account.to_user_id(),
        recipient_id: recipient,
        kind,
        text,
        attachments,
        reply_to: None,
        context: MessageContext::default(),
        sent_at: now,
        created_at: now,
        deleted_at: None,
    }
}

/// A digest of everything a send request asks for except its key: the same key with a
/// different digest is a different request.
pub(crate) fn fingerprint(request: &SendRequest) -> String {
    let content = match &request.content {
        OutboundContent::Text {
            text,
            quick_replies,
        } => serde_json::json!({
            "text": text,
            "quick_replies": quick_replies.iter().map(|q| [&q.title, &q.payload]).collect::<Vec<_>>(),
        }),
        OutboundContent::Media(media) => {
            serde_json::json!({"attachment": [media.kind.as_str(), &media.url]})
        }
    };
    let canonical = serde_json::json!({
        "account_id": request.account_id.as_str(),
        "recipient_id": request.recipient_id.as_str(),
        "content": content,
        "human_agent": request.human_agent,
        "metadata": request.metadata,
    })
    .to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use insta_router_domain::{Account, InstagramUserId, RawSendRequest, SealedSecret, Username};
    use insta_router_ports::{
        MockAccountRepository, MockClock, MockConversationRepository, MockJobQueue, MockMessenger,
        MockOutboundStore,
    };

    use super::*;
    use crate::PlaintextCipher;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn request(text: &str, key: &str) -> SendRequest {
        SendRequest::parse(RawSendRequest {
            account_id: "acc_0123456789ab",
            recipient_id: "555",
            text: Some(text),
            idempotency_key: Some(key),
            ..RawSendRequest::default()
        })
        .unwrap()
    }

    fn stored(status: OutboundStatus) -> OutboundMessage {
        let request = request("Hi", "k");
        OutboundMessage {
            id: MessageId::from_u128(7),
            fingerprint: fingerprint(&request),
            request,
            status,
            instagram_message_id: None,
            error: None,
            attempts: 1,
            created_at: now(),
            sent_at: None,
        }
    }

    fn account() -> Account {
        Account {
            id: AccountId::parse("a", "acc_0123456789ab").unwrap(),
            instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
            username: Username::parse("shop").unwrap(),
            crm_webhook_url: None,
            access_token: SealedSecret::new("plain:token".into()),
            webhook_secret: None,
            delivery: Default::default(),
            token_failure: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn service(outbound: MockOutboundStore, messenger: MockMessenger) -> SendService {
        let mut accounts = MockAccountRepository::new();
        accounts.expect_get().returning(|_| Ok(Some(account())));
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        SendService::new(
            SendPorts {
                outbound: Arc::new(outbound),
                accounts: Arc::new(accounts),
                conversations: Arc::new(MockConversationRepository::new()),
                jobs: Arc::new(MockJobQueue::new()),
                messenger: Arc::new(messenger),
                cipher: Arc::new(PlaintextCipher),
                clock: Arc::new(clock),
            },
            SendSettings::default(),
            Arc::new(|| {}),
        )
    }

    #[test]
    fn the_fingerprint_covers_the_request_but_not_its_key() {
        assert_eq!(
            fingerprint(&request("Hi", "a")),
            fingerprint(&request("Hi", "b"))
        );
        assert_ne!(
            fingerprint(&request("Hi", "a")),
            fingerprint(&request("Ho", "a"))
        );
        let mut human = request("Hi", "a");
        human.human_agent = true;
        assert_ne!(fingerprint(&human), fingerprint(&request("Hi", "a")));
        let mut other = request("Hi", "a");
        other.recipient_id = InstagramUserId::parse("r", "556").unwrap();
        assert_ne!(fingerprint(&other), fingerprint(&request("Hi", "a")));
    }

    #[tokio::test]
    async fn a_taken_key_replays_the_same_request_and_refuses_another() {
        let mut outbound = MockOutboundStore::new();
        outbound
            .expect_accept()
            .returning(|_, _| Ok(Accepted::Existing(Box::new(stored(OutboundStatus::Sent)))));
        let service = service(outbound, MockMessenger::new());
        let replay = service.send(request("Hi", "k")).await.unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.message.id, MessageId::from_u128(7));
        assert!(matches!(
            service.send(request("Something else", "k")).await,
            Err(SendFailure::KeyReused(key)) if key == "k"
        ));
    }

    #[tokio::test]
    async fn a_key_being_stored_by_another_request_is_in_flight() {
        let mut outbound = MockOutboundStore::new();
        outbound.expect_accept().returning(|_, _| {
            Err(RepoError::Conflict {
                field: "idempotency_key",
            })
        });
        let service = service(outbound, MockMessenger::new());
        assert!(matches!(
            service.send(request("Hi", "k")).await,
            Err(SendFailure::KeyInFlight(_))
        ));
    }

    #[tokio::test]
    async fn a_send_found_mid_call_becomes_unknown_and_is_never_sent_again() {
        let mut outbound = MockOutboundStore::new();
        outbound
            .expect_get()
            .returning(|_| Ok(Some(stored(OutboundStatus::Sending))));
        outbound
            .expect_settle()
            .withf(|_, from, s| {
                *from == OutboundStatus::Sending
                    && s.status == OutboundStatus::Unknown
                    && s.error
                        .as_ref()
                        .is_some_and(|e| e.code == "outcome_unknown")
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut messenger = MockMessenger::new();
        messenger.expect_send().never();
        let service = service(outbound, messenger);
        let outcome = service.work(&MessageId::from_u128(7)).await.unwrap();
        // Its echo is looked for next.
        assert!(matches!(outcome, Outcome::RetryAt(at, _) if at > now()));
    }

    #[tokio::test]
    async fn a_settled_send_is_left_alone() {
        for status in [OutboundStatus::Sent, OutboundStatus::Failed] {
            let mut outbound = MockOutboundStore::new();
            outbound
                .expect_get()
                .returning(move |_| Ok(Some(stored(status))));
            outbound.expect_start_attempt().never();
            let mut messenger = MockMessenger::new();
            messenger.expect_send().never();
            let service = service(outbound, messenger);
            assert_eq!(
                service.work(&MessageId::from_u128(7)).await.unwrap(),
                Outcome::Done
            );
        }
    }
}
