//! Where a task's time went: each phase's wall time, nested (a phase's
//! parts below it), printed as a table at the end of `cargo xtask test`
//! (also when it fails) so that the slowest parts can be found and trimmed.

use std::time::Instant;

/// One phase: its name, its depth in the tree, its time and outcome.
struct Row {
    depth: usize,
    name: String,
    secs: f64,
    failed: bool,
}

/// The phases timed so far.
#[derive(Default)]
pub struct Timings {
    rows: Vec<Row>,
    depth: usize,
}

impl Timings {
    /// Runs `f` as phase `name` (its parts, timed through the `Timings`
    /// it is given, nest below it) and records its wall time.
    pub fn phase<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let index = self.rows.len();
        self.rows.push(Row {
            depth: self.depth,
            name: name.to_owned(),
            secs: 0.0,
            failed: false,
        });
        self.depth += 1;
        let started = Instant::now();
        let result = f(self);
        self.depth -= 1;
        let row = &mut self.rows[index];
        row.secs = started.elapsed().as_secs_f64();
        row.failed = result.is_err();
        result
    }

    /// Records a phase timed elsewhere (a suite in a VM), below the
    /// current one.
    pub fn record(&mut self, name: &str, secs: f64, failed: bool) {
        self.rows.push(Row {
            depth: self.depth,
            name: name.to_owned(),
            secs,
            failed,
        });
    }

    /// The table: one line per phase, indented by depth, seconds and the
    /// share of `total`.
    pub fn table(&self, title: &str, total: f64) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| 2 * r.depth + r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max("total".len());
        let mut out = format!("{title}\n");
        for row in &self.rows {
            let name = format!("{}{}", "  ".repeat(row.depth), row.name);
            let share = if total > 0.0 {
                100.0 * row.secs / total
            } else {
                0.0
            };
            out.push_str(&format!(
                "  {name:<width$}  {:>7.1} s  {share:>3.0} %{}\n",
                row.secs,
                if row.failed { "  FAILED" } else { "" }
            ));
        }
        out.push_str(&format!("  {:<width$}  {total:>7.1} s\n", "total"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_nest_and_a_failed_one_is_marked_and_still_timed() {
        let mut t = Timings::default();
        t.phase("checks", |t| {
            t.phase("fmt", |_| Ok(()))?;
            t.record("clippy", 60.0, false);
            Ok(())
        })
        .unwrap();
        let e: anyhow::Result<()> = t.phase("the Debian package", |t| {
            t.record("boot", 4.0, false);
            anyhow::bail!("no")
        });
        assert!(e.is_err());
        t.phase("kernel 6.1 (VM)", |t| {
            t.record("verdict", 100.0, true);
            Ok(())
        })
        .unwrap();
        let table = t.table("where the time went:", 200.0);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "where the time went:");
        assert!(lines[1].starts_with("  checks "), "{table}");
        assert!(lines[2].starts_with("    fmt "), "{table}");
        assert!(
            lines[3].starts_with("    clippy ") && lines[3].contains(" 60.0 s   30 %"),
            "{table}"
        );
        assert!(
            lines[4].starts_with("  the Debian package ") && lines[4].ends_with("FAILED"),
            "{table}"
        );
        assert!(lines[5].starts_with("    boot "), "{table}");
        assert!(
            lines[7].starts_with("    verdict ") && lines[7].ends_with("FAILED"),
            "{table}"
        );
        assert!(
            lines[8].starts_with("  total ") && lines[8].ends_with(" 200.0 s"),
            "{table}"
        );
    }
}
