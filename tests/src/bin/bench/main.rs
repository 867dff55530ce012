//! `cargo xtask bench`: per-packet cost, SYN-flood cost against nftables and
//! the XDP floor, and refresh cost, each with its baselines in the same run.
//! Writes the tables between the markers in BENCHMARKS.md (or prints them).

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
    let out = std::env::args().nth(1);
    let started = Instant::now();
    let mut report = String::new();
    report.push_str(&machine::describe());
    eprintln!("bench: per-packet cost (BPF_PROG_TEST_RUN)");
    report.push_str(&per_packet::run()?);
    eprintln!("bench: SYN flood over veth");
    report.push_str(&flood::run()?);
    eprintln!("bench: refresh");
    report.push_str(&refresh::run()?);
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
