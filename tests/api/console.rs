//! The operator console over plain HTTP (the browser tests in `tests/browser/` drive it in
//! Chromium): signing in and out, the cookie's attributes, CSRF and cross-site refusals that
//! change nothing, an account key's scope, a revoked key's sessions, and pages that name no
//! other host.

use insta_router_blackbox::{TestServer, percent_encoded, text_webhook};
use insta_router_instagram::sign_body;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SECRET: &str = "instagram-app-secret";
const IG_A: &str = "17841400000000001";
const IG_B: &str = "17841400000000002";

/// A browser-like client: no automatic redirects, its cookies kept by hand.
struct Browser<'a> {
    server: &'a TestServer,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self
            .client
            .get(format!("{}{path}", self.server.url))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encoded(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .client
            .post(format!("{}{path}", self.server.url))
            .header(COOKIE, self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        self.keep(&response);
        response
    }

    /// Signs in with `key`; the answer to the sign-in form.
    async fn sign_in(&mut self, key: &str) -> reqwest::Response {
        let page = self.get("/console/login").await.text().await.unwrap();
        let csrf = hidden(&page, "csrf");
        self.post("/console/login", &[("key", key), ("csrf", &csrf)], None)
            .await
    }

    /// The CSRF token of the session, from a page's sign-out form.
    async fn csrf(&mut self) -> String {
        hidden(
            &self.get("/console/accounts").await.text().await.unwrap(),
            "csrf",
        )
    }
}

/// The value of the hidden input `name` in `page`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

async fn server() -> TestServer {
    TestServer::builder()
        .env("INSTAGRAM_APP_SECRET", SECRET)
        .secret(&format!("token-{IG_A}"))
        .secret(&format!("token-{IG_B}"))
        .start()
        .await
}

/// An account with one customer message; its id.
async fn shop(server: &TestServer, ig: &str, username: &str, customer: &str) -> String {
    let account: Value = server
        .api(Method::POST, "/api/v1/accounts")
        .json(&json!({"instagram_account_id": ig, "username": username, "access_token": format!("token-{ig}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = text_webhook(ig, &format!("mid.{ig}"), &format!("hello from {customer}"))
        .replace("\"555\"", &format!("\"{customer}\""));
    let response = server
        .post_webhook(&body, Some(&sign_body(SECRET, body.as_bytes())))
        .await;
    assert_eq!(response.status(), 200);
    account["account_id"].as_str().unwrap().to_owned()
}

async fn account_key(server: &TestServer, account: &str) -> (String, String) {
    let made: Value = server
        .api(Method::POST, "/api/v1/api-keys")
        .json(&json!({"account_id": account}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        made["api_key"].as_str().unwrap().to_owned(),
        made["key_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_a_right_one_signs_in_with_a_strict_http_only_cookie() {
    let server = server().await;
    let mut browser = Browser::new(&server);

    let first = browser.get("/console/conversations").await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.headers()[LOCATION], "/console/login");

    let wrong = browser.sign_in("irk_no_such_key_at_all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("No such API key."));

    // Without the sign-in form's token (double-submit cookie), even the right key is refused.
    let mut stranger = Browser::new(&server);
    let forged = stranger
        .post(
            "/console/login",
            &[("key", &server.api_key), ("csrf", "x")],
            None,
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(!forged.headers().contains_key(SET_COOKIE));

    let right = browser.sign_in(&server.api_key).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("insta_router_session="))
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }

    let dashboard = browser.get("/console").await;
    assert_eq!(dashboard.status(), StatusCode::OK);
    let csp = dashboard.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(dashboard.headers()["cache-control"], "no-store");
    let html = dashboard.text().await.unwrap();
    assert!(html.contains("<h1>Dashboard</h1>"));
    assert!(
        !html.contains(&server.api_key),
        "the key is never in a page"
    );

    // Signing out needs the session's token, then ends the session.
    let refused = browser
        .post("/console/logout", &[("csrf", "nope")], None)
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let csrf = browser.csrf().await;
    let out = browser
        .post("/console/logout", &[("csrf", &csrf)], None)
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        browser.get("/console").await.status(),
        StatusCode::SEE_OTHER
    );
    // A background refresh is told 401 rather than redirected.
    let background = browser
        .client
        .get(format!("{}/console/conversations?fragment=1", server.url))
        .header("x-requested-with", "fetch")
        .send()
        .await
        .unwrap();
    assert_eq!(background.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_form_without_the_session_token_or_from_another_site_changes_nothing() {
    let server = server().await;
    let account = shop(&server, IG_A, "shop_a", "1111111111111111").await;
    let mut browser = Browser::new(&server);
    browser.sign_in(&server.api_key).await;
    let csrf = browser.csrf().await;
    let rule = |token: &'static str| {
        move |csrf: &str| {
            vec![
                (
                    "csrf",
                    if token.is_empty() {
                        csrf.to_owned()
                    } else {
                        token.to_owned()
                    },
                ),
                ("name", "Prices".to_owned()),
                ("priority", "0".to_owned()),
                ("cooldown_seconds", "60".to_owned()),
                ("reply", "See the website".to_owned()),
                (
                    "conditions",
                    r#"[{"type":"keywords","any_of":["price"]}]"#.to_owned(),
                ),
                ("enabled", "on".to_owned()),
            ]
        }
    };
    let post = async |browser: &mut Browser<'_>, fields: Vec<(&str, String)>, origin| {
        let mut fields: Vec<(&str, String)> = fields;
        fields.push(("account", account.clone()));
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        browser
            .post("/console/rules", &pairs, origin)
            .await
            .status()
    };
    let rules = async || {
        let listed: Value = server
            .api(Method::GET, &format!("/api/v1/accounts/{account}/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed["data"].as_array().map_or(0, Vec::len)
    };

    let forged = post(&mut browser, rule("0000")(&csrf), None).await;
    assert_eq!(forged, StatusCode::FORBIDDEN);
    let cross_site = post(&mut browser, rule("")(&csrf), Some("http://evil.example")).await;
    assert_eq!(cross_site, StatusCode::FORBIDDEN);
    assert_eq!(rules().await, 0, "nothing was made");

    let made = post(&mut browser, rule("")(&csrf), Some(&server.url.clone())).await;
    assert_eq!(made, StatusCode::SEE_OTHER);
    assert_eq!(rules().await, 1);

    // A refused rule comes back as the form, with the reason and what was typed.
    let mut bad = rule("")(&csrf);
    bad.retain(|(k, _)| *k != "conditions");
    bad.push(("conditions", r#"[{"type":"nonsense"}]"#.to_owned()));
    bad.push(("account", account.clone()));
    let pairs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = browser.post("/console/rules", &pairs, None).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Not saved: conditions: unknown variant"),
        "{page}"
    );
    assert!(page.contains("nonsense"));
    assert_eq!(rules().await, 1);
}

#[tokio::test]
async fn an_account_key_sees_its_own_account_only_and_a_revoked_key_is_signed_out() {
    let server = server().await;
    let a = shop(&server, IG_A, "shop_a", "1111111111111111").await;
    let b = shop(&server, IG_B, "shop_b", "2222222222222222").await;
    let (key, key_id) = account_key(&server, &a).await;
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&key).await.status(), StatusCode::SEE_OTHER);

    let inbox = browser
        .get(&format!("/console/conversations?account={b}"))
        .await;
    assert_eq!(inbox.status(), StatusCode::OK);
    let inbox = inbox.text().await.unwrap();
    assert!(inbox.contains("1111111111111111"), "its own inbox: {inbox}");
    assert!(
        !inbox.contains("2222222222222222"),
        "never the other account's"
    );
    let accounts = browser.get("/console/accounts").await.text().await.unwrap();
    assert!(accounts.contains("@shop_a") && !accounts.contains("@shop_b"));
    assert!(!accounts.contains("Connect an account"));

    let other = format!("/console/conversations/conv_2222222222222222_{IG_B}");
    assert_eq!(browser.get(&other).await.status(), StatusCode::NOT_FOUND);
    let csrf = browser.csrf().await;
    let reply = browser
        .post(
            &format!("{other}/reply"),
            &[("csrf", &csrf), ("idempotency_key", "k-1"), ("text", "hi")],
            None,
        )
        .await;
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    let sends: Value = server
        .api(
            Method::GET,
            &format!("/api/v1/analytics/sends?account_id={b}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sends["accepted"], 0, "{sends}");
    let new_rule = browser
        .get(&format!("/console/rules/new?account={b}"))
        .await;
    assert_eq!(new_rule.status(), StatusCode::NOT_FOUND);
    // Asking for the other account shows the key's own.
    let deliveries = browser
        .get(&format!("/console/deliveries?account={b}&status=all"))
        .await;
    assert_eq!(deliveries.status(), StatusCode::OK);
    let deliveries = deliveries.text().await.unwrap();
    assert!(
        deliveries.contains("@shop_a") && !deliveries.contains(&b),
        "{deliveries}"
    );
    let created = browser
        .post(
            "/console/accounts",
            &[
                ("csrf", &csrf),
                ("instagram_account_id", "17841400000000003"),
                ("username", "x"),
                ("access_token", "t"),
            ],
            None,
        )
        .await;
    assert_eq!(created.status(), StatusCode::FORBIDDEN);

    // Revoking the key ends its session at once.
    let revoked = server
        .api(Method::DELETE, &format!("/api/v1/api-keys/{key_id}"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let after = browser.get("/console").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/console/login");
}

#[tokio::test]
async fn every_asset_is_embedded_and_no_page_names_another_host() {
    let server = server().await;
    shop(&server, IG_A, "shop_a", "1111111111111111").await;
    let mut browser = Browser::new(&server);
    browser.sign_in(&server.api_key).await;
    let mut assets = Vec::new();
    for path in [
        "/console/login",
        "/console",
        "/console/conversations",
        "/console/deliveries",
        "/console/rules",
        "/console/accounts",
    ] {
        let response = browser.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let html = response.text().await.unwrap();
        for attribute in ["src=\"", "href=\""] {
            for part in html.split(attribute).skip(1) {
                let target = part.split('"').next().unwrap();
                assert!(
                    target.starts_with('/') || target.starts_with('#') || target == "data:,",
                    "{path} names {target}"
                );
                if target.starts_with("/console/assets/") {
                    assets.push(target.to_owned());
                }
            }
        }
    }
    assets.sort();
    assets.dedup();
    assert_eq!(assets.len(), 4, "{assets:?}");
    for asset in assets {
        let response = browser.get(&asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            kind.starts_with("text/css") || kind.starts_with("text/javascript"),
            "{asset}: {kind}"
        );
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(
        browser.get("/console/assets/nothing.js").await.status(),
        StatusCode::NOT_FOUND
    );
}
