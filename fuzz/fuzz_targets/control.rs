//! Fuzz target `control`: the invariants are `checks::control` (shared with `tests/fuzz_corpora.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::control(data));
