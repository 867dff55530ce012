//! What the numbers were measured on.

use std::process::Command;

/// A short description of this machine and the time of the run.
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = output("uname", &["-r"]);
    let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or("?".into(), |kib| format!("{} GiB", kib / 1024 / 1024));
    format!(
        "Measured {date} on {cpu}, {cpus} CPUs, {memory}, Linux {kernel} (a virtual machine).\n"
    )
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
