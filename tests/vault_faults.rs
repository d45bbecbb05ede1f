//! Vault under faults, through the binary against a real OpenBao (and PostgreSQL for `db`
//! credentials), with a front between them that can reset or black-hole connections: a Vault
//! that hangs, that is paused and comes back, credentials revoked from outside, a database
//! that is down while a credential is fetched, and start-up against a Vault that refuses.
//! For each: what the jobs see, when the expiry action comes, how many requests a dead Vault
//! gets, and that no record shows a secret.

mod harness;
mod support;

use std::time::Instant;

use serde_json::{Value, json};

use harness::{Supervisor, secs, start_with_env};
use support::bao::Bao;
use support::front::{Front, Mode};
use support::postgres::Postgres;

/// `VAULT_ADDR` pointing at `front`, plus `extra`.
fn through(front: &Front, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![("VAULT_ADDR".to_string(), front.addr.clone())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn internal(sv: &Supervisor) -> Vec<String> {
    sv.messages("internal")
}

fn any_internal(sv: &Supervisor, text: &str) -> bool {
    internal(sv).iter().any(|m| m.contains(text))
}

/// None of simplevisor's own records shows any of `secrets` (jobs print what they like).
fn assert_never_shows(sv: &Supervisor, secrets: &[&str]) {
    for message in internal(sv) {
        for secret in secrets {
            assert!(
                !message.contains(secret),
                "secret {secret:?} in {message:?}"
            );
        }
    }
}

const APP_POLICY: &str = r#"
path "database/creds/*" { capabilities = ["read"] }
path "kv/data/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#;

/// A job that reports its database user and stays up.
fn db_job_config(extra_vault: Value) -> Value {
    json!({
        "env": { "pass": ["PATH", "DB_USER"], "vault-replace": ["DB_USER"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo \"user=$DB_USER\"; exec sleep 100"] } ] },
        "vault": extra_vault
    })
}

/// Token and lease TTL 15 s; at 5 s Vault stops answering (connections accepted, never
/// answered). The renewals at 10 s hang for the whole request timeout (10 s), but the expiry
/// action must come when less than a tenth of the TTL is left (13.5 s), not after them.
#[test]
fn a_vault_that_never_answers_does_not_delay_the_expiry_action() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "15s", "1h");
    bao.policy("app", APP_POLICY);
    let token = bao.token(&["app"], "15s", "1h");
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let env = through(
        &front,
        &[("VAULT_TOKEN", &token), ("DB_USER", "db:app:Username")],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&db_job_config(json!({})), &env);
    sv.wait_message("app", "user=", secs(10.0));
    let issued_by = begun.elapsed();
    std::thread::sleep(secs(5.0).saturating_sub(begun.elapsed()));
    front.set_mode(Mode::BlackHole);
    let hung_at = front.connections();
    sv.wait_message("internal", "is about to expire", secs(20.0));
    let acted = begun.elapsed();
    assert!(
        acted <= issued_by + secs(13.5) + secs(1.0),
        "expiry acted on at {acted:?}, the credentials were issued by {issued_by:?}:\n{}",
        sv.dump()
    );
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    // One renewal each for the token and the lease, then the revocations at exit: a dead Vault
    // is not hammered.
    let sent = front.connections() - hung_at;
    assert!(sent <= 6, "{sent} connections to a hung Vault");
    let user = sv.messages("app")[0]
        .trim_start_matches("user=")
        .to_string();
    assert_never_shows(&sv, &[&token, &user]);
}

/// A token revoked from outside is acted on at its next renewal (403), said to be revoked, and
/// not retried as if Vault were briefly down.
#[test]
fn a_revoked_token_is_acted_on_at_once_not_retried() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "kv-secret-value"}));
    bao.policy("app", APP_POLICY);
    let token = bao.token(&["app"], "6s", "1h");
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let config = json!({
        "env": { "pass": ["PATH", "K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo up; exec sleep 100"] } ] }
    });
    let env = through(&front, &[("VAULT_TOKEN", &token), ("K", "secret:app:key")]);
    let mut sv = start_with_env(&config, &env);
    sv.wait_message("app", "up", secs(10.0));
    bao.api("POST", "auth/token/revoke", json!({ "token": token }));
    let revoked = Instant::now();
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(any_internal(&sv, "the token was revoked"), "{}", sv.dump());
    assert!(
        any_internal(&sv, "token was revoked (on-lease-expiry: exit); stopping"),
        "{}",
        sv.dump()
    );
    assert!(
        !any_internal(&sv, "renewing the token failed"),
        "{}",
        sv.dump()
    );
    // Renewal at 4 s of the 6 s TTL; expiry would only come at 5.4 s.
    assert!(revoked.elapsed() < secs(5.2), "{:?}", revoked.elapsed());
    assert_never_shows(&sv, &[&token, "kv-secret-value"]);
}

/// A database lease revoked from outside is reported by its reference (400 at renewal) and
/// acted on at once.
#[test]
fn a_revoked_lease_is_acted_on_at_once_naming_its_reference() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "6s", "1h");
    let env = with_root(&bao, &[("DB_USER", "db:app:Username")]);
    let mut sv = start_with_env(&db_job_config(json!({})), &env);
    sv.wait_message("app", "user=", secs(10.0));
    bao.api(
        "PUT",
        "sys/leases/revoke-prefix/database/creds/app",
        json!({}),
    );
    let revoked = Instant::now();
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(
            &sv,
            "the lease of db:app was revoked or is unknown to Vault"
        ),
        "{}",
        sv.dump()
    );
    assert!(
        any_internal(&sv, "db:app was revoked (on-lease-expiry: exit)"),
        "{}",
        sv.dump()
    );
    assert!(
        !any_internal(&sv, "renewing the lease of db:app failed"),
        "{}",
        sv.dump()
    );
    assert!(revoked.elapsed() < secs(5.2), "{:?}", revoked.elapsed());
    let user = sv.messages("app")[0]
        .trim_start_matches("user=")
        .to_string();
    assert_never_shows(&sv, &[&user]);
}

fn with_root(bao: &Bao, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = bao.env();
    env.push(("VAULT_TOKEN".into(), "root".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// With AppRole and `on-lease-expiry: restart`, a token revoked from outside means: log in
/// again, fetch anew, restart the jobs with the new credential.
#[test]
fn a_revoked_approle_token_under_restart_logs_in_again() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "1h", "1h");
    bao.policy("app", APP_POLICY);
    let (role_id, secret_id) = bao.approle("approle", "app", &["app"], "6s");
    let mut env = bao.env();
    env.extend([
        ("VAULT_ROLE_ID".to_string(), role_id),
        ("VAULT_SECRET_ID".to_string(), secret_id.clone()),
        ("DB_USER".to_string(), "db:app:Username".to_string()),
    ]);
    let mut sv = start_with_env(
        &db_job_config(json!({ "on-lease-expiry": "restart" })),
        &env,
    );
    sv.wait_message("app", "user=", secs(10.0));
    // Every token issued by the AppRole login (ours is the only one) is revoked.
    bao.api(
        "PUT",
        "sys/leases/revoke-prefix/auth/approle/login",
        json!({}),
    );
    sv.wait_message("internal", "the token was revoked", secs(10.0));
    sv.wait_message("internal", "logged in again", secs(10.0));
    sv.wait_count("app", 2, secs(15.0));
    let users = sv.messages("app");
    assert_ne!(users[0], users[1], "a new credential after the new login");
    assert!(pg.role_exists(users[1].trim_start_matches("user=")));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_eq!(bao.lease_count("database/creds/app"), 0, "{}", sv.dump());
    assert_never_shows(&sv, &[&secret_id, users[0].trim_start_matches("user=")]);
}

/// With a token given in VAULT_TOKEN there is no way to log in again: exit 1.
#[test]
fn a_revoked_given_token_under_restart_exits_1() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "v"}));
    bao.policy("app", APP_POLICY);
    let token = bao.token(&["app"], "6s", "1h");
    let config = json!({
        "env": { "pass": ["PATH"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo up; exec sleep 100"] } ] },
        "vault": { "on-lease-expiry": "restart" }
    });
    let mut env = bao.env();
    env.extend([
        ("VAULT_TOKEN".to_string(), token.clone()),
        ("K".to_string(), "secret:app:key".to_string()),
    ]);
    let mut sv = start_with_env(&config, &env);
    sv.wait_message("app", "up", secs(10.0));
    bao.api("POST", "auth/token/revoke", json!({ "token": token }));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(any_internal(&sv, "the token was revoked"), "{}", sv.dump());
    assert!(any_internal(&sv, "VAULT_TOKEN"), "{}", sv.dump());
    assert_never_shows(&sv, &[&token]);
}

/// Start-up against a Vault that resets every connection: retried until the deadline, the
/// last attempt just before it, one record per failed attempt, then exit 1.
#[test]
fn start_up_retries_until_the_deadline_with_one_record_per_attempt() {
    let front = Front::start("127.0.0.1:1".into());
    front.set_mode(Mode::Reset);
    let config = json!({
        "env": { "pass": ["PATH"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "cmd": ["true"] } ] },
        "vault": { "startup-timeout": "3s" }
    });
    let env = through(
        &front,
        &[("VAULT_TOKEN", "tok-not-shown"), ("K", "secret:a:b")],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    let took = begun.elapsed();
    assert!(
        took >= secs(2.8) && took < secs(4.5),
        "gave up after {took:?} of a 3 s startup-timeout"
    );
    let attempts: Vec<String> = internal(&sv)
        .into_iter()
        .filter(|m| m.contains("attempt "))
        .collect();
    assert!(attempts.len() >= 4, "{attempts:?}");
    assert!(
        attempts[0].contains("attempt 1 failed") && attempts[0].contains("next attempt in 250ms")
    );
    assert!(
        attempts.last().is_some_and(|m| m.contains("giving up")),
        "{attempts:?}"
    );
    assert_eq!(
        front.connections(),
        attempts.len(),
        "one connection per attempt"
    );
    assert_never_shows(&sv, &["tok-not-shown"]);
}

/// OpenBao frozen (SIGSTOP) while the token and a lease need renewing: both renewals wait,
/// neither holds up the other, the jobs keep running, and once Vault answers again both are
/// renewed. At exit the lease is revoked.
#[test]
fn a_paused_vault_is_survived_and_renewals_resume() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "12s", "1h");
    bao.policy("app", APP_POLICY);
    let token = bao.token(&["app"], "12s", "1h");
    let config = db_job_config(json!({ "request-timeout": "20s" }));
    let env = with_env(
        &bao,
        &[("VAULT_TOKEN", &token), ("DB_USER", "db:app:Username")],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&config, &env);
    sv.wait_message("app", "user=", secs(10.0));
    bao.pause();
    // Renewals are due at 8 s; expiry would be acted on at 10.8 s.
    std::thread::sleep(secs(9.0).saturating_sub(begun.elapsed()));
    bao.resume();
    sv.wait_message("internal", "renewed the token", secs(5.0));
    sv.wait_message("internal", "renewed the lease of db:app", secs(5.0));
    assert!(!any_internal(&sv, "about to expire"), "{}", sv.dump());
    assert!(!any_internal(&sv, "job app exited"), "{}", sv.dump());
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_eq!(bao.lease_count("database/creds/app"), 0, "{}", sv.dump());
    let user = sv.messages("app")[0]
        .trim_start_matches("user=")
        .to_string();
    assert!(!pg.role_exists(&user));
    assert_never_shows(&sv, &[&token, &user]);
}

fn with_env(bao: &Bao, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = bao.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// PostgreSQL down while a `db` credential is fetched at start: Vault answers 500, which is
/// retried (one record per attempt) until the database is back.
#[test]
fn a_database_down_at_start_is_retried_until_it_is_back() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "1h", "1h");
    pg.stop();
    let config = db_job_config(json!({ "startup-timeout": "30s" }));
    let env = with_root(&bao, &[("DB_USER", "db:app:Username")]);
    let mut sv = start_with_env(&config, &env);
    sv.wait_message(
        "internal",
        "reading db:app for DB_USER: attempt 2 failed",
        secs(10.0),
    );
    pg.start_again();
    sv.wait_message("app", "user=", secs(20.0));
    let user = sv.messages("app")[0]
        .trim_start_matches("user=")
        .to_string();
    assert!(pg.role_exists(&user));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_eq!(bao.lease_count("database/creds/app"), 0);
    assert_never_shows(&sv, &[&user]);
}

/// An internal failure (a panic, injected in debug builds) still kills every job, revokes the
/// leases and leaves an internal record on stdout, not only text on stderr.
#[test]
fn an_internal_failure_kills_the_jobs_revokes_the_leases_and_says_so() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "1h", "1h");
    let marker = "27.1828";
    let config = json!({
        "env": { "pass": ["PATH", "DB_USER"], "vault-replace": ["DB_USER"] },
        "jobs": { "main": [
            { "name": "app", "cmd": ["sh", "-c", format!("echo \"user=$DB_USER\"; exec sleep {marker}")] }
        ] }
    });
    let env = with_root(
        &bao,
        &[
            ("DB_USER", "db:app:Username"),
            ("SIMPLEVISOR_TEST_PANIC_ON_USR2", "1"),
        ],
    );
    let mut sv = start_with_env(&config, &env);
    sv.wait_message("app", "user=", secs(10.0));
    let user = sv.messages("app")[0]
        .trim_start_matches("user=")
        .to_string();
    assert!(pg.role_exists(&user));
    sv.signal(libc::SIGUSR2);
    let status = sv.wait_exit(secs(15.0));
    assert_ne!(status, 0, "{}", sv.dump());
    assert!(any_internal(&sv, "internal error: "), "{}", sv.dump());
    assert!(
        harness::processes_with(marker).is_empty(),
        "a job outlived simplevisor"
    );
    assert!(!pg.role_exists(&user), "the database user was not revoked");
    assert_eq!(bao.lease_count("database/creds/app"), 0);
}

/// OpenBao restarted (a dev server forgets everything) under `on-lease-expiry: restart`: while
/// it is down, renewals fail and are retried; once it is back (seeded again), our token is
/// unknown to it (403 at renewal), so simplevisor logs in again with AppRole and restarts the
/// job with what it fetched anew.
#[test]
fn vault_restarted_with_its_state_lost_is_logged_in_to_again() {
    let Some(mut bao) = Bao::start() else { return };
    let seed = |bao: &Bao| {
        bao.kv("kv", 2);
        bao.kv_put("kv", 2, "app", json!({"key": "kv-value"}));
        bao.policy("app", APP_POLICY);
        bao.approle_with_ids("approle", "app", &["app"], "6s", "role-1", "secret-1");
    };
    seed(&bao);
    let config = json!({
        "env": { "pass": ["PATH", "K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo \"k=$K\"; exec sleep 100"] } ] },
        "vault": { "on-lease-expiry": "restart", "request-timeout": "2s" }
    });
    let env = with_env(
        &bao,
        &[
            ("VAULT_ROLE_ID", "role-1"),
            ("VAULT_SECRET_ID", "secret-1"),
            ("K", "secret:app:key"),
        ],
    );
    let mut sv = start_with_env(&config, &env);
    sv.wait_message("app", "k=kv-value", secs(10.0));
    bao.stop();
    sv.wait_message("internal", "renewing the token failed", secs(15.0));
    bao.restart();
    seed(&bao);
    sv.wait_message("internal", "logged in again", secs(20.0));
    sv.wait_count("app", 2, secs(15.0));
    assert_eq!(sv.messages("app"), ["k=kv-value", "k=kv-value"]);
    assert!(
        !any_internal(&sv, "job app exited with status"),
        "only restarted, never failed"
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_never_shows(&sv, &["secret-1", "kv-value"]);
}
