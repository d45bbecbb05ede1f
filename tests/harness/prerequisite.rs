//! One rule for missing test prerequisites (root, unshare, a test user, OpenBao, PostgreSQL),
//! shared by the harness and the fixtures: under `CI=true` a missing prerequisite fails the
//! test loudly; elsewhere the test says so and is skipped.

/// Whether `what` is there (`present`); see the module doc for what happens when it is not.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing in CI: {what} (scripts/setup installs it)");
    }
    eprintln!("SKIPPED: prerequisite missing: {what} (run scripts/setup)");
    false
}
