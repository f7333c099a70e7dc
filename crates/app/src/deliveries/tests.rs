//! The delivery worker against mocked ports: outcomes on the schedule, pauses, leases, secrets, disabled endpoints.

use std::sync::atomic::{AtomicUsize, Ordering};

use insta_router_domain::{
    CrmDeliveryState, CrmWebhookUrl, InstagramAccountId, JobLease, SealedSecret, Username,
};
use insta_router_ports::{
    MockAccountRepository, MockClock, MockCrmSender, MockDeliveryStore, MockJobQueue,
};

use super::*;
use crate::PlaintextCipher;

fn now() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000)
}

fn account(delivery: CrmDeliveryState) -> Account {
    Account {
        id: AccountId::from_u128(1),
        instagram_account_id: InstagramAccountId::parse("i", "1784").unwrap(),
        username: Username::parse("shop").unwrap(),
        crm_webhook_url: Some(CrmWebhookUrl::parse("https://crm.example/h").unwrap()),
        access_token: SealedSecret::new("plain:t".into()),
        webhook_secret: Some(SealedSecret::new("plain:new".into())),
        delivery,
        token_failure: None,
        token_life: Default::default(),
        created_at: now(),
        updated_at: now(),
    }
}

fn claimed(n: u128, attempts: u32) -> ClaimedJob {
    let id = JobId::from_u128(n);
    ClaimedJob {
        job: Job {
            id: id.clone(),
            work: JobWork::CrmDelivery {
                body: r#"{"type":"message.received"}"#.to_owned(),
            },
            account_id: Some(AccountId::from_u128(1)),
            subject: format!("msg_{n}"),
            status: JobStatus::Running,
            attempts,
            run_at: now() + TimeDelta::seconds(60),
            lease_until: Some(now() + TimeDelta::seconds(60)),
            last_error: None,
            created_at: now(),
        },
        lease: JobLease {
            job_id: id,
            token: format!("lease_{n}"),
        },
    }
}

fn answered(status: u16) -> CrmResponse {
    CrmResponse {
        outcome: AttemptOutcome::Answered {
            status,
            retry_after: None,
        },
        duration: Duration::from_millis(3),
        body: None,
        error: None,
    }
}

struct Mocks {
    jobs: MockJobQueue,
    store: MockDeliveryStore,
    accounts: MockAccountRepository,
    sender: MockCrmSender,
}

impl Mocks {
    fn new(account: Option<Account>) -> Self {
        let mut accounts = MockAccountRepository::new();
        accounts
            .expect_get()
            .returning(move |_| Ok(account.clone()));
        Self {
            jobs: MockJobQueue::new(),
            store: MockDeliveryStore::new(),
            accounts,
            sender: MockCrmSender::new(),
        }
    }

    fn service(self, settings: DeliverySettings) -> DeliveryService {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        DeliveryService::new(
            Arc::new(self.jobs),
            Arc::new(self.store),
            Arc::new(self.accounts),
            Arc::new(PlaintextCipher),
            Arc::new(self.sender),
            Arc::new(clock),
            settings,
        )
    }
}

#[tokio::test]
async fn outcomes_map_to_resolutions_on_the_schedule() {
    let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
    let statuses = [200_u16, 503, 410];
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    mocks
        .sender
        .expect_send()
        .times(3)
        .returning(move |request| {
            // The stored body and the event's id, signed with the current secret.
            assert_eq!(request.body, r#"{"type":"message.received"}"#);
            assert!(request.webhook_id.starts_with("msg_"));
            assert_eq!(request.secrets.len(), 1);
            assert_eq!(request.secrets[0].expose(), "new");
            answered(statuses[seen.fetch_add(1, Ordering::SeqCst)])
        });
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let log = recorded.clone();
    mocks
        .store
        .expect_record()
        .times(3)
        .returning(move |records, _| {
            let mut log = log.lock().unwrap();
            for r in records {
                log.push((r.attempt.outcome.clone(), r.resolution.clone()));
            }
            Ok(vec![true; records.len()])
        });
    let service = Arc::new(mocks.service(DeliverySettings::default()));
    service.work(vec![claimed(1, 1)]).await;
    service.work(vec![claimed(2, 1)]).await;
    service.work(vec![claimed(3, 1)]).await;
    let recorded = recorded.lock().unwrap().clone();
    assert_eq!(
        recorded[0],
        ("delivered".to_owned(), DeliveryResolution::Done)
    );
    // After the first attempt the schedule says 5 s, +-20 %.
    match &recorded[1] {
        (outcome, DeliveryResolution::RetryAt(at)) => {
            assert_eq!(outcome, "http_error");
            let delay = *at - now();
            assert!(delay >= TimeDelta::seconds(4) && delay <= TimeDelta::seconds(6));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        recorded[2],
        (
            "gone".to_owned(),
            DeliveryResolution::DeadAndDisable(AccountId::from_u128(1))
        )
    );
}

#[tokio::test]
async fn a_failure_streak_pauses_the_endpoint_without_using_attempts() {
    let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
    mocks
        .sender
        .expect_send()
        .times(2)
        .returning(|_| answered(500));
    mocks
        .store
        .expect_record()
        .times(2)
        .returning(|records, _| Ok(vec![true; records.len()]));
    mocks
        .jobs
        .expect_release()
        .times(1)
        .withf(|lease, at, _, _| lease.token == "lease_3" && *at == now() + TimeDelta::seconds(60))
        .returning(|_, _, _, _| Ok(true));
    let service = Arc::new(mocks.service(DeliverySettings {
        pause_after_failures: 2,
        pause_for: Duration::from_secs(60),
        ..DeliverySettings::default()
    }));
    for n in 1..=3 {
        service.work(vec![claimed(n, 1)]).await;
    }
}

#[tokio::test]
async fn a_lease_too_short_for_an_attempt_is_released_unsent() {
    let mut mocks = Mocks::new(Some(account(CrmDeliveryState::default())));
    mocks.sender.expect_send().never();
    mocks
        .jobs
        .expect_release()
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let mut job = claimed(1, 1);
    // The lease ends in 5 s; an attempt may take 10.
    job.job.lease_until = Some(now() + TimeDelta::seconds(5));
    Arc::new(mocks.service(DeliverySettings::default()))
        .work(vec![job])
        .await;
}

#[tokio::test]
async fn a_secret_in_its_grace_period_signs_too() {
    let mut mocks = Mocks::new(Some(account(CrmDeliveryState {
        disabled_at: None,
        previous_secret: Some(SealedSecret::new("plain:old".into())),
        previous_secret_until: Some(now() + TimeDelta::hours(1)),
    })));
    mocks.sender.expect_send().times(1).returning(|request| {
        let secrets: Vec<&str> = request.secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["new", "old"]);
        answered(204)
    });
    mocks
        .store
        .expect_record()
        .times(1)
        .returning(|records, _| Ok(vec![true; records.len()]));
    Arc::new(mocks.service(DeliverySettings::default()))
        .work(vec![claimed(1, 1)])
        .await;
}

#[tokio::test]
async fn nothing_is_sent_for_a_disabled_endpoint_or_a_deleted_account() {
    let disabled = account(CrmDeliveryState {
        disabled_at: Some(now()),
        ..CrmDeliveryState::default()
    });
    for (account, reason) in [
        (Some(disabled), "endpoint_disabled"),
        (None, "account_deleted"),
    ] {
        let mut mocks = Mocks::new(account);
        mocks.sender.expect_send().never();
        mocks
            .store
            .expect_record()
            .times(1)
            .withf(move |records, _| {
                records.len() == 1
                    && records[0].attempt.outcome == reason
                    && records[0].attempt.status_code.is_none()
                    && records[0].resolution == DeliveryResolution::Dead
            })
            .returning(|records, _| Ok(vec![true; records.len()]));
        Arc::new(mocks.service(DeliverySettings::default()))
            .work(vec![claimed(1, 1)])
            .await;
    }
}

#[tokio::test]
async fn a_batch_reads_its_account_once_and_records_every_attempt_in_one_call() {
    let mut mocks = Mocks::new(None);
    let shop = account(CrmDeliveryState::default());
    mocks.accounts = MockAccountRepository::new();
    mocks
        .accounts
        .expect_get()
        .times(1)
        .returning(move |_| Ok(Some(shop.clone())));
    mocks
        .sender
        .expect_send()
        .times(3)
        .returning(|_| answered(200));
    mocks
        .store
        .expect_record()
        .times(1)
        .withf(|records, _| {
            let mut ids: Vec<&str> = records.iter().map(|r| r.lease.job_id.as_str()).collect();
            ids.sort_unstable();
            ids == [
                JobId::from_u128(1).as_str(),
                JobId::from_u128(2).as_str(),
                JobId::from_u128(3).as_str(),
            ] && records
                .iter()
                .all(|r| r.resolution == DeliveryResolution::Done && r.attempt.attempt == 1)
        })
        // One lease lost meanwhile: logged, not retried here.
        .returning(|records, _| Ok((0..records.len()).map(|i| i != 1).collect()));
    Arc::new(mocks.service(DeliverySettings::default()))
        .work((1..=3).map(|n| claimed(n, 1)).collect())
        .await;
}
