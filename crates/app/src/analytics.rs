//! Analytics for the API and the console: message volumes per bucket, computed from the
//! stored rows, for one account or all.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use insta_router_domain::{AccountId, Direction, TimeRange};
use insta_router_ports::{AccountRepository, AnalyticsStore, RepoError};

/// Why analytics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// No account has that id.
    #[error("account {0} not found")]
    AccountNotFound(AccountId),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}

/// One bucket of message volumes: counts by kind, inbound and outbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBucket {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Customers' messages by kind.
    pub inbound: BTreeMap<String, u64>,
    /// The business's messages (sends, auto-replies, echoes of what it wrote) by kind.
    pub outbound: BTreeMap<String, u64>,
}

/// Message volumes over a range: every bucket (empty ones too), and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageVolumes {
    /// The range, widened to whole buckets.
    pub range: TimeRange,
    /// Every bucket of the range, in order.
    pub buckets: Vec<VolumeBucket>,
    /// Customers' messages in all.
    pub inbound: u64,
    /// The business's messages in all.
    pub outbound: u64,
    /// Customers who wrote.
    pub unique_customers: u64,
    /// Conversations that began.
    pub new_conversations: u64,
    /// Comments received.
    pub comments: u64,
}

/// Computes analytics.
pub struct AnalyticsService {
    store: Arc<dyn AnalyticsStore>,
    accounts: Arc<dyn AccountRepository>,
}

impl AnalyticsService {
    /// A service over these ports.
    pub fn new(store: Arc<dyn AnalyticsStore>, accounts: Arc<dyn AccountRepository>) -> Self {
        Self { store, accounts }
    }

    /// Message volumes in `range`, for `account` (every account when `None`).
    ///
    /// # Errors
    ///
    /// [`AnalyticsError`].
    pub async fn messages(
        &self,
        account: Option<&AccountId>,
        range: TimeRange,
    ) -> Result<MessageVolumes, AnalyticsError> {
        let instagram = match account {
            Some(id) => Some(
                self.accounts
                    .get(id)
                    .await?
                    .ok_or_else(|| AnalyticsError::AccountNotFound(id.clone()))?
                    .instagram_account_id,
            ),
            None => None,
        };
        let volume = self.store.message_volume(instagram, &range).await?;
        let mut buckets: Vec<VolumeBucket> = range
            .starts()
            .into_iter()
            .map(|start| VolumeBucket {
                start,
                inbound: BTreeMap::new(),
                outbound: BTreeMap::new(),
            })
            .collect();
        let (mut inbound, mut outbound) = (0, 0);
        for count in volume.counts {
            let Some(bucket) = buckets.iter_mut().find(|b| b.start == count.bucket) else {
                continue;
            };
            let (side, total) = match count.direction {
                Direction::Inbound => (&mut bucket.inbound, &mut inbound),
                Direction::Outbound => (&mut bucket.outbound, &mut outbound),
            };
            *side.entry(count.kind).or_default() += count.messages;
            *total += count.messages;
        }
        Ok(MessageVolumes {
            range,
            buckets,
            inbound,
            outbound,
            unique_customers: volume.unique_customers,
            new_conversations: volume.new_conversations,
            comments: volume.comments,
        })
    }
}
