//! `cargo xtask deb`: target/debian/mxgate_VERSION_amd64.deb, assembled by
//! hand with dpkg-deb from dist/ and packaging/debian/, then checked with
//! lintian; and its test: installed with `dpkg -i` into a clean Debian 12
//! root made by debootstrap.
//!
//! dpkg-deb rather than cargo-deb: the package's contents are exactly the
//! files of dist/ and one control file, which a short staging step states
//! plainly, and dpkg-deb comes with every Debian system (cargo-deb would be
//! another tool to build, configured in filter-user's manifest).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::shell::{self, as_root, command, root, run};

/// Where the packaged binary lives, and what the unit and cron file name.
const SBIN: &str = "/usr/sbin/mxgate";
/// The path dist/ names for a hand install.
const DIST_SBIN: &str = "/usr/local/sbin/mxgate";
/// The Debian release the install test uses.
const TEST_SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";

fn out_dir() -> PathBuf {
    root().join("target/debian")
}

/// The workspace version (filter-user's).
fn version() -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))?;
    let parsed: toml::Table = toml::from_str(&manifest).context("parsing Cargo.toml")?;
    parsed
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("Cargo.toml has no workspace.package.version")
}

/// Copies `from` to `to` with `mode`, creating directories.
fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Writes `text` to `to` with `mode`.
fn write(to: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// gzip -9n `path` in place (man pages, changelog).
fn gzip(path: &Path) -> anyhow::Result<()> {
    run(command(
        "gzip",
        &[std::ffi::OsStr::new("-9n"), path.as_os_str()],
    ))
}

/// Builds the package and runs lintian on it; returns its path.
pub fn build() -> anyhow::Result<PathBuf> {
    let version = version()?;
    let binary = shell::build_release()?;
    let dist = root().join("dist");
    let pkg = root().join("packaging/debian");
    let stage = out_dir().join("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(&stage)?;
    let s = |p: &str| stage.join(p.trim_start_matches('/'));

    install(&binary, &s(SBIN), 0o755)?;
    run(command(
        "strip",
        &[
            std::ffi::OsStr::new("--strip-unneeded"),
            s(SBIN).as_os_str(),
        ],
    ))?;
    let packaged = |file: &str| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(dist.join(file))
            .with_context(|| format!("reading dist/{file}"))?;
        Ok(text.replace(DIST_SBIN, SBIN))
    };
    write(
        &s("/lib/systemd/system/mxgate.service"),
        &packaged("mxgate.service")?,
        0o644,
    )?;
    write(
        &s("/etc/default/mxgate"),
        &packaged("mxgate.default")?,
        0o644,
    )?;
    write(&s("/etc/cron.d/mxgate"), &packaged("mxgate.cron")?, 0o644)?;
    for entry in std::fs::read_dir(dist.join("man"))? {
        let from = entry?.path();
        let name = from.file_name().context("a man page name")?;
        let to = s("/usr/share/man/man1").join(name);
        install(&from, &to, 0o644)?;
        gzip(&to)?;
    }
    let completions = dist.join("completions");
    install(
        &completions.join("mxgate.bash"),
        &s("/usr/share/bash-completion/completions/mxgate"),
        0o644,
    )?;
    install(
        &completions.join("_mxgate"),
        &s("/usr/share/zsh/vendor-completions/_mxgate"),
        0o644,
    )?;
    install(
        &completions.join("mxgate.fish"),
        &s("/usr/share/fish/vendor_completions.d/mxgate.fish"),
        0o644,
    )?;
    install(
        &pkg.join("lintian-overrides"),
        &s("/usr/share/lintian/overrides/mxgate"),
        0o644,
    )?;
    let cache = s("/var/lib/mxgate");
    std::fs::create_dir_all(&cache)?;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700))?;
    install(
        &pkg.join("copyright"),
        &s("/usr/share/doc/mxgate/copyright"),
        0o644,
    )?;
    let changelog = std::fs::read_to_string(pkg.join("changelog"))?
        .replace("@VERSION@", &version)
        .replace("@DATE@", &rfc2822_now()?);
    // A native package (no Debian revision): changelog.gz.
    let changelog_path = s("/usr/share/doc/mxgate/changelog");
    write(&changelog_path, &changelog, 0o644)?;
    gzip(&changelog_path)?;

    // Control files.
    let depends = shlib_depends(&s(SBIN))?;
    let size_kib = installed_size(&stage)?;
    let control = std::fs::read_to_string(pkg.join("control.in"))?
        .replace("@VERSION@", &version)
        .replace("@INSTALLED_SIZE@", &size_kib.to_string())
        .replace("@DEPENDS@", &depends);
    write(&s("DEBIAN/control"), &control, 0o644)?;
    write(
        &s("DEBIAN/conffiles"),
        "/etc/cron.d/mxgate\n/etc/default/mxgate\n",
        0o644,
    )?;
    let mut sums = shell::stdout({
        let mut find = command::<&str>("sh", &[]);
        find.args([
            "-c",
            "find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\\0' \
             | LC_ALL=C sort -z | xargs -0 md5sum",
        ])
        .current_dir(&stage);
        find
    })?;
    if sums.is_empty() {
        sums.push('\n');
    }
    write(&s("DEBIAN/md5sums"), &sums, 0o644)?;

    let deb = out_dir().join(format!("mxgate_{version}_amd64.deb"));
    run(command(
        "dpkg-deb",
        &[
            std::ffi::OsStr::new("--build"),
            std::ffi::OsStr::new("--root-owner-group"),
            stage.as_os_str(),
            deb.as_os_str(),
        ],
    ))?;
    lintian(&deb)?;
    eprintln!("deb: built {}", deb.display());
    Ok(deb)
}

/// Runs lintian; fails on any error (E:) tag, prints the rest.
fn lintian(deb: &Path) -> anyhow::Result<()> {
    let mut cmd = command(
        "lintian",
        &[
            std::ffi::OsStr::new("--display-info"),
            std::ffi::OsStr::new("--fail-on"),
            std::ffi::OsStr::new("error"),
            deb.as_os_str(),
        ],
    );
    cmd.env("LC_ALL", "C.UTF-8");
    run(cmd).context("lintian reports errors in the package")
}

/// The Depends line for `binary`'s shared libraries, from dpkg-shlibdeps.
fn shlib_depends(binary: &Path) -> anyhow::Result<String> {
    // dpkg-shlibdeps wants a source tree: give it a minimal one.
    let tree = out_dir().join("shlibdeps");
    write(
        &tree.join("debian/control"),
        "Source: mxgate\n\nPackage: mxgate\nArchitecture: amd64\n",
        0o644,
    )?;
    let mut cmd = command(
        "dpkg-shlibdeps",
        &[std::ffi::OsString::from("-O"), {
            let mut e = std::ffi::OsString::from("-e");
            e.push(binary.as_os_str());
            e
        }],
    );
    cmd.current_dir(&tree);
    let out = shell::stdout(cmd)?;
    let depends = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?;
    Ok(depends.trim().to_owned())
}

/// Installed-Size: the staged files, in KiB.
fn installed_size(stage: &Path) -> anyhow::Result<u64> {
    let out = shell::stdout(command(
        "du",
        &[
            std::ffi::OsStr::new("-sk"),
            std::ffi::OsStr::new("--exclude=DEBIAN"),
            stage.as_os_str(),
        ],
    ))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")
}

fn rfc2822_now() -> anyhow::Result<String> {
    Ok(shell::stdout(command("date", &["-uR"]))?.trim().to_owned())
}

/// A pristine Debian 12 root (debootstrap, once; kept as a tarball), unpacked
/// fresh into `dir`.
fn clean_root(dir: &Path) -> anyhow::Result<()> {
    let tarball = out_dir().join(format!("{TEST_SUITE}-root.tar"));
    if !tarball.exists() {
        let build = out_dir().join(format!("{TEST_SUITE}-debootstrap"));
        if build.exists() {
            run(as_root(command(
                "rm",
                &[std::ffi::OsStr::new("-rf"), build.as_os_str()],
            )))?;
        }
        // systemd for `systemd-analyze verify`, man-db for the unit's
        // Documentation= pages.
        quiet(as_root(command(
            "debootstrap",
            &[
                std::ffi::OsStr::new("--variant=minbase"),
                std::ffi::OsStr::new("--include=systemd,man-db"),
                std::ffi::OsStr::new(TEST_SUITE),
                build.as_os_str(),
                std::ffi::OsStr::new(MIRROR),
            ],
        )))
        .context("making a Debian 12 root with debootstrap")?;
        let partial = tarball.with_extension("tar.partial");
        run(as_root(command(
            "tar",
            &[
                std::ffi::OsStr::new("-C"),
                build.as_os_str(),
                std::ffi::OsStr::new("-cf"),
                partial.as_os_str(),
                std::ffi::OsStr::new("."),
            ],
        )))?;
        std::fs::rename(&partial, &tarball)?;
        run(as_root(command(
            "rm",
            &[std::ffi::OsStr::new("-rf"), build.as_os_str()],
        )))?;
    }
    if dir.exists() {
        run(as_root(command(
            "rm",
            &[std::ffi::OsStr::new("-rf"), dir.as_os_str()],
        )))?;
    }
    std::fs::create_dir_all(dir)?;
    run(as_root(command(
        "tar",
        &[
            std::ffi::OsStr::new("-C"),
            dir.as_os_str(),
            std::ffi::OsStr::new("-xf"),
            tarball.as_os_str(),
        ],
    )))
}

/// Runs `cmd` with its output in target/debian/debootstrap.log, shown only
/// if it fails.
fn quiet(mut cmd: std::process::Command) -> anyhow::Result<()> {
    eprintln!(
        "==> {} (output in target/debian/debootstrap.log)",
        shell::describe(&cmd)
    );
    let log = out_dir().join("debootstrap.log");
    let file = std::fs::File::create(&log)?;
    let status = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("starting {}", shell::describe(&cmd)))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{} failed ({status}); last lines of {}:\n{}",
            shell::describe(&cmd),
            log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(())
}

/// Runs `args` in the chroot `dir` and returns its stdout.
fn in_root(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec![dir.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let mut cmd = command("chroot", &all);
    cmd.env("LC_ALL", "C.UTF-8")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    shell::stdout(as_root(cmd))
}

/// The package's test: build it (lintian clean), install it with `dpkg -i`
/// into a clean Debian 12 root, check what it installed, and print
/// `systemd-analyze security`'s score of the installed unit.
pub fn test() -> anyhow::Result<PathBuf> {
    let deb = build()?;
    let dir = out_dir().join("install-test");
    clean_root(&dir)?;
    let name = deb.file_name().context("a file name")?;
    std::fs::copy(&deb, dir.join("tmp").join(name))?;
    let inside = format!("/tmp/{}", name.to_string_lossy());
    in_root(&dir, &["dpkg", "-i", &inside]).context("dpkg -i in a clean Debian 12 root")?;
    let mut problems = Vec::new();
    let listed = in_root(&dir, &["dpkg", "-L", "mxgate"])?;
    for path in [
        SBIN,
        "/lib/systemd/system/mxgate.service",
        "/etc/default/mxgate",
        "/etc/cron.d/mxgate",
        "/usr/share/man/man1/mxgate.1.gz",
        "/usr/share/man/man1/mxgate-refresh.1.gz",
        "/usr/share/bash-completion/completions/mxgate",
        "/usr/share/zsh/vendor-completions/_mxgate",
        "/usr/share/fish/vendor_completions.d/mxgate.fish",
        "/var/lib/mxgate",
    ] {
        if !listed.lines().any(|l| l == path) {
            problems.push(format!("dpkg -L mxgate does not list {path}"));
        }
    }
    let conffiles = in_root(&dir, &["dpkg-query", "-W", "-f=${Conffiles}", "mxgate"])?;
    for conffile in ["/etc/default/mxgate", "/etc/cron.d/mxgate"] {
        if !conffiles.contains(conffile) {
            problems.push(format!("{conffile} is not a conffile: {conffiles}"));
        }
    }
    let mode = in_root(&dir, &["stat", "-c", "%a %U", "/var/lib/mxgate"])?;
    if mode.trim() != "700 root" {
        problems.push(format!("/var/lib/mxgate is {}, not 700 root", mode.trim()));
    }
    let cron = in_root(&dir, &["cat", "/etc/cron.d/mxgate"])?;
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    if !active.is_empty() {
        problems.push(format!(
            "the cron file runs something before the admin names a source: {active:?}"
        ));
    }
    let version = in_root(&dir, &[SBIN, "--version"])?;
    if !version.starts_with("mxgate ") {
        problems.push(format!("mxgate --version printed {version:?}"));
    }
    let verify = in_root(
        &dir,
        &[
            "systemd-analyze",
            "verify",
            "/lib/systemd/system/mxgate.service",
        ],
    );
    if let Err(e) = verify {
        problems.push(format!("systemd-analyze verify: {e:#}"));
    }
    // systemd is not running in the chroot: score the unit file offline.
    let security = in_root(
        &dir,
        &[
            "systemd-analyze",
            "security",
            "--offline=yes",
            "/lib/systemd/system/mxgate.service",
        ],
    )?;
    let score = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .map(|l| l.trim_start_matches('→').trim().to_owned())
        .unwrap_or_else(|| "no score".to_owned());
    run(as_root(command(
        "rm",
        &[std::ffi::OsStr::new("-rf"), dir.as_os_str()],
    )))?;
    if !problems.is_empty() {
        bail!("the Debian package:\n  {}", problems.join("\n  "));
    }
    println!(
        "deb: {} installs into a clean Debian 12 root; {}; files, conffiles, \
         /var/lib/mxgate 0700 and systemd-analyze verify ok; systemd-analyze \
         security: {score}",
        name.to_string_lossy(),
        version.trim()
    );
    Ok(deb)
}
