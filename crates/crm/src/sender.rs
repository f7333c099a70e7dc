//! [`CrmSender`] over HTTP: signs each attempt at send time and POSTs the stored body.
//!
//! No redirects are followed (a 3xx is an answer like any other, and retried); connect and
//! total timeouts bound every attempt; and unless allowed, addresses on private, loopback
//! and link-local networks are refused, both for IP literals and for whatever a host name
//! resolves to (checked in the resolver, so a name cannot resolve to a safe address for the
//! check and an internal one for the request).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use insta_router_domain::AttemptOutcome;
use insta_router_ports::{CrmRequest, CrmResponse, CrmSender};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};

use crate::{hub_signature, standard_webhooks_signature};

/// How much of a CRM's answer is read.
const MAX_BODY_READ: usize = 2048;

/// How the sender behaves.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Connecting must finish within this.
    pub connect_timeout: Duration,
    /// The whole attempt must finish within this (`CRM_WEBHOOK_TIMEOUT`).
    pub timeout: Duration,
    /// Allow CRM URLs on private, loopback and link-local addresses.
    pub allow_private_networks: bool,
    /// The `User-Agent` header (`CRM_USER_AGENT`); `None`: `insta-router/<version>`.
    pub user_agent: Option<String>,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            allow_private_networks: false,
            user_agent: None,
        }
    }
}

/// Sends deliveries with reqwest.
#[derive(Debug, Clone)]
pub struct HttpCrmSender {
    client: reqwest::Client,
    allow_private_networks: bool,
    clock: fn() -> DateTime<Utc>,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// reqwest refused the configuration.
    #[error("cannot build the CRM HTTP client")]
    Client(#[source] reqwest::Error),
    /// The configured `User-Agent` is not a valid header value.
    #[error("CRM_USER_AGENT {0:?} is not a valid User-Agent (visible ASCII only)")]
    UserAgent(String),
}

impl HttpCrmSender {
    /// A sender with these settings. Installs ring as the TLS provider if none is.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(settings: &SenderSettings) -> Result<Self, BuildError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let agent = match &settings.user_agent {
            Some(agent) => {
                HeaderValue::from_str(agent).map_err(|_| BuildError::UserAgent(agent.clone()))?
            }
            None => HeaderValue::from_static(concat!("insta-router/", env!("CARGO_PKG_VERSION"))),
        };
        headers.insert(USER_AGENT, agent);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .default_headers(headers)
            .pool_idle_timeout(Duration::from_secs(60));
        if !settings.allow_private_networks {
            builder = builder.dns_resolver(PublicOnlyResolver);
        }
        Ok(Self {
            client: builder.build().map_err(BuildError::Client)?,
            allow_private_networks: settings.allow_private_networks,
            clock: Utc::now,
        })
    }

    fn refused(&self, url: &str) -> Option<String> {
        if self.allow_private_networks {
            return None;
        }
        let host = url::Url::parse(url).ok()?.host()?.to_owned();
        let ip = match host {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
                return Some(format!("{name} is a loopback name"));
            }
            url::Host::Domain(_) => return None,
        };
        is_private(ip).then(|| format!("{ip} is a private or loopback address"))
    }
}

/// The answer when `url` may not be called: no request was made.
fn refusal(reason: &str, started: Instant) -> CrmResponse {
    CrmResponse {
        outcome: AttemptOutcome::Refused,
        duration: started.elapsed(),
        body: None,
        error: Some(format!(
            "{reason}; set CRM_ALLOW_PRIVATE_NETWORKS=true to allow it"
        )),
    }
}

/// The answer when no HTTP answer came.
fn failure(err: reqwest::Error, started: Instant) -> CrmResponse {
    let outcome = if err.is_timeout() {
        AttemptOutcome::Timeout
    } else if is_refusal(&err) {
        AttemptOutcome::Refused
    } else {
        AttemptOutcome::Unreachable
    };
    CrmResponse {
        outcome,
        duration: started.elapsed(),
        body: None,
        error: Some(error_chain(&err.without_url())),
    }
}

#[async_trait]
impl CrmSender for HttpCrmSender {
    async fn probe(&self, url: &str) -> CrmResponse {
        let started = Instant::now();
        if let Some(reason) = self.refused(url) {
            return refusal(&reason, started);
        }
        match self.client.head(url).send().await {
            Ok(response) => CrmResponse {
                outcome: AttemptOutcome::Answered {
                    status: response.status().as_u16(),
                    retry_after: None,
                },
                duration: started.elapsed(),
                body: None,
                error: None,
            },
            Err(err) => failure(err, started),
        }
    }

    async fn send(&self, request: CrmRequest) -> CrmResponse {
        let started = Instant::now();
        if let Some(reason) = self.refused(&request.url) {
            return refusal(&reason, started);
        }
        let timestamp = (self.clock)().timestamp();
        let signatures: Vec<String> = request
            .secrets
            .iter()
            .map(|s| {
                standard_webhooks_signature(
                    s.expose(),
                    &request.webhook_id,
                    timestamp,
                    request.body.as_bytes(),
                )
            })
            .collect();
        let mut post = self
            .client
            .post(&request.url)
            .header("webhook-id", &request.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "));
        if let Some(current) = request.secrets.first() {
            post = post.header(
                "X-Hub-Signature-256",
                hub_signature(current.expose(), request.body.as_bytes()),
            );
        }
        let result = post.body(request.body).send().await;
        let response = match result {
            Ok(response) => response,
            Err(err) => return failure(err, started),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, (self.clock)()));
        let (body, error) = match read_start(response).await {
            Ok(body) => (Some(body), None),
            Err(err) if err.is_timeout() => {
                // The status arrived in time; the body did not. The status decides.
                (None, Some(error_chain(&err.without_url())))
            }
            Err(err) => (None, Some(error_chain(&err.without_url()))),
        };
        CrmResponse {
            outcome: AttemptOutcome::Answered {
                status,
                retry_after,
            },
            duration: started.elapsed(),
            body,
            error,
        }
    }
}

/// The first [`MAX_BODY_READ`] bytes of the body, as text.
async fn read_start(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY_READ {
        match response.chunk().await? {
            Some(chunk) => bytes.extend_from_slice(&chunk),
            None => break,
        }
    }
    bytes.truncate(MAX_BODY_READ);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

/// `err` and its causes, without the request's URL (a CRM URL may carry a credential in its
/// query): callers pass `reqwest::Error::without_url()`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn is_refusal(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(inner) = source {
        if inner.is::<PrivateAddress>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// True for addresses a CRM on the public internet never has.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
        }
    }
}

/// Resolves with the system resolver and refuses names that resolve to private addresses.
struct PublicOnlyResolver;

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to a private or loopback address")]
struct PrivateAddress(String);

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.iter().any(|a| is_private(a.ip())) {
                return Err(Box::new(PrivateAddress(host)) as Box<_>);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl std::fmt::Debug for PublicOnlyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicOnlyResolver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn private_literals_are_refused_without_a_request() {
        let sender = HttpCrmSender::new(&SenderSettings::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/crm",
            "http://[::1]:9/crm",
            "http://localhost:9/",
        ] {
            let response = sender
                .send(CrmRequest {
                    url: url.to_owned(),
                    webhook_id: "msg_1".to_owned(),
                    body: "{}".to_owned(),
                    secrets: vec![],
                })
                .await;
            assert_eq!(response.outcome, AttemptOutcome::Refused, "{url}");
            assert!(
                response
                    .error
                    .unwrap()
                    .contains("CRM_ALLOW_PRIVATE_NETWORKS")
            );
        }
    }
}
