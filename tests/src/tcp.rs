//! Real TCP: an SMTP-like listener in the mail-server namespace and
//! connects from chosen source addresses in the internet namespace.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};

use crate::netns::Netns;

/// The greeting the test server sends.
pub const BANNER: &str = "220 mail.example.com ESMTP ready\r\n";

/// A listener on `[::]` (IPv4 too) for each port, greeting and closing
/// every connection. Stops on drop.
pub struct Server {
    listeners: Vec<TcpListener>,
    threads: Vec<JoinHandle<()>>,
    accepted: Arc<AtomicUsize>,
}

impl Server {
    /// Starts listening in `ns` on `ports`.
    pub fn start(ns: &Netns, ports: &[u16]) -> anyhow::Result<Self> {
        let listeners = ns.run(|| -> anyhow::Result<Vec<TcpListener>> {
            ports
                .iter()
                .map(|port| {
                    let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
                    socket.set_only_v6(false)?;
                    socket.set_reuse_address(true)?;
                    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, *port)).into())?;
                    socket.listen(128)?;
                    Ok(TcpListener::from(socket))
                })
                .collect::<io::Result<_>>()
                .context("listening")
        })??;
        let accepted = Arc::new(AtomicUsize::new(0));
        let threads = listeners
            .iter()
            .map(|l| {
                let listener = l.try_clone().expect("cloning a listener");
                let accepted = Arc::clone(&accepted);
                std::thread::spawn(move || {
                    // Ends when drop shuts the listener down.
                    while let Ok((mut conn, _)) = listener.accept() {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.write_all(BANNER.as_bytes());
                    }
                })
            })
            .collect();
        Ok(Self {
            listeners,
            threads,
            accepted,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for l in &self.listeners {
            // SAFETY: shutdown on a socket we own; it wakes the blocked accept.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects from `src` to `dst` inside `ns` and reads the greeting. A SYN
/// that mxgate drops makes this fail with `TimedOut` after `timeout`; with
/// a timeout under Linux's initial retransmission timeout (1 s) exactly
/// one SYN is sent.
pub fn connect(ns: &Netns, src: IpAddr, dst: SocketAddr, timeout: Duration) -> io::Result<String> {
    ns.run(|| {
        let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(src, 0).into())?;
        socket.connect_timeout(&dst.into(), timeout)?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut stream = std::net::TcpStream::from(socket);
        let mut banner = vec![0; BANNER.len()];
        stream.read_exact(&mut banner)?;
        Ok(String::from_utf8_lossy(&banner).into_owned())
    })
    .map_err(|e| io::Error::other(format!("{e:#}")))?
}

/// How long a denied connect waits: long enough for any answer on a veth
/// link, short enough that only one SYN goes out.
pub const DENIED_TIMEOUT: Duration = Duration::from_millis(400);
/// How long an allowed connect may take.
pub const ALLOWED_TIMEOUT: Duration = Duration::from_secs(5);
