//! The last resort: what happens when simplevisor itself fails (a panic in any thread). No
//! job may outlive it and no lease may be left for its whole TTL, so the panic hook, in order:
//! writes an internal record straight to stdout (the writer thread may be the one that
//! failed), kills every job's process group, removes the files written from `files`, revokes
//! the Vault leases with a bounded budget, and only then lets the process end.

use std::io::Write as _;
use std::sync::Mutex;

use crate::logs::direct;

use super::reaper;

/// Revokes what simplevisor holds from Vault, within its own time budget.
pub type Revoker = Box<dyn Fn() + Send>;

/// Set while a Vault session holds leases.
static REVOKER: Mutex<Option<Revoker>> = Mutex::new(None);

/// Installs the panic hook. Call once, early in `run`.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let message = format!(
            "internal error: {}; killing every job and exiting",
            info.to_string().replace('\n', " ")
        );
        let _ = writeln!(std::io::stderr(), "simplevisor: {message}");
        direct::write(1, &message);
        reaper::kill_tracked_groups();
        for failure in crate::files::remove_all_in_panic().map_or_else(Vec::new, |r| r.failures) {
            direct::write(1, &failure);
        }
        // try_lock: the panicking thread may hold it; then there is nothing to do safely.
        if let Ok(revoker) = REVOKER.try_lock()
            && let Some(revoke) = revoker.as_ref()
        {
            revoke();
        }
    }));
}

/// What the panic hook calls to give back Vault leases; `None` once the session has ended.
pub fn set_revoker(revoker: Option<Revoker>) {
    match REVOKER.lock() {
        Ok(mut slot) => *slot = revoker,
        Err(poisoned) => *poisoned.into_inner() = revoker,
    }
}
