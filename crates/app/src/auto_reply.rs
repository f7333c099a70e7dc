//! Answering inbound messages with the account's rules: workers that claim the
//! `auto_reply` job queued for each new inbound message, evaluate the rules, and send the
//! reply through the Graph API at most once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use insta_router_domain::rules::{self, Recipient, Rule, Safety};
use insta_router_domain::{
    Account, ClaimedJob, Direction, InstagramAccountId, InstagramUserId, JobKind, Message,
    MessageContext, MessageId, MessageKind, MessagingType, OutboundContent,
};
use insta_router_ports::{
    AccountRepository, AutoReplyStore, Clock, CredentialCipher, GraphError, JobQueue,
    MessageRepository, Messenger, Profile, ReplyClaim,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{RuleService, crm_payload, new_id_bits, workers};

/// How auto-replies are worked.
#[derive(Debug, Clone)]
pub struct AutoReplySettings {
    /// Worker tasks.
    pub workers: usize,
    /// How long a claim holds.
    pub lease: Duration,
    /// How often an idle worker looks for due retries.
    pub poll_interval: Duration,
    /// The safety limits.
    pub safety: Safety,
    /// What a reply says in place of a name the profile lookup could not give.
    pub fallback_name: String,
    /// How long a looked-up profile is reused.
    pub profile_ttl: Duration,
    /// The pauses before retrying a temporary Graph API failure; after the last, the reply
    /// is given up.
    pub retry_delays: Vec<Duration>,
}

impl Default for AutoReplySettings {
    fn default() -> Self {
        Self {
            workers: 2,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            safety: Safety::default(),
            fallback_name: "there".to_owned(),
            profile_ttl: Duration::from_secs(3600),
            retry_delays: [10, 60, 300, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

/// The ports the auto-reply workers use.
pub struct AutoReplyPorts {
    /// The job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Stored messages.
    pub messages: Arc<dyn MessageRepository>,
    /// Accounts.
    pub accounts: Arc<dyn AccountRepository>,
    /// The record of replies.
    pub replies: Arc<dyn AutoReplyStore>,
    /// The Graph API.
    pub messenger: Arc<dyn Messenger>,
    /// Opens access tokens.
    pub cipher: Arc<dyn CredentialCipher>,
    /// Now.
    pub clock: Arc<dyn Clock>,
}

type ProfileKey = (InstagramAccountId, InstagramUserId);

/// Evaluates rules for new inbound messages and sends the replies.
pub struct AutoReplyService {
    ports: AutoReplyPorts,
    rules: Arc<RuleService>,
    settings: AutoReplySettings,
    profiles: Mutex<HashMap<ProfileKey, (Profile, DateTime<Utc>)>>,
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do, or done.
    Done,
    /// Try again at.
    RetryAt(DateTime<Utc>, String),
    /// Given up.
    Dead(String),
}

impl AutoReplyService {
    /// A service over these ports.
    pub fn new(
        ports: AutoReplyPorts,
        rules: Arc<RuleService>,
        settings: AutoReplySettings,
    ) -> Self {
        Self {
            ports,
            rules,
            settings,
            profiles: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the workers; they wake on `commits`, poll otherwise, and stop when `stop`
    /// turns true.
    pub fn start(
        self: &Arc<Self>,
        commits: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let wakers = workers::Wakers {
            commits: Some(commits),
            wakeups: None,
            stop,
            poll: self.settings.poll_interval,
        };
        workers::start(self, self.settings.workers, &wakers, Self::round)
    }

    /// Claims a batch and answers it, one message after the other; false when nothing was
    /// due.
    async fn round(self: Arc<Self>) -> bool {
        let now = self.ports.clock.now();
        let claimed = workers::claim(
            self.ports.jobs.as_ref(),
            JobKind::AutoReply,
            8,
            self.settings.lease,
            now,
        )
        .await;
        if claimed.is_empty() {
            return false;
        }
        for job in claimed {
            self.run(job).await;
        }
        true
    }

    /// Works one claimed job and records its outcome.
    async fn run(&self, claimed: ClaimedJob) {
        let ClaimedJob { job, lease } = claimed;
        let outcome = match MessageId::parse("subject", &job.subject) {
            Ok(id) => self.answer(&id, job.attempts).await,
            Err(_) => Outcome::Dead(format!("not a message id: {}", job.subject)),
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
    async fn answer(&self, id: &MessageId, attempts: u32) -> Outcome {
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
                retry(format!("Graph API (code {code:?}): {text}"))
            }
            Err(GraphError::Permanent {
                code,
                subcode,
                message: text,
            }) => {
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

    fn retry_at(&self, attempts: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let index = usize::try_from(attempts.saturating_sub(1)).ok()?;
        let delay = self.settings.retry_delays.get(index)?;
        now.checked_add_signed(TimeDelta::from_std(*delay).ok()?)
    }

    async fn send(
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
                customer,
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
    async fn profile(
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
    async fn forward(&self, account: &Account, reply: &Message, now: DateTime<Utc>) {
        let route = account.route();
        let Some(account_id) = route.crm() else {
            return;
        };
        let body = crm_payload::message_body("message.auto_reply", reply, account_id);
        let job = crm_payload::delivery(account_id, reply.id.as_str(), body, now);
        if let Err(error) = self.ports.jobs.enqueue(&[job]).await {
            tracing::error!(%error, "cannot queue the auto-reply for the CRM");
        }
    }
}

#[cfg(test)]
mod tests {
    use insta_router_domain::rules::ConversationFacts;
    use insta_router_domain::{
        AccountId, ConversationId, InstagramMessageId, RuleId, SealedSecret, Username,
    };
    use insta_router_ports::{
        MockAccountRepository, MockAutoReplyStore, MockClock, MockJobQueue, MockMessageRepository,
        MockMessenger, MockRuleRepository, StoredRule,
    };
    use mockall::predicate::eq;

    use super::*;
    use crate::PlaintextCipher;

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn account() -> Account {
        Account {
            id: AccountId::from_u128(1),
            instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
            username: Username::parse("shop").unwrap(),
            crm_webhook_url: None,
            access_token: SealedSecret::new("plain:token".into()),
            webhook_secret: None,
            delivery: Default::default(),
            token_failure: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn inbound(text: &str) -> Message {
        let account = InstagramAccountId::parse("i", "1784").unwrap();
        let customer = InstagramUserId::parse("c", "555").unwrap();
        Message {
            id: MessageId::from_u128(9),
            conversation_id: ConversationId::for_pair(&account, &customer),
            instagram_account_id: account.clone(),
            mid: Some(InstagramMessageId::parse("m", "mid.9").unwrap()),
            direction: Direction::Inbound,
            sender_id: customer,
            recipient_id: account.to_user_id(),
            kind: MessageKind::Text,
            text: Some(text.to_owned()),
            attachments: Vec::new(),
            reply_to: None,
            context: MessageContext::default(),
            sent_at: now(),
            created_at: now(),
            deleted_at: None,
        }
    }

    struct Mocks {
        replies: MockAutoReplyStore,
        messenger: MockMessenger,
    }

    fn build(mocks: Mocks, text: &str) -> AutoReplyService {
        let message = inbound(text);
        let mut messages = MockMessageRepository::new();
        messages
            .expect_get()
            .returning(move |_| Ok(Some(message.clone())));
        let mut accounts = MockAccountRepository::new();
        accounts
            .expect_find_by_instagram_id()
            .returning(|_| Ok(Some(account())));
        accounts.expect_get().returning(|_| Ok(Some(account())));
        let mut rules = MockRuleRepository::new();
        rules.expect_list_by_account().returning(|_| {
            Ok(vec![StoredRule {
                id: RuleId::from_u128(5),
                account_id: AccountId::from_u128(1),
                priority: 0,
                enabled: true,
                definition: r#"{"name":"order66","conditions":[{"type":"keywords","any_of":["order66"]}],"reply":{"text":"Order 66 confirmed, {username}!"}}"#.to_owned(),
                created_at: now(),
                updated_at: now(),
            }])
        });
        let clock = || {
            let mut clock = MockClock::new();
            clock.expect_now().returning(now);
            Arc::new(clock)
        };
        let rules = Arc::new(RuleService::new(
            Arc::new(rules),
            Arc::new(MockAccountRepository::new()),
            clock(),
            "there".to_owned(),
        ));
        AutoReplyService::new(
            AutoReplyPorts {
                jobs: Arc::new(MockJobQueue::new()),
                messages: Arc::new(messages),
                accounts: Arc::new(accounts),
                replies: Arc::new(mocks.replies),
                messenger: Arc::new(mocks.messenger),
                cipher: Arc::new(PlaintextCipher),
                clock: clock(),
            },
            rules,
            AutoReplySettings::default(),
        )
    }

    fn replies(begins: bool) -> MockAutoReplyStore {
        let mut replies = MockAutoReplyStore::new();
        replies
            .expect_facts()
            .returning(|_, _| Ok(ConversationFacts::default()));
        replies
            .expect_begin()
            .times(1)
            .returning(move |_| Ok(begins));
        replies
    }

    fn messenger(result: Result<&'static str, GraphError>) -> MockMessenger {
        let mut messenger = MockMessenger::new();
        messenger.expect_profile().returning(|_, _| {
            Ok(Profile {
                username: Some("jane".into()),
                name: None,
            })
        });
        messenger
            .expect_send()
            .withf(|token, to, content, messaging| {
                token.expose() == "token"
                    && to.as_str() == "555"
                    && content.text() == Some("Order 66 confirmed, @jane!")
                    && *messaging == MessagingType::Response
            })
            .times(1)
            .returning(move |_, _, _, _| {
                result
                    .clone()
                    .map(|mid| InstagramMessageId::parse("m", mid).unwrap())
            });
        messenger
    }

    #[tokio::test]
    async fn a_matching_message_is_answered_with_the_profile_and_recorded() {
        let mut replies = replies(true);
        replies
            .expect_sent()
            .withf(|trigger, reply| {
                trigger == &MessageId::from_u128(9)
                    && reply.direction == Direction::Outbound
                    && reply.mid.as_ref().map(InstagramMessageId::as_str) == Some("mid.reply")
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let service = build(
            Mocks {
                replies,
                messenger: messenger(Ok("mid.reply")),
            },
            "Hi ORDER66",
        );
        assert_eq!(
            service.answer(&MessageId::from_u128(9), 1).await,
            Outcome::Done
        );
    }

    #[tokio::test]
    async fn a_message_answered_already_is_not_sent_again() {
        let mut messenger = MockMessenger::new();
        messenger.expect_send().never();
        let service = build(
            Mocks {
                replies: replies(false),
                messenger,
            },
            "order66",
        );
        assert_eq!(
            service.answer(&MessageId::from_u128(9), 1).await,
            Outcome::Done
        );
    }

    #[tokio::test]
    async fn graph_failures_retry_give_up_or_never_resend() {
        // Temporary: the claim is given back and the job retried.
        let mut transient = replies(true);
        transient
            .expect_abandon()
            .with(eq(MessageId::from_u128(9)))
            .times(1)
            .returning(|_| Ok(()));
        let service = build(
            Mocks {
                replies: transient,
                messenger: messenger(Err(GraphError::Transient {
                    code: Some(4),
                    message: "rate".into(),
                })),
            },
            "order66",
        );
        assert!(matches!(
            service.answer(&MessageId::from_u128(9), 1).await,
            Outcome::RetryAt(at, _) if at == now() + TimeDelta::seconds(10)
        ));
        // Permanent: recorded with Meta's code; the job is given up.
        let mut permanent = replies(true);
        permanent
            .expect_settle()
            .withf(|_, status, error| status == "failed" && error.contains("551"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        let service = build(
            Mocks {
                replies: permanent,
                messenger: messenger(Err(GraphError::Permanent {
                    code: Some(551),
                    subcode: Some(1_545_041),
                    message: "unavailable".into(),
                })),
            },
            "order66",
        );
        assert!(matches!(
            service.answer(&MessageId::from_u128(9), 1).await,
            Outcome::Dead(e) if e.contains("551")
        ));
        // Unknown: perhaps delivered, so settled and never sent again.
        let mut unknown = replies(true);
        unknown
            .expect_settle()
            .withf(|_, status, _| status == "unknown")
            .times(1)
            .returning(|_, _, _| Ok(()));
        let service = build(
            Mocks {
                replies: unknown,
                messenger: messenger(Err(GraphError::Unknown("timeout".into()))),
            },
            "order66",
        );
        assert!(matches!(
            service.answer(&MessageId::from_u128(9), 1).await,
            Outcome::Dead(_)
        ));
    }
}
