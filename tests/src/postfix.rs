//! A private Postfix instance (Debian's package) in a test's namespace:
//! its own configuration, queue and Maildir in a temporary directory,
//! accepting mail for example.test on port 25. Stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::netns::Netns;

/// The domain the instance delivers for.
pub const DOMAIN: &str = "example.test";

/// A running Postfix instance.
pub struct Postfix {
    dir: tempfile::TempDir,
}

const MASTER_CF: &str = "\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
showq     unix  n       -       n       -       -       showq
";

impl Postfix {
    /// Configures and starts an instance listening in `ns`.
    pub fn start(ns: &Netns) -> anyhow::Result<Self> {
        Self::start_with(ns, "", &[])
    }

    /// As [`Postfix::start`], with `extra` appended to main.cf (`{conf}`
    /// in it stands for the configuration directory) and `files` written
    /// there (name, text): lookup tables such as header_checks.
    pub fn start_with(ns: &Netns, extra: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a directory for Postfix")?;
        let root = dir.path();
        for sub in ["conf", "queue", "data", "mail"] {
            std::fs::create_dir(root.join(sub))?;
        }
        chown(&root.join("data"), "postfix:postfix")?;
        chown(&root.join("mail"), "nobody:nogroup")?;
        let r = root.display();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {r}/queue\n\
             data_directory = {r}/data\n\
             meta_directory = /etc/postfix\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = all\n\
             inet_protocols = all\n\
             myhostname = mail.{DOMAIN}\n\
             mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             virtual_mailbox_domains = {DOMAIN}\n\
             virtual_mailbox_base = {r}/mail\n\
             virtual_mailbox_maps = static:inbox/\n\
             virtual_uid_maps = static:65534\n\
             virtual_gid_maps = static:65534\n\
             smtpd_recipient_restrictions = reject_unauth_destination\n\
             smtputf8_enable = no\n\
             biff = no\n\
             maillog_file = {r}/maillog\n\
             maillog_file_prefixes = {r}\n"
        );
        let conf = root.join("conf");
        let main_cf = format!(
            "{main_cf}{}\n",
            extra.replace("{conf}", &conf.display().to_string())
        );
        std::fs::write(conf.join("main.cf"), main_cf)?;
        for (name, text) in files {
            std::fs::write(conf.join(name), text)?;
        }
        std::fs::write(root.join("conf/master.cf"), MASTER_CF)?;
        let me = Self { dir };
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .args(["postfix", "-c"])
            .arg(me.conf())
            .arg("start")
            .output()
            .context("starting Postfix (`cargo xtask setup` installs it)")?;
        if !out.status.success() {
            bail!(
                "postfix start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                me.log()
            );
        }
        Ok(me)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    /// Messages delivered to the mailbox.
    pub fn delivered(&self) -> usize {
        count_files(&self.dir.path().join("mail/inbox/new"))
    }

    /// Messages in the queue (accepted, not yet delivered or deferred).
    pub fn queued(&self) -> usize {
        ["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .map(|q| count_files(&self.dir.path().join("queue").join(q)))
            .sum()
    }

    /// Waits until `count` messages were delivered, or fails after 10 s.
    pub fn wait_delivered(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.delivered() < count {
            if Instant::now() > deadline {
                bail!(
                    "{} of {count} messages delivered after 10 s:\n{}",
                    self.delivered(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Where Postfix writes its log (`maillog_file`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("maillog")
    }

    /// Postfix's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .output();
    }
}

/// Sends one message with swaks from `src` (inside `ns`) to `server`.
pub fn swaks(ns: &Netns, src: &str, server: &str, timeout_s: u32) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["swaks", "--server", server, "--local-interface", src])
        .args([
            "--from",
            "relay@service.example",
            "--to",
            &format!("user@{DOMAIN}"),
        ])
        .args(["--header", "Subject: mxgate end-to-end test"])
        .args(["--timeout", &format!("{timeout_s}s")])
        .output()
        .expect("running swaks (`cargo xtask setup` installs it)")
}

fn chown(path: &Path, owner: &str) -> anyhow::Result<()> {
    let status = Command::new("chown").arg(owner).arg(path).status()?;
    if !status.success() {
        bail!("chown {owner} {} failed", path.display());
    }
    Ok(())
}

/// Files under `dir`, at any depth (queues hash into subdirectories).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
