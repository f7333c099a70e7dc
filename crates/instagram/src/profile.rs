//! `/me/messenger_profile` with `platform: instagram`: ice breakers and the persistent menu.

use async_trait::async_trait;
use insta_router_domain::{IceBreaker, MenuItem, Secret};
use insta_router_ports::{GraphError, MessengerProfile, ProfileField};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::GraphClient;

#[derive(Deserialize)]
struct ProfileAnswer {
    #[serde(default)]
    data: Vec<Value>,
}

/// The first `call_to_actions` list of `field` in Meta's answer (the `default` locale).
fn call_to_actions(answer: &ProfileAnswer, field: &str) -> Vec<Value> {
    answer
        .data
        .iter()
        .filter_map(|entry| entry[field].as_array())
        .flatten()
        .find(|set| set["locale"].as_str().is_none_or(|l| l == "default"))
        .and_then(|set| set["call_to_actions"].as_array().cloned())
        .unwrap_or_default()
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

impl GraphClient {
    /// Sends `body` to `/me/messenger_profile?platform=instagram` with `method`.
    async fn profile_call(
        &self,
        token: &Secret,
        method: reqwest::Method,
        body: &Value,
    ) -> Result<(), GraphError> {
        let url = self.url("me/messenger_profile", &[("platform", "instagram")])?;
        self.exchange(self.http.request(method, url).json(body), token)
            .await
            .map(drop)
    }

    async fn profile_read(&self, token: &Secret, field: &str) -> Result<ProfileAnswer, GraphError> {
        self.get_json(
            token,
            "me/messenger_profile",
            &[("fields", field), ("platform", "instagram")],
            "messenger_profile",
        )
        .await
    }
}

#[async_trait]
impl MessengerProfile for GraphClient {
    async fn ice_breakers(&self, token: &Secret) -> Result<Vec<IceBreaker>, GraphError> {
        let answer = self.profile_read(token, "ice_breakers").await?;
        Ok(call_to_actions(&answer, "ice_breakers")
            .iter()
            .map(|item| IceBreaker {
                question: text(item, "question"),
                payload: text(item, "payload"),
            })
            .collect())
    }

    async fn set_ice_breakers(
        &self,
        token: &Secret,
        items: &[IceBreaker],
    ) -> Result<(), GraphError> {
        let actions: Vec<Value> = items
            .iter()
            .map(|i| json!({"question": i.question, "payload": i.payload}))
            .collect();
        let body = json!({
            "platform": "instagram",
            "ice_breakers": [{"call_to_actions": actions, "locale": "default"}],
        });
        self.profile_call(token, reqwest::Method::POST, &body).await
    }

    async fn persistent_menu(&self, token: &Secret) -> Result<Vec<MenuItem>, GraphError> {
        let answer = self.profile_read(token, "persistent_menu").await?;
        Ok(call_to_actions(&answer, "persistent_menu")
            .iter()
            .map(|item| match item["type"].as_str() {
                Some("web_url") => MenuItem::WebUrl {
                    title: text(item, "title"),
                    url: text(item, "url"),
                },
                _ => MenuItem::Postback {
                    title: text(item, "title"),
                    payload: text(item, "payload"),
                },
            })
            .collect())
    }

    async fn set_persistent_menu(
        &self,
        token: &Secret,
        items: &[MenuItem],
    ) -> Result<(), GraphError> {
        let actions: Vec<Value> = items
            .iter()
            .map(|item| match item {
                MenuItem::Postback { title, payload } => {
                    json!({"type": "postback", "title": title, "payload": payload})
                }
                MenuItem::WebUrl { title, url } => {
                    json!({"type": "web_url", "title": title, "url": url, "webview_height_ratio": "full"})
                }
            })
            .collect();
        let body = json!({
            "platform": "instagram",
            "persistent_menu": [{"locale": "default", "call_to_actions": actions}],
        });
        self.profile_call(token, reqwest::Method::POST, &body).await
    }

    async fn delete_profile_field(
        &self,
        token: &Secret,
        field: ProfileField,
    ) -> Result<(), GraphError> {
        let body = json!({"platform": "instagram", "fields": [field.as_str()]});
        self.profile_call(token, reqwest::Method::DELETE, &body)
            .await
    }
}
