//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! fuzz targets run (`fuzz/checks.rs`), on stable and without cargo-fuzz.
//!
//! Inputs that still fail because their fix is pending are kept in `fuzz/known-crashes/` instead,
//! which this test does not replay (see docs/reliability.md, "Fuzzing").

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>` and reports every failing file.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failures.push(file.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs fail (replay one with `cargo +nightly fuzz run {target} <file>`):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn reference_corpus() {
    replay("reference", checks::reference);
}

#[test]
fn template_corpus() {
    replay("template", checks::template);
}

#[test]
fn framing_corpus() {
    replay("framing", checks::framing);
}
