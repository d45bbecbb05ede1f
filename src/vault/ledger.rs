//! What simplevisor holds from Vault and must give back: the current token (and whether we
//! created it), every lease acquired, and superseded ones after a refresh. Shared between the
//! renewer thread, which records, and [`Session::stop`](super::Session::stop), which revokes
//! within the exit deadline even if the renewer is stuck in a request.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Log;
use super::client::{Client, Method, time_left};
use super::login::revoke_self;

/// One lease to revoke on exit.
#[derive(Debug, Clone)]
pub struct HeldLease {
    pub id: String,
    pub label: String,
    /// For a lease superseded by a refresh: when it expires anyway (no point revoking after).
    pub retired_until: Option<Instant>,
}

/// One token of ours to revoke on exit.
#[derive(Debug, Clone)]
pub struct HeldToken {
    pub value: String,
    /// Whether simplevisor created it (AppRole login); only those are revoked.
    pub own: bool,
    pub retired_until: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Ledger {
    /// The current token first, then superseded ones.
    pub tokens: Vec<HeldToken>,
    pub leases: Vec<HeldLease>,
    /// Set by `Session::stop` before it revokes: whatever the renewer acquires afterwards
    /// (a refresh still in flight) it must give back itself.
    pub stopping: bool,
}

impl Ledger {
    /// The token in use now.
    pub fn current_token(&self) -> &str {
        self.tokens.first().map_or("", |token| token.value.as_str())
    }

    /// Makes `token` the current one; the previous one is kept for revocation until `until`.
    pub fn replace_token(&mut self, token: HeldToken, previous_until: Option<Instant>) {
        if let Some(previous) = self.tokens.first_mut() {
            previous.retired_until = previous_until;
        }
        self.tokens.insert(0, token);
    }

    /// Marks every current lease as superseded, expiring at the given moments (by id).
    pub fn retire_leases(&mut self, expiry: impl Fn(&str) -> Option<Instant>) {
        for lease in self.leases.iter_mut().filter(|l| l.retired_until.is_none()) {
            lease.retired_until = Some(expiry(&lease.id).unwrap_or_else(Instant::now));
        }
    }
}

impl Ledger {
    /// Undoes a refresh whose secrets were not used: the current leases (the new ones) are
    /// taken out, as a ledger of their own to revoke, and those with an id in `previous` are
    /// current again.
    pub fn abandon_refresh(&mut self, previous: &[&str]) -> Ledger {
        let current = HeldToken {
            value: self.current_token().to_string(),
            own: false,
            retired_until: None,
        };
        let (new, mut old): (Vec<HeldLease>, Vec<HeldLease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|lease| lease.retired_until.is_none());
        for lease in &mut old {
            if previous.contains(&lease.id.as_str()) {
                lease.retired_until = None;
            }
        }
        self.leases = old;
        Ledger {
            tokens: vec![current],
            leases: new,
            stopping: false,
        }
    }

    /// Takes the superseded leases and tokens out of the ledger, as a ledger of their own to
    /// revoke: its first token is the current one (not ours to revoke here, but what the
    /// revocation requests authenticate with).
    pub fn take_superseded(&mut self) -> Ledger {
        let current = HeldToken {
            value: self.current_token().to_string(),
            own: false,
            retired_until: None,
        };
        let (superseded, kept): (Vec<HeldLease>, Vec<HeldLease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|lease| lease.retired_until.is_some());
        self.leases = kept;
        let old_tokens = if self.tokens.len() > 1 {
            self.tokens.split_off(1)
        } else {
            Vec::new()
        };
        Ledger {
            tokens: std::iter::once(current).chain(old_tokens).collect(),
            leases: superseded,
            stopping: false,
        }
    }
}

/// How long past its estimated expiry a superseded lease is still revoked: the estimate is
/// ours, not Vault's, and revoking a lease that already expired is harmless (Vault answers
/// 204), while skipping one that still lives would leave a credential valid. (A token that
/// expired cannot revoke itself, so tokens get no grace.)
const LEASE_EXPIRY_GRACE: Duration = Duration::from_secs(5);

/// Whether something retired until `until` is still alive at `now` (and so worth revoking).
fn alive(until: Option<Instant>, now: Instant) -> bool {
    until.is_none_or(|until| until > now)
}

/// Whether a lease retired until `until` may still be alive at `now`.
fn lease_alive(until: Option<Instant>, now: Instant) -> bool {
    alive(until.map(|until| until + LEASE_EXPIRY_GRACE), now)
}

/// Revokes every live lease, then every live token of ours, stopping at `deadline`. Each
/// outcome is logged by label, never by id or value.
pub fn revoke_all(client: &Client, ledger: &Ledger, deadline: Instant, log: &dyn Log) {
    let now = Instant::now();
    let token = ledger.current_token();
    let mut revoked = 0;
    // A certificate's lifetime is kept as a lease without an id: nothing to revoke.
    for lease in ledger
        .leases
        .iter()
        .filter(|l| !l.id.is_empty() && lease_alive(l.retired_until, now))
    {
        let timeout = time_left(deadline).min(client.request_timeout());
        if timeout < Duration::from_millis(10) {
            log.error("vault: stop deadline reached before every lease was revoked");
            return;
        }
        let body = json!({ "lease_id": lease.id });
        match client.request(
            Method::Put,
            "sys/leases/revoke",
            Some(token),
            Some(&body),
            timeout,
        ) {
            Ok(_) => revoked += 1,
            Err(e) => log.error(&format!(
                "vault: revoking the lease of {} failed: {e}",
                lease.label
            )),
        }
    }
    if revoked > 0 {
        log.info(&format!("vault: revoked {revoked} lease(s)"));
    }
    for held in ledger
        .tokens
        .iter()
        .filter(|t| t.own && alive(t.retired_until, now))
    {
        let timeout = time_left(deadline).min(client.request_timeout());
        if timeout < Duration::from_millis(10) {
            log.error("vault: stop deadline reached before the token was revoked");
            return;
        }
        match revoke_self(client, &held.value, timeout) {
            Ok(()) => log.info("vault: revoked the token simplevisor logged in with"),
            Err(e) => log.error(&format!("vault: revoking the token failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str) -> HeldToken {
        HeldToken {
            value: value.into(),
            own: true,
            retired_until: None,
        }
    }

    #[test]
    fn an_abandoned_refresh_gives_back_the_new_leases_and_keeps_the_old() {
        let held = |id: &str, retired: bool| HeldLease {
            id: id.into(),
            label: format!("db:{id}"),
            retired_until: retired.then(Instant::now),
        };
        let mut ledger = Ledger {
            tokens: vec![HeldToken {
                value: "t".into(),
                own: true,
                retired_until: None,
            }],
            leases: vec![held("old", true), held("older", true), held("new", false)],
            stopping: false,
        };
        let ids = |l: &Ledger| l.leases.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        let new = ledger.abandon_refresh(&["old"]);
        assert_eq!(ids(&new), ["new"]);
        assert!(
            !new.tokens[0].own,
            "the token is not the refresh's to revoke"
        );
        assert_eq!(ids(&ledger), ["old", "older"]);
        assert!(ledger.leases[0].retired_until.is_none(), "current again");
        assert!(
            ledger.leases[1].retired_until.is_some(),
            "an earlier refresh's"
        );
    }

    #[test]
    fn superseded_leases_and_tokens_are_taken_out_for_revocation() {
        let lease = |id: &str, retired: bool| HeldLease {
            id: id.into(),
            label: id.into(),
            retired_until: retired.then(Instant::now),
        };
        let mut ledger = Ledger {
            tokens: vec![token("new"), token("old")],
            leases: vec![lease("a", true), lease("b", false), lease("c", true)],
            stopping: false,
        };
        let superseded = ledger.take_superseded();
        let ids = |l: &Ledger| l.leases.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&superseded), ["a", "c"]);
        assert_eq!(ids(&ledger), ["b"]);
        assert_eq!(superseded.current_token(), "new");
        assert!(
            !superseded.tokens[0].own,
            "the current token is not revoked with them"
        );
        assert_eq!(superseded.tokens[1].value, "old");
        assert_eq!(ledger.tokens.len(), 1);
    }

    #[test]
    fn a_new_token_becomes_current_and_the_old_one_is_retired() {
        let mut ledger = Ledger {
            tokens: vec![token("a")],
            leases: vec![],
            stopping: false,
        };
        let until = Instant::now() + Duration::from_secs(5);
        ledger.replace_token(token("b"), Some(until));
        assert_eq!(ledger.current_token(), "b");
        assert_eq!(ledger.tokens[1].retired_until, Some(until));
    }

    #[test]
    fn retired_leases_are_revoked_only_while_alive() {
        let now = Instant::now();
        assert!(alive(None, now));
        assert!(alive(Some(now + Duration::from_secs(1)), now));
        assert!(!alive(Some(now), now));
        // Our estimate of a lease's expiry may be early: a little past it, still revoke.
        assert!(lease_alive(Some(now - Duration::from_secs(2)), now));
        assert!(!lease_alive(Some(now - Duration::from_secs(6)), now));
        let mut ledger = Ledger {
            tokens: vec![],
            leases: vec![HeldLease {
                id: "x".into(),
                label: "db:x".into(),
                retired_until: None,
            }],
            stopping: false,
        };
        ledger.retire_leases(|_| Some(now));
        assert_eq!(ledger.leases[0].retired_until, Some(now));
    }
}
