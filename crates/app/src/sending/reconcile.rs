//! Sends of unknown outcome, reconciled with the echo Meta sends of every message.

#[allow(clippy::wildcard_imports)]
use super::*;

impl SendService {
    /// Looks for the echo of a send whose outcome is unknown.
    pub(super) async fn reconcile(&self, send: OutboundMessage) -> Result<Outcome, RepoError> {
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
    pub(super) fn reconcile_later(&self, send: &OutboundMessage) -> Outcome {
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
}
