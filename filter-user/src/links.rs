//! Attaching the installed program to interfaces: one XDP link per
//! interface, pinned so it outlives the process.

use std::fs;

use anyhow::Context as _;
use aya::programs::{ProgramError, XdpMode, links::FdLink};
use serde::Serialize;

use crate::{
    error::{InvalidInput, Refused},
    filter::Filter,
    netlink::{self, XdpAttachment},
    pins::{Entries, PinDir},
    sys,
};

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
    /// "native" or "skb", as the kernel reports it.
    pub mode: &'static str,
    /// True when this call attached it; false when it was already attached.
    pub new: bool,
}

/// Checks, before anything changes, that the filter may attach to `iface`:
/// it exists, is not loopback, and runs no XDP program but this filter's
/// (`ours`, the installed program's id, if any). A `link_IFACE` pin that
/// still attaches the filter to another existing interface (the name now
/// belongs to a new interface) is refused too: attach never removes a link
/// that protects an interface.
pub fn check(pins: &PinDir, iface: &str, ours: Option<u32>) -> anyhow::Result<()> {
    crate::pins::check_iface_name(iface)?;
    let ifindex = sys::ifindex(iface)
        .ok_or_else(|| InvalidInput(format!("there is no interface named {iface:?}")))?;
    if sys::is_loopback(iface) {
        return Err(InvalidInput(format!(
            "{iface} is the loopback interface: filtering it would drop local SMTP \
             (127.0.0.1, ::1, content filters re-injecting mail); attach to the interfaces \
             mail arrives on"
        ))
        .into());
    }
    let pin = pins.link(iface);
    if let Ok(link) = sys::pinned_xdp_link(&pin)
        && link.ifindex != 0
        && link.ifindex != ifindex
    {
        let now = sys::ifname(link.ifindex).unwrap_or_else(|| "?".into());
        return Err(Refused(format!(
            "{} attaches the filter to interface #{} (now called {now}), not to the {iface} \
             there is now; nothing changed (`mxgate detach --iface {iface}` removes that link)",
            pin.display(),
            link.ifindex
        ))
        .into());
    }
    let current = netlink::xdp_attachment(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {iface} runs"))?;
    match current {
        Some(other) if Some(other.program_id) != ours => {
            Err(Refused(describe_other(iface, other)).into())
        }
        _ => Ok(()),
    }
}

/// Attaches the filter to `iface`, or reports the existing attachment when
/// the filter is already attached there. [`check`] has passed.
pub fn attach(filter: &mut Filter, iface: &str, mode: AttachMode) -> anyhow::Result<Attachment> {
    let ifindex = sys::ifindex(iface)
        .ok_or_else(|| InvalidInput(format!("there is no interface named {iface:?}")))?;
    let program_id = filter.program_info()?.id();
    let pin = filter.pins().link(iface);
    let current = netlink::xdp_attachment(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {iface} runs"))?;
    if pin.exists() {
        match sys::pinned_xdp_link(&pin) {
            Ok(link) if link.ifindex == ifindex && link.program_id == program_id => {
                return Ok(Attachment {
                    iface: iface.to_owned(),
                    ifindex,
                    link_id: link.link_id,
                    program_id,
                    mode: current.map_or("unknown", |c| c.mode),
                    new: false,
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

    let tries: &[(XdpMode, &'static str)] = match mode {
        AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
        AttachMode::Native => &[(XdpMode::Driver, "native")],
        AttachMode::Skb => &[(XdpMode::Skb, "skb")],
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
                    mode: name,
                    new: true,
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

/// Detaches the filter from `iface` (removes its link pin, which is this
/// filter's: `entries` says so); false if it was not attached there.
pub fn detach(pins: &PinDir, entries: &Entries, iface: &str) -> anyhow::Result<bool> {
    crate::pins::check_iface_name(iface)?;
    if !entries.links.iter().any(|l| l == iface) {
        return Ok(false);
    }
    pins.remove_link(iface)
}

/// A pinned link as found now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkStatus {
    /// Interface named by the pin.
    pub iface: String,
    /// The interface the link is attached to, if it still exists.
    pub ifindex: Option<u32>,
    /// The link's id.
    pub link_id: u32,
    /// The program's id.
    pub program_id: u32,
    /// The mode the kernel reports for the interface, if it runs this link's program.
    pub mode: Option<&'static str>,
    /// When the link was pinned (attached), RFC 3339.
    pub attached_at: Option<String>,
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
        let attached_at = fs::metadata(&pin)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        out.push(LinkStatus {
            iface,
            ifindex,
            link_id: info.link_id,
            program_id: info.program_id,
            mode,
            attached_at,
        });
    }
    Ok(out)
}
