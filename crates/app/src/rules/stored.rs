//! Stored rules: their encoding, and the domain rules and trial messages made from them.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The stored JSON: the document as sent, its name trimmed.
pub(super) fn encode(document: &RuleDocument, spec: &RuleSpec) -> String {
    let mut document = document.clone();
    document.name.clone_from(&spec.name);
    serde_json::to_string(&document).unwrap_or_default()
}

fn decode(stored: &StoredRule) -> Result<RuleDocument, RepoError> {
    serde_json::from_str(&stored.definition)
        .map_err(|e| RepoError::Corrupt(format!("rule {}: {e}", stored.id)))
}

pub(super) fn view(stored: StoredRule) -> Result<RuleView, RuleError> {
    let document = decode(&stored)?;
    Ok(RuleView {
        id: stored.id,
        account_id: stored.account_id,
        document,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

/// The domain rules of stored ones. A stored document that no longer validates is skipped with
/// a warning rather than stopping every other rule.
pub(super) fn valid_rules(stored: &[StoredRule]) -> Vec<Rule> {
    stored
        .iter()
        .filter_map(|stored| match rule(stored) {
            Ok(rule) => Some(rule),
            Err(error) => {
                tracing::warn!(rule_id = %stored.id, %error, "stored rule no longer valid; skipped");
                None
            }
        })
        .collect()
}

/// The domain rule of a stored one.
///
/// # Errors
///
/// A message when the stored document does not parse or validate.
pub(crate) fn rule(stored: &StoredRule) -> Result<Rule, String> {
    let document = decode(stored).map_err(|e| e.to_string())?;
    let spec = document.to_spec().map_err(|e| e.to_string())?;
    Ok(Rule {
        id: stored.id.clone(),
        account_id: stored.account_id.clone(),
        name: spec.name,
        priority: spec.priority,
        enabled: spec.enabled,
        conditions: spec.conditions,
        reply: spec.reply,
        cooldown: spec.cooldown,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

/// A comment like the trial describes, by a customer on the account's media.
pub(super) fn sample_comment(
    trial: &TrialMessage,
) -> Result<insta_router_domain::ReceivedComment, FieldError> {
    Ok(insta_router_domain::ReceivedComment {
        parties: insta_router_domain::Parties {
            account: InstagramAccountId::parse("account", "1")?,
            customer: InstagramUserId::parse("customer", "2")?,
        },
        comment_id: insta_router_domain::InstagramCommentId::parse("comment", "1")?,
        username: Some("customer".to_owned()),
        text: trial.text.clone(),
        media_id: trial.media_id.clone(),
        media_product_type: None,
        parent_id: None,
        live: false,
        ad_id: None,
        ad_title: None,
    })
}

pub(super) fn sample_message(
    trial: &TrialMessage,
    now: DateTime<Utc>,
) -> Result<Message, FieldError> {
    // Placeholder parties: the evaluation looks at the content only.
    let account = InstagramAccountId::parse("account", "1")?;
    let customer = InstagramUserId::parse("customer", "2")?;
    let kind = trial
        .message_type
        .as_deref()
        .map_or(MessageKind::Text, MessageKind::parse);
    let attachments = match &kind {
        MessageKind::Image
        | MessageKind::Video
        | MessageKind::Audio
        | MessageKind::File
        | MessageKind::Share
        | MessageKind::IgReel
        | MessageKind::IgPost
        | MessageKind::StoryMention => vec![insta_router_domain::Attachment {
            kind: AttachmentKind::parse(kind.as_str()),
            url: None,
            title: None,
        }],
        _ => Vec::new(),
    };
    Ok(Message {
        id: MessageId::from_u128(0),
        conversation_id: ConversationId::for_pair(&account, &customer),
        instagram_account_id: account.clone(),
        mid: None,
        direction: Direction::Inbound,
        sender_id: customer,
        recipient_id: account.to_user_id(),
        reply_to: (kind == MessageKind::StoryReply).then(|| insta_router_domain::ReplyTo::Story {
            id: "story".to_owned(),
            url: None,
        }),
        kind,
        text: trial.text.clone(),
        attachments,
        context: MessageContext {
            payload: trial.payload.clone(),
            referral: trial.referral.as_ref().map(|r| Referral {
                ref_param: Some(r.clone()),
                ..Referral::default()
            }),
            standby: false,
        },
        sent_at: now,
        created_at: now,
        deleted_at: None,
    })
}
