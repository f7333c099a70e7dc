//! The send workers: claim send jobs, work each one step (attempt, settle, fail) and tell the CRM.

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
        full
    }

    pub(super) async fn run(&self, claimed: ClaimedJob) {
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
            Outcome::Done => self.completions.submit(lease).await,
            Outcome::RetryAt(at, error) => self.ports.jobs.retry_at(&lease, *at, error, now).await,
        };
        if let Err(error) = result {
            tracing::error!(%error, job_id = %job.id, "cannot record a send job");
        }
    }

    /// Works the send with id `id` one step further.
    pub(super) async fn work(&self, id: &MessageId) -> Result<Outcome, RepoError> {
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

    pub(super) async fn attempt(&self, send: OutboundMessage) -> Result<Outcome, RepoError> {
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
                if is_token_error(code)
                    && let Err(error) = crate::accounts::tokens::token_refused(
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
