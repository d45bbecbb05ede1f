//! Vault and OpenBao (docs/vault.md): login, secret fetching, lease bookkeeping, and the renewer
//! thread that keeps the token and every lease alive, reports expiry, and revokes on exit.
//!
//! The supervisor sees only [`Session`]: start it (login + fetch, retrying transient errors
//! until `startup-timeout`), read the resolved values, receive [`VaultEvent`]s through its
//! mailbox, and stop it (revoking if configured) before exiting.

mod client;
mod lease;
mod ledger;
mod login;
mod renewer;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Client, retrying};
use ledger::{HeldToken, Ledger};
use login::Credentials;
use renewer::{Message, Renewer, held, lock};
use secrets::fetch_all;

use crate::config::VaultSettings;
use crate::environment::{EnvPlan, VaultInjection};
use crate::logs::Logger;
use crate::mailbox::Mailbox;

/// The renewer's stack, smaller than std's 2 MiB default. Measured with the TLS test: a debug
/// build overflows at 128 KiB and runs at 256 KiB (rustls handshakes are the deepest part);
/// twice that for margin costs no memory, since only touched pages are resident.
pub(crate) const RENEWER_STACK: usize = 512 * 1024;
/// How long `stop` waits for the renewer to finish a request in flight before revoking anyway.
const RENEWER_JOIN: Duration = Duration::from_secs(1);
/// The budget for revoking what was acquired when start-up fails half-way.
const FAILED_START_REVOKE: Duration = Duration::from_secs(5);

/// Where the Vault code writes its internal records; [`Logger`] in production, a recorder in
/// tests.
pub trait Log: Send + 'static {
    fn info(&self, message: &str);
    fn error(&self, message: &str);
}

impl Log for crate::logs::direct::DirectLog {
    fn info(&self, message: &str) {
        crate::logs::direct::DirectLog::info(self, message);
    }
    fn error(&self, message: &str) {
        crate::logs::direct::DirectLog::error(self, message);
    }
}

impl Log for Logger {
    fn info(&self, message: &str) {
        Logger::info(self, message);
    }
    fn error(&self, message: &str) {
        Logger::error(self, message);
    }
}

/// What the renewer thread tells the supervisor.
#[derive(Debug)]
pub enum VaultEvent {
    /// A lease or the token is about to expire under `on-lease-expiry: exit`: stop and exit 1.
    /// The text says what expires (path or "token"), never a value.
    Expiring(String),
    /// Vault said a lease or the token is gone (revoked) under `on-lease-expiry: exit`: stop
    /// and exit 1.
    Revoked(String),
    /// Under `on-lease-expiry: restart`: everything was fetched anew; rebuild the environment
    /// with these values and restart the main jobs one by one.
    Refreshed {
        values: BTreeMap<String, String>,
        injection: VaultInjection,
    },
    /// A rotation could not fetch everything anew: it is abandoned, the old secrets, files
    /// and leases stay. The text is the record to write (stream 1).
    RotationFailed(String),
    /// A fatal Vault error after start-up (e.g. a credential expired for good): stop and
    /// exit 1.
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

/// Checks the Vault settings (`vault.auth` and its credential files, `VAULT_ADDR`, the login
/// variables, `VAULT_CACERT`, the client certificate and key, ...) without contacting Vault,
/// for `simplevisor check`: every problem `Session::start` would report as a settings error.
pub fn check_settings(settings: &VaultSettings, process_env: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(more) = Client::from_env(process_env) {
        problems.extend(more);
    }
    if let Err(more) =
        Credentials::from_settings(settings.auth.as_ref(), process_env, &settings.approle_mount)
    {
        problems.extend(more);
    }
    problems
}

/// A logged-in Vault client with its fetched secrets and a running renewer.
pub struct Session {
    values: BTreeMap<String, String>,
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    revoke_on_exit: bool,
    /// The renewer thread's inbox.
    renewer: Sender<Message>,
    /// Disconnected when the renewer thread has ended.
    finished: Receiver<()>,
    lifetimes: Arc<Mutex<renewer::Lifetimes>>,
    renewals: Arc<renewer::RenewalCounts>,
    log: Box<dyn Log>,
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
        Session::start_with(settings, process_env, plan, logger, events)
    }

    pub(crate) fn start_with<L: Log + Clone>(
        settings: &VaultSettings,
        process_env: &[(String, String)],
        plan: &EnvPlan,
        log: L,
        events: Mailbox<VaultEvent>,
    ) -> Result<Session, StartError> {
        // Every settings problem at once, as `check` reports them.
        let (client, credentials) = match (
            Client::from_env(process_env),
            Credentials::from_settings(
                settings.auth.as_ref(),
                process_env,
                &settings.approle_mount,
            ),
        ) {
            (Ok(client), Ok(credentials)) => (
                client.with_request_timeout(settings.request_timeout),
                credentials,
            ),
            (client, credentials) => {
                let mut problems = client.err().unwrap_or_default();
                problems.extend(credentials.err().unwrap_or_default());
                return Err(StartError::Config(problems.join("; ")));
            }
        };
        let deadline = crate::time::from_now(settings.startup_timeout);
        let how = credentials.describe();
        let issued = Instant::now();
        let token = retrying(deadline, &format!("logging in {how}"), &log, |timeout| {
            login::login(&client, &credentials, timeout)
        })
        .map_err(|e| {
            StartError::Vault(format!(
                "vault: logging in {how} at {} failed: {e}",
                client.addr()
            ))
        })?;
        log.info(&format!(
            "vault: logged in {how} at {} (token ttl {}, {})",
            client.addr(),
            describe_ttl(token.ttl),
            if token.renewable {
                "renewable"
            } else {
                "not renewable"
            }
        ));
        let ledger = Arc::new(Mutex::new(Ledger {
            tokens: vec![HeldToken {
                value: token.value.clone(),
                own: credentials.creates_token(),
                retired_until: None,
            }],
            leases: Vec::new(),
            stopping: false,
        }));
        let mut leases = Vec::new();
        let fetched = fetch_all(
            &client,
            &token.value,
            settings,
            plan,
            deadline,
            &mut leases,
            &log,
        );
        lock(&ledger).leases.extend(leases.iter().map(held));
        let give_back = |message: String| {
            if settings.revoke_on_exit {
                let ledger = lock(&ledger).clone();
                ledger::revoke_all(&client, &ledger, Instant::now() + FAILED_START_REVOKE, &log);
            }
            StartError::Vault(message)
        };
        let values = fetched.map_err(|message| give_back(format!("vault: {message}")))?;
        log.info(&format!(
            "vault: fetched {} secret value(s), {} lease(s)",
            values.len(),
            leases.len()
        ));

        let (renewer_tx, renewer_rx) = mpsc::channel();
        let lifetimes = Arc::new(Mutex::new(Vec::new()));
        let (finished_tx, finished) = mpsc::channel::<()>();
        let mut renewer = Renewer::new(
            client.clone(),
            credentials,
            settings.clone(),
            plan.clone(),
            Arc::clone(&ledger),
            events,
            log.clone(),
            &token,
            leases,
            issued,
            renewer_tx.clone(),
            Arc::clone(&lifetimes),
        );
        let renewals = Arc::new(renewer::RenewalCounts::default());
        renewer.counts = Arc::clone(&renewals);
        std::thread::Builder::new()
            .name("vault".into())
            .stack_size(RENEWER_STACK)
            .spawn(move || {
                let _finished = finished_tx;
                renewer.run(renewer_rx);
            })
            .map_err(|e| give_back(format!("vault: cannot start the renewer thread: {e}")))?;
        Ok(Session {
            values,
            client,
            ledger,
            revoke_on_exit: settings.revoke_on_exit,
            renewer: renewer_tx,
            finished,
            lifetimes,
            renewals,
            log: Box::new(log),
        })
    }

    /// Each `vault-replace` variable of the plan with its secret value, as fetched at start
    /// (later values come with [`VaultEvent::Refreshed`]).
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The current token and address, for `vault-token: true`.
    pub fn injection(&self) -> VaultInjection {
        VaultInjection {
            token: lock(&self.ledger).current_token().to_string(),
            addr: self.client.addr().to_string(),
        }
    }

    /// The main jobs were restarted with the secrets of a [`VaultEvent::Refreshed`]: the
    /// renewer revokes the leases (and our old token) they replaced, in the background.
    pub fn revoke_superseded(&self) {
        let _ = self.renewer.send(Message::RevokeSuperseded);
    }

    /// Renewals that succeeded and that failed so far.
    pub fn renewals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.renewals.ok.load(Relaxed),
            self.renewals.failed.load(Relaxed),
        )
    }

    /// `simplevisor rotate`: the renewer fetches every secret anew; the outcome comes as
    /// [`VaultEvent::Refreshed`] or [`VaultEvent::RotationFailed`].
    pub fn rotate(&self) {
        let _ = self.renewer.send(Message::Rotate);
    }

    /// The refreshed secrets could not be brought to the jobs: the renewer gives back the new
    /// leases and keeps the old.
    pub fn abandon_rotation(&self) {
        let _ = self.renewer.send(Message::Abandon);
    }

    /// Each credential's reference (`token`, `db:app`) and its time left (`None`: it does
    /// not expire), for `status`. Never an id or a value.
    pub fn lifetimes(&self, now: Instant) -> Vec<(String, Option<Duration>)> {
        let list = match self.lifetimes.lock() {
            Ok(list) => list.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        list.into_iter()
            .map(|(reference, expiry)| {
                (
                    reference,
                    expiry.map(|at| at.saturating_duration_since(now)),
                )
            })
            .collect()
    }

    /// For the panic hook: revokes everything held (with `revoke-on-exit`) within `budget`,
    /// logging through `log`. `None` without `revoke-on-exit`.
    pub fn emergency_revoker<L: Log + Sync>(
        &self,
        budget: Duration,
        log: L,
    ) -> Option<Box<dyn Fn() + Send>> {
        if !self.revoke_on_exit {
            return None;
        }
        let client = self.client.clone();
        let ledger = Arc::clone(&self.ledger);
        Some(Box::new(move || {
            // The panicking thread may hold the ledger: then it cannot be read safely.
            let held = match ledger.try_lock() {
                Ok(ledger) => ledger.clone(),
                Err(_) => return,
            };
            ledger::revoke_all(&client, &held, crate::time::from_now(budget), &log);
        }))
    }

    /// Stops the renewer; with `revoke-on-exit`, revokes every lease (and the token if we
    /// logged in ourselves), giving up at `deadline`.
    pub fn stop(self, deadline: Instant) {
        let _ = self.renewer.send(Message::Stop);
        // A renewal in flight finishes within its timeout; revocation need not wait for it.
        let wait = RENEWER_JOIN.min(client::time_left(deadline));
        let _ = self.finished.recv_timeout(wait);
        let ledger = {
            let mut ledger = lock(&self.ledger);
            ledger.stopping = self.revoke_on_exit;
            ledger.clone()
        };
        if self.revoke_on_exit {
            ledger::revoke_all(&self.client, &ledger, deadline, self.log.as_ref());
        }
    }
}

/// A TTL for messages: `4s`, or `none` for a token that never expires.
fn describe_ttl(ttl: Duration) -> String {
    if ttl.is_zero() {
        "none".into()
    } else {
        format!("{}s", ttl.as_secs())
    }
}
