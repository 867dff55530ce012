//! `attach`: the command line's [`crate::install::attach_filter`], and
//! what it did, printed.

use super::{AttachRequest, read_nonempty_list};
use crate::{
    describe::describe_settings,
    filter::KernelLog,
    install::{AttachOptions, AttachReport, attach_filter},
    pins::PinDir,
    text::printable,
};

/// `mxgate attach`.
pub fn command(pins: &PinDir, request: &AttachRequest) -> anyhow::Result<()> {
    let started = std::time::SystemTime::now();
    let attached = read_nonempty_list(&request.list)
        .and_then(|list| attach_filter(pins, &request.ifaces, Some(&list), &request.options));
    crate::refresh_record::record(&request.list, started, attached.as_ref().map(|_| ()));
    let report = attached?;
    print_report(pins, &report, &request.options);
    Ok(())
}

fn print_report(pins: &PinDir, report: &AttachReport, options: &AttachOptions) {
    if report.installed {
        println!(
            "loaded the filter into the kernel (program {}), pinned in {}",
            report.program_id,
            pins.root().display()
        );
    } else if options.log == KernelLog::EveryDenial {
        println!(
            "note: --log-denials takes effect when the program is loaded; \
             it was already loaded (detach and attach again to change it)"
        );
    }
    for pin in &report.repaired {
        println!("repaired: pinned {pin} again");
    }
    if let Some(list) = &report.list {
        let d = &list.diff;
        if !list.drift.is_empty() {
            println!(
                "repaired drift: the maps had drifted from the list applied last ({})",
                printable(&list.drift.join("; "))
            );
        }
        println!(
            "allowlist: {} IPv4 and {} IPv6 prefixes ({})",
            list.v4_after,
            list.v6_after,
            if d.is_empty() {
                "unchanged".to_owned()
            } else {
                format!("+{} -{}", d.added(), d.removed())
            }
        );
    }
    println!("{}", describe_settings(&report.settings, report.open));
    for a in &report.interfaces {
        let iface = printable(&a.iface);
        if a.new {
            println!("attached to {iface} ({} mode, link {})", a.mode, a.link_id);
        } else if let Some(was) = &a.renamed_from {
            let was = printable(was);
            println!(
                "already attached to {iface} ({} mode, link {}), which was called {was} when \
                 attached; adopted: its link's pin link_{was} is now link_{iface}",
                a.mode, a.link_id
            );
        } else {
            println!(
                "already attached to {iface} ({} mode, link {}); left as it is",
                a.mode, a.link_id
            );
        }
    }
    for note in &report.notes {
        eprintln!("mxgate: warning: {}", printable(note));
    }
}
