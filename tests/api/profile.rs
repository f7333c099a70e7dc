//! Ice breakers and the persistent menu round-trip through a fake `/me/messenger_profile`
//! that keeps what it is sent, as Meta does; Meta's limits are checked before any call.

use std::sync::{Arc, Mutex};

use insta_router_blackbox::{TestServer, graph_fixture};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A messaging profile kept like Meta keeps it: POST sets fields, DELETE removes them, GET
/// answers `{"data": [fields]}`.
#[derive(Clone, Default)]
struct FakeProfile(Arc<Mutex<serde_json::Map<String, Value>>>);

impl Respond for FakeProfile {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut kept = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        match request.method.as_str() {
            "POST" => {
                assert_eq!(body["platform"], "instagram", "{body}");
                for field in ["ice_breakers", "persistent_menu"] {
                    if let Some(value) = body.get(field) {
                        kept.insert(field.to_owned(), value.clone());
                    }
                }
                ResponseTemplate::new(200).set_body_json(json!({"result": "success"}))
            }
            "DELETE" => {
                for field in body["fields"].as_array().unwrap() {
                    kept.remove(field.as_str().unwrap());
                }
                ResponseTemplate::new(200).set_body_json(json!({"result": "success"}))
            }
            _ => {
                let fields = request
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "fields")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let answer: serde_json::Map<String, Value> = kept
                    .iter()
                    .filter(|(k, _)| fields.split(',').any(|f| f == k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let data = if answer.is_empty() {
                    json!([])
                } else {
                    json!([answer])
                };
                ResponseTemplate::new(200).set_body_json(json!({ "data": data }))
            }
        }
    }
}

async fn profile_calls(graph: &MockServer) -> usize {
    graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/me/messenger_profile")
        .count()
}

#[tokio::test]
async fn ice_breakers_and_the_menu_round_trip_through_metas_messenger_profile() {
    let graph = MockServer::start().await;
    Mock::given(path("/me/messenger_profile"))
        .respond_with(FakeProfile::default())
        .mount(&graph)
        .await;
    let server = TestServer::builder()
        .env("INSTAGRAM_API_BASE_URL", &graph.uri())
        .env("SUBSCRIBE_ON_CREATE", "false")
        .secret("IGQVJ-token")
        .start()
        .await;
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": "17841400000000001", "username": "myshop",
            "access_token": "IGQVJ-token"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = format!(
        "/api/v1/accounts/{}",
        account["account_id"].as_str().unwrap()
    );

    // Meta's documented profile: what we send is what Meta shows.
    let documented = graph_fixture("messenger-profile.json");
    let breakers: Vec<Value> = documented["data"][0]["ice_breakers"][0]["call_to_actions"]
        .as_array()
        .unwrap()
        .clone();
    let put = server
        .api(Method::PUT, &format!("{base}/ice-breakers"))
        .json(&json!({"ice_breakers": breakers}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let shown: Value = put.json().await.unwrap();
    assert_eq!(shown["ice_breakers"], json!(breakers));
    let read = server
        .api_json(Method::GET, &format!("{base}/ice-breakers"))
        .await;
    assert_eq!(read["ice_breakers"], json!(breakers));

    let items: Vec<Value> = documented["data"][0]["persistent_menu"][0]["call_to_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let mut item = item.clone();
            item.as_object_mut().unwrap().remove("webview_height_ratio");
            item
        })
        .collect();
    let put = server
        .api(Method::PUT, &format!("{base}/persistent-menu"))
        .json(&json!({"items": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let shown: Value = put.json().await.unwrap();
    assert_eq!(shown["items"], json!(items));

    // Removing the ice breakers leaves the menu.
    let removed = server
        .api(Method::DELETE, &format!("{base}/ice-breakers"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let read = server
        .api_json(Method::GET, &format!("{base}/ice-breakers"))
        .await;
    assert_eq!(read["ice_breakers"], json!([]));
    let read = server
        .api_json(Method::GET, &format!("{base}/persistent-menu"))
        .await;
    assert_eq!(read["items"], json!(items));

    // Beyond Meta's limits: refused with every field named, and Meta is not called.
    let calls = profile_calls(&graph).await;
    let five: Vec<Value> = (0..5)
        .map(|i| json!({"question": format!("Question {i}"), "payload": "P"}))
        .collect();
    for (path, body, field) in [
        (
            "ice-breakers",
            json!({"ice_breakers": five}),
            "ice_breakers",
        ),
        (
            "ice-breakers",
            json!({"ice_breakers": [{"question": "x".repeat(81), "payload": "P"}]}),
            "ice_breakers[0].question",
        ),
        (
            "persistent-menu",
            json!({"items": [{"type": "web_url", "title": "Shop", "url": "ftp://shop.example"}]}),
            "items[0].url",
        ),
    ] {
        let refused = server
            .api(Method::PUT, &format!("{base}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422, "{path}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(profile_calls(&graph).await, calls);
}
