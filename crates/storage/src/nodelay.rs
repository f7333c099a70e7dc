//! `TCP_NODELAY` on the PostgreSQL and MySQL connections, until sqlx sets it again.
//!
//! sqlx 0.9.0 opens its TCP connections without `TCP_NODELAY` (launchbadge/sqlx#4335, a
//! regression from #4022; fixed by #4336, merged but not released). A statement that does not
//! fit one TCP segment then waits for the server's delayed ACK before its last segment is
//! sent (Nagle's algorithm): on loopback that held every large batch statement of the
//! webhook path for up to 40 ms, and across a network (segments of about 1.4 kB) it would
//! hold any statement of moderate size. With the option set the PostgreSQL ingest benchmark
//! went from 3,580 to 7,012 events/s.
//!
//! sqlx does not hand out its socket. After it opens a connection, this finds the process's
//! TCP sockets whose peer is the database's port and sets the option through a duplicate of
//! each descriptor (`pidfd_getfd`, Linux 5.6 and later): a duplicate refers to the same
//! socket, so the option holds for sqlx's descriptor too. Where that is refused (an old
//! kernel, a seccomp profile) nothing changes and the reason is logged. Remove this module
//! once sqlx 0.9.1 is out (`cargo update -p sqlx-core`).

use sea_orm::sqlx::pool::PoolOptions;

/// Sets `TCP_NODELAY` on this process's TCP sockets connected to `port` that lack it;
/// returns how many it set.
#[cfg(target_os = "linux")]
pub(crate) fn set_on_sockets_to(port: u16) -> std::io::Result<usize> {
    use rustix::net::{SocketType, getpeername, sockopt};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    let own = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed since it was listed.
        let Ok(socket) = pidfd_getfd(&own, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let peer = getpeername(&socket)
            .ok()
            .flatten()
            .and_then(|addr| std::net::SocketAddr::try_from(addr).ok());
        if peer.is_none_or(|peer| peer.port() != port)
            || sockopt::socket_type(&socket).ok() != Some(SocketType::STREAM)
            || sockopt::tcp_nodelay(&socket)?
        {
            continue;
        }
        sockopt::set_tcp_nodelay(&socket, true)?;
        set += 1;
    }
    Ok(set)
}

/// Elsewhere: nothing (see the module documentation).
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_on_sockets_to(_port: u16) -> std::io::Result<usize> {
    Ok(0)
}

/// `pool` setting `TCP_NODELAY` after each connection it opens to the database at `port`.
pub(crate) fn on_connect<DB: sea_orm::sqlx::Database>(
    pool: PoolOptions<DB>,
    port: u16,
) -> PoolOptions<DB> {
    pool.after_connect(move |_, _| {
        match set_on_sockets_to(port) {
            Ok(n) => tracing::debug!(port, sockets = n, "TCP_NODELAY set on database sockets"),
            Err(e) => tracing::warn!(
                port,
                error = %e,
                "cannot set TCP_NODELAY on the database connection; large statements may wait for delayed ACKs"
            ),
        }
        Box::pin(std::future::ready(Ok(())))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sockets_to_the_port_get_nodelay_and_others_do_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let to_db = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let elsewhere = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_db.nodelay().unwrap());

        let set = set_on_sockets_to(port).unwrap();

        assert_eq!(set, 1);
        assert!(to_db.nodelay().unwrap(), "the socket to the port");
        assert!(!elsewhere.nodelay().unwrap(), "a socket to another port");
        assert_eq!(set_on_sockets_to(port).unwrap(), 0, "already set");
    }
}
