//! `insta-router simulate`: a signed webhook, as Meta would send it, to a running server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;

use crate::Settings;

/// What to send, and where.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The text of the customer's message.
    #[arg(conflicts_with = "fixture")]
    text: Option<String>,
    /// Send this file's notification verbatim instead (e.g. tests/fixtures/webhook/batch.json).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// The server's base URL (default: http://127.0.0.1:PORT).
    #[arg(long)]
    url: Option<String>,
    /// The business account that receives the message (default: INSTAGRAM_BUSINESS_ACCOUNT_ID,
    /// else 17841400000000001).
    #[arg(long)]
    account: Option<String>,
    /// The customer who sends it.
    #[arg(long, default_value = "1234567890123456")]
    sender: String,
    /// How many seconds to wait for a server that is still starting (0: do not wait).
    #[arg(long, default_value_t = 30)]
    wait: u64,
}

/// Builds, signs and sends the webhook; prints the server's answer.
///
/// # Errors
///
/// When no app secret is configured, the file cannot be read, the server cannot be reached,
/// or it does not answer 2xx.
#[allow(clippy::print_stdout)]
pub async fn run(args: SimulateArgs, settings: &Settings) -> anyhow::Result<()> {
    let Some(secret) = settings.app_secrets().first().map(|s| (*s).to_owned()) else {
        bail!(
            "set INSTAGRAM_APP_SECRET (or FACEBOOK_APP_SECRET) to the server's value, e.g. in .env: simulate signs with it"
        );
    };
    let body = match &args.fixture {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => notification(&args, settings).to_string().into_bytes(),
    };
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.http.port));
    let base = base.trim_end_matches('/');
    let url = format!("{base}/webhooks/instagram");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .build()
        .context("cannot build an HTTP client")?;
    wait_for_server(&client, base, Duration::from_secs(args.wait)).await?;
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            insta_router_instagram::sign_body(&secret, &body),
        )
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is the server running?"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {url} -> {status}\n{text}");
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

/// Waits up to `limit` for `base` to accept connections (`cargo run` may still be building or
/// starting it), saying so once on stderr.
#[allow(clippy::print_stderr)]
async fn wait_for_server(
    client: &reqwest::Client,
    base: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut said = false;
    loop {
        match client.get(format!("{base}/health")).send().await {
            // Any answer: it listens (a 503 means its database is not ready; the webhook
            // itself says what happens then).
            Ok(_) => return Ok(()),
            Err(err) if err.is_connect() && Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "waiting for the server at {base} to start (up to {} s)...",
                        limit.as_secs()
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => {
                let waited = if limit.is_zero() {
                    String::new()
                } else {
                    format!(" after {} s", limit.as_secs())
                };
                return Err(anyhow::Error::new(err.without_url())).context(format!(
                    "cannot reach {base}{waited}; is the server running (`insta-router serve`), \
                     and on this port (PORT, or --url)?"
                ));
            }
        }
    }
}

fn notification(args: &SimulateArgs, settings: &Settings) -> serde_json::Value {
    let account = args.account.clone().unwrap_or_else(|| {
        if settings.meta.instagram_business_account_id.is_empty() {
            "17841400000000001".to_owned()
        } else {
            settings.meta.instagram_business_account_id.clone()
        }
    });
    let now = Utc::now().timestamp_millis();
    let mid = format!("mid.simulated.{:032x}", uuid::Uuid::now_v7().as_u128());
    let text = args
        .text
        .clone()
        .unwrap_or_else(|| "Hello from insta-router simulate".to_owned());
    serde_json::json!({
        "object": "instagram",
        "entry": [{
            "id": account,
            "time": now,
            "messaging": [{
                "sender": {"id": args.sender},
                "recipient": {"id": account},
                "timestamp": now,
                "message": {"mid": mid, "text": text},
            }],
        }],
    })
}
