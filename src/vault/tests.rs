//! The Vault module against a real OpenBao dev server (and a real PostgreSQL for `db`), driven
//! through [`Session`] with a recording logger. The only stand-in is the HTTP front for what
//! OpenBao cannot do: AWS credentials and playing a broken Vault.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Log, Session, StartError, VaultEvent};
use crate::config::{ExpiryPolicy, VaultSettings};
use crate::environment::{EnvPlan, SecretKind, SecretRef};
use crate::mailbox::{self, Inbox};
use support::bao::Bao;
use support::front::Front;
use support::postgres::Postgres;
use support::wait_until;

/// Every record the Vault code writes, as `(is_error, message)`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(bool, String)>>>);

impl Log for Recorder {
    fn info(&self, message: &str) {
        self.0.lock().unwrap().push((false, message.to_string()));
    }
    fn error(&self, message: &str) {
        self.0.lock().unwrap().push((true, message.to_string()));
    }
}

impl Recorder {
    fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn count(&self, needle: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    }

    /// Waits until some message contains `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_count(needle, 1, timeout)
    }

    /// Waits until `n` messages contain `needle`.
    fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.count(needle) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// No message contains any of `secrets`.
    fn assert_never_shows(&self, secrets: &[&str]) {
        for message in self.messages() {
            for secret in secrets {
                assert!(
                    !message.contains(secret),
                    "a secret value appears in {message:?}"
                );
            }
        }
    }
}

fn reference(kind: SecretKind, path: &str, field: &str) -> SecretRef {
    SecretRef {
        kind,
        path: path.into(),
        field: field.into(),
    }
}

fn plan(replacements: &[(&str, SecretRef)]) -> EnvPlan {
    EnvPlan {
        replacements: replacements
            .iter()
            .map(|(var, reference)| (var.to_string(), reference.clone()))
            .collect(),
        templates: Vec::new(),
        needs_vault: true,
    }
}

fn settings() -> VaultSettings {
    VaultSettings {
        startup_timeout: Duration::from_secs(10),
        ..VaultSettings::default()
    }
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

struct Started {
    session: Result<Session, StartError>,
    inbox: Inbox<VaultEvent>,
    log: Recorder,
}

fn start(settings: &VaultSettings, env: &[(String, String)], plan: &EnvPlan) -> Started {
    let (mailbox, inbox) = mailbox::channel().unwrap();
    let log = Recorder::default();
    let session = Session::start_with(settings, env, plan, log.clone(), mailbox);
    Started {
        session,
        inbox,
        log,
    }
}

fn started(
    settings: &VaultSettings,
    env: &[(String, String)],
    plan: &EnvPlan,
) -> (Session, Inbox<VaultEvent>, Recorder) {
    let Started {
        session,
        inbox,
        log,
    } = start(settings, env, plan);
    match session {
        Ok(session) => (session, inbox, log),
        Err(StartError::Config(m) | StartError::Vault(m)) => {
            panic!("start failed: {m}\nlog: {:?}", log.messages())
        }
    }
}

fn start_error(settings: &VaultSettings, env: &[(String, String)], plan: &EnvPlan) -> StartError {
    match start(settings, env, plan).session {
        Ok(_) => panic!("start succeeded"),
        Err(e) => e,
    }
}

/// The next event of `inbox`; events drained with it are kept for the next call.
fn next_event(inbox: &Inbox<VaultEvent>, timeout: Duration) -> Option<VaultEvent> {
    thread_local! {
        static PENDING: std::cell::RefCell<std::collections::VecDeque<VaultEvent>> =
            Default::default();
    }
    let deadline = Instant::now() + timeout;
    loop {
        let next = PENDING.with(|pending| {
            let mut pending = pending.borrow_mut();
            pending.extend(inbox.drain());
            pending.pop_front()
        });
        if next.is_some() || Instant::now() >= deadline {
            return next;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop_now(session: Session) {
    session.stop(Instant::now() + Duration::from_secs(5));
}

#[test]
fn missing_settings_are_config_errors_naming_what_is_missing() {
    let plan = plan(&[]);
    let err = start_error(&settings(), &[], &plan);
    assert!(matches!(&err, StartError::Config(m) if m.contains("VAULT_ADDR")));
    let env = with(vec![], &[("VAULT_ADDR", "http://127.0.0.1:1")]);
    let err = start_error(&settings(), &env, &plan);
    assert!(matches!(&err, StartError::Config(m) if m.contains("VAULT_TOKEN")));
}

#[test]
fn token_login_reads_kv_v1_and_v2_once_per_path_and_injects_a_working_token() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv("kv1", 1);
    bao.kv_put(
        "kv",
        2,
        "app/config",
        json!({"key": "django-v2-value", "other": "o2"}),
    );
    bao.kv_put("kv1", 1, "app/config", json!({"key": "django-v1-value"}));
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let token = bao.token(&["root"], "1h", "");
    let env = with(
        vec![],
        &[("VAULT_ADDR", &front.addr), ("VAULT_TOKEN", &token)],
    );
    let v2 = plan(&[
        (
            "DJANGO_SECRET",
            reference(SecretKind::Secret, "app/config", "key"),
        ),
        (
            "OTHER",
            reference(SecretKind::Secret, "app/config", "other"),
        ),
    ]);
    let (session, _inbox, log) = started(&settings(), &env, &v2);
    let expected: BTreeMap<String, String> = [
        ("DJANGO_SECRET".to_string(), "django-v2-value".to_string()),
        ("OTHER".to_string(), "o2".to_string()),
    ]
    .into();
    assert_eq!(session.values(), &expected);
    let reads = front
        .seen()
        .iter()
        .filter(|line| line.contains("/v1/kv/data/app/config"))
        .count();
    assert_eq!(reads, 1, "one read per (type, path): {:?}", front.seen());

    let injection = session.injection();
    assert_eq!(injection.addr, front.addr);
    bao.api_as(&injection.token, "GET", "kv/data/app/config", json!({}));
    stop_now(session);
    // Not our token: it is not revoked.
    bao.api_as(&token, "GET", "auth/token/lookup-self", json!({}));
    log.assert_never_shows(&["django-v2-value", "o2", &token]);

    let v1 = plan(&[(
        "DJANGO_SECRET",
        reference(SecretKind::Secret, "app/config", "key"),
    )]);
    let settings_v1 = VaultSettings {
        kv_mount: "kv1".into(),
        ..settings()
    };
    let (session, _inbox, _log) = started(&settings_v1, &env, &v1);
    assert_eq!(session.values()["DJANGO_SECRET"], "django-v1-value");
    stop_now(session);
}

#[test]
fn approle_with_a_periodic_token_keeps_it_alive_and_revokes_it_on_stop() {
    let Some(bao) = Bao::start() else { return };
    bao.policy("reader", r#"path "kv/data/*" { capabilities = ["read"] }"#);
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "v"}));
    let (role_id, secret_id) = bao.approle("approle", "app", &["reader"], "5s");
    let env = with(
        bao.env(),
        &[("VAULT_ROLE_ID", &role_id), ("VAULT_SECRET_ID", &secret_id)],
    );
    let plan = plan(&[("K", reference(SecretKind::Secret, "app", "key"))]);
    let (session, inbox, log) = started(&settings(), &env, &plan);
    let token = session.injection().token;
    // Two renewals take it past twice its period.
    assert!(
        log.wait_count("renewed the token", 2, Duration::from_secs(15)),
        "{:?}",
        log.messages()
    );
    // Past twice its period, the token still works because it was renewed.
    bao.api_as(&token, "GET", "kv/data/app", json!({}));
    assert!(inbox.drain().is_empty());
    stop_now(session);
    assert_eq!(
        bao.status_as(&token, "GET", "auth/token/lookup-self", json!({})),
        403,
        "our own token is revoked on stop"
    );
    log.assert_never_shows(&[&token, &secret_id, &role_id]);
}

#[test]
fn db_credentials_work_are_renewed_past_their_ttl_and_are_revoked_on_stop() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "prod-db", "4s", "1m");
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let plan = plan(&[
        (
            "MONGO_USER",
            reference(SecretKind::Db, "prod-db", "Username"),
        ),
        (
            "MONGO_PASSWORD",
            reference(SecretKind::Db, "prod-db", "Password"),
        ),
    ]);
    let (session, inbox, log) = started(&settings(), &env, &plan);
    let user = session.values()["MONGO_USER"].clone();
    let password = session.values()["MONGO_PASSWORD"].clone();
    assert_eq!(
        pg.query_as(&user, &password, "select current_user"),
        Ok(user.clone())
    );
    assert_eq!(
        bao.lease_count("database/creds/prod-db/"),
        1,
        "one lease for both fields"
    );

    // Past twice the original TTL: only renewals keep the user alive.
    assert!(
        log.wait_count(
            "renewed the lease of db:prod-db",
            3,
            Duration::from_secs(20)
        ),
        "{:?}",
        log.messages()
    );
    assert_eq!(pg.query_as(&user, &password, "select 1"), Ok("1".into()));
    assert!(inbox.drain().is_empty());

    stop_now(session);
    assert!(!pg.role_exists(&user), "revoked lease drops the role");
    assert!(log.count("revoked 1 lease(s)") == 1, "{:?}", log.messages());
    log.assert_never_shows(&[&user, &password]);
}

#[test]
fn a_lease_reaching_its_max_ttl_is_reported_under_exit() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "short", "4s", "6s");
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let plan = plan(&[("U", reference(SecretKind::Db, "short", "Username"))]);
    let (session, inbox, log) = started(&settings(), &env, &plan);
    let begun = Instant::now();
    match next_event(&inbox, Duration::from_secs(10)) {
        Some(VaultEvent::Expiring(what)) => assert_eq!(what, "db:short"),
        other => panic!("expected Expiring, got {other:?}; log {:?}", log.messages()),
    }
    let elapsed = begun.elapsed();
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(6),
        "reported {elapsed:?} after start: renewed past its 4 s TTL, before its 6 s max TTL"
    );
    stop_now(session);
}

#[test]
fn a_lease_reaching_its_max_ttl_is_fetched_anew_under_restart() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "short", "4s", "6s");
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let plan = plan(&[
        ("U", reference(SecretKind::Db, "short", "Username")),
        ("P", reference(SecretKind::Db, "short", "Password")),
    ]);
    let restart = VaultSettings {
        on_lease_expiry: ExpiryPolicy::Restart,
        ..settings()
    };
    let (session, inbox, log) = started(&restart, &env, &plan);
    let first_user = session.values()["U"].clone();
    let (values, injection) = match next_event(&inbox, Duration::from_secs(10)) {
        Some(VaultEvent::Refreshed { values, injection }) => (values, injection),
        other => panic!(
            "expected Refreshed, got {other:?}; log {:?}",
            log.messages()
        ),
    };
    assert_eq!(injection.token, "root");
    assert_ne!(values["U"], first_user, "new credentials");
    assert!(
        log.count("renewed the lease of db:short") >= 1,
        "{:?}",
        log.messages()
    );
    assert_eq!(
        pg.query_as(&values["U"], &values["P"], "select 1"),
        Ok("1".into())
    );
    // The new lease is renewed and refreshed in turn.
    match next_event(&inbox, Duration::from_secs(10)) {
        Some(VaultEvent::Refreshed { .. }) => {}
        other => panic!("expected a second Refreshed, got {other:?}"),
    }
    stop_now(session);
    log.assert_never_shows(&[&first_user, &values["U"], &values["P"]]);
}

#[test]
fn https_with_a_custom_ca_is_verified() {
    let Some(bao) = Bao::start_tls() else { return };
    bao.kv("kv", 1);
    bao.kv_put("kv", 1, "tls", json!({"key": "over-tls"}));
    let plan = plan(&[("K", reference(SecretKind::Secret, "tls", "key"))]);
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let (session, _inbox, _log) = started(&settings(), &env, &plan);
    assert_eq!(session.values()["K"], "over-tls");
    stop_now(session);

    // The renewer thread renews over TLS too (a new handshake on its small stack each time).
    bao.policy("reader", r#"path "kv/*" { capabilities = ["read"] }"#);
    let (role_id, secret_id) = bao.approle("approle", "app", &["reader"], "4s");
    let approle = with(
        bao.env(),
        &[("VAULT_ROLE_ID", &role_id), ("VAULT_SECRET_ID", &secret_id)],
    );
    let (session, _inbox, log) = started(&settings(), &approle, &plan);
    assert!(
        log.wait_count("renewed the token", 2, Duration::from_secs(15)),
        "{:?}",
        log.messages()
    );
    stop_now(session);

    // Without the CA the server's certificate is not trusted...
    let untrusted = with(
        vec![("VAULT_ADDR".into(), bao.addr.clone())],
        &[("VAULT_TOKEN", "root")],
    );
    let quick = VaultSettings {
        startup_timeout: Duration::from_secs(1),
        ..settings()
    };
    match start_error(&quick, &untrusted, &plan) {
        StartError::Vault(m) => assert!(m.contains("cannot reach Vault"), "{m}"),
        StartError::Config(m) => panic!("{m}"),
    }
    // ...unless verification is explicitly skipped.
    let skip = with(untrusted, &[("VAULT_SKIP_VERIFY", "true")]);
    let (session, _inbox, _log) = started(&settings(), &skip, &plan);
    assert_eq!(session.values()["K"], "over-tls");
    stop_now(session);
}

#[test]
fn a_denied_path_fails_at_once_naming_variable_and_path() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "allowed", json!({"key": "a"}));
    bao.kv_put("kv", 2, "forbidden", json!({"key": "f-secret"}));
    bao.policy(
        "narrow",
        r#"path "kv/data/allowed" { capabilities = ["read"] }"#,
    );
    let token = bao.token(&["narrow"], "1h", "");
    let env = with(bao.env(), &[("VAULT_TOKEN", &token)]);
    let plan = plan(&[
        ("OK_VAR", reference(SecretKind::Secret, "allowed", "key")),
        (
            "DENIED_VAR",
            reference(SecretKind::Secret, "forbidden", "key"),
        ),
    ]);
    let slow = VaultSettings {
        startup_timeout: Duration::from_secs(30),
        ..settings()
    };
    let begun = Instant::now();
    let err = start_error(&slow, &env, &plan);
    assert!(
        begun.elapsed() < Duration::from_secs(5),
        "4xx is not retried"
    );
    match err {
        StartError::Vault(m) => {
            assert!(
                m.contains("DENIED_VAR") && m.contains("secret:forbidden"),
                "{m}"
            );
            assert!(m.contains("403"), "{m}");
            assert!(!m.contains("f-secret") && !m.contains(&token), "{m}");
        }
        StartError::Config(m) => panic!("{m}"),
    }
}

#[test]
fn a_missing_field_names_path_and_field_never_the_value() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "present-value", "n": 3}));
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let missing = plan(&[("VAR", reference(SecretKind::Secret, "app", "absent"))]);
    match start_error(&settings(), &env, &missing) {
        StartError::Vault(m) => {
            assert!(
                m.contains("VAR") && m.contains("secret:app") && m.contains("absent"),
                "{m}"
            );
            assert!(!m.contains("present-value"), "{m}");
        }
        StartError::Config(m) => panic!("{m}"),
    }
    let not_string = plan(&[("VAR", reference(SecretKind::Secret, "app", "n"))]);
    match start_error(&settings(), &env, &not_string) {
        StartError::Vault(m) => assert!(m.contains("not a string"), "{m}"),
        StartError::Config(m) => panic!("{m}"),
    }
}

#[test]
fn start_up_retries_a_broken_vault_until_it_answers_or_the_timeout() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "v"}));
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    front.set_broken(true);
    let env = with(
        vec![],
        &[("VAULT_ADDR", &front.addr), ("VAULT_TOKEN", "root")],
    );
    let plan = plan(&[("K", reference(SecretKind::Secret, "app", "key"))]);

    let short = VaultSettings {
        startup_timeout: Duration::from_secs(2),
        ..settings()
    };
    let begun = Instant::now();
    match start_error(&short, &env, &plan) {
        StartError::Vault(m) => assert!(m.contains("503"), "{m}"),
        StartError::Config(m) => panic!("{m}"),
    }
    assert!(begun.elapsed() >= Duration::from_millis(1500));
    assert!(
        front.requests() <= 10,
        "backoff, not a storm: {}",
        front.requests()
    );

    let front = Arc::new(front);
    let refused = front.requests();
    let repair = std::thread::spawn({
        let front = Arc::clone(&front);
        // Repaired once the start-up below has been refused and has tried again.
        move || {
            wait_until(
                "a retry of the refused start-up",
                Duration::from_secs(10),
                || front.requests() >= refused + 2,
            );
            front.set_broken(false);
        }
    });
    let (session, _inbox, _log) = started(&settings(), &env, &plan);
    assert_eq!(session.values()["K"], "v");
    stop_now(session);
    repair.join().unwrap();
}

#[test]
fn a_broken_vault_sees_a_bounded_request_rate_until_the_renewer_gives_up() {
    let Some(bao) = Bao::start() else { return };
    let (role_id, secret_id) = bao.approle("approle", "app", &["default"], "6s");
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let env = with(
        vec![],
        &[
            ("VAULT_ADDR", &front.addr),
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
        ],
    );
    let restart = VaultSettings {
        on_lease_expiry: ExpiryPolicy::Restart,
        startup_timeout: Duration::from_secs(3),
        ..settings()
    };
    let (session, inbox, log) = started(&restart, &env, &plan(&[]));
    // Broken from now on: the renewal at 4 s fails and is retried, the token counts as expiring
    // at 5 s, the new login is retried with backoff for 3 s, then the renewer reports failure.
    front.set_broken(true);
    let before = front.requests();
    // The rotation is abandoned (nothing changes), tried again, and once the token is gone
    // for good, that is fatal.
    match next_event(&inbox, Duration::from_secs(12)) {
        Some(VaultEvent::RotationFailed(message)) => {
            assert!(
                message.contains("logging in again with AppRole at auth/approle failed"),
                "{message}"
            )
        }
        other => panic!(
            "expected RotationFailed, got {other:?}; log {:?}",
            log.messages()
        ),
    }
    match next_event(&inbox, Duration::from_secs(12)) {
        Some(VaultEvent::Fatal(message)) => {
            assert!(message.contains("token expired"), "{message}")
        }
        other => panic!("expected Fatal, got {other:?}; log {:?}", log.messages()),
    }
    // Given up: the token has expired, so a renewer still at work would retry within 1 s (its
    // shortest retry); 2 s without a request shows it has stopped.
    let at_fatal = front.requests();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        front.requests(),
        at_fatal,
        "requests after giving up: {:?}",
        front.seen()
    );
    let during = front.requests() - before;
    assert!(during <= 10, "{during} requests: {:?}", front.seen());
    assert!(
        log.count("renewing the token failed") >= 1,
        "{:?}",
        log.messages()
    );
    front.set_broken(false);
    stop_now(session);
}

#[test]
fn vault_stopped_and_started_again_is_survived_and_a_new_login_fetches_anew() {
    let Some(mut bao) = Bao::start() else { return };
    let seed = |bao: &Bao| {
        bao.kv("kv", 2);
        bao.kv_put("kv", 2, "app", json!({"key": "v"}));
        bao.policy("reader", r#"path "kv/data/*" { capabilities = ["read"] }"#);
        bao.approle_with_ids("approle", "app", &["reader"], "12s", "role-1", "secret-1");
    };
    seed(&bao);
    let env = with(
        bao.env(),
        &[("VAULT_ROLE_ID", "role-1"), ("VAULT_SECRET_ID", "secret-1")],
    );
    let plan = plan(&[("K", reference(SecretKind::Secret, "app", "key"))]);
    let restart = VaultSettings {
        on_lease_expiry: ExpiryPolicy::Restart,
        ..settings()
    };
    let (session, inbox, log) = started(&restart, &env, &plan);
    let first_token = session.injection().token;
    // Down across the first renewal (at 8 s): connection errors, retried.
    bao.stop();
    assert!(
        log.wait_for("renewing the token failed", Duration::from_secs(15)),
        "{:?}",
        log.messages()
    );
    // Started again, empty (a dev server keeps nothing), and seeded the same way: the old
    // token is unknown, so it expires, and simplevisor logs in again and fetches anew.
    bao.restart();
    seed(&bao);
    match next_event(&inbox, Duration::from_secs(8)) {
        Some(VaultEvent::Refreshed { values, injection }) => {
            assert_eq!(values["K"], "v");
            assert_ne!(injection.token, first_token);
            assert_eq!(session.injection().token, injection.token);
        }
        other => panic!(
            "expected Refreshed, got {other:?}; log {:?}",
            log.messages()
        ),
    }
    let failures = log.messages();
    assert!(
        failures
            .iter()
            .any(|m| m.contains("renewing the token failed") && m.contains("cannot reach Vault")),
        "{failures:?}"
    );
    stop_now(session);
}

#[test]
fn aws_user_credentials_come_from_the_aws_mount_and_their_lease_is_revoked() {
    let Some(bao) = Bao::start() else { return };
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let env = with(
        vec![],
        &[("VAULT_ADDR", &front.addr), ("VAULT_TOKEN", "root")],
    );
    let plan = plan(&[
        (
            "AWS_ACCESS_KEY_ID",
            reference(SecretKind::AwsUser, "deploy", "KeyId"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            reference(SecretKind::AwsUser, "deploy", "SecretKey"),
        ),
    ]);
    let (session, _inbox, log) = started(&settings(), &env, &plan);
    assert_eq!(session.values()["AWS_ACCESS_KEY_ID"], "AKIASTUBKEYID0001");
    assert_eq!(
        session.values()["AWS_SECRET_ACCESS_KEY"],
        "stub-secret-key-value"
    );
    stop_now(session);
    assert_eq!(front.revoked_aws_leases(), ["aws/creds/deploy/stub-lease"]);
    log.assert_never_shows(&["AKIASTUBKEYID0001", "stub-secret-key-value"]);
}

#[test]
fn a_failed_start_revokes_the_leases_it_acquired() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "prod-db", "1m", "1h");
    bao.kv("kv", 2);
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let plan = plan(&[
        ("DB_USER", reference(SecretKind::Db, "prod-db", "Username")),
        (
            "MISSING",
            reference(SecretKind::Secret, "nothing/here", "key"),
        ),
    ]);
    match start_error(&settings(), &env, &plan) {
        StartError::Vault(m) => assert!(m.contains("MISSING") && m.contains("404"), "{m}"),
        StartError::Config(m) => panic!("{m}"),
    }
    assert_eq!(bao.lease_count("database/creds/prod-db/"), 0);
}

#[test]
fn vault_namespace_is_sent_with_every_request() {
    let Some(bao) = Bao::start() else { return };
    bao.api("POST", "sys/namespaces/team", json!({}));
    bao.api(
        "POST",
        "team/sys/mounts/kv",
        json!({ "type": "kv", "options": { "version": "2" } }),
    );
    bao.api(
        "POST",
        "team/kv/data/app",
        json!({ "data": { "k": "ns-value" } }),
    );
    let plan = plan(&[("K", reference(SecretKind::Secret, "app", "k"))]);
    let env = with(
        bao.env(),
        &[("VAULT_TOKEN", "root"), ("VAULT_NAMESPACE", "team")],
    );
    let (session, _inbox, _log) = started(&settings(), &env, &plan);
    assert_eq!(session.values()["K"], "ns-value");
    stop_now(session);
    // Without the namespace the path does not exist.
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    assert!(matches!(
        start_error(&settings(), &env, &plan),
        StartError::Vault(_)
    ));
}

#[test]
fn leases_fetched_by_a_refresh_still_in_flight_at_stop_are_revoked_too() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "short", "4s", "6s");
    let front = Front::start(format!("127.0.0.1:{}", bao.port));
    let env = with(
        vec![],
        &[("VAULT_ADDR", &front.addr), ("VAULT_TOKEN", "root")],
    );
    let plan = plan(&[("U", reference(SecretKind::Db, "short", "Username"))]);
    let restart = VaultSettings {
        on_lease_expiry: ExpiryPolicy::Restart,
        ..settings()
    };
    let (session, inbox, log) = started(&restart, &env, &plan);
    // The refresh at about 5 s keeps failing to get new credentials...
    front.set_broken_prefix(Some("/v1/database/creds/"));
    assert!(log.wait_for("fetching every secret anew", Duration::from_secs(8)));
    let creds = || {
        front
            .seen()
            .iter()
            .filter(|r| r.contains("/v1/database/creds/"))
            .count()
    };
    // The first fetch at start, then the refresh's first attempt, refused.
    wait_until("the refresh refused", Duration::from_secs(8), || {
        creds() >= 2
    });
    // ...while simplevisor stops (and revokes the lease it knows of); then Vault hands them out
    // after all.
    let stopper = std::thread::spawn(move || stop_now(session));
    assert!(log.wait_for("revoked 1 lease(s)", Duration::from_secs(8)));
    front.set_broken_prefix(None);
    stopper.join().unwrap();
    assert!(
        log.wait_count("revoked 1 lease(s)", 2, Duration::from_secs(10)),
        "{:?}",
        log.messages()
    );
    assert_eq!(log.count("revoked 1 lease(s)"), 2, "{:?}", log.messages());
    assert_eq!(bao.lease_count("database/creds/short/"), 0);
    assert!(inbox.drain().is_empty(), "no Refreshed after stop");
}

/// A certificate's lifetime is a lease that only expires: under `restart` a new certificate
/// (new serial, its own key) is issued before the old one expires, and nothing is revoked for
/// it (there is no lease id to give back).
#[test]
fn a_certificate_is_issued_anew_before_it_expires_under_restart() {
    let Some(bao) = Bao::start() else { return };
    bao.pki("pki", "web", "example.com", "4s");
    let env = with(bao.env(), &[("VAULT_TOKEN", "root")]);
    let path = "web/app.example.com";
    let plan = plan(&[
        ("CERT", reference(SecretKind::Pki, path, "Certificate")),
        ("KEY", reference(SecretKind::Pki, path, "PrivateKey")),
        ("CHAIN", reference(SecretKind::Pki, path, "CAChain")),
    ]);
    let restart = VaultSettings {
        on_lease_expiry: ExpiryPolicy::Restart,
        ..settings()
    };
    let (session, inbox, log) = started(&restart, &env, &plan);
    let first = session.values().clone();
    assert!(first["CERT"].starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(first["KEY"].contains("PRIVATE KEY-----"));
    assert!(first["CHAIN"].starts_with("-----BEGIN CERTIFICATE-----"));
    // The renewer thread publishes the lifetimes once it runs.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut lifetimes = session.lifetimes(Instant::now());
    while lifetimes.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        lifetimes = session.lifetimes(Instant::now());
    }
    let (_, left) = lifetimes
        .iter()
        .find(|(reference, _)| reference == "pki:web/app.example.com")
        .unwrap_or_else(|| panic!("{lifetimes:?}"));
    assert!(
        left.is_some_and(|left| left <= Duration::from_secs(4)),
        "{left:?}"
    );
    let values = match next_event(&inbox, Duration::from_secs(10)) {
        Some(VaultEvent::Refreshed { values, .. }) => values,
        other => panic!(
            "expected Refreshed, got {other:?}; log {:?}",
            log.messages()
        ),
    };
    assert_ne!(values["CERT"], first["CERT"], "a new certificate");
    assert_ne!(values["KEY"], first["KEY"], "with its own key");
    session.revoke_superseded();
    stop_now(session);
    assert_eq!(log.count("revoking the lease"), 0, "{:?}", log.messages());
    let pem: Vec<&str> = first
        .values()
        .chain(values.values())
        .flat_map(|pem| pem.lines().filter(|line| line.len() > 20))
        .collect();
    log.assert_never_shows(&pem);
}
