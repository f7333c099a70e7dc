//! The Graph API client: profile lookups and the Send API, with Meta's errors classified.

use std::time::Duration;

use async_trait::async_trait;
use insta_router_domain::{
    InstagramMessageId, InstagramUserId, MessagingType, OutboundContent, Recipient, Secret,
};
use insta_router_ports::{GraphError, Messenger, Profile, RefreshedToken, TokenOwner};
use serde::Deserialize;
use serde_json::json;

/// Talks to `graph.instagram.com` (or whatever `INSTAGRAM_API_BASE_URL` names).
#[derive(Debug, Clone)]
pub struct GraphClient {
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Graph API HTTP client")]
pub struct ClientError(#[source] reqwest::Error);

impl GraphClient {
    /// A client of the Graph API at `base_url` (`https://graph.instagram.com/v21.0`).
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .user_agent(concat!("insta-router/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError)?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    #[serde(default)]
    message: String,
    code: Option<i64>,
    error_subcode: Option<i64>,
}

#[derive(Deserialize)]
struct SendAnswer {
    message_id: String,
}

#[derive(Deserialize)]
struct RefreshAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct SubscribedApps {
    #[serde(default)]
    data: Vec<SubscribedApp>,
}

#[derive(Deserialize)]
struct SubscribedApp {
    #[serde(default)]
    subscribed_fields: Vec<String>,
}

#[derive(Deserialize)]
struct MeAnswer {
    /// A string, or a number in some API versions.
    user_id: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    username: Option<String>,
}

/// A Graph API id, whether sent as a string or a number.
fn id_text(value: Option<serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ProfileAnswer {
    username: Option<String>,
    name: Option<String>,
}

/// Meta's error classes (`instagram.md` §4.15): rate limits and service hiccups retry, the
/// rest do not. The message is Meta's text with `token` taken out wherever it is quoted: an
/// error's text reaches log lines and the API.
pub(crate) fn classify(status: u16, body: &str, token: &Secret) -> GraphError {
    let meta = serde_json::from_str::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let code = meta.as_ref().and_then(|m| m.code);
    let subcode = meta.as_ref().and_then(|m| m.error_subcode);
    let message = meta
        .map(|m| m.message)
        .filter(|m| !m.is_empty())
        .map(|m| redacted(m, token))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let label = code.map_or_else(|| format!("http_{status}"), |c| c.to_string());
    metrics::counter!("insta_router_graph_api_errors_total", "code" => label).increment(1);
    let transient_code = matches!(code, Some(1 | 2 | 4 | 17 | 32 | 613));
    if status == 429 || status >= 500 || transient_code {
        GraphError::Transient { code, message }
    } else {
        GraphError::Permanent {
            code,
            subcode,
            message,
        }
    }
}

/// `text` with every occurrence of `token` replaced by `[redacted]`.
fn redacted(text: String, token: &Secret) -> String {
    let token = token.expose();
    if token.is_empty() || !text.contains(token) {
        return text;
    }
    text.replace(token, "[redacted]")
}

/// A failure of the request itself: before it was sent, trying again is safe; after, the
/// outcome is unknown.
pub(crate) fn request_failed(err: reqwest::Error) -> GraphError {
    let label = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "unreachable"
    } else {
        "request_failed"
    };
    metrics::counter!("insta_router_graph_api_errors_total", "code" => label).increment(1);
    if err.is_connect() || err.is_builder() || err.is_request() && !err.is_timeout() {
        GraphError::Transient {
            code: None,
            message: without_url(err),
        }
    } else {
        GraphError::Unknown(without_url(err))
    }
}

/// A request error's text without its URL, so no error text or log line carries a URL.
pub(crate) fn without_url(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Messenger for GraphClient {
    async fn profile(&self, token: &Secret, user: &InstagramUserId) -> Result<Profile, GraphError> {
        let answer: ProfileAnswer = self
            .get_json(
                token,
                user.as_str(),
                &[("fields", "name,username")],
                "profile",
            )
            .await?;
        Ok(Profile {
            username: answer.username,
            name: answer.name,
        })
    }

    async fn me(&self, token: &Secret) -> Result<TokenOwner, GraphError> {
        let answer: MeAnswer = self
            .get_json(token, "me", &[("fields", "user_id,username")], "me")
            .await?;
        Ok(TokenOwner {
            id: id_text(answer.user_id)
                .or_else(|| id_text(answer.id))
                .unwrap_or_default(),
            username: answer.username,
        })
    }

    async fn send(
        &self,
        token: &Secret,
        recipient: &Recipient,
        content: &OutboundContent,
        messaging: MessagingType,
    ) -> Result<InstagramMessageId, GraphError> {
        let message = match content {
            OutboundContent::Text {
                text,
                quick_replies,
            } => {
                let mut message = json!({ "text": text });
                if !quick_replies.is_empty() {
                    message["quick_replies"] = quick_replies
                        .iter()
                        .map(|q| json!({"content_type": "text", "title": q.title, "payload": q.payload}))
                        .collect();
                }
                message
            }
            OutboundContent::Media(media) => json!({
                "attachment": {
                    "type": media.kind.as_str(),
                    "payload": {"url": media.url, "is_reusable": true},
                }
            }),
        };
        let mut body = json!({ "message": message });
        match recipient {
            Recipient::User(user) => {
                body["recipient"] = json!({"id": user.as_str()});
                match messaging {
                    MessagingType::Response => body["messaging_type"] = json!("RESPONSE"),
                    MessagingType::HumanAgent => {
                        body["messaging_type"] = json!("MESSAGE_TAG");
                        body["tag"] = json!("HUMAN_AGENT");
                    }
                }
            }
            // A private reply: Meta finds the author from the comment; no messaging type.
            Recipient::Comment(comment) => {
                body["recipient"] = json!({"comment_id": comment.as_str()});
            }
        }
        let body = self.post_messages(token, &body).await?;
        let answer: SendAnswer = serde_json::from_str(&body)
            .map_err(|e| GraphError::Unknown(format!("unexpected Send API answer: {e}")))?;
        InstagramMessageId::parse("message_id", &answer.message_id)
            .map_err(|e| GraphError::Unknown(e.to_string()))
    }

    async fn refresh_token(&self, token: &Secret) -> Result<RefreshedToken, GraphError> {
        // Meta documents the endpoint without a version: `https://graph.instagram.com/...`.
        let base = match self.base_url.rsplit_once('/') {
            Some((root, version))
                if version.starts_with('v')
                    && version[1..].chars().all(|c| c.is_ascii_digit() || c == '.') =>
            {
                root
            }
            _ => self.base_url.as_str(),
        };
        let url = url::Url::parse_with_params(
            &format!("{base}/refresh_access_token"),
            [("grant_type", "ig_refresh_token")],
        )
        .map_err(|e| GraphError::Permanent {
            code: None,
            subcode: None,
            message: format!("bad Graph API URL: {e}"),
        })?;
        let body = self.exchange(self.http.get(url), token).await?;
        let answer: RefreshAnswer =
            serde_json::from_str(&body).map_err(|e| GraphError::Permanent {
                code: None,
                subcode: None,
                message: format!("unexpected refresh answer: {e}"),
            })?;
        Ok(RefreshedToken {
            token: Secret::new(answer.access_token),
            expires_in: answer.expires_in.map(std::time::Duration::from_secs),
        })
    }

    async fn reply_to_comment(
        &self,
        token: &Secret,
        comment: &insta_router_domain::InstagramCommentId,
        text: &str,
    ) -> Result<String, GraphError> {
        let url = self.url(&format!("{}/replies", comment.as_str()), &[])?;
        let body = self
            .exchange(self.http.post(url).json(&json!({ "message": text })), token)
            .await?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| GraphError::Unknown(e.to_string()))?;
        Ok(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn subscribe(&self, token: &Secret, fields: &[String]) -> Result<(), GraphError> {
        let url = self.url(
            "me/subscribed_apps",
            &[("subscribed_fields", &fields.join(","))],
        )?;
        self.exchange(self.http.post(url), token).await.map(drop)
    }

    async fn subscribed_fields(&self, token: &Secret) -> Result<Vec<String>, GraphError> {
        let answer: SubscribedApps = self
            .get_json(
                token,
                "me/subscribed_apps",
                &[("fields", "subscribed_fields")],
                "subscribed_apps",
            )
            .await?;
        Ok(answer
            .data
            .into_iter()
            .flat_map(|app| app.subscribed_fields)
            .collect())
    }

    async fn mark_seen(
        &self,
        token: &Secret,
        recipient: &InstagramUserId,
    ) -> Result<(), GraphError> {
        let body = json!({
            "recipient": {"id": recipient.as_str()},
            "sender_action": "mark_seen",
        });
        self.post_messages(token, &body).await.map(drop)
    }
}

impl GraphClient {
    /// `{base}/{path}` with `params`.
    pub(crate) fn url(&self, path: &str, params: &[(&str, &str)]) -> Result<url::Url, GraphError> {
        url::Url::parse_with_params(&format!("{}/{path}", self.base_url), params).map_err(|e| {
            GraphError::Permanent {
                code: None,
                subcode: None,
                message: format!("bad Graph API URL: {e}"),
            }
        })
    }

    /// Sends `request` with `token` as a bearer token (never in a URL: a URL ends up in error
    /// texts and log lines) and returns the body of a 2xx answer. An answer holding an `error`
    /// member is a failure too, whatever its status.
    pub(crate) async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        token: &Secret,
    ) -> Result<String, GraphError> {
        let response = request
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| GraphError::Unknown(without_url(e)))?;
        if !(200..300).contains(&status) || serde_json::from_str::<ErrorBody>(&body).is_ok() {
            return Err(classify(status, &body, token));
        }
        Ok(body)
    }

    /// `GET /{node}?fields=...` with `token`, its answer parsed as `T` (`what` names it in
    /// errors).
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        token: &Secret,
        node: &str,
        params: &[(&str, &str)],
        what: &str,
    ) -> Result<T, GraphError> {
        let url = self.url(node, params)?;
        let body = self.exchange(self.http.get(url), token).await?;
        serde_json::from_str(&body).map_err(|e| GraphError::Permanent {
            code: None,
            subcode: None,
            message: format!("unexpected {what} answer: {e}"),
        })
    }

    /// POSTs to `/me/messages` and returns the body of a 2xx answer.
    async fn post_messages(
        &self,
        token: &Secret,
        body: &serde_json::Value,
    ) -> Result<String, GraphError> {
        let url = self.url("me/messages", &[])?;
        self.exchange(self.http.post(url).json(body), token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Secret {
        Secret::new("IGQVJ-secret".to_owned())
    }

    #[test]
    fn a_token_meta_quotes_is_taken_out_of_the_error() {
        let body = r#"{"error":{"message":"Invalid OAuth access token IGQVJ-secret (IGQVJ-secret)","code":190}}"#;
        let GraphError::Permanent { message, .. } = classify(400, body, &token()) else {
            panic!("a code 190 is permanent");
        };
        assert_eq!(
            message,
            "Invalid OAuth access token [redacted] ([redacted])"
        );
    }

    #[test]
    fn meta_errors_are_classified() {
        let error = |code: i64, subcode: i64| {
            format!(
                r#"{{"error":{{"message":"m","type":"OAuthException","code":{code},"error_subcode":{subcode},"fbtrace_id":"x"}}}}"#
            )
        };
        for (status, code) in [
            (400, 4),
            (400, 17),
            (400, 32),
            (400, 613),
            (500, 2),
            (400, 1),
        ] {
            assert!(
                matches!(classify(status, &error(code, 0), &token()), GraphError::Transient { code: Some(c), .. } if c == code),
                "{code}"
            );
        }
        for code in [190, 10, 551, 100, 200] {
            assert!(
                matches!(classify(400, &error(code, 2_534_022), &token()), GraphError::Permanent { code: Some(c), subcode: Some(2_534_022), .. } if c == code),
                "{code}"
            );
        }
        assert!(matches!(
            classify(429, "", &token()),
            GraphError::Transient { code: None, .. }
        ));
        assert!(matches!(
            classify(503, "<html>", &token()),
            GraphError::Transient { .. }
        ));
        assert!(matches!(
            classify(404, "not json", &token()),
            GraphError::Permanent { code: None, .. }
        ));
    }
}
