//! Fuzz target `template`: the invariants are `checks::template` (shared with `tests/fuzz_corpora.rs`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::template(data));
