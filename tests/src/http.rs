//! A minimal HTTP/1.1 client for the metrics tests, run inside a
//! namespace: enough to fetch `/metrics` from `mxgate run` and to query
//! Prometheus' HTTP API, nothing more.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// An answer: the status code and the body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Sends `request` (a whole request head, with any body) to `addr` from
/// inside `ns` and reads the answer until the server closes.
pub fn exchange(ns: &Netns, addr: SocketAddr, request: &[u8]) -> anyhow::Result<Answer> {
    ns.run(|| -> anyhow::Result<Answer> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.write_all(request)?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .with_context(|| format!("reading the answer of {addr}"))?;
        parse(&raw)
    })?
}

/// `GET path` from `addr`, inside `ns`.
pub fn get(ns: &Netns, addr: SocketAddr, path: &str) -> anyhow::Result<Answer> {
    exchange(
        ns,
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Polls `GET path` until `check` returns `Some`, for at most `within`.
pub fn poll<T>(
    ns: &Netns,
    addr: SocketAddr,
    path: &str,
    within: Duration,
    mut check: impl FnMut(&Answer) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let last = match get(ns, addr, path) {
            Ok(answer) => {
                if let Some(found) = check(&answer) {
                    return Ok(found);
                }
                format!("{} {}", answer.status, answer.body)
            }
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{path} on {addr} did not answer as expected within {within:?}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("an HTTP answer without the end of its head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Answer { status, body })
}

fn unchunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("a cut chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).context("a chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("a short chunk")?);
        body = rest.get(size + 2..).context("a chunk without its end")?;
    }
}

/// The value of the sample `series` (name and labels exactly as written)
/// in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
