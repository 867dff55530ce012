//! `open`, `enforce` and `detach`: the switches an administrator flips.

use super::{DetachRequest, open_locked};
use crate::{filter::ConfigMap, links, pins::PinDir, text::printable};

/// `mxgate open` (`open` true) and `mxgate enforce` (`open` false). Needs
/// only CONFIG, so it works on a filter missing any other pin.
pub fn open(pins: &PinDir, open: bool) -> anyhow::Result<()> {
    let (_lock, installed) = open_locked(pins)?;
    let mut config = ConfigMap::open(&installed)?;
    if !config.set_open(open)? {
        println!(
            "already {}; nothing changed",
            if open { "open" } else { "enforcing" }
        );
        return Ok(());
    }
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

/// `mxgate detach`: removes mxgate's own objects, by name, and nothing else.
pub fn detach(pins: &PinDir, request: &DetachRequest) -> anyhow::Result<()> {
    for iface in &request.ifaces {
        crate::pins::check_iface_name(iface)?;
    }
    let nothing = || println!("no filter in {}; nothing to do", pins.root().display());
    let Some(_lock) = pins.check()?.then(|| pins.lock()).transpose()?.flatten() else {
        nothing();
        return Ok(());
    };
    let entries = pins.entries()?;
    if entries.is_empty() {
        nothing();
        return Ok(());
    }
    if request.ifaces.is_empty() {
        let left = pins.remove_own(&entries)?;
        let what = if entries.links.is_empty() {
            format!("removed the filter in {}", pins.root().display())
        } else {
            format!(
                "detached from {} and removed the filter in {}",
                entries.links.join(", "),
                pins.root().display()
            )
        };
        println!("{}", printable(&what));
        for impostor in &entries.impostors {
            println!(
                "left {} in place: it {}, not this filter's",
                printable(&impostor.name),
                printable(&impostor.holds)
            );
        }
        if !left.is_empty() {
            let names: Vec<String> = left.iter().map(|n| printable(n)).collect();
            println!(
                "left {} in place: not mxgate's (the directory stays while they are there)",
                names.join(", ")
            );
        }
        return Ok(());
    }
    let mut detached = Vec::new();
    for iface in &request.ifaces {
        let shown = printable(iface);
        match links::detach(pins, &entries, iface)? {
            links::Detached::Done { pin } => {
                if pin == *iface {
                    println!("detached from {shown}");
                } else {
                    println!(
                        "detached from {shown} (its link was pinned as link_{}, its name when \
                         attached)",
                        printable(&pin)
                    );
                }
                detached.push(pin);
            }
            links::Detached::NotAttached => println!("not attached to {shown}; nothing to do"),
        }
    }
    let left: Vec<String> = entries
        .links
        .iter()
        .filter(|l| !detached.contains(l))
        .map(|l| printable(l))
        .collect();
    if left.is_empty() {
        println!(
            "the filter stays installed in {} but is attached to no interface \
             (`mxgate detach` without --iface removes it)",
            pins.root().display()
        );
    } else {
        println!("still attached to {}", left.join(", "));
    }
    Ok(())
}
