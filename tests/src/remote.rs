//! Local stand-ins for where services publish their ranges, inside a test's
//! namespace: a DNS server (dnsmasq, authoritative for `svc.test`), DNS
//! servers that fail (SERVFAIL) or never answer, an HTTPS server with a
//! certificate from a test CA, and a plain-HTTP server that counts what
//! reaches it (the target of a downgrade).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// dnsmasq serving `records` (its `--txt-record=`, `--host-record=`,
/// `--mx-host=` options) on 127.0.0.1:53 of `ns`, authoritative for
/// svc.test (unknown names there get NXDOMAIN). Killed on drop.
pub struct Dns {
    child: Child,
}

impl Dns {
    /// Starts dnsmasq and waits until it answers.
    pub fn start(ns: &Netns, records: &[String]) -> anyhow::Result<Self> {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args([
                "dnsmasq",
                "--keep-in-foreground",
                "--port=53",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--local=/svc.test/",
                "--user=root",
                "--pid-file=",
            ])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (`cargo xtask setup` installs it)")?;
        let dns = Self { child };
        // Ready once a query for a name it serves gets an answer.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ns.run(|| answers("127.0.0.1:53".parse().expect("an address")))? {
            if Instant::now() > deadline {
                bail!("dnsmasq did not answer within 10 s");
            }
        }
        Ok(dns)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when a DNS server at `server` answers a query (for svc.test SOA).
fn answers(server: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let query = query_bytes("svc.test", 6);
    if socket.send_to(&query, server).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    socket.recv_from(&mut buf).is_ok()
}

fn query_bytes(name: &str, kind: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(kind.to_be_bytes());
    q.extend(1u16.to_be_bytes());
    q
}

/// A DNS server in `ns` that answers every query with SERVFAIL, or (with
/// `silent`) never answers. Runs until the process ends.
pub fn broken_dns(ns: &Netns, silent: bool) -> anyhow::Result<SocketAddr> {
    let socket = ns.run(|| UdpSocket::bind("127.0.0.1:0"))??;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if silent || n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // a response
            reply[3] = (reply[3] & 0xf0) | 2; // SERVFAIL
            let _ = socket.send_to(&reply, from);
        }
    });
    Ok(addr)
}

/// What the HTTPS server answers for a path.
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status, empty body.
    Status(u16),
    /// Nothing, until the client gives up.
    Hang,
    /// 200 with this body but no Content-Length, then the connection is
    /// closed without TLS close_notify: a download cut short, as the
    /// client sees one.
    Unframed(Vec<u8>),
    /// 200 claiming a Content-Length of `claimed`, sending only `body`,
    /// then closing without close_notify.
    CutShort {
        /// What is sent.
        body: Vec<u8>,
        /// The length the header claims.
        claimed: usize,
    },
    /// `302 Found` to `location`, empty body.
    Redirect(String),
    /// `head` as the status line and headers (without the blank line that
    /// ends them), then `body`, then close_notify: a framing of the test's
    /// choosing.
    Raw {
        /// Status line and header lines, each ending in CRLF.
        head: String,
        /// The body, sent as it is.
        body: Vec<u8>,
    },
}

/// An HTTPS server on 127.0.0.1 in `ns`, certified by a fresh test CA.
pub struct Https {
    /// Its address.
    pub addr: SocketAddr,
    /// The test CA's certificate (PEM), for `--https-ca`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Https {
    /// Starts serving `route(path)` for each request.
    pub fn start(
        ns: &Netns,
        route: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mxgate test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?
            .signed_by(&key, &ca, &ca_key)?;
        let dir = tempfile::tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem())?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )?;
        let config = Arc::new(config);
        let listener = ns.run(|| TcpListener::bind("127.0.0.1:0"))??;
        let addr = listener.local_addr()?;
        let route = Arc::new(route);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (config, route) = (Arc::clone(&config), Arc::clone(&route));
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    let _ = serve(&mut tls, &*route);
                });
            }
        });
        Ok(Self {
            addr,
            ca_file,
            _dir: dir,
        })
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

fn serve(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    route: &dyn Fn(&str) -> Reply,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *tls);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let (status, body) = match route(&path) {
        Reply::Body(body) => (200, body),
        Reply::Status(code) => (code, Vec::new()),
        Reply::Redirect(location) => {
            write!(
                tls,
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )?;
            tls.conn.send_close_notify();
            return tls.flush();
        }
        Reply::Raw { head, body } => {
            write!(tls, "{head}\r\n")?;
            tls.write_all(&body)?;
            tls.conn.send_close_notify();
            return tls.flush();
        }
        Reply::Hang => {
            // Hold the connection open until the client closes it.
            let mut rest = String::new();
            while reader.read_line(&mut rest)? > 0 {}
            return Ok(());
        }
        Reply::Unframed(body) => {
            write!(
                tls,
                "HTTP/1.1 200 X\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n"
            )?;
            tls.write_all(&body)?;
            tls.flush()?;
            // No close_notify: the TCP connection just ends.
            return tls.sock.shutdown(std::net::Shutdown::Both);
        }
        Reply::CutShort { body, claimed } => {
            write!(
                tls,
                "HTTP/1.1 200 X\r\ncontent-type: text/plain\r\ncontent-length: {claimed}\r\n\r\n"
            )?;
            tls.write_all(&body)?;
            tls.flush()?;
            return tls.sock.shutdown(std::net::Shutdown::Both);
        }
    };
    write!(
        tls,
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    tls.write_all(&body)?;
    tls.conn.send_close_notify();
    tls.flush()
}

/// A plain-HTTP (no TLS) server on 127.0.0.1 in `ns` that answers every
/// request with `body` and counts the requests that reached it: the
/// `http://` end of a downgrade, which must never be asked.
pub struct PlainHttp {
    /// Its address.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl PlainHttp {
    /// Starts serving `body`.
    pub fn start(ns: &Netns, body: &'static [u8]) -> anyhow::Result<Self> {
        let listener = ns.run(|| TcpListener::bind("127.0.0.1:0"))??;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Ok(Self { addr, hits })
    }

    /// The `http://` URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// How many connections reached it.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
