//! Signals: the first SIGTERM or SIGINT drains, then stops the server.

use std::sync::Arc;
use std::time::Duration;

use insta_router_app::App;

/// On the first SIGTERM or SIGINT: turns `/ready` to 503, keeps serving for `delay` (or until
/// a second signal), then stops the server gracefully.
pub(crate) async fn drain_on_signal(
    mut signals: Signals,
    app: Arc<App>,
    server: actix_web::dev::ServerHandle,
    delay: Duration,
) {
    signals.next().await;
    app.readiness.drain();
    if !delay.is_zero() {
        tracing::info!(
            delay_s = delay.as_secs_f64(),
            "shutting down: /ready answers 503; still serving until the delay ends (SHUTDOWN_DRAIN_DELAY; a second signal skips it)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = signals.next() => {}
        }
    }
    tracing::info!("shutting down: closing the listener");
    server.stop(true).await;
}

/// SIGTERM and SIGINT.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
