//! Webhook subscriptions at Meta: made when an account is created (unless turned off), made
//! again and read through the API, with Meta's refusals as 502.

use insta_router_blackbox::{TestServer, graph_fixture};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIELDS: &str = "messages,messaging_postbacks,messaging_seen,messaging_reactions,messaging_referral,comments,live_comments";

async fn graph() -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/me/subscribed_apps"))
        .and(query_param("subscribed_fields", FIELDS))
        .and(header("authorization", "Bearer IGQVJ-good"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(graph_fixture("subscribed-apps-post.json")),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/me/subscribed_apps"))
        .and(header("authorization", "Bearer IGQVJ-good"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(graph_fixture("subscribed-apps.json")),
        )
        .mount(&graph)
        .await;
    Mock::given(method("POST"))
        .and(path("/me/subscribed_apps"))
        .and(header("authorization", "Bearer IGQVJ-expired"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "Error validating access token: Session has expired", "type": "OAuthException", "code": 190}
        })))
        .mount(&graph)
        .await;
    graph
}

async fn create(server: &TestServer, ig: &str, token: &str) -> String {
    let response = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({"instagram_account_id": ig, "username": "shop", "access_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["account_id"].as_str().unwrap().to_owned()
}

async fn subscribe_calls(graph: &MockServer) -> usize {
    graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/me/subscribed_apps")
        .count()
}

#[tokio::test]
async fn a_new_account_is_subscribed_and_the_subscription_can_be_made_and_read_again() {
    let graph = graph().await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .secret("IGQVJ-good")
        .secret("IGQVJ-expired")
        .start()
        .await;
    let id = create(&server, "17841400000000001", "IGQVJ-good").await;
    // Subscribed before the account's 201.
    assert_eq!(subscribe_calls(&graph).await, 1);

    let current = server
        .api_json(Method::GET, &format!("/api/v1/accounts/{id}/subscribe"))
        .await;
    assert_eq!(
        current["subscribed_fields"],
        json!(FIELDS.split(',').collect::<Vec<_>>())
    );
    let again = server
        .api(Method::POST, &format!("/api/v1/accounts/{id}/subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(subscribe_calls(&graph).await, 2);

    // An account whose token Meta refuses is created all the same, and says why on request.
    let expired = create(&server, "17841400000000002", "IGQVJ-expired").await;
    // Logged before the 201; the reader of the server's output may lag behind it.
    server
        .wait_for_log(&["cannot subscribe the new account"])
        .await;
    let refused = server
        .api(
            Method::POST,
            &format!("/api/v1/accounts/{expired}/subscribe"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("code 190"),
        "{problem}"
    );
    assert_eq!(
        server
            .api(
                Method::POST,
                "/api/v1/accounts/acc_00000000000000000000000000000000/subscribe"
            )
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn subscribing_on_creation_can_be_turned_off() {
    let graph = graph().await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("SUBSCRIBE_ON_CREATE", "false")
        .secret("IGQVJ-good")
        .start()
        .await;
    create(&server, "17841400000000001", "IGQVJ-good").await;
    assert_eq!(subscribe_calls(&graph).await, 0);
}
