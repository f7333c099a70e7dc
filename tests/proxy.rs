//! A TCP proxy between the server under test and its database that can drop a connection at
//! a chosen moment: after forwarding the client's bytes that complete a sequence of markers
//! (a statement carrying a given message id, then its `COMMIT`), and before any answer comes
//! back. The database then commits, or rolls back, with nobody to tell: the client sees its
//! connection lost in the middle of a commit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// The byte strings still to see, in order; empty when not armed.
    markers: Vec<Vec<u8>>,
    /// Connections dropped so far.
    cuts: usize,
}

/// The proxy; it stops when dropped.
pub struct CuttingProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    ///
    /// # Panics
    ///
    /// When it cannot listen.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, state).await;
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    /// Drops the next connection whose client sends `markers` in this order, right after
    /// forwarding the bytes holding the last of them.
    pub fn cut_after(&self, markers: &[&[u8]]) {
        assert!(markers.iter().all(|m| !m.is_empty()), "empty marker");
        let mut state = self.state.lock().expect("proxy state");
        state.markers = markers.iter().map(|m| m.to_vec()).collect();
    }

    /// How many connections it dropped.
    pub fn cuts(&self) -> usize {
        self.state.lock().expect("proxy state").cuts
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, state: Arc<Mutex<State>>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (cut, mut cut_seen) = watch::channel(false);
    let upstream = async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        // The connection's own progress through the markers, and a tail of what it sent, so
        // that a marker split across reads is still found.
        let mut progress = 0_usize;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if server_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            tail.extend_from_slice(&buffer[..n]);
            let cut_now = {
                let mut state = state.lock().expect("proxy state");
                let mut cut_now = false;
                if state.markers.is_empty() {
                    progress = 0;
                }
                while let Some(marker) = state.markers.get(progress) {
                    let Some(at) = tail
                        .windows(marker.len())
                        .position(|w| w == marker.as_slice())
                    else {
                        break;
                    };
                    // Later markers are looked for in what follows this one.
                    tail.drain(..at + marker.len());
                    progress += 1;
                    if progress == state.markers.len() {
                        state.markers.clear();
                        state.cuts += 1;
                        cut_now = true;
                        break;
                    }
                }
                cut_now
            };
            if cut_now {
                let _ = server_write.flush().await;
                let _ = cut.send(true);
                return;
            }
            if progress == 0 && tail.len() > 4096 {
                tail.drain(..tail.len() - 4096);
            }
        }
        let _ = cut.send(true);
    };
    let downstream = async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            tokio::select! {
                _ = cut_seen.changed() => break,
                read = server_read.read(&mut buffer) => {
                    let n = match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if *cut_seen.borrow() || client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(upstream, downstream);
}
