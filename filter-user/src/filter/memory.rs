//! The memory each of the filter's maps takes, as the kernel charges it.

use std::os::fd::AsFd as _;

use aya::maps::MapData;
use filter_common::map_names;

use crate::{pins::PinDir, sys};

/// One map's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapMemory {
    /// The map's name (and pin file).
    pub name: &'static str,
    /// Bytes the kernel charges for it: the `memlock` of its fdinfo, which
    /// on 6.4 and later counts the entries actually allocated and before
    /// that what the map may grow to.
    pub bytes: u64,
}

/// The memory of every map pinned under `pins`, in [`map_names::ALL`]
/// order; a map whose pin is missing or unreadable is left out (`status`
/// names the damage).
pub fn map_memory(pins: &PinDir) -> Vec<MapMemory> {
    map_names::ALL
        .iter()
        .filter_map(|name| {
            let map = MapData::from_pin(pins.map(name)).ok()?;
            Some(MapMemory {
                name,
                bytes: sys::map_memlock(map.fd().as_fd()).ok()?,
            })
        })
        .collect()
}

/// `bytes` for people: "4.0 MiB", "12 KiB".
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else if b >= KIB {
        format!("{:.0} KiB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_said_for_people() {
        assert_eq!(human(4_198_400), "4.0 MiB");
        assert_eq!(human(12_288), "12 KiB");
        assert_eq!(human(12), "12 B");
    }
}
