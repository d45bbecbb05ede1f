//! Fuzz target `http`: the invariants are `checks::http` (shared with `tests/fuzz_corpora.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http(data));
