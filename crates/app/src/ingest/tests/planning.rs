//! Planning on a mocked store: one batch of first occurrences, routes read once per account
//! and checked by the store, groups planned again when a route changed.

use super::*;

/// An ingestor on a mocked store (the journal and spool refuse everything).
fn mocked(store: insta_router_ports::MockInboundStore) -> Ingestor {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let mut journal = insta_router_ports::MockWebhookJournal::new();
    journal
        .expect_keep_for_replay()
        .returning(|_, _| Err(RepoError::Unavailable("journal down".into())));
    Ingestor::start(
        IngestPorts {
            store: Arc::new(store),
            journal: Arc::new(journal),
            spool: None,
            parser: Arc::new(Mids),
            clock: Arc::new(clock),
        },
        IngestSettings::default(),
    )
}

fn route(crm: bool, answers: bool) -> Vec<(InstagramAccountId, Route)> {
    vec![(
        InstagramAccountId::parse("a", "1784").unwrap(),
        Route {
            account_id: insta_router_domain::AccountId::from_u128(7),
            forwards_to_crm: crm,
            answers,
        },
    )]
}

#[tokio::test]
async fn a_group_is_one_batch_of_first_occurrences_routed_in_one_query() {
    let batches = Arc::new(StdMutex::new(Vec::<InboundBatch>::new()));
    let mut store = insta_router_ports::MockInboundStore::new();
    store
        .expect_routes()
        .times(1)
        .withf(|accounts| accounts.len() == 1 && accounts[0].as_str() == "1784")
        .returning(|_| Ok(route(true, true)));
    let seen = batches.clone();
    store.expect_store().times(1).returning(move |batch| {
        let outcome = BatchOutcome {
            new_messages: batch.messages.iter().map(|m| m.id.clone()).collect(),
            new_events: Vec::new(),
            routes_changed: false,
        };
        seen.lock().unwrap().push(batch);
        Ok(outcome)
    });
    let ingestor = mocked(store);
    // The second request repeats the first's message: it is dropped from the batch and
    // credited to no one.
    let results = ingest_group(&ingestor, &["mid.1,mid.2", "mid.2", "mid.3"]).await;
    let processed: Vec<u32> = results
        .iter()
        .map(|r| r.as_ref().unwrap().processed)
        .collect();
    assert_eq!(processed, [2, 0, 1]);

    let batches = batches.lock().unwrap();
    let batch = &batches[0];
    assert_eq!(batch.journal.len(), 3);
    let mids: Vec<&str> = batch
        .messages
        .iter()
        .map(|m| m.mid.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(mids, ["mid.1", "mid.2", "mid.3"]);
    // Each message: an auto-reply for its account, and a delivery whose body names it.
    assert_eq!(batch.jobs.len(), 6);
    for (message, jobs) in batch.messages.iter().zip(batch.jobs.chunks(2)) {
        assert_eq!(jobs[0].work, JobWork::AutoReply);
        assert_eq!(jobs[0].subject, message.id.as_str());
        let JobWork::CrmDelivery { body } = &jobs[1].work else {
            panic!("{:?}", jobs[1]);
        };
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body["data"]["account_id"],
            "acc_00000000000000000000000000000007"
        );
        assert_eq!(
            body["data"]["message_id"],
            message.mid.as_ref().unwrap().as_str()
        );
        for job in jobs {
            assert_eq!(
                job.account_id,
                Some(insta_router_domain::AccountId::from_u128(7))
            );
        }
    }
}

/// An account gets an auto-reply job only when it has enabled rules and a delivery only
/// when it has a CRM; an unknown Instagram account gets neither.
#[tokio::test]
async fn jobs_follow_the_route_an_auto_reply_only_with_rules_a_delivery_only_with_a_crm() {
    let seven = Some(insta_router_domain::AccountId::from_u128(7));
    for (routes, expected) in [
        (
            route(false, true),
            vec![insta_router_domain::JobKind::AutoReply],
        ),
        (
            route(true, false),
            vec![insta_router_domain::JobKind::CrmDelivery],
        ),
        (route(false, false), vec![]),
        (Vec::new(), vec![]),
    ] {
        let mut store = insta_router_ports::MockInboundStore::new();
        store.expect_routes().returning(move |_| Ok(routes.clone()));
        let (expected, account) = (expected.clone(), seven.clone());
        store
            .expect_store()
            .withf(move |batch| {
                batch.jobs.iter().map(NewJob::kind).collect::<Vec<_>>() == expected
                    && batch.jobs.iter().all(|j| j.account_id == account)
            })
            .returning(|batch| {
                Ok(BatchOutcome {
                    new_messages: batch.messages.iter().map(|m| m.id.clone()).collect(),
                    new_events: Vec::new(),
                    routes_changed: false,
                })
            });
        let report = mocked(store).ingest(from_meta("mid.1")).await.unwrap();
        assert_eq!(report.processed, 1);
    }
}

#[tokio::test]
async fn routes_that_cannot_be_read_fail_the_write_like_the_store() {
    let mut store = insta_router_ports::MockInboundStore::new();
    store
        .expect_routes()
        .returning(|_| Err(RepoError::Unavailable("connection refused".into())));
    store.expect_store().never();
    // Nowhere to keep it either: refused, so that Meta retries.
    let result = mocked(store).ingest(from_meta("mid.1")).await;
    assert!(
        matches!(result, Err(IngestError::Unavailable(_))),
        "{result:?}"
    );
}

/// A mocked store whose accounts table holds one route for account 1784, which the test can
/// change: it answers route reads with it, and refuses batches planned for another.
struct RoutedStore {
    current: Arc<StdMutex<Route>>,
    reads: Arc<StdMutex<usize>>,
    written: Arc<StdMutex<Vec<InboundBatch>>>,
    refused: Arc<StdMutex<usize>>,
}

impl RoutedStore {
    fn new(account: u128) -> (Self, insta_router_ports::MockInboundStore) {
        let this = Self {
            current: Arc::new(StdMutex::new(Route {
                account_id: insta_router_domain::AccountId::from_u128(account),
                forwards_to_crm: true,
                answers: true,
            })),
            reads: Arc::default(),
            written: Arc::default(),
            refused: Arc::default(),
        };
        let mut store = insta_router_ports::MockInboundStore::new();
        let (current, reads) = (this.current.clone(), this.reads.clone());
        store.expect_routes().returning(move |_| {
            *reads.lock().unwrap() += 1;
            let route = current.lock().unwrap().clone();
            Ok(vec![(
                InstagramAccountId::parse("a", "1784").unwrap(),
                route,
            )])
        });
        let (current, written, refused) = (
            this.current.clone(),
            this.written.clone(),
            this.refused.clone(),
        );
        store.expect_store().returning(move |batch| {
            let route = current.lock().unwrap().clone();
            if batch.routes.iter().any(|(_, r)| r.as_ref() != Some(&route)) {
                *refused.lock().unwrap() += 1;
                return Ok(BatchOutcome {
                    routes_changed: true,
                    ..BatchOutcome::default()
                });
            }
            let outcome = BatchOutcome {
                new_messages: batch.messages.iter().map(|m| m.id.clone()).collect(),
                ..BatchOutcome::default()
            };
            written.lock().unwrap().push(batch);
            Ok(outcome)
        });
        (this, store)
    }

    fn set(&self, account: u128) {
        self.current.lock().unwrap().account_id =
            insta_router_domain::AccountId::from_u128(account);
    }
}

#[tokio::test]
async fn routes_are_read_once_per_account_and_then_checked_by_the_store() {
    let (routed, store) = RoutedStore::new(7);
    let ingestor = mocked(store);
    for mid in ["mid.1", "mid.2", "mid.3"] {
        ingestor.ingest(from_meta(mid)).await.unwrap();
    }
    assert_eq!(*routed.reads.lock().unwrap(), 1);
    assert_eq!(*routed.refused.lock().unwrap(), 0);
    let written = routed.written.lock().unwrap();
    assert_eq!(written.len(), 3);
    for batch in written.iter() {
        assert_eq!(
            batch.routes,
            route(true, true)
                .into_iter()
                .map(|(a, r)| (a, Some(r)))
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_group_whose_route_changed_is_planned_again_and_its_body_rendered_again() {
    let (routed, store) = RoutedStore::new(7);
    let ingestor = mocked(store);
    // The first request is prepared knowing no route; the second with the first's (account
    // 7), but the account was changed meanwhile (account 8): the store refuses the plan, and
    // the group is planned again for the route read afresh.
    ingestor.ingest(from_meta("mid.1")).await.unwrap();
    routed.set(8);
    let report = ingestor.ingest(from_meta("mid.2")).await.unwrap();
    assert_eq!(report.processed, 1);
    assert_eq!(*routed.reads.lock().unwrap(), 2);
    assert_eq!(*routed.refused.lock().unwrap(), 1);
    let written = routed.written.lock().unwrap();
    assert_eq!(written.len(), 2);
    for (batch, account) in written.iter().zip([7, 8]) {
        let account = insta_router_domain::AccountId::from_u128(account);
        assert_eq!(batch.jobs.len(), 2);
        for job in &batch.jobs {
            assert_eq!(job.account_id.as_ref(), Some(&account));
        }
        let crm = batch
            .jobs
            .iter()
            .find(|j| j.kind() == insta_router_domain::JobKind::CrmDelivery)
            .unwrap();
        let JobWork::CrmDelivery { body } = &crm.work else {
            panic!("{crm:?}");
        };
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["data"]["account_id"], account.as_str());
    }
}

#[tokio::test]
async fn routes_that_keep_changing_fail_the_write_after_a_few_plans() {
    let mut store = insta_router_ports::MockInboundStore::new();
    // Read before the first plan, and again after each refusal but the last.
    store
        .expect_routes()
        .times(3)
        .returning(|_| Ok(route(true, true)));
    store.expect_store().times(3).returning(|_| {
        Ok(BatchOutcome {
            routes_changed: true,
            ..BatchOutcome::default()
        })
    });
    // Planned three times, then refused (nowhere to keep it: the journal refuses too).
    let result = mocked(store).ingest(from_meta("mid.1")).await;
    assert!(
        matches!(result, Err(IngestError::Unavailable(_))),
        "{result:?}"
    );
}
