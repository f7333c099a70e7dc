//! Sending a rule's reply: the customer's profile for the greeting, the Graph API call, and the copy for the CRM.

#[allow(clippy::wildcard_imports)]
use super::*;

impl AutoReplyService {
    pub(super) async fn send(
        &self,
        account: &Account,
        message: &Message,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> Result<Message, GraphError> {
        let token =
            self.ports
                .cipher
                .open(&account.access_token)
                .map_err(|e| GraphError::Permanent {
                    code: None,
                    subcode: None,
                    message: format!("the account's access token cannot be opened: {e}"),
                })?;
        let customer = message.customer_id();
        let wants_profile = ["{username}", "{name}", "{first_name}"]
            .iter()
            .any(|p| rule.reply.text.contains(p));
        let recipient = if wants_profile {
            let profile = self.profile(&token, account, customer, now).await;
            Recipient {
                username: profile.username,
                name: profile.name,
            }
        } else {
            Recipient::default()
        };
        let text = rules::render(
            &rule.reply.text,
            &recipient,
            message.text.as_deref().unwrap_or_default(),
            &self.settings.fallback_name,
        );
        let mid = self
            .ports
            .messenger
            .send(
                &token,
                &insta_router_domain::Recipient::User(customer.clone()),
                &OutboundContent::Text {
                    text: text.clone(),
                    quick_replies: rule.reply.quick_replies.clone(),
                },
                MessagingType::Response,
            )
            .await?;
        Ok(Message {
            id: MessageId::from_u128(new_id_bits()),
            instagram_account_id: message.instagram_account_id.clone(),
            conversation_id: message.conversation_id.clone(),
            mid: Some(mid),
            direction: Direction::Outbound,
            sender_id: message.instagram_account_id.to_user_id(),
            recipient_id: customer.clone(),
            kind: MessageKind::Text,
            text: Some(text),
            attachments: Vec::new(),
            reply_to: None,
            context: MessageContext::default(),
            sent_at: now,
            created_at: now,
            deleted_at: None,
        })
    }

    /// The customer's profile, cached per account and customer; a failed lookup gives an
    /// empty profile (the reply then says the fallback name) and is not cached.
    pub(super) async fn profile(
        &self,
        token: &insta_router_domain::Secret,
        account: &Account,
        customer: &InstagramUserId,
        now: DateTime<Utc>,
    ) -> Profile {
        let key = (account.instagram_account_id.clone(), customer.clone());
        let ttl = TimeDelta::from_std(self.settings.profile_ttl).unwrap_or_default();
        if let Some((profile, at)) = self
            .profiles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && now - *at < ttl
        {
            return profile.clone();
        }
        match self.ports.messenger.profile(token, customer).await {
            Ok(profile) => {
                let mut cache = self.profiles.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(key, (profile.clone(), now));
                profile
            }
            Err(error) => {
                tracing::info!(%error, customer = %customer, "profile lookup failed; the reply uses the fallback name");
                Profile::default()
            }
        }
    }

    /// Queues the reply for the account's CRM as `message.auto_reply`.
    pub(super) async fn forward(&self, account: &Account, reply: &Message, now: DateTime<Utc>) {
        let Some(account_id) = account.crm() else {
            return;
        };
        let body = crm_payload::message_body("message.auto_reply", reply, account_id);
        let job = crm_payload::delivery(account_id, reply.id.as_str(), body, now);
        if let Err(error) = self.ports.jobs.enqueue(&[job]).await {
            tracing::error!(%error, "cannot queue the auto-reply for the CRM");
        }
    }
}
