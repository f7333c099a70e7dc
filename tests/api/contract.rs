//! The served OpenAPI document is the contract: generated requests (path ids, query strings,
//! bodies, content types, keys) to every documented operation get no 5xx, and only statuses
//! the document lists for that operation, with a problem+json body for every error.
//!
//! The generator is seeded (`FUZZ_SEED`, default fixed, so CI runs the same cases every time;
//! set another to explore) and makes `FUZZ_CASES` requests per operation (default 40).

use std::collections::BTreeSet;

use insta_router_blackbox::{TestServer, percent_encoded, text_webhook};
use insta_router_instagram::sign_body;
use reqwest::Method;
use serde_json::{Map, Value, json};

const SECRET: &str = "instagram-app-secret";
const IG: &str = "17841400000000001";
const DEFAULT_SEED: u64 = 0x1715_2026_1130;

/// xorshift64*: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn string(&mut self) -> String {
        match self.below(12) {
            0 => String::new(),
            1 => "a".repeat(self.below(5000) + 1),
            2 => "ж🙂\u{0}\u{202e}".to_owned(),
            3 => "../../etc/passwd".to_owned(),
            4 => "%00%ff".to_owned(),
            5 => "-1".to_owned(),
            6 => "1e309".to_owned(),
            7 => "null".to_owned(),
            8 => "acc_0190000000007000800000000000000a".to_owned(),
            9 => format!("irk_{}", "x".repeat(43)),
            10 => "2026-11-30T00:00:00Z".to_owned(),
            _ => (0..self.below(20))
                .map(|_| char::from(b'a' + u8::try_from(self.below(26)).unwrap_or(0)))
                .collect(),
        }
    }

    fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64),
            3 => json!(f64::from(u32::try_from(self.next() % 1000).unwrap_or(0)) / 7.0),
            4 | 5 => json!(self.string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.json(depth + 1)).collect()),
            _ => {
                let mut object = Map::new();
                for _ in 0..self.below(4) {
                    object.insert(self.string(), self.json(depth + 1));
                }
                Value::Object(object)
            }
        }
    }
}

/// A value shaped like a schema property, or something else.
fn value_for(rng: &mut Rng, schema: &Value) -> Value {
    if rng.chance(30) {
        return rng.json(1);
    }
    match schema["type"].as_str() {
        Some("integer") => json!((rng.next() % 400) as i64 - 100),
        Some("boolean") => json!(rng.chance(50)),
        Some("array") => Value::Array(
            (0..rng.below(3))
                .map(|_| value_for(rng, &schema["items"]))
                .collect(),
        ),
        Some("object") => rng.json(1),
        _ => json!(rng.string()),
    }
}

/// The schema at a `$ref`, or the schema itself.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// A body for an operation: mostly an object with its schema's property names.
fn body_for(rng: &mut Rng, spec: &Value, operation: &Value) -> Vec<u8> {
    let schema = operation["requestBody"]["content"]["application/json"]["schema"].clone();
    let schema = resolve(spec, &schema);
    match rng.below(10) {
        0 => Vec::new(),
        1 => b"{\"unterminated\": ".to_vec(),
        2 => vec![0xff, 0xfe, 0x00],
        3 => rng.json(0).to_string().into_bytes(),
        _ => {
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    if rng.chance(70) {
                        object.insert(name.clone(), value_for(rng, resolve(spec, property)));
                    }
                }
            }
            if rng.chance(10) {
                object.insert(rng.string(), rng.json(1));
            }
            Value::Object(object).to_string().into_bytes()
        }
    }
}

/// Real ids of the fuzz server, by path parameter, to reach past the 404s.
struct Known {
    ids: Vec<(&'static str, String)>,
}

impl Known {
    fn for_param(&self, name: &str) -> Vec<String> {
        self.ids
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

async fn setup(server: &TestServer) -> Known {
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(
            &json!({"instagram_account_id": IG, "username": "shop", "access_token": "tok",
            "crm_webhook_url": "https://crm.example/hooks", "webhook_secret": "s"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = account["account_id"].as_str().unwrap().to_owned();
    let rule: Value = server
        .api(Method::POST, &format!("/api/v1/accounts/{account}/rules"))
        .json(&json!({"name": "r", "conditions": [{"type": "keywords", "any_of": ["x"]}], "reply": {"text": "hi"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = text_webhook(IG, "mid.fuzz", "hello");
    server
        .post_webhook(&body, Some(&sign_body(SECRET, body.as_bytes())))
        .await;
    let send: Value = server
        .api(Method::POST, "/api/v1/messages/send")
        .json(&json!({"account_id": account, "recipient_id": "555", "message": "hi", "idempotency_key": "fuzz"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries: Value = server
        .api(Method::GET, "/api/v1/deliveries")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids = vec![
        ("account_id", account),
        ("conversation_id", format!("conv_555_{IG}")),
        (
            "rule_id",
            rule["rule_id"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            "message_id",
            send["message_id"].as_str().unwrap_or_default().to_owned(),
        ),
    ];
    if let Some(delivery) = deliveries["data"][0]["delivery_id"].as_str() {
        ids.push(("delivery_id", delivery.to_owned()));
    }
    Known { ids }
}

#[tokio::test]
async fn generated_requests_get_only_documented_answers_and_never_a_5xx() {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases: usize = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    // Nothing leaves the machine: no worker calls a CRM or the Graph API.
    let server = TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .env("FACEBOOK_VERIFY_TOKEN", "verify")
        .env("DELIVERY_WORKERS", "0")
        .env("SEND_WORKERS", "0")
        .env("AUTO_REPLY_WORKERS", "0")
        .env("INSTAGRAM_API_BASE_URL", "http://127.0.0.1:9")
        .start()
        .await;
    let known = setup(&server).await;
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    let mut rng = Rng(seed | 1);
    let mut sent = 0;
    let mut seen: BTreeSet<(String, u16)> = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let documented: BTreeSet<String> = operation["responses"]
                .as_object()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            let parameters: Vec<Value> = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let secured = !operation["security"].is_null();
            for case in 0..cases {
                let mut url_path = path.clone();
                let mut query: Vec<(String, String)> = Vec::new();
                for parameter in &parameters {
                    let name = parameter["name"].as_str().unwrap_or_default();
                    match parameter["in"].as_str() {
                        Some("path") => {
                            let real = known.for_param(name);
                            let value = if !real.is_empty() && rng.chance(60) {
                                rng.pick(&real).clone()
                            } else {
                                rng.string()
                            };
                            let value = if value.is_empty() {
                                "x".to_owned()
                            } else {
                                value
                            };
                            url_path =
                                url_path.replace(&format!("{{{name}}}"), &percent_encoded(&value));
                        }
                        Some("query") if rng.chance(60) => {
                            let value = value_for(&mut rng, &parameter["schema"]);
                            let value = value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned);
                            query.push((name.to_owned(), value));
                        }
                        _ => {}
                    }
                }
                if rng.chance(10) {
                    query.push((rng.string(), rng.string()));
                }
                let query_string: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{}={}", percent_encoded(k), percent_encoded(v)))
                    .collect();
                let mut request = server.client.request(
                    method.clone(),
                    format!("{}{url_path}?{}", server.url, query_string.join("&")),
                );
                let body = if operation["requestBody"].is_null() && !rng.chance(10) {
                    Vec::new()
                } else {
                    body_for(&mut rng, &spec, operation)
                };
                match rng.below(10) {
                    0 => {}
                    1 => request = request.header("content-type", "text/plain"),
                    _ => request = request.header("content-type", "application/json"),
                }
                if secured {
                    match rng.below(10) {
                        0 => {}
                        1 => request = request.bearer_auth(percent_encoded(&rng.string())),
                        _ => request = request.bearer_auth(&server.api_key),
                    }
                }
                if rng.chance(20) {
                    request = request.header("idempotency-key", percent_encoded(&rng.string()));
                }
                let shown_body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                let response = request.body(body).send().await.unwrap();
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let what = format!(
                    "seed {seed}, case {case}: {method} {url_path}?{query:?} body {shown_body:?} -> {status}"
                );
                assert!(status < 500, "{what}\n{}", server.output());
                assert!(
                    documented.contains(&status.to_string()),
                    "{what}: {status} is not documented ({documented:?})"
                );
                if status >= 400 {
                    assert_eq!(content_type, "application/problem+json", "{what}");
                }
                seen.insert((format!("{method} {path}"), status));
                sent += 1;
            }
        }
    }
    assert!(sent >= 20 * cases, "{sent} requests");
    // The generator reached past authentication and validation somewhere.
    assert!(seen.iter().any(|(_, s)| *s < 300), "{seen:?}");
    assert!(seen.iter().any(|(_, s)| *s == 422), "{seen:?}");
    assert!(seen.iter().any(|(_, s)| *s == 404), "{seen:?}");
}
