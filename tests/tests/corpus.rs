//! The bad-input corpus (tests/corpus): every file through `mxgate check`,
//! with the outcome expected.toml gives it.

use std::path::{Path, PathBuf};

use mxgate_tests::{cli::Mxgate, unique_name};
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    exit: i32,
    error: Option<String>,
    v4: Option<Vec<String>>,
    v6: Option<Vec<String>>,
    warnings: Option<usize>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn every_corpus_file_gets_its_expected_outcome() {
    let text = std::fs::read_to_string(corpus().join("expected.toml")).expect("the manifest");
    let manifest: Manifest = toml::from_str(&text).expect("a valid manifest");
    assert!(
        manifest.case.len() >= 40,
        "the corpus has {} cases",
        manifest.case.len()
    );
    let files = std::fs::read_dir(corpus()).unwrap().count() - 1;
    assert_eq!(
        files,
        manifest.case.len(),
        "every file has a case, every case a file"
    );

    let mx = Mxgate::without_netns(&unique_name("corpus"));
    let mut failures = Vec::new();
    for case in &manifest.case {
        let path = corpus().join(&case.file).display().to_string();
        let out = mx.run(&["check", "--json", "--ranges", &path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(case.exit) {
            failures.push(format!(
                "{}: exit {:?}, expected {}: {stderr}",
                case.file,
                out.status.code(),
                case.exit
            ));
            continue;
        }
        if let Some(fragment) = &case.error {
            if !stderr.contains(fragment.as_str()) {
                failures.push(format!(
                    "{}: stderr lacks {fragment:?}: {stderr}",
                    case.file
                ));
            }
            if !stdout.is_empty() {
                failures.push(format!(
                    "{}: printed a result despite the error: {stdout}",
                    case.file
                ));
            }
            continue;
        }
        let result: serde_json::Value =
            serde_json::from_str(&stdout).expect("check --json is JSON");
        let listed = |family: &str| -> Vec<String> {
            result["allowlist"][family]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        if Some(listed("v4")) != case.v4 || Some(listed("v6")) != case.v6 {
            failures.push(format!(
                "{}: got {:?} {:?}, expected {:?} {:?}",
                case.file,
                listed("v4"),
                listed("v6"),
                case.v4,
                case.v6
            ));
        }
        let warnings = result["warnings"].as_array().map(Vec::len);
        if warnings != case.warnings {
            failures.push(format!(
                "{}: {warnings:?} warnings, expected {:?}",
                case.file, case.warnings
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        manifest.case.len(),
        failures.join("\n")
    );
}

#[test]
fn every_example_range_list_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut lists: Vec<PathBuf> = std::fs::read_dir(dir.join("ranges"))
        .expect("examples/ranges")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    lists.push(dir.join("demo-ranges.txt"));
    assert!(lists.len() >= 3, "{lists:?}");
    let mx = Mxgate::without_netns(&unique_name("examples"));
    for list in lists {
        let out = mx.ok(&["check", "--ranges", &list.display().to_string()]);
        assert!(out.starts_with("list OK"), "{}: {out}", list.display());
    }
}
