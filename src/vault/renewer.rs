//! The renewer thread: renews the token (`renew-self`) and every renewable lease
//! (`sys/leases/renew`) on the schedule of [`lease`](super::lease), logs each renewal and
//! failure, and when something is about to expire, or Vault says it is gone, either reports it
//! (`on-lease-expiry: exit`) or logs in again if needed and fetches everything anew (`restart`).
//!
//! The thread never waits on a renewal itself: each one runs on a short-lived thread of its own
//! (bounded by the request timeout) and reports back through the renewer's inbox. So a Vault
//! that accepts connections but never answers delays no other renewal, and an expiry is acted
//! on at its time whatever is still in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Client, Method, RequestError, retrying};
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
    /// A renewal of it is on its way: no second one is sent meanwhile.
    in_flight: bool,
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
    token_in_flight: bool,
    kept: Vec<Kept>,
    /// Where renewal threads send their outcome (the renewer's own inbox).
    outbox: Sender<Message>,
    /// What `status` shows: each credential's reference and when it expires.
    lifetimes: Arc<Mutex<Lifetimes>>,
    /// The leases a refresh replaced, until the supervisor adopted the new secrets
    /// ([`Message::RevokeSuperseded`]) or abandoned them ([`Message::Abandon`]).
    previous: Option<Vec<Kept>>,
    /// A rotation after an expiry failed: try again at `at`, until what expires is gone.
    retry: Option<Retry>,
    /// Shared with the session, for the metrics.
    pub counts: Arc<RenewalCounts>,
}

/// The next attempt at a rotation an expiry called for.
struct Retry {
    at: Instant,
    /// When what expires is really gone: past it, the jobs' credentials are dead.
    until: Instant,
    what: String,
    token_expired: bool,
    token_gone: bool,
}

/// How long after a failed rotation an expiry's rotation is tried again.
const ROTATION_RETRY: Duration = Duration::from_secs(5);

/// Renewals so far, for the metrics (the renewer counts, the supervisor reads).
#[derive(Debug, Default)]
pub struct RenewalCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// The token's and each lease's expiry (`None`: never), by reference, for `status`.
pub type Lifetimes = Vec<(String, Option<Instant>)>;

/// What reaches the renewer thread: the supervisor's requests and the outcome of renewals.
pub enum Message {
    /// Stop renewing (the session is ending).
    Stop,
    /// The main jobs run with the refreshed secrets: give back what they replaced.
    RevokeSuperseded,
    /// `simplevisor rotate`: fetch every secret anew now.
    Rotate,
    /// The refreshed secrets could not be brought to the jobs (a file could not be written):
    /// give back the new leases and keep the old ones.
    Abandon,
    /// A renewal sent at `sent` came back.
    Renewal {
        subject: Subject,
        sent: Instant,
        outcome: Outcome,
    },
}

/// What a renewal was for. An outcome for a token or lease since replaced is ignored.
#[derive(Clone, PartialEq, Eq)]
pub enum Subject {
    Token(String),
    Lease(String),
}

/// How a renewal went.
pub enum Outcome {
    Renewed {
        ttl: Duration,
        renewable: bool,
    },
    /// Worth another attempt (Vault unreachable, slow, failing, or an unexpected answer).
    Failed(RequestError),
    /// Vault says the lease is gone (revoked, or unknown to it): renewing again cannot help.
    LeaseGone(RequestError),
    /// Vault says our token is gone (revoked): nothing can be renewed with it.
    TokenGone(RequestError),
}

/// What ended, for the expiry policy.
enum Expired {
    Token,
    Lease(String),
}

/// Why it ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Less than a tenth of its TTL left and not renewed.
    Expiring,
    /// Vault said it is gone.
    Revoked,
}

impl<L: Log + Clone> Renewer<L> {
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
        outbox: Sender<Message>,
        lifetimes: Arc<Mutex<Lifetimes>>,
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
            token_in_flight: false,
            kept: keep(leases, issued),
            outbox,
            lifetimes,
            previous: None,
            retry: None,
            counts: Arc::default(),
        }
    }

    /// Publishes the current expiries for `status`.
    fn publish(&self) {
        let token = (
            "token".to_string(),
            self.token_life.as_ref().map(Tracked::expires_at),
        );
        let leases = self.kept.iter().map(|kept| {
            let expiry = kept
                .life
                .as_ref()
                .map(Tracked::expires_at)
                .or(kept.expires_at);
            (kept.lease.label.clone(), expiry)
        });
        let list: Lifetimes = std::iter::once(token).chain(leases).collect();
        match self.lifetimes.lock() {
            Ok(mut shared) => *shared = list,
            Err(poisoned) => *poisoned.into_inner() = list,
        }
    }

    /// Runs until `inbox` says stop.
    pub fn run(mut self, inbox: Receiver<Message>) {
        loop {
            self.tick();
            self.publish();
            let wait = self
                .wake_at()
                .map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
            match inbox.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Message::RevokeSuperseded) => self.revoke_superseded(),
                Ok(Message::Rotate) => {
                    self.rotate("simplevisor rotate", false, false);
                }
                Ok(Message::Abandon) => self.abandon(),
                Ok(Message::Renewal {
                    subject,
                    sent,
                    outcome,
                }) => self.on_renewal(subject, sent, outcome),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Revokes the leases (and our own tokens) a refresh replaced, now that no job uses them,
    /// instead of leaving them valid until their max TTL. Only with `revoke-on-exit`: an
    /// operator who keeps leases alive on exit keeps these too.
    fn revoke_superseded(&mut self) {
        self.previous = None;
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
        self.give_back(superseded, "superseded leases");
    }

    /// The next moment something is due. A renewal in flight has nothing due but its expiry.
    fn wake_at(&self) -> Option<Instant> {
        let token = self
            .token_life
            .as_ref()
            .map(|life| wake_at(life, self.token_in_flight));
        let leases = self
            .kept
            .iter()
            .filter_map(|k| k.life.as_ref().map(|life| wake_at(life, k.in_flight)));
        let retry = self.retry.as_ref().map(|retry| retry.at);
        token.into_iter().chain(leases).chain(retry).min()
    }

    /// Does whatever is due now: sends the renewals that are due, then acts on at most one
    /// expiry.
    fn tick(&mut self) {
        let now = Instant::now();
        if self.retry.as_ref().is_some_and(|retry| retry.at <= now) {
            self.retry_rotation(now);
        }
        let mut expired = None;
        if let Some(life) = &self.token_life {
            match life.due(now) {
                Due::Renew if !self.token_in_flight => {
                    self.token_in_flight = true;
                    self.send_renewal(Subject::Token(self.token.clone()), now);
                }
                Due::Expiring => {
                    self.token_life = None;
                    expired = Some(Expired::Token);
                }
                Due::Renew | Due::Nothing => {}
            }
        }
        let mut due = Vec::new();
        for kept in &mut self.kept {
            let Some(life) = &kept.life else { continue };
            match life.due(now) {
                Due::Renew if !kept.in_flight => {
                    kept.in_flight = true;
                    due.push(Subject::Lease(kept.lease.id.clone()));
                }
                Due::Expiring if expired.is_none() => {
                    kept.expires_at = Some(life.expires_at());
                    kept.life = None;
                    expired = Some(Expired::Lease(kept.lease.label.clone()));
                }
                Due::Renew | Due::Expiring | Due::Nothing => {}
            }
        }
        for subject in due {
            self.send_renewal(subject, now);
        }
        if let Some(expired) = expired {
            self.on_expiry(expired, Ending::Expiring);
        }
    }

    /// Starts one renewal on a thread of its own; its outcome comes back as a message.
    fn send_renewal(&self, subject: Subject, sent: Instant) {
        let client = self.client.clone();
        let token = self.token.clone();
        let outbox = self.outbox.clone();
        let request = subject.clone();
        let spawned = std::thread::Builder::new()
            .name("vault-renew".into())
            .stack_size(super::RENEWER_STACK)
            .spawn(move || {
                let outcome = match &request {
                    Subject::Token(_) => renew_token(&client, &token),
                    Subject::Lease(id) => renew_lease(&client, &token, id),
                };
                let _ = outbox.send(Message::Renewal {
                    subject: request,
                    sent,
                    outcome,
                });
            });
        if let Err(error) = spawned {
            let _ = self.outbox.send(Message::Renewal {
                subject,
                sent,
                outcome: Outcome::Failed(RequestError::Transport(format!(
                    "cannot start a renewal thread: {error}"
                ))),
            });
        }
    }

    /// A renewal came back: record the new TTL, schedule a retry, or act on a credential
    /// that is gone.
    fn on_renewal(&mut self, subject: Subject, sent: Instant, outcome: Outcome) {
        let now = Instant::now();
        let counter = match outcome {
            Outcome::Renewed { .. } => &self.counts.ok,
            _ => &self.counts.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match subject {
            Subject::Token(token) => {
                if token != self.token {
                    return; // a token since replaced
                }
                self.token_in_flight = false;
                let Some(life) = &mut self.token_life else {
                    return; // already acted on its expiry
                };
                match outcome {
                    Outcome::Renewed { ttl, renewable } => {
                        life.renewed(sent, ttl, renewable);
                        self.log.info(&format!(
                            "vault: renewed the token (ttl {}s)",
                            ttl.as_secs()
                        ));
                    }
                    Outcome::Failed(e) => {
                        let delay = life.failed(now);
                        self.log.error(&format!(
                            "vault: renewing the token failed, next attempt in {}s: {e}",
                            delay.as_secs()
                        ));
                    }
                    Outcome::LeaseGone(e) | Outcome::TokenGone(e) => self.token_gone(&e),
                }
            }
            Subject::Lease(id) => {
                let Some(kept) = self.kept.iter_mut().find(|k| k.lease.id == id) else {
                    return; // a lease since replaced
                };
                kept.in_flight = false;
                let Some(life) = &mut kept.life else {
                    return;
                };
                match outcome {
                    Outcome::Renewed { ttl, renewable } => {
                        life.renewed(sent, ttl, renewable);
                        self.log.info(&format!(
                            "vault: renewed the lease of {} (ttl {}s)",
                            kept.lease.label,
                            ttl.as_secs()
                        ));
                    }
                    Outcome::Failed(e) => {
                        let delay = life.failed(now);
                        self.log.error(&format!(
                            "vault: renewing the lease of {} failed, next attempt in {}s: {e}",
                            kept.lease.label,
                            delay.as_secs()
                        ));
                    }
                    Outcome::LeaseGone(e) => {
                        kept.expires_at = Some(life.expires_at());
                        kept.life = None;
                        let label = kept.lease.label.clone();
                        self.log.error(&format!(
                            "vault: the lease of {label} was revoked or is unknown to Vault (renewal refused: {e})"
                        ));
                        self.on_expiry(Expired::Lease(label), Ending::Revoked);
                    }
                    Outcome::TokenGone(e) => self.token_gone(&e),
                }
            }
        }
    }

    fn token_gone(&mut self, error: &RequestError) {
        self.token_life = None;
        self.log.error(&format!(
            "vault: the token was revoked (renewal refused: {error})"
        ));
        self.on_expiry(Expired::Token, Ending::Revoked);
    }

    fn on_expiry(&mut self, expired: Expired, ending: Ending) {
        let what = match &expired {
            Expired::Token => "token".to_string(),
            Expired::Lease(label) => label.clone(),
        };
        let how = match ending {
            Ending::Expiring => "is about to expire",
            Ending::Revoked => "was revoked",
        };
        match self.settings.on_lease_expiry {
            ExpiryPolicy::Exit => {
                if ending == Ending::Expiring {
                    self.log.error(&format!(
                        "vault: {what} is about to expire and cannot be renewed"
                    ));
                }
                self.events.send(match ending {
                    Ending::Expiring => VaultEvent::Expiring(what),
                    Ending::Revoked => VaultEvent::Revoked(what),
                });
            }
            ExpiryPolicy::Restart => {
                self.log
                    .info(&format!("vault: {what} {how}; fetching every secret anew"));
                let token_expired = matches!(expired, Expired::Token);
                let until = self.expiry_of(&expired);
                if !self.rotate(
                    &what,
                    token_expired,
                    token_expired && ending == Ending::Revoked,
                ) && !lock(&self.ledger).stopping
                {
                    self.retry = Some(Retry {
                        at: crate::time::from_now(ROTATION_RETRY),
                        until,
                        what,
                        token_expired,
                        token_gone: token_expired && ending == Ending::Revoked,
                    });
                }
            }
        }
    }

    /// When what `expired` names is really gone (now, for something Vault said is gone).
    fn expiry_of(&self, expired: &Expired) -> Instant {
        let now = Instant::now();
        match expired {
            Expired::Token => now,
            Expired::Lease(label) => self
                .kept
                .iter()
                .find(|k| &k.lease.label == label)
                .and_then(|k| k.expires_at)
                .unwrap_or(now),
        }
    }

    /// A rotation: fetches everything anew and hands the values to the supervisor, or
    /// abandons it with everything as it was (a record on stream 1). `false` when abandoned.
    fn rotate(&mut self, why: &str, token_expired: bool, token_gone: bool) -> bool {
        match self.refresh(token_expired, token_gone) {
            Ok((values, injection)) => {
                self.retry = None;
                self.log.info(&format!(
                    "vault: fetched every secret anew ({} value(s)) for a rotation ({why})",
                    values.len()
                ));
                self.events
                    .send(VaultEvent::Refreshed { values, injection });
                true
            }
            Err(message) if lock(&self.ledger).stopping => {
                self.log.info(&format!("vault: {message}"));
                false
            }
            Err(message) => {
                // The supervisor writes the record (stream 1).
                self.events.send(VaultEvent::RotationFailed(format!(
                    "rotation abandoned ({why}): {message}; the jobs keep the secrets, files and leases they have"
                )));
                false
            }
        }
    }

    /// Another attempt at the rotation an expiry called for; past the expiry itself, the
    /// jobs' credentials are dead: a fatal error.
    fn retry_rotation(&mut self, now: Instant) {
        let Some(retry) = self.retry.take() else {
            return;
        };
        if now >= retry.until {
            self.events.send(VaultEvent::Fatal(format!(
                "{} expired and could not be fetched anew; stopping",
                retry.what
            )));
            return;
        }
        if !self.rotate(&retry.what, retry.token_expired, retry.token_gone)
            && !lock(&self.ledger).stopping
        {
            self.retry = Some(Retry {
                at: later_of(now, ROTATION_RETRY),
                ..retry
            });
        }
    }

    /// The supervisor could not use the refreshed secrets: revoke the new leases, keep the
    /// old ones as they were.
    fn abandon(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        let ids: Vec<&str> = previous.iter().map(|k| k.lease.id.as_str()).collect();
        let new = lock(&self.ledger).abandon_refresh(&ids);
        self.kept = previous;
        self.give_back(new, "the leases of an abandoned rotation");
    }

    /// Revokes `ledger` on a thread of its own: a Vault that hangs must not hold up expiry.
    fn give_back(&self, ledger: Ledger, what: &str) {
        let nothing = ledger.leases.is_empty() && ledger.tokens.iter().all(|t| !t.own);
        if !self.settings.revoke_on_exit || nothing {
            return;
        }
        let client = self.client.clone();
        let log = self.log.clone();
        let spawned = std::thread::Builder::new()
            .name("vault-revoke".into())
            .stack_size(super::RENEWER_STACK)
            .spawn(move || {
                let deadline = crate::time::from_now(client.request_timeout());
                revoke_all(&client, &ledger, deadline, &log);
            });
        if let Err(error) = spawned {
            self.log.error(&format!(
                "vault: cannot start a thread to revoke {what}: {error}; they expire at their TTL"
            ));
        }
    }

    /// Logs in again when the token is what expires, then fetches everything anew. The old
    /// leases stay valid while running jobs still use them; they are retired in the ledger and
    /// revoked once the jobs were restarted ([`Command::RevokeSuperseded`]) or on exit.
    /// `token_gone`: Vault said the old token was revoked, so there is nothing to revoke.
    fn refresh(
        &mut self,
        token_expired: bool,
        token_gone: bool,
    ) -> Result<(BTreeMap<String, String>, VaultInjection), String> {
        let deadline = crate::time::from_now(self.settings.startup_timeout);
        if token_expired {
            if !self.credentials.can_login_again() {
                return Err(
                    "the token given in VAULT_TOKEN is gone and simplevisor cannot log in again with it: cannot fetch anew"
                        .into(),
                );
            }
            // Certificate files are read anew at every login, like credential files: a client
            // certificate renewed since the start is the one to log in with. If they cannot be
            // read now, the client keeps what it read before.
            match self.client.reloaded() {
                Ok(client) => self.client = client,
                Err(error) => self.log.error(&format!(
                    "vault: keeping the TLS settings read before: {error}"
                )),
            }
            let issued = Instant::now();
            let how = self.credentials.describe();
            let token = retrying(
                deadline,
                &format!("logging in again {how}"),
                &self.log,
                |timeout| login::login(&self.client, &self.credentials, timeout),
            )
            .map_err(|e| format!("logging in again {how} failed: {e}"))?;
            self.log.info(&format!("vault: logged in again {how}"));
            let previous_until = Some(Instant::now() + Duration::from_secs(1));
            let mut ledger = lock(&self.ledger);
            ledger.replace_token(
                HeldToken {
                    value: token.value.clone(),
                    own: self.credentials.creates_token(),
                    retired_until: None,
                },
                previous_until,
            );
            if token_gone && let Some(previous) = ledger.tokens.get_mut(1) {
                // Revoking it would only be refused (403) and logged as a failure.
                previous.own = false;
            }
            drop(ledger);
            self.token = token.value;
            self.token_life = Tracked::new(issued, token.ttl, token.renewable);
            self.token_in_flight = false;
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
            &self.log,
        );
        let expiry: BTreeMap<String, Instant> = self
            .kept
            .iter()
            .filter_map(|k| {
                let expiry = k.life.as_ref().map(Tracked::expires_at).or(k.expires_at)?;
                Some((k.lease.id.clone(), expiry))
            })
            .collect();
        let mut ledger = lock(&self.ledger);
        if ledger.stopping || result.is_err() {
            // Stopping: Session::stop has already revoked what it knew of. Failed: the old
            // leases stay. Either way what was fetched is ours to give back.
            let stopping = ledger.stopping;
            drop(ledger);
            let fetched = Ledger {
                // Used to revoke the leases; the token itself is not given back here.
                tokens: vec![HeldToken {
                    value: self.token.clone(),
                    own: false,
                    retired_until: None,
                }],
                leases: leases.iter().map(held).collect(),
                stopping: true,
            };
            if stopping {
                let deadline = crate::time::from_now(self.client.request_timeout());
                revoke_all(&self.client, &fetched, deadline, &self.log);
                return Err("stopped while fetching anew".into());
            }
            self.give_back(fetched, "the leases fetched before the failure");
            return Err(match result {
                Err(message) => message,
                Ok(_) => "fetching anew failed".into(),
            });
        }
        ledger.retire_leases(|id| expiry.get(id).copied());
        ledger.leases.extend(leases.iter().map(held));
        drop(ledger);
        // Kept until the supervisor adopted the new secrets or gave them up.
        let previous = std::mem::replace(&mut self.kept, keep(leases, issued));
        self.previous = Some(previous);
        let values = result?;
        let injection = VaultInjection {
            token: self.token.clone(),
            addr: self.client.addr().to_string(),
        };
        Ok((values, injection))
    }
}

/// `at` + `delay`, saturating.
fn later_of(at: Instant, delay: Duration) -> Instant {
    crate::time::later(at, delay)
}

fn keep(leases: Vec<Lease>, issued: Instant) -> Vec<Kept> {
    leases
        .into_iter()
        .map(|lease| Kept {
            life: Tracked::new(issued, lease.ttl, lease.renewable),
            lease,
            expires_at: None,
            in_flight: false,
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

/// When `life` next needs the renewer: its expiry only, while a renewal is in flight.
fn wake_at(life: &Tracked, in_flight: bool) -> Instant {
    if in_flight {
        life.expiring_at()
    } else {
        life.wake_at()
    }
}

/// `auth/token/renew-self`. A 403 means the token is gone (revoked, or expired meanwhile).
fn renew_token(client: &Client, token: &str) -> Outcome {
    match login::renew_self(client, token, client.request_timeout()) {
        Ok((ttl, renewable)) => Outcome::Renewed { ttl, renewable },
        Err(e @ RequestError::Status { code: 403, .. }) => Outcome::TokenGone(e),
        Err(e) => Outcome::Failed(e),
    }
}

/// `sys/leases/renew`. Vault answers 400 for a lease it does not know (revoked, or expired),
/// and 403 when the token itself is gone, or lacks the permission: a lookup of the token
/// tells which.
fn renew_lease(client: &Client, token: &str, id: &str) -> Outcome {
    let timeout = client.request_timeout();
    let answer = client.request(
        Method::Put,
        "sys/leases/renew",
        Some(token),
        Some(&json!({ "lease_id": id })),
        timeout,
    );
    match answer {
        Ok(answer) => match login::seconds(answer.get("lease_duration"), "lease_duration") {
            Ok(ttl) => Outcome::Renewed {
                ttl,
                renewable: answer
                    .get("renewable")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
            },
            Err(e) => Outcome::Failed(e),
        },
        Err(e @ RequestError::Status { code: 400, .. }) => Outcome::LeaseGone(e),
        Err(e @ RequestError::Status { code: 403, .. }) => {
            match client.request(
                Method::Get,
                "auth/token/lookup-self",
                Some(token),
                None,
                timeout,
            ) {
                Err(RequestError::Status { code: 403, .. }) => Outcome::TokenGone(e),
                Ok(_) => Outcome::LeaseGone(e),
                Err(_) => Outcome::Failed(e),
            }
        }
        Err(e) => Outcome::Failed(e),
    }
}
