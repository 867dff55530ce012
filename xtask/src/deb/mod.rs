//! `cargo xtask deb`: target/debian/mxgate_VERSION_amd64.deb, assembled by
//! hand with dpkg-deb from dist/ and packaging/debian/, then checked with
//! lintian; and its test (`--test`, run by `cargo xtask test`): installed
//! with `dpkg -i` into a clean Debian 12 root ([`root`]) booted under
//! systemd-nspawn ([`container`]), where systemd runs the unit
//! ([`install_test`]).
//!
//! dpkg-deb rather than cargo-deb: the package's contents are exactly the
//! files of dist/ and one control file, which a short staging step states
//! plainly, and dpkg-deb comes with every Debian system (cargo-deb would be
//! another tool to build, configured in filter-user's manifest).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

mod container;
mod install_test;
mod root;

use crate::{
    shell::{self, as_root, command, root, run},
    timing::Timings,
};

/// Where the packaged binary lives, and what the unit and cron file name.
const SBIN: &str = "/usr/sbin/mxgate";
/// The path dist/ names for a hand install.
const DIST_SBIN: &str = "/usr/local/sbin/mxgate";

/// target/debian: the package, its staging tree, the test's root.
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
    // The alert rules (with their unit tests) and the dashboard, for the
    // admin to copy into Prometheus and Grafana (README: "Watching it").
    for file in [
        "prometheus/mxgate-alerts.yml",
        "prometheus/mxgate-alerts.test.yml",
        "grafana/mxgate.json",
    ] {
        install(
            &dist.join(file),
            &s("/usr/share/doc/mxgate/examples").join(file),
            0o644,
        )?;
    }
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

/// The package's test: build it (lintian clean), unpack a clean Debian 12
/// root, and there, booted under systemd-nspawn, install it and check it
/// and its unit under systemd ([`install_test`]). The boot needs root: when
/// xtask is not root, that part runs as `sudo -E xtask package-boot-test`.
pub fn test(t: &mut Timings) -> anyhow::Result<PathBuf> {
    let deb = t.phase("build the package (release build, lintian)", |_| build())?;
    let dir = out_dir().join("install-test");
    t.phase(
        "a clean Debian 12 root (debootstrap on the first run)",
        |_| root::clean(&dir),
    )?;
    let name = deb.file_name().context("a file name")?.to_string_lossy();
    let inside = format!("/var/tmp/{name}");
    run(as_root(command(
        "cp",
        &[
            deb.as_os_str(),
            dir.join(inside.trim_start_matches('/')).as_os_str(),
        ],
    )))?;
    let result = if shell::is_root() {
        install_test::run(&dir, &inside, t)
    } else {
        t.phase("boot it and test the unit (as root)", |_| {
            let exe = std::env::current_exe().context("finding xtask's own executable")?;
            let mut cmd = std::process::Command::new(exe);
            cmd.arg("package-boot-test")
                .arg(&dir)
                .arg(&inside)
                .current_dir(root());
            shell::stdout(as_root(cmd)).map(|out| out.trim().to_owned())
        })
    };
    root::remove(&dir)?;
    let summary = result.context("the Debian package under systemd")?;
    println!("deb: {name}: {summary}");
    Ok(deb)
}

/// `xtask package-boot-test ROOT DEB`, as root: the part of [`test`] that
/// boots the root; prints its summary line and its own time table.
pub fn boot_test(dir: &Path, deb: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut t = Timings::default();
    let result = install_test::run(dir, deb, &mut t);
    eprint!(
        "{}",
        t.table(
            "package boot test: where the time went",
            started.elapsed().as_secs_f64()
        )
    );
    println!("{}", result?);
    Ok(())
}
