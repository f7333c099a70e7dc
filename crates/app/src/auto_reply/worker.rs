//! The auto-reply workers: claim auto-reply jobs and answer each message once, by the account's rules.

#[allow(clippy::wildcard_imports)]
use super::*;

impl AutoReplyService {
    /// Claims a batch and answers it, one message after the other; whether the batch was full
    /// (more may be due).
    pub(super) async fn round(self: Arc<Self>) -> bool {
        const BATCH: u32 = 8;
        let now = self.ports.clock.now();
        let claimed = workers::claim(
            self.ports.jobs.as_ref(),
            JobKind::AutoReply,
            BATCH,
            self.settings.lease,
            now,
        )
        .await;
        let full = claimed.len() >= BATCH as usize;
        for job in claimed {
            self.run(job).await;
        }
        full
    }

    /// Works one claimed job and records its outcome.
    pub(super) async fn run(&self, claimed: ClaimedJob) {
        let ClaimedJob { job, lease } = claimed;
        let outcome = match MessageId::parse("subject", &job.subject) {
            Ok(id) => self.answer(&id, job.attempts).await,
            Err(_) => match insta_router_domain::EventId::parse("subject", &job.subject) {
                Ok(event) => self.answer_comment(&event, job.attempts).await,
                Err(_) => Outcome::Dead(format!("not a message or event id: {}", job.subject)),
            },
        };
        let now = self.ports.clock.now();
        let result = match &outcome {
            Outcome::Done => self.ports.jobs.complete(&lease, now).await,
            Outcome::RetryAt(at, error) => self.ports.jobs.retry_at(&lease, *at, error, now).await,
            Outcome::Dead(error) => {
                tracing::warn!(job_id = %job.id, %error, "auto-reply given up");
                self.ports.jobs.dead_letter(&lease, error, now).await
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, job_id = %job.id, "cannot record an auto-reply job");
        }
    }

    /// Decides and, if a rule fires, sends the reply to message `id`.
    pub(super) async fn answer(&self, id: &MessageId, attempts: u32) -> Outcome {
        let now = self.ports.clock.now();
        let retry = |error: String| match self.retry_at(attempts, now) {
            Some(at) => Outcome::RetryAt(at, error),
            None => Outcome::Dead(error),
        };
        let message = match self.ports.messages.get(id).await {
            Ok(Some(message)) => message,
            Ok(None) => return Outcome::Done,
            Err(error) => return retry(error.to_string()),
        };
        let account = match self
            .ports
            .accounts
            .find_by_instagram_id(&message.instagram_account_id)
            .await
        {
            Ok(Some(account)) => account,
            Ok(None) => return Outcome::Done,
            Err(error) => return retry(error.to_string()),
        };
        let rules = match self.rules.active_rules(&account.id).await {
            Ok(rules) if rules.is_empty() => return Outcome::Done,
            Ok(rules) => rules,
            Err(error) => return retry(error.to_string()),
        };
        let facts = match self.ports.replies.facts(&message, now).await {
            Ok(facts) => facts,
            Err(error) => return retry(error.to_string()),
        };
        let evaluation = rules::evaluate(&rules, &message, &facts, &self.settings.safety, now);
        self.count_evaluation(&account.id, &evaluation, now).await;
        let Some(rule) = evaluation
            .fired
            .as_ref()
            .and_then(|id| rules.iter().find(|r| &r.id == id))
        else {
            if let Some(reason) = evaluation.blocked {
                tracing::debug!(message_id = %id, %reason, "no auto-reply");
            }
            return Outcome::Done;
        };
        let claim = ReplyClaim {
            trigger: id.clone(),
            conversation: message.conversation_id.clone(),
            rule: rule.id.clone(),
            at: now,
        };
        match self.ports.replies.begin(&claim).await {
            Ok(true) => {}
            // Answered, or being answered, already.
            Ok(false) => return Outcome::Done,
            Err(error) => return retry(error.to_string()),
        }
        match self.send(&account, &message, rule, now).await {
            Ok(reply) => {
                if let Err(error) = self.ports.replies.sent(id, &reply).await {
                    tracing::error!(%error, message_id = %id, "reply sent but not recorded");
                }
                self.forward(&account, &reply, now).await;
                metrics::counter!("insta_router_auto_replies_total", "outcome" => "sent")
                    .increment(1);
                tracing::info!(message_id = %id, rule_id = %rule.id, "auto-reply sent");
                Outcome::Done
            }
            Err(GraphError::Transient {
                code,
                message: text,
            }) => {
                let _ = self.ports.replies.abandon(id).await;
                metrics::counter!("insta_router_auto_replies_total", "outcome" => "retried")
                    .increment(1);
                let cause = GraphError::Transient {
                    code,
                    message: text,
                }
                .to_string();
                tracing::info!(message_id = %id, rule_id = %rule.id, "auto-reply failed; retrying: {cause}");
                retry(cause)
            }
            Err(GraphError::Permanent {
                code,
                subcode,
                message: text,
            }) => {
                if insta_router_domain::is_token_error(code)
                    && let Err(error) = crate::accounts::tokens::token_refused(
                        &*self.ports.accounts,
                        &*self.ports.jobs,
                        &account,
                        &text,
                        now,
                    )
                    .await
                {
                    tracing::error!(%error, account_id = %account.id, "cannot mark the token refused");
                }
                let error = format!("Meta code {code:?}/{subcode:?}: {text}");
                let _ = self.ports.replies.settle(id, "failed", &error).await;
                metrics::counter!("insta_router_auto_replies_total", "outcome" => "failed")
                    .increment(1);
                Outcome::Dead(error)
            }
            Err(GraphError::Unknown(text)) => {
                // Perhaps delivered: never sent blindly again.
                let _ = self.ports.replies.settle(id, "unknown", &text).await;
                metrics::counter!("insta_router_auto_replies_total", "outcome" => "unknown")
                    .increment(1);
                Outcome::Dead(format!("outcome unknown, not resent: {text}"))
            }
        }
    }

    pub(super) fn retry_at(&self, attempts: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let index = usize::try_from(attempts.saturating_sub(1)).ok()?;
        let delay = self.settings.retry_delays.get(index)?;
        now.checked_add_signed(TimeDelta::from_std(*delay).ok()?)
    }
}
