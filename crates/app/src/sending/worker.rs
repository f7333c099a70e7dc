//! The send workers: claim send jobs, work each one step (attempt, settle, fail) and tell the CRM.

use std::collections::{HashMap, HashSet};

#[allow(clippy::wildcard_imports)]
use super::*;

impl SendService {
    /// Claims a batch and works it: one recipient's sends one after the other, in the order
    /// they were queued, different recipients at the same time (a Graph API call takes tens
    /// to hundreds of milliseconds); whether the batch was full (more may be due).
    pub(super) async fn round(self: Arc<Self>) -> bool {
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
        let full = claimed.len() >= CLAIM_BATCH as usize;
        let mut by_recipient: Vec<(Option<InstagramUserId>, Vec<ClaimedJob>)> = Vec::new();
        for job in claimed {
            let recipient = match &job.job.work {
                JobWork::Send { recipient } => Some(recipient.clone()),
                _ => None,
            };
            match by_recipient.iter_mut().find(|(r, _)| *r == recipient) {
                Some((_, jobs)) => jobs.push(job),
                None => by_recipient.push((recipient, vec![job])),
            }
        }
        let ids: Vec<MessageId> = by_recipient
            .iter()
            .flat_map(|(_, jobs)| jobs)
            .filter_map(|claimed| MessageId::parse("subject", &claimed.job.subject).ok())
            .collect();
        let round = Arc::new(self.prepare(&ids).await);
        let mut tasks = JoinSet::new();
        for (_, jobs) in by_recipient {
            let (service, round) = (self.clone(), round.clone());
            tasks.spawn(async move {
                for job in jobs {
                    service.run(job, &round).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        full
    }

    /// Reads what the sends `ids` need with a few queries for all of them: the sends, the
    /// accounts of the pending ones and those accounts' conversations with their recipients.
    /// A read that fails leaves its part empty: each send then reads for itself.
    pub(super) async fn prepare(&self, ids: &[MessageId]) -> Round {
        let mut round = Round::default();
        match self.ports.outbound.get_many(ids).await {
            Ok(sends) => {
                round.sends = Some(sends.into_iter().map(|s| (s.id.clone(), s)).collect());
            }
            Err(error) => tracing::warn!(%error, "cannot read a batch of sends"),
        }
        let mut pairs = Vec::new();
        for send in round.sends.iter().flat_map(HashMap::values) {
            if send.status != OutboundStatus::Pending {
                continue;
            }
            let account_id = &send.request.account_id;
            if !round.accounts.contains_key(account_id) {
                match self.ports.accounts.get(account_id).await {
                    Ok(account) => {
                        round.accounts.insert(account_id.clone(), account);
                    }
                    Err(error) => {
                        tracing::warn!(%error, %account_id, "cannot read a send's account");
                        continue;
                    }
                }
            }
            if let Some(Some(account)) = round.accounts.get(account_id) {
                pairs.push(ConversationId::for_pair(
                    &account.instagram_account_id,
                    &send.request.recipient_id,
                ));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        if !pairs.is_empty() {
            match self.ports.conversations.get_many(&pairs).await {
                Ok(found) => {
                    round.last_inbound = pairs.into_iter().map(|id| (id, None)).collect();
                    for conversation in found {
                        round
                            .last_inbound
                            .insert(conversation.id.clone(), conversation.last_inbound_at);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read a batch of conversations"),
            }
        }
        round
    }

    pub(super) async fn run(&self, claimed: ClaimedJob, round: &Round) {
        let ClaimedJob { job, lease } = claimed;
        let outcome = match MessageId::parse("subject", &job.subject) {
            Ok(id) => match self.work(&id, round).await {
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
            Outcome::Done => self.completions.submit(lease).await,
            Outcome::RetryAt(at, error) => self.ports.jobs.retry_at(&lease, *at, error, now).await,
        };
        if let Err(error) = result {
            tracing::error!(%error, job_id = %job.id, "cannot record a send job");
        }
    }

    /// Works the send with id `id` one step further.
    pub(super) async fn work(&self, id: &MessageId, round: &Round) -> Result<Outcome, RepoError> {
        let send = match &round.sends {
            Some(sends) => sends.get(id).cloned(),
            None => self.ports.outbound.get(id).await?,
        };
        let Some(send) = send else {
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
            OutboundStatus::Pending => self.attempt(send, round).await,
        }
    }

    pub(super) async fn attempt(
        &self,
        send: OutboundMessage,
        round: &Round,
    ) -> Result<Outcome, RepoError> {
        let now = self.ports.clock.now();
        let account = match round.account(&send.request.account_id) {
            Some(account) => account,
            None => self.ports.accounts.get(&send.request.account_id).await?,
        };
        let Some(account) = account else {
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
        let last_inbound = match round.last_inbound.get(&conversation_id) {
            Some(at) => *at,
            None => self
                .ports
                .conversations
                .get(&conversation_id)
                .await?
                .and_then(|c| c.last_inbound_at),
        };
        // A private reply has its own window (7 days from the comment), checked when it was
        // accepted; the 24-hour messaging window does not apply to it.
        let private_reply = send.request.reply_to_comment.is_some();
        let messaging = match messaging_type(last_inbound, send.request.human_agent, now) {
            _ if private_reply => insta_router_domain::MessagingType::Response,
            Ok(messaging) => messaging,
            Err(error) => {
                self.fail(&send, Some(&account), OutboundStatus::Pending, error, now)
                    .await?;
                return Ok(Outcome::Done);
            }
        };
        if private_reply {
            // Meta's Private Replies limit: 750 calls per hour per account.
            self.private_limiter.until_key_ready(&account.id).await;
        }
        self.limiter.until_key_ready(&account.id).await;
        if !self.attempts.submit(send.id.clone()).await? {
            return Ok(Outcome::Done);
        }
        let started = std::time::Instant::now();
        let result = self
            .ports
            .messenger
            .send(
                &token,
                &send.request.recipient(),
                &send.request.content,
                messaging,
            )
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
                        tracing::info!(message_id = %send.id, attempts, retry_at = %(now + delay), "send failed; retrying: {text}");
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
                    // The round's copy of the account still has the token: the account's
                    // other sends read it again and fail without calling Meta.
                    round.forget(&account.id);
                    if let Err(error) = crate::accounts::tokens::token_refused(
                        &*self.ports.accounts,
                        &*self.ports.jobs,
                        &account,
                        &message,
                        now,
                    )
                    .await
                    {
                        tracing::error!(%error, account_id = %account.id, "cannot mark the token refused");
                    }
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
                tracing::warn!(message_id = %send.id, "send outcome unknown, not sent again: {}", error.message);
                self.settle(&send, OutboundStatus::Sending, unknown(error))
                    .await?;
                count("unknown");
                Ok(self.reconcile_later(&send))
            }
        }
    }
    /// Settles a send as failed and tells the account's CRM, when there is one.
    pub(super) async fn fail(
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

    pub(super) async fn settle(
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
                .settlements
                .submit((send.id.clone(), from, settlement.clone()))
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
    pub(super) fn crm_event(
        &self,
        account: &Account,
        event_type: &str,
        send: &OutboundMessage,
        now: DateTime<Utc>,
    ) -> Option<NewJob> {
        let account_id = account.crm()?;
        let body = crm_payload::status_body(event_type, send, now);
        Some(crm_payload::delivery(
            account_id,
            send.id.as_str(),
            body,
            now,
        ))
    }
}

/// What a round of the send worker read once for all of its sends (see
/// [`SendService::prepare`]); a send missing from it is read on its own.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// The round's sends, by id; `None` when they could not be read.
    sends: Option<HashMap<MessageId, OutboundMessage>>,
    /// The accounts of its pending sends (`None`: deleted).
    accounts: HashMap<AccountId, Option<Account>>,
    /// Accounts whose copy above is stale: Meta refused their token during the round.
    forgotten: std::sync::Mutex<HashSet<AccountId>>,
    /// When each recipient last wrote to the account, by conversation (`None`: never).
    last_inbound: HashMap<ConversationId, Option<DateTime<Utc>>>,
}

impl Round {
    /// The round's copy of the account `id`: `None` when it has none, or it is stale.
    fn account(&self, id: &AccountId) -> Option<Option<Account>> {
        let stale = self.forgotten.lock().map_or(true, |f| f.contains(id));
        if stale {
            return None;
        }
        self.accounts.get(id).cloned()
    }

    fn forget(&self, id: &AccountId) {
        if let Ok(mut forgotten) = self.forgotten.lock() {
            forgotten.insert(id.clone());
        }
    }
}
