//! `run --metrics-listen`: serves the metrics at `GET /metrics` over
//! HTTP/1.x, and nothing else.
//!
//! The endpoint is an attack surface on a server under attack, so it does
//! as little as it can: it serves the text `run` rendered last (a request
//! never reads a map or waits for `run`'s loop), reads at most
//! [`MAX_REQUEST_BYTES`] of a request head within [`READ_TIMEOUT`], keeps
//! at most [`MAX_CONNECTIONS`] connections (more are closed at once), and
//! answers 404 to anything but `GET /metrics` (or `HEAD`). A slow or
//! oversized client costs one of those connections for a few seconds at
//! most, never the filter or `run`'s log.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// Connections served at once; a Prometheus server or two need one each.
pub const MAX_CONNECTIONS: usize = 4;
/// Longest request head read (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The text served, replaced whole by `run` after each reading.
#[derive(Clone, Default)]
pub struct Published(Arc<Mutex<Arc<String>>>);

impl Published {
    /// Serves `text` from now on.
    pub fn set(&self, text: String) {
        let text = Arc::new(text);
        match self.0.lock() {
            Ok(mut guard) => *guard = text,
            // A panic while holding the lock left a whole value: replace it.
            Err(poisoned) => *poisoned.into_inner() = text,
        }
    }

    fn get(&self) -> Arc<String> {
        match self.0.lock() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// Binds `addr`; the error names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (--metrics-listen)"))
}

/// Accepts connections on `listener` until the task is dropped, serving
/// `published`.
pub async fn serve(listener: TcpListener, published: Published) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors or the like: wait a moment rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        let active = Arc::clone(&active);
        let published = published.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &published).await;
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics`: the text.
    Metrics,
    /// `HEAD /metrics`: its headers only.
    Head,
    /// Anything else.
    NotFound,
}

/// Reads one request head and answers it, then closes the connection.
async fn answer(mut stream: TcpStream, published: &Published) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        // Too slow, too long, cut off: no answer.
        _ => return Ok(()),
    };
    let asked = parse(&head);
    let response = match asked {
        Asked::Metrics | Asked::Head => {
            let body = published.get();
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if asked == Asked::Metrics {
                r.extend_from_slice(body.as_bytes());
            }
            r
        }
        Asked::NotFound => b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\
              Content-Length: 29\r\nConnection: close\r\n\r\nonly GET /metrics is served\r\n"
            .to_vec(),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}

/// The request head (up to the empty line), `None` when the client closed
/// first or sent more than [`MAX_REQUEST_BYTES`] without ending it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

/// What the request line of `head` asks for.
fn parse(head: &[u8]) -> Asked {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Asked::NotFound;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::NotFound;
    }
    // Prometheus sends no query; one is ignored, as servers do.
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Asked::Metrics,
        ("HEAD", "/metrics") => Asked::Head,
        _ => Asked::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics
        );
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Asked::Metrics);
        assert_eq!(parse(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Asked::Head);
        for head in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics/../etc HTTP/1.1\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert_eq!(parse(head), Asked::NotFound, "{head:?}");
        }
    }

    #[test]
    fn the_published_text_is_replaced_whole() {
        let p = Published::default();
        assert_eq!(*p.get(), "");
        p.set("a 1\n".into());
        assert_eq!(*p.get(), "a 1\n");
    }
}
