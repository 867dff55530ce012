//! `open`, `enforce` and `detach`: the switches an administrator flips.

use filter_common::FLAG_OPEN;

use super::{DetachRequest, open_locked};
use crate::{links, pins::PinDir};

/// `mxgate open` (`open` true) and `mxgate enforce` (`open` false).
pub fn open(pins: &PinDir, open: bool) -> anyhow::Result<()> {
    let (_lock, mut filter) = open_locked(pins)?;
    let was_open = filter.config()?.flags & FLAG_OPEN != 0;
    if was_open == open {
        println!(
            "already {}; nothing changed",
            if open { "open" } else { "enforcing" }
        );
        return Ok(());
    }
    filter.set_open(open)?;
    if open {
        println!(
            "filter OPEN: every SYN passes; those from outside the allowlist are counted as \
             passed-open. Run `mxgate enforce` to drop them again."
        );
    } else {
        println!("filter enforcing: SYNs from outside the allowlist are dropped again");
    }
    Ok(())
}

/// `mxgate detach`.
pub fn detach(pins: &PinDir, request: &DetachRequest) -> anyhow::Result<()> {
    if !pins.is_installed() && !pins.root().exists() {
        println!("no filter in {}; nothing to do", pins.root().display());
        return Ok(());
    }
    let _lock = pins.lock()?;
    if request.ifaces.is_empty() {
        let ifaces = pins.linked_interfaces()?;
        pins.remove_all()?;
        if ifaces.is_empty() {
            println!("removed the filter in {}", pins.root().display());
        } else {
            println!(
                "detached from {} and removed the filter in {}",
                ifaces.join(", "),
                pins.root().display()
            );
        }
        return Ok(());
    }
    for iface in &request.ifaces {
        if links::detach(pins, iface)? {
            println!("detached from {iface}");
        } else {
            println!("not attached to {iface}; nothing to do");
        }
    }
    let left = pins.linked_interfaces()?;
    if left.is_empty() {
        println!(
            "the filter stays installed in {} but is attached to no interface \
             (`mxgate detach` removes it)",
            pins.root().display()
        );
    } else {
        println!("still attached to {}", left.join(", "));
    }
    Ok(())
}
