//! `cargo xtask bench`: per-packet cost, SYN-flood cost against nftables and
//! the XDP floor, and refresh cost and memory, each with its baselines in
//! the same run. Writes the tables between the markers in BENCHMARKS.md (or
//! prints them). `MXGATE_BENCH_ONLY=flood` (or `per-packet`, `refresh`,
//! comma-separated) runs only those sections and only prints them;
//! `MXGATE_BENCH_FLOOD_SIZE=N` floods with one list size only.

mod flood;
mod machine;
mod per_packet;
mod refresh;
mod table;

use std::time::Instant;

use anyhow::Context as _;

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

fn main() -> anyhow::Result<()> {
    let only = std::env::var("MXGATE_BENCH_ONLY").ok();
    let wanted = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == section))
    };
    // A partial run never overwrites the file's tables.
    let out = std::env::args().nth(1).filter(|_| only.is_none());
    let started = Instant::now();
    let mut report = String::new();
    report.push_str(&machine::describe());
    if wanted("per-packet") {
        eprintln!("bench: per-packet cost (BPF_PROG_TEST_RUN)");
        report.push_str(&per_packet::run()?);
    }
    if wanted("flood") {
        eprintln!("bench: SYN flood over veth");
        report.push_str(&flood::run()?);
    }
    if wanted("refresh") {
        eprintln!("bench: refresh and memory");
        report.push_str(&refresh::run()?);
    }
    report.push_str(&format!(
        "\n_The whole run took {:.0} s._\n",
        started.elapsed().as_secs_f64()
    ));
    match out {
        Some(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            let (before, rest) = text
                .split_once(START)
                .with_context(|| format!("{path} has no {START} marker"))?;
            let (_, after) = rest
                .split_once(END)
                .with_context(|| format!("{path} has no {END} marker"))?;
            let updated = format!("{before}{START}\n{report}\n{END}{after}");
            std::fs::write(&path, updated).with_context(|| format!("writing {path}"))?;
            println!("{report}");
            eprintln!("bench: results written to {path}");
        }
        None => println!("{report}"),
    }
    Ok(())
}
