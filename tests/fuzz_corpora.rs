//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) and the inputs of fixed
//! findings (`fuzz/regressions/<target>/`, kept out of the corpus so that `cargo fuzz cmin`
//! cannot drop them) through the same checks the fuzz targets run (`fuzz/checks.rs`), on stable
//! and without cargo-fuzz.
//!
//! Inputs that still fail because their fix is pending are kept in `fuzz/known-crashes/` instead,
//! which this test does not replay (see docs/reliability.md, "Fuzzing").

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// Runs `check` on every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>` (if
/// any) and reports every failing file.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let mut files = files_in(&corpus);
    assert!(!files.is_empty(), "{}: empty corpus", corpus.display());
    let regressions = fuzz.join("regressions").join(target);
    if regressions.exists() {
        files.extend(files_in(&regressions));
    }
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

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
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

#[test]
fn control_corpus() {
    replay("control", checks::control);
}

#[test]
fn http_corpus() {
    replay("http", checks::http);
}
