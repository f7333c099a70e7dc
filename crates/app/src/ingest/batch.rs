//! One request prepared for writing, and a group of them planned into one [`InboundBatch`]:
//! the first occurrence of each event, the routes of their accounts, their follow-up jobs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, ConversationId, EventId, FollowUp, InboundEventKind, InstagramAccountId, JobId,
    JobWork, Message, MessageId, NewJob, Route,
};
use insta_router_ports::{
    Deletion, EventRecord, InboundBatch, InboundStore, JournalEntry, JournalStatus,
    NotificationParser, RepoError,
};

use super::{IngestError, IngestReport, Origin, ReceivedWebhook, telemetry};
use crate::{crm_payload, new_id_bits};

/// One request, ready to write: ids assigned, messages and event records built. Preparing
/// happens in the caller's task, on every core at once; the group writer, which sets the pace,
/// only picks the first occurrence of each event, plans its jobs and hands the group to the
/// store.
pub(super) struct Prepared {
    pub(super) origin: Origin,
    /// When the request reached the ingest.
    arrived: Instant,
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

/// The routes last read, by Instagram account (`None`: no account is configured for it). Callers
/// render CRM bodies for them in parallel, and groups are planned for them; never trusted:
/// the store checks them inside each write, and a group whose routes changed is planned again
/// with routes read afresh.
#[derive(Clone, Default)]
pub(super) struct RouteHints(Arc<RwLock<Routes>>);

impl RouteHints {
    /// The account a CRM body of `account`'s events was last seen to go to.
    fn crm_account(&self, account: &InstagramAccountId) -> Option<AccountId> {
        let hints = self.0.read().ok()?;
        hints.get(account)?.as_ref()?.crm().cloned()
    }

    /// The routes last seen for all of `accounts`, if every one has been seen.
    fn known(&self, accounts: &[InstagramAccountId]) -> Option<Routes> {
        let hints = self.0.read().ok()?;
        accounts
            .iter()
            .map(|a| Some((a.clone(), hints.get(a)?.clone())))
            .collect()
    }

    /// Remembers routes read.
    fn remember(&self, routes: &Routes) {
        if let Ok(mut hints) = self.0.write() {
            if hints.len() > 10_000 {
                hints.clear();
            }
            hints.extend(routes.iter().map(|(a, r)| (a.clone(), r.clone())));
        }
    }
}

/// The request's part of its metrics.
pub(super) struct Answer {
    origin: Origin,
    events: u32,
    arrived: Instant,
}

impl Answer {
    /// Counts what became of the request.
    pub(super) fn answered(&self, result: &Result<IngestReport, IngestError>) {
        telemetry::answered(self.origin, self.events, self.arrived, result);
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
            arrived: Instant::now(),
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

    /// The same request prepared again, with fresh ids (the journal id and the arrival stay).
    pub(super) fn again(&self, parser: &dyn NotificationParser, hints: &RouteHints) -> Self {
        let mut again = Self::new(
            ReceivedWebhook {
                id: self.journal.id.clone(),
                received_at: self.journal.received_at,
                body: self.journal.body.clone(),
                origin: self.origin,
            },
            parser,
            hints,
        );
        again.arrived = self.arrived;
        again
    }

    /// Counts the request's events by kind, once, when it arrives.
    pub(super) fn count_received(&self) {
        telemetry::received(
            self.origin,
            self.events.iter().map(|e| match &e.item {
                Item::Message(_) => "message",
                Item::Other { record, .. } => record.event.kind_name(),
            }),
        );
    }

    /// What counting the request's answer needs, kept while the request is handed on.
    pub(super) fn answer(&self) -> Answer {
        Answer {
            origin: self.origin,
            events: self.journal.events,
            arrived: self.arrived,
        }
    }
}

/// How many times a group is planned again because its routes changed before it is given up
/// (a route changes when an operator edits an account; twice in one write is already rare).
const PLANS: usize = 3;

/// The routes a group is planned for, by Instagram account (`None`: no account).
type Routes = HashMap<InstagramAccountId, Option<Route>>;

/// Writes a group in one transaction; returns one report per request.
///
/// The group is planned for the routes last seen for its accounts, and the store checks them
/// inside the write, so a group costs one round trip; only accounts not seen yet, or whose
/// route changed meanwhile, are read first.
pub(super) async fn write(
    store: &dyn InboundStore,
    hints: &RouteHints,
    group: &[Prepared],
) -> Result<Vec<IngestReport>, RepoError> {
    let firsts = Firsts::of(group);
    let accounts = firsts.routed_accounts();
    let mut routes = match hints.known(&accounts) {
        Some(routes) => routes,
        None => read_routes(store, hints, &accounts).await?,
    };
    let mut plans = 0;
    let outcome = loop {
        let outcome = store.store(firsts.batch(group, &accounts, &routes)).await?;
        if !outcome.routes_changed {
            break outcome;
        }
        plans += 1;
        if plans == PLANS {
            return Err(RepoError::Unavailable(
                "the routes of the batch's accounts kept changing while it was written".into(),
            ));
        }
        routes = read_routes(store, hints, &accounts).await?;
    };

    let mut processed = vec![0_u32; group.len()];
    let new_ids = outcome
        .new_messages
        .iter()
        .map(MessageId::as_str)
        .chain(outcome.new_events.iter().map(EventId::as_str));
    for id in new_ids {
        if let Some(&index) = firsts.owner.get(id) {
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

/// The first occurrence of each message and event in a group; repeats are dropped and
/// credited to no one.
struct Firsts<'g> {
    /// Each first occurrence, with when its request arrived.
    events: Vec<(&'g PreparedEvent, DateTime<Utc>)>,
    /// The request each subject came in, by index in the group.
    owner: HashMap<&'g str, usize>,
}

impl<'g> Firsts<'g> {
    fn of(group: &'g [Prepared]) -> Self {
        let mut seen_messages: HashSet<(&InstagramAccountId, &str)> = HashSet::new();
        let mut seen_events: HashSet<(Option<&InstagramAccountId>, String)> = HashSet::new();
        let mut firsts = Self {
            events: Vec::new(),
            owner: HashMap::new(),
        };
        for (index, prepared) in group.iter().enumerate() {
            for event in &prepared.events {
                let first = match &event.item {
                    Item::Message(message) => {
                        let mid = message.mid.as_ref().map_or("", |m| m.as_str());
                        seen_messages.insert((&message.instagram_account_id, mid))
                    }
                    Item::Other { record, .. } => {
                        seen_events.insert((record.event.account(), record.event.dedup_key()))
                    }
                };
                if first {
                    firsts.owner.insert(event.item.subject(), index);
                    firsts.events.push((event, prepared.journal.received_at));
                }
            }
        }
        firsts
    }

    /// The accounts whose events have follow-up work, whose routes the plan depends on.
    fn routed_accounts(&self) -> Vec<InstagramAccountId> {
        let mut accounts: Vec<InstagramAccountId> = self
            .events
            .iter()
            .filter(|(e, _)| e.follow_up != FollowUp::default())
            .filter_map(|(e, _)| e.item.account().cloned())
            .collect();
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// The group's batch, its jobs planned for `routes`.
    fn batch(
        &self,
        group: &[Prepared],
        accounts: &[InstagramAccountId],
        routes: &Routes,
    ) -> InboundBatch {
        let mut batch = InboundBatch {
            journal: group.iter().map(|p| p.journal.clone()).collect(),
            routes: accounts
                .iter()
                .map(|a| (a.clone(), routes.get(a).cloned().flatten()))
                .collect(),
            ..InboundBatch::default()
        };
        for &(event, now) in &self.events {
            match &event.item {
                Item::Message(message) => batch.messages.push(message.clone()),
                Item::Other { record, deletion } => {
                    batch.deletions.extend(deletion.iter().cloned());
                    batch.events.push(record.clone());
                }
            }
            let route = event
                .item
                .account()
                .and_then(|a| routes.get(a))
                .and_then(Option::as_ref);
            batch.jobs.extend(jobs(event, route, now));
        }
        batch
    }
}

/// The routes of `accounts`, read in one query and remembered.
async fn read_routes(
    store: &dyn InboundStore,
    hints: &RouteHints,
    accounts: &[InstagramAccountId],
) -> Result<Routes, RepoError> {
    if accounts.is_empty() {
        return Ok(Routes::new());
    }
    let found: HashMap<InstagramAccountId, Route> =
        store.routes(accounts).await?.into_iter().collect();
    let routes: Routes = accounts
        .iter()
        .map(|a| (a.clone(), found.get(a).cloned()))
        .collect();
    hints.remember(&routes);
    Ok(routes)
}

/// The jobs `event` gets when it is new: an auto-reply evaluation, when its account has
/// enabled rules, and a delivery to its account's CRM, when the account has one.
fn jobs(event: &PreparedEvent, route: Option<&Route>, now: DateTime<Utc>) -> Vec<NewJob> {
    let subject = event.item.subject();
    let mut jobs = Vec::new();
    if let (true, Some(account)) = (event.follow_up.auto_reply, route.and_then(Route::answering)) {
        jobs.push(NewJob {
            id: JobId::from_u128(new_id_bits()),
            work: JobWork::AutoReply,
            account_id: Some(account.clone()),
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
