//! Fuzz target `config`: the invariants are `checks::config` (shared with `tests/fuzz_corpora.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
