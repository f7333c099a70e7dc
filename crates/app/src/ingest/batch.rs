//! One request prepared for writing, and a group of them planned into one [`InboundBatch`]:
//! the first occurrence of each event, the routes of their accounts, their follow-up jobs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, ConversationId, EventId, FollowUp, InboundEventKind, InstagramAccountId, JobId,
    JobWork, Message, MessageId, NewJob, Route,
};
use insta_router_ports::{
    Deletion, EventRecord, InboundBatch, InboundStore, JournalEntry, JournalStatus,
    NotificationParser, RepoError,
};

use super::{IngestReport, Origin, ReceivedWebhook};
use crate::{crm_payload, new_id_bits};

/// One request, ready to write: ids assigned, messages and event records built. Preparing
/// happens in the caller's task, on every core at once; the group writer, which sets the pace,
/// only picks the first occurrence of each event, plans its jobs and hands the group to the
/// store.
pub(super) struct Prepared {
    pub(super) origin: Origin,
    pub(super) journal: JournalEntry,
    events: Vec<PreparedEvent>,
}

struct PreparedEvent {
    item: Item,
    /// What it gets when it is new.
    follow_up: FollowUp,
    /// Its CRM body, rendered in the caller's task for the account its route was last seen
    /// to name; used only when the route read for the group names the same account.
    body: Option<(AccountId, String)>,
}

/// The routes last read, by Instagram account (`None`: no account is configured for it). A
/// guess that lets callers render CRM bodies in parallel, never trusted: every group reads
/// its routes afresh, and a body rendered for another account is rendered again.
#[derive(Clone, Default)]
pub(super) struct RouteHints(Arc<RwLock<HashMap<InstagramAccountId, Option<Route>>>>);

impl RouteHints {
    /// The account a CRM body of `account`'s events was last seen to go to.
    fn crm_account(&self, account: &InstagramAccountId) -> Option<AccountId> {
        let hints = self.0.read().ok()?;
        hints.get(account)?.as_ref()?.crm().cloned()
    }

    /// Remembers what a group read.
    fn remember(
        &self,
        accounts: &[InstagramAccountId],
        routes: &HashMap<InstagramAccountId, Route>,
    ) {
        if let Ok(mut hints) = self.0.write() {
            if hints.len() > 10_000 {
                hints.clear();
            }
            for account in accounts {
                hints.insert(account.clone(), routes.get(account).cloned());
            }
        }
    }
}

enum Item {
    Message(Message),
    Other {
        record: EventRecord,
        deletion: Option<Deletion>,
    },
}

impl Item {
    fn subject(&self) -> &str {
        match self {
            Self::Message(m) => m.id.as_str(),
            Self::Other { record, .. } => record.id.as_str(),
        }
    }

    fn account(&self) -> Option<&InstagramAccountId> {
        match self {
            Self::Message(m) => Some(&m.instagram_account_id),
            Self::Other { record, .. } => record.event.account(),
        }
    }
}

impl Prepared {
    /// Parses the request and takes its body over: it is the largest part, and the journal
    /// keeps it.
    pub(super) fn new(
        webhook: ReceivedWebhook,
        parser: &dyn NotificationParser,
        hints: &RouteHints,
    ) -> Self {
        let parsed = parser.parse(&webhook.body, webhook.received_at);
        if let Err(reason) = &parsed
            && webhook.origin == Origin::Meta
        {
            tracing::warn!(%reason, "signed webhook is not a usable notification; journaling it");
        }
        let id = webhook.id;
        let (events, status, error) = match &parsed {
            Ok(events) => (events.as_slice(), JournalStatus::Accepted, None),
            Err(reason) => (&[][..], JournalStatus::Unusable, Some(reason.clone())),
        };
        let now = webhook.received_at;
        let prepared = events
            .iter()
            .map(|event| {
                let item = match &event.kind {
                    InboundEventKind::Message(m) => Item::Message(Message {
                        id: MessageId::from_u128(new_id_bits()),
                        instagram_account_id: m.parties.account.clone(),
                        conversation_id: ConversationId::for_pair(
                            &m.parties.account,
                            &m.parties.customer,
                        ),
                        mid: Some(m.mid.clone()),
                        direction: m.direction,
                        sender_id: m.sender(),
                        recipient_id: m.recipient(),
                        kind: m.kind.clone(),
                        text: m.text.clone(),
                        attachments: m.attachments.clone(),
                        reply_to: m.reply_to.clone(),
                        context: m.context.clone(),
                        sent_at: event.occurred_at,
                        created_at: now,
                        deleted_at: None,
                    }),
                    kind => {
                        let record = EventRecord {
                            id: EventId::from_u128(new_id_bits()),
                            webhook_id: id.clone(),
                            received_at: now,
                            event: event.clone(),
                        };
                        let deletion = match kind {
                            InboundEventKind::Deleted { parties, mid } => Some(Deletion {
                                event_id: record.id.clone(),
                                account: parties.account.clone(),
                                mid: mid.clone(),
                                at: event.occurred_at,
                            }),
                            _ => None,
                        };
                        Item::Other { record, deletion }
                    }
                };
                let follow_up = FollowUp::of(event);
                let body = follow_up.crm_event.and_then(|crm_event| {
                    let account = hints.crm_account(item.account()?)?;
                    let body = render(crm_event, &item, &account);
                    Some((account, body))
                });
                PreparedEvent {
                    item,
                    follow_up,
                    body,
                }
            })
            .collect();
        Self {
            origin: webhook.origin,
            journal: JournalEntry {
                id,
                received_at: webhook.received_at,
                body: webhook.body,
                status,
                error,
                events: u32::try_from(events.len()).unwrap_or(u32::MAX),
            },
            events: prepared,
        }
    }

    /// The same request prepared again, with fresh ids (the journal id stays).
    pub(super) fn again(&self, parser: &dyn NotificationParser, hints: &RouteHints) -> Self {
        Self::new(
            ReceivedWebhook {
                id: self.journal.id.clone(),
                received_at: self.journal.received_at,
                body: self.journal.body.clone(),
                origin: self.origin,
            },
            parser,
            hints,
        )
    }
}

/// Writes a group in one transaction; returns one report per request.
pub(super) async fn write(
    store: &dyn InboundStore,
    hints: &RouteHints,
    group: &[Prepared],
) -> Result<Vec<IngestReport>, RepoError> {
    let mut batch = InboundBatch {
        journal: group.iter().map(|p| p.journal.clone()).collect(),
        ..InboundBatch::default()
    };
    // First occurrence of each message and event in the group; repeats are dropped here and
    // credited to no one.
    let mut seen_messages: HashSet<(&InstagramAccountId, &str)> = HashSet::new();
    let mut seen_events: HashSet<(Option<&InstagramAccountId>, String)> = HashSet::new();
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut firsts: Vec<(&PreparedEvent, DateTime<Utc>)> = Vec::new();
    for (index, prepared) in group.iter().enumerate() {
        for event in &prepared.events {
            match &event.item {
                Item::Message(message) => {
                    let mid = message.mid.as_ref().map_or("", |m| m.as_str());
                    if !seen_messages.insert((&message.instagram_account_id, mid)) {
                        continue;
                    }
                    batch.messages.push(message.clone());
                }
                Item::Other { record, deletion } => {
                    if !seen_events.insert((record.event.account(), record.event.dedup_key())) {
                        continue;
                    }
                    batch.deletions.extend(deletion.iter().cloned());
                    batch.events.push(record.clone());
                }
            }
            owner.insert(event.item.subject(), index);
            firsts.push((event, prepared.journal.received_at));
        }
    }
    let routes = routes(store, hints, &firsts).await?;
    for (event, now) in firsts {
        let route = event.item.account().and_then(|a| routes.get(a));
        batch.jobs.extend(jobs(event, route, now));
    }

    let outcome = store.store(batch).await?;
    let mut processed = vec![0_u32; group.len()];
    let new_ids = outcome
        .new_messages
        .iter()
        .map(MessageId::as_str)
        .chain(outcome.new_events.iter().map(EventId::as_str));
    for id in new_ids {
        if let Some(&index) = owner.get(id) {
            processed[index] += 1;
        }
    }
    Ok(group
        .iter()
        .zip(processed)
        .map(|(p, processed)| IngestReport {
            webhook_id: p.journal.id.clone(),
            processed,
            status: p.journal.status,
        })
        .collect())
}

/// The routes of the accounts whose events have follow-up work, read in one query.
async fn routes(
    store: &dyn InboundStore,
    hints: &RouteHints,
    events: &[(&PreparedEvent, DateTime<Utc>)],
) -> Result<HashMap<InstagramAccountId, Route>, RepoError> {
    let mut accounts: Vec<InstagramAccountId> = events
        .iter()
        .filter(|(e, _)| e.follow_up != FollowUp::default())
        .filter_map(|(e, _)| e.item.account().cloned())
        .collect();
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    accounts.sort();
    accounts.dedup();
    let routes = store.routes(&accounts).await?.into_iter().collect();
    hints.remember(&accounts, &routes);
    Ok(routes)
}

/// The jobs `event` gets when it is new: an auto-reply evaluation (for its account, when one
/// is configured) and a delivery to its account's CRM, when the account has one.
fn jobs(event: &PreparedEvent, route: Option<&Route>, now: DateTime<Utc>) -> Vec<NewJob> {
    let subject = event.item.subject();
    let mut jobs = Vec::new();
    if event.follow_up.auto_reply {
        jobs.push(NewJob {
            id: JobId::from_u128(new_id_bits()),
            work: JobWork::AutoReply,
            account_id: route.map(|r| r.account_id.clone()),
            subject: subject.to_owned(),
            run_at: now,
        });
    }
    if let (Some(crm_event), Some(account)) =
        (event.follow_up.crm_event, route.and_then(Route::crm))
    {
        let body = match &event.body {
            Some((hinted, body)) if hinted == account => body.clone(),
            _ => render(crm_event, &event.item, account),
        };
        jobs.push(crm_payload::delivery(account, subject, body, now));
    }
    jobs
}

/// The CRM body of `item` as `crm_event`, for `account`.
fn render(crm_event: &str, item: &Item, account: &AccountId) -> String {
    match item {
        Item::Message(message) => crm_payload::message_body(crm_event, message, account),
        Item::Other { record, .. } => {
            crm_payload::event_body(crm_event, &record.id, &record.event, account)
        }
    }
}
