//! Answering comments with the account's comment rules: the private reply goes through the
//! send path (one per comment, at most once, throttled, `message.sent` to the CRM), the
//! optional public reply straight to the Graph API, and the CRM hears `comment.auto_reply`.

#[allow(clippy::wildcard_imports)]
use super::*;

use insta_router_domain::{
    ConversationId, EventId, InstagramCommentId, RawSendRequest, SendRequest,
    rules::ConversationFacts,
};

use crate::{SendFailure, SendService};

/// The claim id of the comment event `event`: a message id with the same bits, so the
/// auto-reply record keeps one row per comment like it keeps one per message.
fn trigger_of(event: &EventId) -> MessageId {
    let hex = &event.as_str()[EventId::PREFIX.len()..];
    MessageId::parse("trigger", &format!("{}{hex}", MessageId::PREFIX))
        .unwrap_or_else(|_| MessageId::from_u128(0))
}

impl AutoReplyService {
    /// Evaluates the comment rules for the comment stored as event `id`, and answers it.
    pub(super) async fn answer_comment(&self, id: &EventId, attempts: u32) -> Outcome {
        let now = self.ports.clock.now();
        let retry = |error: String| match self.retry_at(attempts, now) {
            Some(at) => Outcome::RetryAt(at, error),
            None => Outcome::Dead(error),
        };
        let Some(sending) = self.private_replies.get() else {
            return Outcome::Done;
        };
        let event = match self.ports.comments.by_event(id).await {
            Ok(Some(event)) => event,
            Ok(None) => return Outcome::Done,
            Err(error) => return retry(error.to_string()),
        };
        let comment = &event.comment;
        let account = match self
            .ports
            .accounts
            .find_by_instagram_id(&comment.parties.account)
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
        let author = &comment.parties.customer;
        let conversation = ConversationId::for_pair(&comment.parties.account, author);
        let trigger = trigger_of(id);
        let facts = match self
            .comment_facts(&event, &conversation, &trigger, now)
            .await
        {
            Ok(facts) => facts,
            Err(error) => return retry(error.to_string()),
        };
        let evaluation = insta_router_domain::evaluate_comment(
            &rules,
            comment,
            event.at,
            &facts,
            &self.settings.safety,
            now,
        );
        self.count_evaluation(&account.id, &evaluation, now).await;
        let Some(rule) = evaluation
            .fired
            .as_ref()
            .and_then(|fired| rules.iter().find(|r| &r.id == fired))
        else {
            return Outcome::Done;
        };
        let claim = ReplyClaim {
            trigger: trigger.clone(),
            conversation,
            rule: rule.id.clone(),
            at: now,
        };
        match self.ports.replies.begin(&claim).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Done,
            Err(error) => return retry(error.to_string()),
        }
        let recipient = Recipient {
            username: comment.username.clone(),
            name: None,
        };
        let text = comment.text.as_deref().unwrap_or_default();
        let private = rules::render(
            &rule.reply.text,
            &recipient,
            text,
            &self.settings.fallback_name,
        );
        let request = match SendRequest::parse(RawSendRequest {
            account_id: account.id.as_str(),
            recipient_id: author.as_str(),
            text: Some(&private),
            quick_replies: rule.reply.quick_replies.clone(),
            idempotency_key: Some(&format!("comment-rule:{}", comment.comment_id)),
            metadata: Some(serde_json::json!({"rule_id": rule.id.as_str()}).to_string()),
            ..RawSendRequest::default()
        }) {
            Ok(request) => request,
            Err(error) => {
                let _ = self
                    .ports
                    .replies
                    .settle(&trigger, "failed", &error.to_string())
                    .await;
                return Outcome::Dead(error.to_string());
            }
        };
        let queued = sending
            .private_reply(&account.id, &comment.comment_id, |_| {
                Ok::<_, SendFailure>(request)
            })
            .await;
        let private_id = match queued {
            Ok(receipt) => receipt.message.id,
            Err(SendFailure::Storage(error)) => {
                let _ = self.ports.replies.abandon(&trigger).await;
                return retry(error.to_string());
            }
            Err(refused) => {
                // Answered already (by the CRM), or Meta's window closed meanwhile.
                let _ = self
                    .ports
                    .replies
                    .settle(&trigger, "failed", &refused.to_string())
                    .await;
                return Outcome::Done;
            }
        };
        let _ = self.ports.replies.settle(&trigger, "queued", "").await;
        let public = self
            .public_reply(&account, rule, comment.comment_id.clone(), &recipient, text)
            .await;
        tracing::info!(comment_id = %comment.comment_id, rule_id = %rule.id, message_id = %private_id, "comment answered by a rule");
        self.forward_comment_reply(&account, comment, rule, &private_id, public, now)
            .await;
        Outcome::Done
    }

    /// The rules' facts for a comment: cooldowns and the hourly cap of the author's
    /// conversation, and whether it is the author's first comment.
    async fn comment_facts(
        &self,
        event: &insta_router_ports::CommentEvent,
        conversation: &ConversationId,
        trigger: &MessageId,
        now: DateTime<Utc>,
    ) -> Result<ConversationFacts, insta_router_ports::RepoError> {
        let comment = &event.comment;
        // The conversation the private reply opens, as the auto-reply record sees it.
        let stand_in = Message {
            id: trigger.clone(),
            instagram_account_id: comment.parties.account.clone(),
            conversation_id: conversation.clone(),
            mid: None,
            direction: Direction::Inbound,
            sender_id: comment.parties.customer.clone(),
            recipient_id: comment.parties.account.to_user_id(),
            kind: MessageKind::Text,
            text: comment.text.clone(),
            attachments: Vec::new(),
            reply_to: None,
            context: MessageContext::default(),
            sent_at: event.at,
            created_at: event.at,
            deleted_at: None,
        };
        let mut facts = self.ports.replies.facts(&stand_in, now).await?;
        let comments = self
            .ports
            .comments
            .count_by_author(&comment.parties.account, &comment.parties.customer)
            .await?;
        facts.first_message = comments <= 1;
        Ok(facts)
    }

    /// Answers the comment publicly when the rule says so; the new comment's id, or why not.
    async fn public_reply(
        &self,
        account: &Account,
        rule: &Rule,
        comment: InstagramCommentId,
        recipient: &Recipient,
        text: &str,
    ) -> Option<Result<String, String>> {
        let template = rule.reply.public_reply.as_deref()?;
        let public = rules::render(template, recipient, text, &self.settings.fallback_name);
        let token = match self.ports.cipher.open(&account.access_token) {
            Ok(token) => token,
            Err(error) => return Some(Err(error.to_string())),
        };
        let answer = self
            .ports
            .messenger
            .reply_to_comment(&token, &comment, &public)
            .await
            .map_err(|e| e.to_string());
        if let Err(error) = &answer {
            tracing::info!(comment_id = %comment, %error, "the public reply to a comment failed; not retried");
        }
        Some(answer)
    }

    async fn forward_comment_reply(
        &self,
        account: &Account,
        comment: &insta_router_domain::ReceivedComment,
        rule: &Rule,
        private_id: &MessageId,
        public: Option<Result<String, String>>,
        now: DateTime<Utc>,
    ) {
        let Some(account_id) = account.crm() else {
            return;
        };
        let mut details = serde_json::Map::new();
        details.insert("comment_id".into(), comment.comment_id.as_str().into());
        details.insert("rule_id".into(), rule.id.as_str().into());
        details.insert("rule_name".into(), rule.name.clone().into());
        details.insert(
            "private_reply_message_id".into(),
            private_id.as_str().into(),
        );
        let (public_id, public_error) = match public {
            Some(Ok(id)) => (Some(id), None),
            Some(Err(error)) => (None, Some(error)),
            None => (None, None),
        };
        details.insert("public_reply_id".into(), public_id.into());
        details.insert("public_reply_error".into(), public_error.into());
        let body = crm_payload::account_body("comment.auto_reply", account, details, now);
        let subject = EventId::from_u128(new_id_bits());
        let job = crm_payload::delivery(account_id, subject.as_str(), body, now);
        if let Err(error) = self.ports.jobs.enqueue(&[job]).await {
            tracing::error!(%error, "cannot queue comment.auto_reply for the CRM");
        }
    }
}

/// Lets the comment path reach the send path (built after the auto-replies in `serve`).
pub(super) type PrivateReplies = std::sync::OnceLock<Arc<SendService>>;
