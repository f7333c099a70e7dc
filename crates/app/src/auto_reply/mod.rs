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

mod comment;
mod reply;
mod worker;

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
    /// Stored comments.
    pub comments: Arc<dyn insta_router_ports::CommentStore>,
}

type ProfileKey = (InstagramAccountId, InstagramUserId);

/// Evaluates rules for new inbound messages and sends the replies.
pub struct AutoReplyService {
    ports: AutoReplyPorts,
    rules: Arc<RuleService>,
    settings: AutoReplySettings,
    profiles: Mutex<HashMap<ProfileKey, (Profile, DateTime<Utc>)>>,
    private_replies: comment::PrivateReplies,
}

impl AutoReplyService {
    /// Counts an evaluation of `account`'s rules by its outcome (`fired`,
    /// `no_rule_matched`, or the safety limit that stopped every rule): in the metrics, and
    /// in the hourly record analytics read.
    async fn count_evaluation(
        &self,
        account: &insta_router_domain::AccountId,
        evaluation: &rules::Evaluation,
        now: DateTime<Utc>,
    ) {
        let outcome = match (&evaluation.fired, &evaluation.blocked) {
            (Some(_), _) => "fired",
            (None, Some(reason)) => reason.code(),
            (None, None) => "no_rule_matched",
        };
        metrics::counter!("insta_router_rule_evaluations_total", "outcome" => outcome).increment(1);
        if let Err(error) = self
            .ports
            .replies
            .count_evaluation(account, now, outcome)
            .await
        {
            tracing::warn!(%error, "cannot count a rule evaluation");
        }
    }
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
            private_replies: comment::PrivateReplies::new(),
        }
    }

    /// Lets comment rules answer: their private replies go through `sending`. Without it,
    /// comments are not answered.
    pub fn answer_comments_with(&self, sending: Arc<crate::SendService>) {
        let _ = self.private_replies.set(sending);
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
}

#[cfg(test)]
mod tests;
