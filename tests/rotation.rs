//! Rotations through the binary against a real OpenBao (and PostgreSQL): `simplevisor rotate`
//! fetches every secret anew, rewrites the files atomically and brings the new values to the
//! jobs one at a time (a restart, or their `reload-signal`); a rotation whose fetch fails
//! changes nothing; replaced database credentials are revoked once the jobs moved on.

mod harness;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::control::{ctl, job, socket_path, status, wait_status};
use harness::{Supervisor, TempDir, secs, start_with_env};
use support::bao::Bao;
use support::postgres::Postgres;

fn start(config: &Value, bao: &Bao, extra: &[(&str, &str)]) -> Supervisor {
    let mut env = bao.env();
    env.push(("VAULT_TOKEN".into(), "root".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    start_with_env(config, &env)
}

/// No internal record shows any of `secrets`.
fn assert_internal_never_shows(sv: &Supervisor, secrets: &[&str]) {
    for message in sv.messages("internal") {
        for secret in secrets {
            assert!(!message.contains(secret), "secret in record {message:?}");
        }
    }
}

fn serial(pem_file: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem_file)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A job restarted by rotations: says its password's length (never the password).
fn restarted(name: &str) -> Value {
    json!({
        "name": name,
        "cmd": ["sh", "-c", format!(
            "trap 'echo {name} got TERM; exit 0' TERM; echo {name} up ${{#APP_PASSWORD}}; while :; do sleep 0.05; done"
        )],
    })
}

#[test]
fn rotate_renews_files_and_environment_one_job_at_a_time() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"password": "first-password"}));
    bao.pki("pki", "web", "example.com", "1h");
    let dir = TempDir::new("rotation");
    let socket = socket_path();
    let pw = dir.path().join("password");
    let cert = dir.path().join("cert.pem");
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {
            "pass": ["PATH", "APP_PASSWORD"],
            "vault-replace": ["APP_PASSWORD", "CERT"],
        },
        "files": [
            {"path": pw.display().to_string(), "template": "{{ .APP_PASSWORD }}", "mode": "0400"},
            {"path": cert.display().to_string(), "template": "{{ .CERT }}", "mode": "0444"},
        ],
        "jobs": {"main": [
            {
                "name": "server",
                "reload-signal": "HUP",
                "cmd": ["sh", "-c", "trap 'echo server got HUP' HUP; echo server up; while :; do sleep 0.05; done"],
            },
            restarted("w1"),
            restarted("w2"),
        ]},
    });
    let mut sv = start(
        &config,
        &bao,
        &[
            ("APP_PASSWORD", "secret:app:password"),
            ("CERT", "pki:web/www.example.com:Certificate"),
        ],
    );
    for name in ["server", "w1", "w2"] {
        sv.wait_message(name, "up", secs(20.0));
    }
    wait_status(&socket, "all running", |s| {
        ["server", "w1", "w2"]
            .iter()
            .all(|n| job(s, n)["state"] == "running")
    });
    let before = status(&socket);
    let server_pid = job(&before, "server")["pid"].clone();
    let listed: Vec<&str> = before["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [pw.to_str().unwrap(), cert.to_str().unwrap()],
        "status lists the files"
    );
    assert!(before["files"][0]["written_at"].as_u64().unwrap() > 1_600_000_000);
    let first_serial = serial(&cert);
    let first_pem = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "first-password");

    bao.kv_put("kv", 2, "app", json!({"password": "second-password!"}));
    let out = ctl(&socket, &["rotate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "rotation begun: fetching every secret anew"
    );
    sv.wait_message(
        "internal",
        "rotation done: 2 job(s) restarted, 1 sent",
        secs(30.0),
    );

    // Files: new content, same modes, a new certificate.
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "second-password!");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&pw), 0o400);
    assert_eq!(mode(&cert), 0o444);
    assert_ne!(serial(&cert), first_serial, "a new certificate");
    // The job with a reload-signal kept running; the others restarted with the new password.
    sv.wait_message("server", "server got HUP", secs(5.0));
    let s = status(&socket);
    assert_eq!(job(&s, "server")["pid"], server_pid);
    assert_eq!(job(&s, "server")["restarts"], 0);
    for name in ["w1", "w2"] {
        assert_eq!(job(&s, name)["restarts"], 1, "{s}");
        sv.wait_message(name, &format!("{name} up 16"), secs(5.0));
    }
    // One at a time: w2 is stopped only once w1 runs again.
    let position = |text: &str, nth: usize| {
        sv.seen
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r["process"] == "internal"
                    && r["message"].as_str().is_some_and(|m| m.starts_with(text))
            })
            .map(|(i, _)| i)
            .nth(nth)
            .unwrap_or_else(|| panic!("no record {text:?} #{nth}:\n{}", sv.dump()))
    };
    assert!(position("job w2 exited", 0) > position("job w1 started", 1));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
    assert!(!pw.exists() && !cert.exists(), "files removed at exit");
    let pem_line = first_pem.lines().nth(1).unwrap_or("-----BEGIN").to_string();
    assert_internal_never_shows(
        &sv,
        &["first-password", "second-password!", "BEGIN", &pem_line],
    );
}

#[test]
fn a_rotation_whose_fetch_fails_changes_nothing() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"password": "kept-password"}));
    let dir = TempDir::new("rotation-fails");
    let socket = socket_path();
    let pw = dir.path().join("password");
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {"pass": ["PATH", "APP_PASSWORD"], "vault-replace": ["APP_PASSWORD"]},
        "files": [{"path": pw.display().to_string(), "template": "{{ .APP_PASSWORD }}"}],
        "jobs": {"main": [restarted("w1")]},
    });
    let mut sv = start(&config, &bao, &[("APP_PASSWORD", "secret:app:password")]);
    sv.wait_message("w1", "w1 up", secs(20.0));
    // The secret is gone: fetching it anew fails.
    bao.api("DELETE", "kv/metadata/app", json!({}));
    assert_eq!(ctl(&socket, &["rotate"]).code, 0);
    let record = sv.wait_message("internal", "rotation abandoned", secs(30.0));
    assert_eq!(record["stream"], 1, "{record}");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "kept-password");
    let s = status(&socket);
    assert_eq!(job(&s, "w1")["restarts"], 0);
    assert_eq!(job(&s, "w1")["state"], "running");
    // A later rotation is not refused because of it.
    let again = ctl(&socket, &["rotate"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    sv.wait_for_new("a second abandoned rotation", secs(30.0), |r| {
        r["process"] == "internal"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("rotation abandoned"))
    });
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
    assert_internal_never_shows(&sv, &["kept-password"]);
}

#[test]
fn rotate_is_refused_without_vault() {
    let socket = socket_path();
    let config = json!({
        "control-socket": socket.display().to_string(),
        "jobs": {"main": [{"name": "w", "cmd": ["sh", "-c", "echo up; sleep 30"]}]},
    });
    let mut sv = harness::run(&config.to_string()).arg("--no-vault").start();
    sv.wait_message("w", "up", secs(10.0));
    let out = ctl(&socket, &["rotate"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nothing to rotate"), "{}", out.stderr);
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
}

#[test]
fn rotated_database_credentials_replace_the_old_lease_which_is_revoked() {
    let Some(bao) = Bao::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    bao.database("database", &pg, "app", "1h", "1h");
    let socket = socket_path();
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {"pass": ["PATH", "DB_USER"], "vault-replace": ["DB_USER"]},
        "jobs": {"main": [{
            "name": "app",
            "cmd": ["sh", "-c", "trap 'exit 0' TERM; echo user=$DB_USER; while :; do sleep 0.05; done"],
        }]},
    });
    let mut sv = start(&config, &bao, &[("DB_USER", "db:app:Username")]);
    let first = sv.wait_message("app", "user=", secs(20.0))["message"]
        .as_str()
        .unwrap()
        .trim_start_matches("user=")
        .to_string();
    assert_eq!(bao.lease_count("database/creds/app"), 1);
    assert_eq!(ctl(&socket, &["rotate"]).code, 0);
    sv.wait_message("internal", "rotation done", secs(30.0));
    let second = sv.wait_for("a second user", secs(10.0), |r| {
        r["process"] == "app"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("user=") && !m.ends_with(&first))
    })["message"]
        .as_str()
        .unwrap()
        .trim_start_matches("user=")
        .to_string();
    // The old credential is revoked once the job runs with the new one.
    let deadline = Instant::now() + secs(15.0);
    while bao.lease_count("database/creds/app") != 1 || pg.role_exists(&first) {
        assert!(
            Instant::now() < deadline,
            "the old lease was not revoked: {} leases; {}",
            bao.lease_count("database/creds/app"),
            sv.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pg.role_exists(&second));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
    assert_internal_never_shows(&sv, &[&first, &second]);
}

#[test]
fn a_reader_never_sees_a_partial_file_or_a_wrong_mode_during_rotations() {
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"password": "v0-0000000000"}));
    let dir = TempDir::new("rotation-atomic");
    let socket = socket_path();
    let pw = dir.path().join("password");
    // The reader checks every read: one whole value, mode 440; it keeps running (HUP ignored).
    let reader = format!(
        "trap '' HUP; trap 'exit 0' TERM; echo reading; while :; do c=$(cat {p}); case \"$c\" in v[0-9]*-0000000000) ;; *) echo BAD-CONTENT ;; esac; [ \"$(stat -c %a {p})\" = 440 ] || echo BAD-MODE; done",
        p = pw.display()
    );
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {"pass": ["PATH"], "vault-replace": ["APP_PASSWORD"]},
        "files": [{"path": pw.display().to_string(), "template": "{{ .APP_PASSWORD }}", "mode": "0440"}],
        "jobs": {"main": [{"name": "reader", "reload-signal": "HUP", "cmd": ["sh", "-c", reader]}]},
    });
    let mut sv = start(&config, &bao, &[("APP_PASSWORD", "secret:app:password")]);
    sv.wait_message("reader", "reading", secs(20.0));
    for round in 1..=20 {
        bao.kv_put(
            "kv",
            2,
            "app",
            json!({"password": format!("v{round}-0000000000")}),
        );
        assert_eq!(ctl(&socket, &["rotate"]).code, 0);
        sv.wait_for_new(&format!("rotation {round} done"), secs(30.0), |r| {
            r["process"] == "internal"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("rotation done"))
        });
        assert_eq!(
            std::fs::read_to_string(&pw).unwrap(),
            format!("v{round}-0000000000")
        );
    }
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
    let bad: Vec<String> = sv
        .messages("reader")
        .into_iter()
        .filter(|m| m.starts_with("BAD"))
        .collect();
    assert!(bad.is_empty(), "the reader saw {bad:?}");
    // No temporary file was left beside it either.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn a_file_that_cannot_be_written_or_a_vault_that_is_down_abandons_the_rotation() {
    let Some(mut bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"password": "old-password"}));
    let dir = TempDir::new("rotation-write");
    let kept = dir.path().join("kept");
    let gone = dir.path().join("gone");
    std::fs::create_dir(&kept).unwrap();
    std::fs::create_dir(&gone).unwrap();
    let (a, b) = (kept.join("a"), gone.join("b"));
    let socket = socket_path();
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {"pass": ["PATH"], "vault-replace": ["APP_PASSWORD"]},
        "vault": {"startup-timeout": "2s"},
        "files": [
            {"path": a.display().to_string(), "template": "{{ .APP_PASSWORD }}"},
            {"path": b.display().to_string(), "template": "{{ .APP_PASSWORD }}"},
        ],
        "jobs": {"main": [restarted("w1")]},
    });
    let mut sv = start(&config, &bao, &[("APP_PASSWORD", "secret:app:password")]);
    sv.wait_message("w1", "w1 up", secs(20.0));

    // One file's directory is gone: no file is replaced, the jobs are left alone.
    std::fs::remove_dir_all(&gone).unwrap();
    bao.kv_put("kv", 2, "app", json!({"password": "new-password"}));
    assert_eq!(ctl(&socket, &["rotate"]).code, 0);
    let record = sv.wait_message("internal", "rotation abandoned", secs(30.0));
    assert_eq!(record["stream"], 1);
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains(&b.display().to_string()),
        "{record}"
    );
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "old-password");
    assert_eq!(job(&status(&socket), "w1")["restarts"], 0);

    // With the directory back, the next rotation goes through.
    std::fs::create_dir(&gone).unwrap();
    assert_eq!(ctl(&socket, &["rotate"]).code, 0);
    sv.wait_message("internal", "rotation done", secs(30.0));
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "new-password");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "new-password");

    // Vault down: abandoned once its start-up timeout has passed, nothing changed.
    bao.stop();
    assert_eq!(ctl(&socket, &["rotate"]).code, 0);
    sv.wait_for_new("a rotation abandoned with Vault down", secs(30.0), |r| {
        r["process"] == "internal"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("rotation abandoned"))
    });
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "new-password");
    let s = status(&socket);
    assert_eq!(job(&s, "w1")["restarts"], 1);
    assert_eq!(job(&s, "w1")["state"], "running");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(30.0)), 0);
    assert!(!a.exists() && !b.exists(), "files removed at exit");
}
