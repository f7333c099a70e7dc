//! What a settled send records: errors of our own, the copy in its conversation, metrics, and the request fingerprint.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn count(outcome: &'static str) {
    metrics::counter!("insta_router_sends_total", "outcome" => outcome).increment(1);
}

pub(super) fn own_error(code: &str, message: &str, retryable: bool) -> SendError {
    SendError {
        code: code.to_owned(),
        subcode: None,
        message: message.to_owned(),
        retryable,
    }
}

pub(super) fn unknown_error(message: &str) -> SendError {
    own_error("outcome_unknown", message, false)
}

pub(super) fn unknown(error: SendError) -> Settlement {
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
pub(super) fn sent_copy(
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
    let mut canonical = serde_json::json!({
        "account_id": request.account_id.as_str(),
        "recipient_id": request.recipient_id.as_str(),
        "content": content,
        "human_agent": request.human_agent,
        "metadata": request.metadata,
    });
    // Only when set: fingerprints of sends stored before private replies existed stay valid.
    if let Some(comment) = &request.reply_to_comment {
        canonical["reply_to_comment"] = comment.as_str().into();
    }
    let canonical = canonical.to_string();
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
