//! Vault end to end: the built binary against a real OpenBao dev server (and a real PostgreSQL
//! for `db` credentials), with jobs that use what they were given.

mod harness;
mod support;

use std::time::Instant;

use serde_json::json;

use harness::{Supervisor, secs, start_with_env};
use support::bao::Bao;
use support::postgres::Postgres;

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// No internal record shows any of `secrets`.
fn assert_internal_never_shows(sv: &Supervisor, secrets: &[&str]) {
    for message in sv.messages("internal") {
        for secret in secrets {
            assert!(!message.contains(secret), "secret in record {message:?}");
        }
    }
}

/// The value after `key=` in the first line of `process` that has it.
fn reported(sv: &Supervisor, process: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    sv.messages(process)
        .iter()
        .find_map(|m| m.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("{process} did not report {key}; seen:\n{}", sv.dump()))
}

/// The README's worked example: MONGO_USER and MONGO_PASSWORD are one database credential,
/// DJANGO_SECRET comes from KV, MONGO_URL is a template over them; the job logs in to
/// PostgreSQL with the credential; after exit the credential is revoked.
#[test]
fn readme_worked_example() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "prod-db", "1m", "1h");
    bao.kv("kv", 2);
    bao.kv_put(
        "kv",
        2,
        "myapp/django",
        json!({"secret_key": "django-very-secret"}),
    );
    let script = format!(
        r#"echo "user=$MONGO_USER"
PGPASSWORD="$MONGO_PASSWORD" {psql} -h 127.0.0.1 -p {port} -U "$MONGO_USER" -d postgres -w -Atc 'select 1' >/dev/null && echo db-login-ok
[ "$DJANGO_SECRET" = django-very-secret ] && echo django-ok
[ "$MONGO_URL" = "mongodb://$MONGO_USER:$MONGO_PASSWORD@mongo:27017/app" ] && echo url-ok
true"#,
        psql = pg.psql().display(),
        port = pg.port
    );
    let config = json!({
        "env": {
            "pass": ["PATH", "MONGO_USER", "MONGO_PASSWORD", "DJANGO_SECRET", "MONGO_URL"],
            "vault-replace": ["MONGO_USER", "MONGO_PASSWORD", "DJANGO_SECRET"],
            "vault-template": ["MONGO_URL"]
        },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", script], "restart": "never" } ] }
    });
    let env = with(
        bao.env(),
        &[
            ("VAULT_TOKEN", "root"),
            ("MONGO_USER", "db:prod-db:Username"),
            ("MONGO_PASSWORD", "db:prod-db:Password"),
            ("DJANGO_SECRET", "secret:myapp/django:secret_key"),
            (
                "MONGO_URL",
                "mongodb://{{ .MONGO_USER }}:{{ .MONGO_PASSWORD }}@mongo:27017/app",
            ),
        ],
    );
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(30.0)), 0, "{}", sv.dump());
    let app = sv.messages("app");
    for line in ["db-login-ok", "django-ok", "url-ok"] {
        assert!(app.iter().any(|m| m == line), "no {line}: {}", sv.dump());
    }
    let user = reported(&sv, "app", "user");
    assert!(!pg.role_exists(&user), "credential revoked after exit");
    assert_internal_never_shows(&sv, &[&user, "django-very-secret"]);
}

/// `vault-token: true` hands the job simplevisor's own (AppRole) token, which works, while the
/// AppRole credentials themselves do not reach the job; the token is revoked after exit.
#[test]
fn vault_token_injection_gives_the_job_a_working_token() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"key": "kv-value"}));
    bao.policy("reader", r#"path "kv/data/*" { capabilities = ["read"] }"#);
    let (role_id, secret_id) = bao.approle("approle", "app", &["reader"], "1h");
    let bao_bin = support::bao::binary().expect("bao");
    let script = format!(
        r#"[ -z "$VAULT_SECRET_ID$VAULT_ROLE_ID" ] && echo no-approle-ids
printf '%s' "$VAULT_TOKEN" > token
[ "$({bao} kv get -mount=kv -field=key app)" = kv-value ] && echo token-works
true"#,
        bao = bao_bin.display()
    );
    let config = json!({
        "env": { "pass-all": true, "vault-token": true },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", script], "restart": "never" } ] }
    });
    let env = with(
        bao.env(),
        &[
            ("VAULT_ROLE_ID", &role_id),
            ("VAULT_SECRET_ID", &secret_id),
            ("HOME", "/nonexistent"),
        ],
    );
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(30.0)), 0, "{}", sv.dump());
    let app = sv.messages("app");
    for line in ["no-approle-ids", "token-works"] {
        assert!(app.iter().any(|m| m == line), "no {line}: {}", sv.dump());
    }
    let token = std::fs::read_to_string(sv.dir.path().join("token")).expect("token file");
    assert_eq!(
        bao.status_as(&token, "GET", "auth/token/lookup-self", json!({})),
        403,
        "our token is revoked after exit"
    );
    assert_internal_never_shows(&sv, &[&token, &secret_id, &role_id]);
}

/// A database credential reaching its max TTL under `on-lease-expiry: exit`: jobs are
/// stopped, simplevisor exits 1, and the credential is revoked.
#[test]
fn lease_max_ttl_under_exit_stops_everything_with_status_1() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "short", "4s", "6s");
    let config = json!({
        "env": { "pass": ["PATH", "DB_USER"], "vault-replace": ["DB_USER"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo \"user=$DB_USER\"; exec sleep 100"] } ] },
        "vault": { "on-lease-expiry": "exit" }
    });
    let env = with(
        bao.env(),
        &[("VAULT_TOKEN", "root"), ("DB_USER", "db:short:Username")],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(20.0)), 1, "{}", sv.dump());
    let elapsed = begun.elapsed();
    assert!(
        elapsed >= secs(4.5),
        "renewed past its 4 s TTL first ({elapsed:?})"
    );
    let internal = sv.messages("internal");
    assert!(
        internal
            .iter()
            .any(|m| m.contains("renewed the lease of db:short")),
        "{}",
        sv.dump()
    );
    assert!(
        internal
            .iter()
            .any(|m| m.contains("db:short") && m.contains("expire")),
        "{}",
        sv.dump()
    );
    let user = reported(&sv, "app", "user");
    assert!(!pg.role_exists(&user), "revoked on exit");
    assert_internal_never_shows(&sv, &[&user]);
}

/// Under `on-lease-expiry: restart` the credential is fetched anew and the main job restarted
/// with it; after SIGTERM both credentials are gone.
#[test]
fn lease_max_ttl_under_restart_restarts_jobs_with_new_credentials() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "short", "4s", "6s");
    let script = format!(
        r#"echo "user=$DB_USER"
PGPASSWORD="$DB_PASSWORD" {psql} -h 127.0.0.1 -p {port} -U "$DB_USER" -d postgres -w -Atc 'select 1' >/dev/null && echo db-login-ok
exec sleep 100"#,
        psql = pg.psql().display(),
        port = pg.port
    );
    let config = json!({
        "env": {
            "pass": ["PATH", "DB_USER", "DB_PASSWORD"],
            "vault-replace": ["DB_USER", "DB_PASSWORD"]
        },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", script] } ] },
        "vault": { "on-lease-expiry": "restart" }
    });
    let env = with(
        bao.env(),
        &[
            ("VAULT_TOKEN", "root"),
            ("DB_USER", "db:short:Username"),
            ("DB_PASSWORD", "db:short:Password"),
        ],
    );
    let mut sv = start_with_env(&config, &env);
    sv.wait_count("app", 4, secs(20.0));
    let users: Vec<String> = sv
        .messages("app")
        .iter()
        .filter_map(|m| m.strip_prefix("user=").map(str::to_string))
        .collect();
    assert!(users.len() >= 2 && users[0] != users[1], "{}", sv.dump());
    let logins = sv
        .messages("app")
        .iter()
        .filter(|m| *m == "db-login-ok")
        .count();
    assert!(logins >= 2, "both credentials worked: {}", sv.dump());
    // Once the job runs with the new credential, the superseded one is given back at once,
    // not left valid until its max TTL.
    sv.wait_message("internal", "vault: revoked 1 lease(s)", secs(10.0));
    assert!(!pg.role_exists(&users[0]), "{} still exists", users[0]);
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    for user in &users {
        let deadline = std::time::Instant::now() + secs(5.0);
        while pg.role_exists(user) && std::time::Instant::now() < deadline {
            std::thread::sleep(secs(0.1));
        }
        assert!(
            !pg.role_exists(user),
            "{user} revoked after shutdown:\n{}",
            sv.dump()
        );
    }
}

/// HTTPS with the dev server's own CA given in VAULT_CACERT.
#[test]
fn https_with_a_custom_ca() {
    let Some(bao) = Bao::start_tls() else { return };
    bao.kv("kv", 1);
    bao.kv_put("kv", 1, "tls", json!({"key": "tls-value"}));
    let config = json!({
        "env": { "pass": ["K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "[ \"$K\" = tls-value ] && echo ok"], "restart": "never" } ] }
    });
    let env = with(
        bao.env(),
        &[("VAULT_TOKEN", "root"), ("K", "secret:tls:key")],
    );
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(30.0)), 0, "{}", sv.dump());
    assert_eq!(sv.messages("app"), ["ok"]);
}

/// A path the token's policy denies: exit 1 at once, naming variable and path, no job runs.
#[test]
fn denied_path_exits_1_naming_variable_and_path() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "forbidden", json!({"key": "never-shown"}));
    bao.policy(
        "none",
        r#"path "kv/data/other" { capabilities = ["read"] }"#,
    );
    let token = bao.token(&["none"], "1h", "");
    let config = json!({
        "env": { "pass": ["K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo started"] } ] },
        "vault": { "startup-timeout": "30s" }
    });
    let env = with(
        bao.env(),
        &[("VAULT_TOKEN", &token), ("K", "secret:forbidden:key")],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(20.0)), 1, "{}", sv.dump());
    assert!(begun.elapsed() < secs(10.0), "no retry on 403");
    assert!(sv.messages("app").is_empty(), "no job started");
    let internal = sv.messages("internal");
    assert!(
        internal
            .iter()
            .any(|m| m.contains("K:") && m.contains("secret:forbidden") && m.contains("403")),
        "{}",
        sv.dump()
    );
    assert_internal_never_shows(&sv, &["never-shown", &token]);
}

/// A field the secret does not have: exit 1 naming path and field.
#[test]
fn missing_field_exits_1_naming_path_and_field() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"present": "present-value"}));
    let config = json!({
        "env": { "pass": ["K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo started"] } ] }
    });
    let env = with(
        bao.env(),
        &[("VAULT_TOKEN", "root"), ("K", "secret:app:absent")],
    );
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(20.0)), 1, "{}", sv.dump());
    let internal = sv.messages("internal");
    assert!(
        internal
            .iter()
            .any(|m| m.contains("secret:app") && m.contains("absent")),
        "{}",
        sv.dump()
    );
    assert_internal_never_shows(&sv, &["present-value"]);
}

/// Vault unreachable at start: retried until `startup-timeout`, then exit 1.
#[test]
fn unreachable_vault_exits_1_after_the_startup_timeout() {
    let port = support::free_port();
    let config = json!({
        "env": { "pass": ["K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo started"] } ] },
        "vault": { "startup-timeout": "2s" }
    });
    let addr = format!("http://127.0.0.1:{port}");
    let env = with(
        vec![],
        &[
            ("VAULT_ADDR", &addr),
            ("VAULT_TOKEN", "t"),
            ("K", "secret:a:b"),
        ],
    );
    let begun = Instant::now();
    let mut sv = start_with_env(&config, &env);
    assert_eq!(sv.wait_exit(secs(20.0)), 1, "{}", sv.dump());
    let elapsed = begun.elapsed();
    assert!(elapsed >= secs(1.5) && elapsed < secs(10.0), "{elapsed:?}");
    assert!(sv.messages("app").is_empty());
}

/// Missing login settings are a configuration error (exit 2) naming what is missing; without
/// a reference present, Vault is not needed and nothing is asked of it.
#[test]
fn vault_settings_are_needed_only_when_vault_is() {
    let config = json!({
        "env": { "pass": ["K"], "vault-replace": ["K"] },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c", "echo ran"], "restart": "never" } ] }
    });
    let mut sv = start_with_env(&config, &[("K".into(), "secret:a:b".into())]);
    assert_eq!(sv.wait_exit(secs(20.0)), 2, "{}", sv.dump());
    assert!(
        sv.messages("internal")
            .iter()
            .any(|m| m.contains("VAULT_ADDR")),
        "{}",
        sv.dump()
    );
    let mut sv = start_with_env(&config, &[]);
    assert_eq!(sv.wait_exit(secs(20.0)), 0, "{}", sv.dump());
    assert_eq!(sv.messages("app"), ["ran"]);
}
