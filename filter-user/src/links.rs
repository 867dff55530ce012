//! Attaching the installed program to interfaces: one XDP link per
//! interface, pinned so it outlives the process.
//!
//! A link is known by the interface it attaches (its ifindex), not by the
//! name in its pin: `link_IF` keeps the name the interface had when it was
//! attached. After `ip link set X name Y`, `status` names Y (and that it
//! was X), `detach --iface Y` detaches it, `detach --iface X` is refused
//! naming Y, and `attach --iface Y` adopts the link and renames its pin.

use std::{fs, time::SystemTime};

use anyhow::Context as _;
use aya::programs::{ProgramError, XdpMode, links::FdLink};
use serde::Serialize;

use crate::{
    error::{InvalidInput, Refused},
    filter::Filter,
    interfaces,
    netlink::{self, AttachedMode, XdpAttachment},
    pins::{Entries, PinDir},
    sys::{self, XdpLinkInfo},
    text::printable,
};

const LINK_PREFIX: &str = "link_";

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode if the driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

impl AttachMode {
    /// The mode the kernel reports for this choice; `None` for `Auto`.
    pub fn attached(self) -> Option<AttachedMode> {
        match self {
            AttachMode::Auto => None,
            AttachMode::Native => Some(AttachedMode::Native),
            AttachMode::Skb => Some(AttachedMode::Skb),
        }
    }
}

/// An interface the filter is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// The XDP link's id.
    pub link_id: u32,
    /// The attached program's id.
    pub program_id: u32,
    /// The mode, as the kernel reports it.
    pub mode: AttachedMode,
    /// True when this call attached it; false when it was already attached.
    pub new: bool,
    /// The interface's name when it was attached, if it was renamed since
    /// (its link's pin is renamed to match).
    pub renamed_from: Option<String>,
}

/// Checks, before anything changes, that the filter may attach to `iface`:
/// it exists, is not loopback, and runs no XDP program but this filter's
/// (`ours`, the installed program's id, if any). A `link_IFACE` pin that
/// is not this filter's, or that still attaches the filter to another
/// existing interface (the name now belongs to a new interface), is
/// refused too: attach never removes a link that protects an interface.
pub fn check(pins: &PinDir, iface: &str, ours: Option<u32>) -> anyhow::Result<()> {
    crate::pins::check_iface_name(iface)?;
    let entries = pins.entries()?;
    let shown = printable(iface);
    let Some(ifindex) = interfaces::ifindex(iface) else {
        let renamed = entries
            .links
            .iter()
            .filter(|l| l.as_str() == iface)
            .find_map(|l| sys::pinned_xdp_link(&pins.link(l)).ok())
            .and_then(|link| interfaces::ifname(link.ifindex))
            .map_or_else(String::new, |now| {
                format!(
                    " ({} attaches the filter to {}: the interface was renamed; attach to \
                     that name)",
                    pins.link(iface).display(),
                    printable(&now)
                )
            });
        return Err(InvalidInput(format!("there is no interface named {shown:?}{renamed}")).into());
    };
    if interfaces::is_loopback(iface) {
        return Err(InvalidInput(format!(
            "{shown} is the loopback interface: filtering it would drop local SMTP \
             (127.0.0.1, ::1, content filters re-injecting mail); attach to the interfaces \
             mail arrives on"
        ))
        .into());
    }
    let pin_name = format!("{LINK_PREFIX}{iface}");
    if let Some(impostor) = entries.impostor(&pin_name) {
        return Err(Refused(format!(
            "{}; nothing changed",
            impostor.describe(pins.root())
        ))
        .into());
    }
    let pin = pins.link(iface);
    if let Ok(link) = sys::pinned_xdp_link(&pin)
        && link.ifindex != 0
        && link.ifindex != ifindex
    {
        let now = interfaces::ifname(link.ifindex).unwrap_or_else(|| "?".into());
        return Err(Refused(format!(
            "{} attaches the filter to interface #{} (now called {}), not to the {shown} \
             there is now; nothing changed (`mxgate detach --iface {}` detaches that one)",
            pin.display(),
            link.ifindex,
            printable(&now),
            printable(&now)
        ))
        .into());
    }
    let current = netlink::xdp_attachment(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {shown} runs"))?;
    match current {
        Some(other) if Some(other.program_id) != ours => {
            Err(Refused(describe_other(iface, other)).into())
        }
        _ => Ok(()),
    }
}

/// The link of this filter's (in `entries`) attached to interface
/// `ifindex`, whatever its pin is called: the pin's interface name and
/// the link.
pub fn link_on(pins: &PinDir, entries: &Entries, ifindex: u32) -> Option<(String, XdpLinkInfo)> {
    entries.links.iter().find_map(|name| {
        let link = sys::pinned_xdp_link(&pins.link(name)).ok()?;
        (link.ifindex == ifindex).then(|| (name.clone(), link))
    })
}

/// Attaches the filter to `iface`, or reports the existing attachment when
/// the filter is already attached there. [`check`] has passed.
pub fn attach(filter: &mut Filter, iface: &str, mode: AttachMode) -> anyhow::Result<Attachment> {
    let ifindex = interfaces::ifindex(iface)
        .ok_or_else(|| InvalidInput(format!("there is no interface named {iface:?}")))?;
    let program_id = filter.program_info()?.id();
    let pins = filter.pins().clone();
    let pin = pins.link(iface);
    let current = netlink::xdp_attachment(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {iface} runs"))?;
    if let Some(attached) = current
        && attached.program_id == program_id
        && let Some((was, link)) = link_on(&pins, &pins.entries()?, ifindex)
        && was != iface
    {
        // Renamed since it was attached: this filter's own link, adopted
        // under the new name.
        rename_link_pin(&pins, &was, iface)?;
        return Ok(Attachment {
            iface: iface.to_owned(),
            ifindex,
            link_id: link.link_id,
            program_id,
            mode: attached.mode,
            new: false,
            renamed_from: Some(was),
        });
    }
    if pin.exists() {
        match sys::pinned_xdp_link(&pin) {
            Ok(link) if link.ifindex == ifindex && link.program_id == program_id => {
                return Ok(Attachment {
                    iface: iface.to_owned(),
                    ifindex,
                    link_id: link.link_id,
                    program_id,
                    mode: current.map_or(AttachedMode::Unknown, |c| c.mode),
                    new: false,
                    renamed_from: None,
                });
            }
            Ok(link) if link.ifindex == ifindex => {
                return Err(Refused(format!(
                    "{} attaches program {} to {iface}, not this filter's program \
                     {program_id}; nothing changed (`mxgate detach --iface {iface}` first)",
                    pin.display(),
                    link.program_id
                ))
                .into());
            }
            // The interface was deleted since (check refused a link to
            // another live interface): the pinned link attaches nothing.
            _ => fs::remove_file(&pin)
                .with_context(|| format!("removing stale link pin {}", pin.display()))?,
        }
    }
    if let Some(other) = current {
        return Err(Refused(describe_other(iface, other)).into());
    }

    let tries: &[(XdpMode, AttachedMode)] = match mode {
        AttachMode::Auto => &[
            (XdpMode::Driver, AttachedMode::Native),
            (XdpMode::Skb, AttachedMode::Skb),
        ],
        AttachMode::Native => &[(XdpMode::Driver, AttachedMode::Native)],
        AttachMode::Skb => &[(XdpMode::Skb, AttachedMode::Skb)],
    };
    let mut last_error = None;
    for (xdp_mode, name) in tries {
        match filter.program_mut().attach(ifindex, *xdp_mode) {
            Ok(id) => {
                let link: FdLink = filter.program_mut().take_link(id)?.try_into().context(
                    "the kernel attached the program without a bpf link (kernel < 5.9?)",
                )?;
                let pinned = link
                    .pin(&pin)
                    .with_context(|| format!("pinning the link at {}", pin.display()))?;
                drop(pinned);
                let info = sys::pinned_xdp_link(&pin)
                    .with_context(|| format!("reading {}", pin.display()))?;
                return Ok(Attachment {
                    iface: iface.to_owned(),
                    ifindex,
                    link_id: info.link_id,
                    program_id,
                    mode: *name,
                    new: true,
                    renamed_from: None,
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    let err = last_error.map_or_else(
        || anyhow::anyhow!("no attach mode to try"),
        |e| explain_attach_error(iface, e),
    );
    Err(err)
}

/// Names the XDP program another tool attached to `iface`.
fn describe_other(iface: &str, other: XdpAttachment) -> String {
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == other.program_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .map_or_else(String::new, |n| format!(" \"{n}\""));
    let iface = printable(iface);
    let name = printable(&name);
    format!(
        "{iface} already runs XDP program {}{name} in {} mode; mxgate does not replace another \
         program (remove it first, e.g. `ip link set dev {iface} xdp off`, if you mean to)",
        other.program_id, other.mode
    )
}

fn explain_attach_error(iface: &str, err: ProgramError) -> anyhow::Error {
    let busy = matches!(
        &err,
        ProgramError::SyscallError(e)
            if matches!(e.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
    );
    if busy {
        anyhow::anyhow!(
            "{iface} already has another XDP program attached; mxgate does not replace it \
             (see `ip link show dev {iface}`)"
        )
    } else {
        anyhow::Error::new(err).context(format!("attaching to {iface}"))
    }
}

/// Renames the pin of the link attached to the interface once called
/// `was` to the interface's name now, `iface`, never over another pin.
fn rename_link_pin(pins: &PinDir, was: &str, iface: &str) -> anyhow::Result<()> {
    let from = pins.link(was);
    let to = pins.link(iface);
    let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes());
    let (Ok(c_from), Ok(c_to)) = (c(&from), c(&to)) else {
        anyhow::bail!("{} contains a NUL byte", from.display());
    };
    // SAFETY: two valid NUL-terminated paths; RENAME_NOREPLACE leaves an
    // existing target alone.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "renaming {} to {} (the interface was renamed)",
                from.display(),
                to.display()
            )
        });
    }
    Ok(())
}

/// What [`detach`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detached {
    /// The link attaching `iface` was detached and its pin removed; `pin`
    /// names the interface as its pin did (its name when attached).
    Done {
        /// The interface name in the pin.
        pin: String,
    },
    /// No link of this filter attaches `iface`.
    NotAttached,
}

/// Detaches the filter from `iface`, found by what it attaches: the link
/// pinned as `link_IFACE`, or the link whose interface is now called
/// `iface`. Refused (exit 3) when `link_IFACE` is not this filter's, or
/// when its interface was renamed (the message names the new name).
pub fn detach(pins: &PinDir, entries: &Entries, iface: &str) -> anyhow::Result<Detached> {
    crate::pins::check_iface_name(iface)?;
    let pin_name = format!("{LINK_PREFIX}{iface}");
    if let Some(impostor) = entries.impostor(&pin_name) {
        return Err(Refused(format!(
            "{}; nothing changed",
            impostor.describe(pins.root())
        ))
        .into());
    }
    if entries.links.iter().any(|l| l == iface) {
        if let Ok(link) = sys::pinned_xdp_link(&pins.link(iface))
            && link.ifindex != 0
            && let Some(now) = interfaces::ifname(link.ifindex)
            && now != iface
        {
            return Err(Refused(format!(
                "the filter's link pinned as {} attaches {} (interface #{}, called {} when \
                 attached): {} was renamed; nothing changed (`mxgate detach --iface {}` \
                 detaches it)",
                pins.link(iface).display(),
                printable(&now),
                link.ifindex,
                printable(iface),
                printable(iface),
                printable(&now)
            ))
            .into());
        }
        pins.remove_link(iface)?;
        return Ok(Detached::Done {
            pin: iface.to_owned(),
        });
    }
    if let Some(ifindex) = interfaces::ifindex(iface)
        && let Some((pin, _)) = link_on(pins, entries, ifindex)
    {
        pins.remove_link(&pin)?;
        return Ok(Detached::Done { pin });
    }
    Ok(Detached::NotAttached)
}

/// A pinned link as found now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// Interface named by the pin (its name when attached).
    pub iface: String,
    /// The interface the link is attached to, if it still exists.
    pub ifindex: Option<u32>,
    /// That interface's name now (another than `iface` once renamed).
    pub current_name: Option<String>,
    /// Without an interface: whether one called `iface` still exists (the
    /// link was detached from it from outside, not the interface deleted).
    pub detached_from_live_interface: bool,
    /// The link's id.
    pub link_id: u32,
    /// The program's id.
    pub program_id: u32,
    /// The mode the kernel reports for the interface, if it runs this link's program.
    pub mode: Option<AttachedMode>,
    /// When the link was pinned (attached): its pin's time, which stays.
    #[serde(serialize_with = "rfc3339")]
    pub attached_at: Option<SystemTime>,
}

fn rfc3339<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

/// Every pinned link.
pub fn links(pins: &PinDir, entries: &Entries) -> anyhow::Result<Vec<LinkStatus>> {
    let mut out = Vec::new();
    for iface in entries.links.iter().cloned() {
        let pin = pins.link(&iface);
        let info =
            sys::pinned_xdp_link(&pin).with_context(|| format!("reading {}", pin.display()))?;
        let ifindex = (info.ifindex != 0).then_some(info.ifindex);
        let mode = ifindex
            .and_then(|i| netlink::xdp_attachment(i).ok().flatten())
            .filter(|a| a.program_id == info.program_id)
            .map(|a| a.mode);
        let attached_at = fs::metadata(&pin).and_then(|m| m.modified()).ok();
        let current_name = ifindex.and_then(interfaces::ifname);
        out.push(LinkStatus {
            detached_from_live_interface: ifindex.is_none()
                && interfaces::ifindex(&iface).is_some(),
            iface,
            ifindex,
            current_name,
            link_id: info.link_id,
            program_id: info.program_id,
            mode,
            attached_at,
        });
    }
    Ok(out)
}
