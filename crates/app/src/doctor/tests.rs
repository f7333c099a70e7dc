//! The doctor's account checks on mocked ports: a token Meta accepts or refuses, a CRM that
//! answers, fails, or cannot be reached, each said by name with what to do.

use std::time::Duration;

use chrono::{DateTime, Utc};
use insta_router_domain::{
    AccountId, CrmDeliveryState, InstagramAccountId, SealedSecret, Secret, Username,
};
use insta_router_ports::{
    CrmResponse, MockAccountRepository, MockCrmSender, MockMessenger, Page, TokenOwner,
};

use super::*;
use crate::PlaintextCipher;

fn account(n: u128, crm: Option<&str>) -> Account {
    Account {
        id: AccountId::from_u128(n),
        instagram_account_id: InstagramAccountId::parse("i", &format!("1784{n}")).unwrap(),
        username: Username::parse(&format!("shop{n}")).unwrap(),
        crm_webhook_url: crm.map(|u| CrmWebhookUrl::parse(u).unwrap()),
        access_token: SealedSecret::new(format!("plain:token-{n}")),
        webhook_secret: crm.map(|_| SealedSecret::new("plain:s".into())),
        delivery: CrmDeliveryState::default(),
        token_failure: None,
        token_life: Default::default(),
        created_at: DateTime::<Utc>::UNIX_EPOCH,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

fn doctor(accounts: Vec<Account>, crm: MockCrmSender) -> Doctor {
    let mut repo = MockAccountRepository::new();
    repo.expect_list().returning(move |_| {
        Ok(Page {
            items: accounts.clone(),
            next: None,
        })
    });
    let mut messenger = MockMessenger::new();
    messenger.expect_me().returning(|token: &Secret| {
        if token.expose() == "token-1" {
            Ok(TokenOwner {
                id: "17841".into(),
                username: Some("shop1".into()),
            })
        } else {
            Err(GraphError::Permanent {
                code: Some(190),
                subcode: Some(463),
                message: "Error validating access token: Session has expired".into(),
            })
        }
    });
    Doctor::new(
        Arc::new(repo),
        Arc::new(PlaintextCipher),
        Arc::new(messenger),
        Arc::new(crm),
    )
}

fn response(outcome: AttemptOutcome, error: Option<&str>) -> CrmResponse {
    CrmResponse {
        outcome,
        duration: Duration::from_millis(1),
        body: None,
        error: error.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_refused_token_and_an_unreachable_crm_are_named_with_what_to_do() {
    let mut crm = MockCrmSender::new();
    crm.expect_probe().returning(|url| {
        if url.contains("up.example") {
            response(
                AttemptOutcome::Answered {
                    status: 405,
                    retry_after: None,
                },
                None,
            )
        } else {
            response(AttemptOutcome::Unreachable, Some("Connection refused"))
        }
    });
    let findings = doctor(
        vec![
            account(1, Some("https://up.example/hook?token=abc")),
            account(2, Some("https://down.example/hook")),
        ],
        crm,
    )
    .check_accounts()
    .await
    .unwrap();
    assert_eq!(findings.len(), 4, "{findings:?}");
    let [token1, crm1, token2, crm2] = &findings[..] else {
        unreachable!()
    };
    assert!(token1.ok && token1.detail.contains("@shop1"), "{token1:?}");
    assert!(crm1.ok && crm1.detail.contains("HTTP 405"), "{crm1:?}");
    // The query, which may carry a token, is not shown.
    assert!(!crm1.detail.contains("abc"), "{crm1:?}");
    assert!(!token2.ok, "{token2:?}");
    assert!(token2.check.contains("@shop2"), "{token2:?}");
    assert!(
        token2.detail.contains("code 190") && token2.detail.contains("PATCH /api/v1/accounts/"),
        "{token2:?}"
    );
    assert!(!crm2.ok, "{crm2:?}");
    assert!(
        crm2.detail.contains("https://down.example/hook")
            && crm2.detail.contains("Connection refused"),
        "{crm2:?}"
    );
}

#[tokio::test]
async fn a_failing_crm_fails_and_a_missing_one_passes() {
    let mut crm = MockCrmSender::new();
    crm.expect_probe().times(1).returning(|_| {
        response(
            AttemptOutcome::Answered {
                status: 503,
                retry_after: None,
            },
            None,
        )
    });
    let findings = doctor(
        vec![account(1, Some("https://crm.example/h")), account(1, None)],
        crm,
    )
    .check_accounts()
    .await
    .unwrap();
    assert!(!findings[1].ok && findings[1].detail.contains("HTTP 503"));
    assert!(findings[3].ok && findings[3].detail.contains("no CRM URL"));
}

#[tokio::test]
async fn no_account_says_how_to_make_one() {
    let findings = doctor(Vec::new(), MockCrmSender::new())
        .check_accounts()
        .await
        .unwrap();
    assert_eq!(findings.len(), 1);
    assert!(findings[0].ok && findings[0].detail.contains("POST /api/v1/accounts"));
}
