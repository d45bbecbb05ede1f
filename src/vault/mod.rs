//! Vault and OpenBao (SPEC 4): login, secret fetching, lease bookkeeping, and the renewer
//! thread that keeps the token and every lease alive, reports expiry, and revokes on exit.
//!
//! The supervisor sees only [`Session`]: start it (login + fetch, retrying transient errors
//! until `startup-timeout`), read the resolved values, receive [`VaultEvent`]s through its
//! mailbox, and stop it (revoking if configured) before exiting.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::VaultSettings;
use crate::environment::{EnvPlan, VaultInjection};
use crate::logs::Logger;
use crate::mailbox::Mailbox;

/// What the renewer thread tells the supervisor.
#[derive(Debug)]
pub enum VaultEvent {
    /// A lease or the token is about to expire under `on-lease-expiry: exit`: stop and exit 1.
    /// The text says what expires (path or "token"), never a value.
    Expiring(String),
    /// Under `on-lease-expiry: restart`: everything was fetched anew; rebuild the environment
    /// with these values and restart the main jobs one by one.
    Refreshed {
        values: BTreeMap<String, String>,
        injection: VaultInjection,
    },
    /// A fatal Vault error after start-up (e.g. re-fetch failed): stop and exit 1.
    Fatal(String),
}

/// Why start-up failed.
#[derive(Debug)]
pub enum StartError {
    /// A settings mistake found before any request (missing `VAULT_ADDR`, bad `VAULT_CACERT`
    /// file, ...): exit 2.
    Config(String),
    /// Vault refused or failed: exit 1. Names variable and path, never a value.
    Vault(String),
}

/// A logged-in Vault client with its fetched secrets and a running renewer.
pub struct Session {
    // filled in by the implementation
}

impl Session {
    /// Logs in (token or AppRole from `process_env`), fetches every reference of `plan` once
    /// per `(kind, path)`, and starts the renewer thread. Must be called after signals are
    /// blocked (the thread inherits the mask).
    pub fn start(
        settings: &VaultSettings,
        process_env: &[(String, String)],
        plan: &EnvPlan,
        logger: Logger,
        events: Mailbox<VaultEvent>,
    ) -> Result<Session, StartError> {
        let _ = (settings, process_env, plan, logger, events);
        todo!()
    }

    /// Each `vault-replace` variable of the plan with its secret value.
    pub fn values(&self) -> &BTreeMap<String, String> {
        todo!()
    }

    /// The current token and address, for `vault-token: true`.
    pub fn injection(&self) -> VaultInjection {
        todo!()
    }

    /// Stops the renewer; with `revoke-on-exit`, revokes every lease (and the token if we
    /// logged in ourselves), giving up at `deadline`.
    pub fn stop(self, deadline: Instant) {
        let _ = deadline;
        todo!()
    }
}
