//! The renewer thread: renews the token (`renew-self`) and every renewable lease
//! (`sys/leases/renew`) on the schedule of [`lease`](super::lease), logs each renewal and
//! failure, and when something is about to expire either reports it (`on-lease-expiry: exit`)
//! or logs in again if needed and fetches everything anew (`restart`).

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Client, Method, REQUEST_TIMEOUT, RequestError, retrying};
use super::lease::{Due, Tracked};
use super::ledger::{HeldLease, HeldToken, Ledger, revoke_all};
use super::login::{self, Credentials, Token};
use super::secrets::{self, Lease};
use super::{Log, VaultEvent};
use crate::config::{ExpiryPolicy, VaultSettings};
use crate::environment::{EnvPlan, VaultInjection};
use crate::mailbox::Mailbox;

/// How long the thread sleeps when nothing has a finite TTL (it still wakes up to stop).
const IDLE: Duration = Duration::from_secs(3600);

/// A lease being kept alive (`life` is `None` once it has expired or was reported).
struct Kept {
    lease: Lease,
    life: Option<Tracked>,
    /// When the lease expires, kept after `life` is dropped at expiry: a refresh retires the
    /// lease until then, so it can still be revoked.
    expires_at: Option<Instant>,
}

/// Everything the renewer thread owns.
pub struct Renewer<L: Log> {
    pub client: Client,
    pub credentials: Credentials,
    pub settings: VaultSettings,
    pub plan: EnvPlan,
    pub ledger: Arc<Mutex<Ledger>>,
    pub events: Mailbox<VaultEvent>,
    pub log: L,
    token: String,
    token_life: Option<Tracked>,
    kept: Vec<Kept>,
}

/// What the supervisor asks of the renewer thread.
pub enum Command {
    /// Stop renewing (the session is ending).
    Stop,
    /// The main jobs run with the refreshed secrets: give back what they replaced.
    RevokeSuperseded,
}

/// What expired, for the expiry policy.
enum Expired {
    Token,
    Lease(String),
}

impl<L: Log> Renewer<L> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        credentials: Credentials,
        settings: VaultSettings,
        plan: EnvPlan,
        ledger: Arc<Mutex<Ledger>>,
        events: Mailbox<VaultEvent>,
        log: L,
        token: &Token,
        leases: Vec<Lease>,
        issued: Instant,
    ) -> Self {
        Renewer {
            client,
            credentials,
            settings,
            plan,
            ledger,
            events,
            log,
            token: token.value.clone(),
            token_life: Tracked::new(issued, token.ttl, token.renewable),
            kept: keep(leases, issued),
        }
    }

    /// Runs until `commands` says stop or its sender is dropped.
    pub fn run(mut self, commands: Receiver<Command>) {
        loop {
            self.tick();
            let wait = self
                .wake_at()
                .map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
            match commands.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Command::RevokeSuperseded) => self.revoke_superseded(),
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Revokes the leases (and our own tokens) a refresh replaced, now that no job uses them,
    /// instead of leaving them valid until their max TTL. Only with `revoke-on-exit`: an
    /// operator who keeps leases alive on exit keeps these too.
    fn revoke_superseded(&mut self) {
        if !self.settings.revoke_on_exit {
            return;
        }
        let superseded = {
            let mut ledger = lock(&self.ledger);
            if ledger.stopping {
                return;
            }
            ledger.take_superseded()
        };
        revoke_all(
            &self.client,
            &superseded,
            Instant::now() + REQUEST_TIMEOUT,
            &self.log,
        );
    }

    fn wake_at(&self) -> Option<Instant> {
        self.token_life
            .iter()
            .chain(self.kept.iter().filter_map(|k| k.life.as_ref()))
            .map(Tracked::wake_at)
            .min()
    }

    /// Does whatever is due now: renewals first, then at most one expiry.
    fn tick(&mut self) {
        let mut expired = None;
        if let Some(life) = &mut self.token_life {
            let now = Instant::now();
            match life.due(now) {
                Due::Renew => match login::renew_self(&self.client, &self.token, REQUEST_TIMEOUT) {
                    Ok((ttl, renewable)) => {
                        life.renewed(now, ttl, renewable);
                        self.log.info(&format!(
                            "vault: renewed the token (ttl {}s)",
                            ttl.as_secs()
                        ));
                    }
                    Err(e) => {
                        let delay = life.failed(now);
                        self.log.error(&format!(
                            "vault: renewing the token failed, next attempt in {}s: {e}",
                            delay.as_secs()
                        ));
                    }
                },
                Due::Expiring => {
                    self.token_life = None;
                    expired = Some(Expired::Token);
                }
                Due::Nothing => {}
            }
        }
        for kept in &mut self.kept {
            let Some(life) = &mut kept.life else { continue };
            let now = Instant::now();
            match life.due(now) {
                Due::Renew => match renew_lease(&self.client, &self.token, &kept.lease.id) {
                    Ok((ttl, renewable)) => {
                        life.renewed(now, ttl, renewable);
                        self.log.info(&format!(
                            "vault: renewed the lease of {} (ttl {}s)",
                            kept.lease.label,
                            ttl.as_secs()
                        ));
                    }
                    Err(e) => {
                        let delay = life.failed(now);
                        self.log.error(&format!(
                            "vault: renewing the lease of {} failed, next attempt in {}s: {e}",
                            kept.lease.label,
                            delay.as_secs()
                        ));
                    }
                },
                Due::Expiring if expired.is_none() => {
                    kept.expires_at = Some(life.expires_at());
                    kept.life = None;
                    expired = Some(Expired::Lease(kept.lease.label.clone()));
                }
                Due::Expiring | Due::Nothing => {}
            }
        }
        if let Some(expired) = expired {
            self.on_expiry(expired);
        }
    }

    fn on_expiry(&mut self, expired: Expired) {
        let what = match &expired {
            Expired::Token => "token".to_string(),
            Expired::Lease(label) => label.clone(),
        };
        match self.settings.on_lease_expiry {
            ExpiryPolicy::Exit => {
                self.log.error(&format!(
                    "vault: {what} is about to expire and cannot be renewed"
                ));
                self.events.send(VaultEvent::Expiring(what));
            }
            ExpiryPolicy::Restart => {
                self.log.info(&format!(
                    "vault: {what} is about to expire; fetching every secret anew"
                ));
                match self.refresh(matches!(expired, Expired::Token)) {
                    Ok((values, injection)) => {
                        self.log.info("vault: fetched every secret anew");
                        self.events
                            .send(VaultEvent::Refreshed { values, injection });
                    }
                    Err(message) if lock(&self.ledger).stopping => {
                        self.log.info(&format!("vault: {message}"));
                    }
                    Err(message) => {
                        self.log.error(&format!("vault: {message}"));
                        self.events.send(VaultEvent::Fatal(message));
                    }
                }
            }
        }
    }

    /// Logs in again when the token is what expires, then fetches everything anew. The old
    /// leases stay valid while running jobs still use them; they are retired in the ledger and
    /// revoked once the jobs were restarted ([`Command::RevokeSuperseded`]) or on exit.
    fn refresh(
        &mut self,
        token_expired: bool,
    ) -> Result<(BTreeMap<String, String>, VaultInjection), String> {
        let deadline = crate::time::from_now(self.settings.startup_timeout);
        if token_expired {
            if !self.credentials.creates_token() {
                return Err(
                    "the token from VAULT_TOKEN expires and cannot be renewed: cannot fetch anew"
                        .into(),
                );
            }
            let issued = Instant::now();
            let token = retrying(deadline, |timeout| {
                login::login(
                    &self.client,
                    &self.credentials,
                    &self.settings.approle_mount,
                    timeout,
                )
            })
            .map_err(|e| format!("logging in again failed: {e}"))?;
            self.log.info("vault: logged in again");
            let previous_until = Some(Instant::now() + Duration::from_secs(1));
            lock(&self.ledger).replace_token(
                HeldToken {
                    value: token.value.clone(),
                    own: true,
                    retired_until: None,
                },
                previous_until,
            );
            self.token = token.value;
            self.token_life = Tracked::new(issued, token.ttl, token.renewable);
        }
        let issued = Instant::now();
        let mut leases = Vec::new();
        let result = secrets::fetch_all(
            &self.client,
            &self.token,
            &self.settings,
            &self.plan,
            deadline,
            &mut leases,
        );
        {
            let expiry: BTreeMap<&str, Instant> = self
                .kept
                .iter()
                .filter_map(|k| {
                    let expiry = k.life.as_ref().map(Tracked::expires_at).or(k.expires_at)?;
                    Some((k.lease.id.as_str(), expiry))
                })
                .collect();
            let mut ledger = lock(&self.ledger);
            if ledger.stopping {
                // Session::stop has already revoked what it knew of: these are ours to give back.
                let late = Ledger {
                    // Used to revoke the leases; the token itself is Session::stop's business.
                    tokens: vec![HeldToken {
                        value: self.token.clone(),
                        own: false,
                        retired_until: None,
                    }],
                    leases: leases.iter().map(held).collect(),
                    stopping: true,
                };
                drop(ledger);
                let deadline = Instant::now() + REQUEST_TIMEOUT;
                revoke_all(&self.client, &late, deadline, &self.log);
                return Err("stopped while fetching anew".into());
            }
            ledger.retire_leases(|id| expiry.get(id).copied());
            ledger.leases.extend(leases.iter().map(held));
        }
        self.kept = keep(leases, issued);
        let values = result?;
        let injection = VaultInjection {
            token: self.token.clone(),
            addr: self.client.addr().to_string(),
        };
        Ok((values, injection))
    }
}

fn keep(leases: Vec<Lease>, issued: Instant) -> Vec<Kept> {
    leases
        .into_iter()
        .map(|lease| Kept {
            life: Tracked::new(issued, lease.ttl, lease.renewable),
            lease,
            expires_at: None,
        })
        .collect()
}

/// The ledger entry of a newly acquired lease.
pub fn held(lease: &Lease) -> HeldLease {
    HeldLease {
        id: lease.id.clone(),
        label: lease.label.clone(),
        retired_until: None,
    }
}

/// The ledger even if another thread panicked while holding it: its data stays consistent
/// (every update is a single push or field write).
pub fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `sys/leases/renew`: the new TTL and whether it stays renewable.
fn renew_lease(client: &Client, token: &str, id: &str) -> Result<(Duration, bool), RequestError> {
    let answer = client.request(
        Method::Put,
        "sys/leases/renew",
        Some(token),
        Some(&json!({ "lease_id": id })),
        REQUEST_TIMEOUT,
    )?;
    Ok((
        login::seconds(answer.get("lease_duration")),
        answer
            .get("renewable")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    ))
}
