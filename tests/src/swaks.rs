//! One SMTP session with swaks from a given source address inside a
//! test's namespace: the sender, recipient, subject and where to stop are
//! the test's.

use std::process::{Command, Output};

use crate::netns::Netns;

/// What a session sends.
#[derive(Clone, Copy, Debug)]
pub struct Mail<'a> {
    /// MAIL FROM.
    pub from: &'a str,
    /// RCPT TO.
    pub to: &'a str,
    /// The Subject header.
    pub subject: &'a str,
    /// Stop after this SMTP step (`RCPT`: a client that never sends the
    /// message), if any.
    pub quit_after: Option<&'a str>,
}

impl Default for Mail<'_> {
    fn default() -> Self {
        Self {
            from: "relay@service.example",
            to: "user@example.test",
            subject: "mxgate audit test",
            quit_after: None,
        }
    }
}

/// Runs the session from `src` (an address in `ns`) to `server`.
pub fn send(ns: &Netns, src: &str, server: &str, mail: &Mail<'_>) -> Output {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", ns.path().display()))
        .args(["swaks", "--server", server, "--local-interface", src])
        .args(["--from", mail.from, "--to", mail.to])
        .args(["--header", &format!("Subject: {}", mail.subject)])
        .args(["--timeout", "10s"]);
    if let Some(step) = mail.quit_after {
        cmd.args(["--quit-after", step]);
    }
    cmd.output()
        .expect("running swaks (`cargo xtask setup` installs it)")
}
