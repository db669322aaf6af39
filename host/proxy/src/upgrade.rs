//! Protocol upgrades (WebSocket and any other `Upgrade`): the handshake is proxied like any
//! request, with `Connection: upgrade` and `Upgrade` kept; when the backend answers 101, the
//! two connections are spliced and bytes are copied both ways until either side closes or the
//! tunnel has been idle for the idle timeout.

use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::UpgradeStats;

/// The protocol a request asks to upgrade to (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| upgrade.clone())
}

/// Puts the upgrade headers back after the hop-by-hop headers were removed.
pub fn restore_headers(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Splices the client's and the backend's upgraded connections in a task of its own.
pub fn splice(client: OnUpgrade, backend: OnUpgrade, idle: Duration, stats: UpgradeStats) {
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        stats.opened.inc();
        stats.active.inc();
        let idled = copy_both_ways(TokioIo::new(client), TokioIo::new(backend), idle).await;
        if idled {
            stats.idle_closed.inc();
        }
        stats.active.dec();
    });
}

/// Copies `a` to `b` and `b` to `a` until both directions are closed (an end of stream is
/// passed on as a write shutdown) or nothing moved for `idle`; true when it ended idle.
async fn copy_both_ways<A, B>(a: A, b: B, idle: Duration) -> bool
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let mut a_buf = vec![0u8; 16 << 10];
    let mut b_buf = vec![0u8; 16 << 10];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                n = a_read.read(&mut a_buf), if a_open => match n {
                    Ok(0) | Err(_) => { a_open = false; let _ = b_write.shutdown().await; true }
                    Ok(n) => b_write.write_all(&a_buf[..n]).await.is_ok(),
                },
                n = b_read.read(&mut b_buf), if b_open => match n {
                    Ok(0) | Err(_) => { b_open = false; let _ = a_write.shutdown().await; true }
                    Ok(n) => a_write.write_all(&b_buf[..n]).await.is_ok(),
                },
            }
        })
        .await;
        match step {
            Ok(true) => {}
            // A write failed: the peer is gone.
            Ok(false) => return false,
            Err(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_upgrade_requests() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(
            requested(&h).is_none(),
            "Upgrade without Connection: upgrade"
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested(&h), Some(HeaderValue::from_static("websocket")));
    }

    #[tokio::test]
    async fn copies_both_ways_and_ends_when_idle() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, mut backend_peer) = tokio::io::duplex(64);
        let splice = tokio::spawn(copy_both_ways(client, backend, Duration::from_millis(200)));
        client_peer.write_all(b"ping").await.ok();
        let mut buf = [0u8; 4];
        backend_peer.read_exact(&mut buf).await.ok();
        assert_eq!(&buf, b"ping");
        backend_peer.write_all(b"pong").await.ok();
        client_peer.read_exact(&mut buf).await.ok();
        assert_eq!(&buf, b"pong");
        let idled = tokio::time::timeout(Duration::from_secs(5), splice).await;
        assert!(matches!(idled, Ok(Ok(true))), "{idled:?}");
    }
}
