//! `files` through the binary: written before the first init job with their mode and owner,
//! the jobs told where by their `env` variable, and gone again after every kind of exit (a
//! shutdown, a failed init job, a fatal Vault error, an internal failure). A file that cannot
//! be written is a fatal error at start that names it, with no job started. Certificates come
//! from OpenBao's PKI engine: the key matches the certificate and no PEM reaches a record.

mod harness;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use harness::{Supervisor, TempDir, require, secs};
use support::bao::Bao;

/// simplevisor with `--no-vault`, only `env` (plus PATH) in its environment.
fn start_no_vault(config: &Value, env: &[(&str, &str)]) -> Supervisor {
    start_wrapped(config, env, &[])
}

fn start_wrapped(config: &Value, env: &[(&str, &str)], wrapper: &[&str]) -> Supervisor {
    let text = config.to_string();
    let mut run = harness::run(&text)
        .arg("--no-vault")
        .clear_env()
        .wrapped(wrapper);
    for (key, value) in env {
        run = run.env(key, value);
    }
    run.start()
}

fn start_vault(config: &Value, bao: &Bao, extra: &[(&str, &str)]) -> Supervisor {
    let mut env = bao.env();
    env.push(("VAULT_TOKEN".into(), "root".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    harness::start_with_env(config, &env)
}

/// The names in `dir`, sorted (to see that nothing was left, temporary files included).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every message of every record, jobs' and simplevisor's.
fn all_messages(sv: &Supervisor) -> Vec<String> {
    sv.seen
        .iter()
        .map(|r| r["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The position of the first record of `process` containing `text`.
fn position(sv: &Supervisor, process: &str, text: &str) -> usize {
    sv.seen
        .iter()
        .position(|r| {
            r["process"] == process && r["message"].as_str().is_some_and(|m| m.contains(text))
        })
        .unwrap_or_else(|| panic!("no record of {process} with {text:?}:\n{}", sv.dump()))
}

fn run_as_prerequisites() -> bool {
    require("root (to give files to another user)", harness::is_root())
        && require(
            "user svtest (scripts/setup)",
            harness::user_exists("svtest"),
        )
}

#[test]
fn files_are_written_before_the_first_init_job_and_removed_after_sigterm() {
    if !run_as_prerequisites() {
        return;
    }
    let dir = TempDir::new("files");
    let password = dir.path().join("db-password");
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, "an old file is replaced").unwrap();
    let config = json!({
        "env": { "pass": ["PATH", "DB_PASSWORD_FILE"], "vault-replace": ["DB_PASSWORD"] },
        "files": [
            { "path": password, "template": "{{ .DB_PASSWORD }}", "mode": "0440",
              "owner": "svtest:svtest", "env": "DB_PASSWORD_FILE" },
            { "path": conf, "template": "user=app\npassword={{ .DB_PASSWORD }}\n", "mode": "0600" }
        ],
        "jobs": {
            "init": [{ "name": "first", "cmd": ["sh", "-c",
                "stat -c '%a %U:%G' \"$DB_PASSWORD_FILE\"; wc -c < \"$DB_PASSWORD_FILE\""] }],
            "main": [{ "name": "app", "cmd": ["sh", "-c", "echo up; exec sleep 100"] }]
        }
    });
    let mut sv = start_no_vault(
        &config,
        &[
            ("DB_PASSWORD", "devpass-1234"),
            ("DB_PASSWORD_FILE", "/passed/is/replaced"),
        ],
    );
    sv.wait_message("app", "up", secs(10.0));
    assert_eq!(sv.messages("first"), ["440 svtest:svtest", "12"]);
    assert!(
        position(&sv, "internal", "wrote 2 file(s)") < position(&sv, "first", "440"),
        "written before the first init job:\n{}",
        sv.dump()
    );
    assert_eq!(std::fs::read_to_string(&password).unwrap(), "devpass-1234");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "user=app\npassword=devpass-1234\n"
    );
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "simplevisor's own user");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    assert!(
        sv.messages("internal")
            .iter()
            .any(|m| m == "removed 2 file(s)"),
        "{}",
        sv.dump()
    );
    for message in sv.messages("internal") {
        assert!(!message.contains("devpass-1234"), "{message}");
    }
}

#[test]
fn files_are_removed_after_a_failed_init_job() {
    let dir = TempDir::new("files");
    let path = dir.path().join("secret");
    let config = json!({
        "files": [{ "path": path, "template": "value", "env": "SECRET_FILE" }],
        "env": { "pass": ["PATH"] },
        "jobs": {
            "init": [{ "name": "first", "cmd": ["sh", "-c", "test -s \"$SECRET_FILE\" && echo present; exit 3"] }],
            "main": [{ "name": "never", "cmd": ["sleep", "100"] }]
        }
    });
    let mut sv = start_no_vault(&config, &[]);
    assert_eq!(sv.wait_exit(secs(10.0)), 1, "{}", sv.dump());
    assert_eq!(sv.messages("first"), ["present"]);
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn files_are_removed_after_an_internal_failure() {
    let dir = TempDir::new("files");
    let path = dir.path().join("secret");
    let config = json!({
        "files": [{ "path": path, "template": "value" }],
        "env": { "pass": ["PATH"] },
        "jobs": { "main": [{ "name": "app", "cmd": ["sh", "-c", "echo up; exec sleep 100"] }] }
    });
    let mut sv = start_no_vault(&config, &[("SIMPLEVISOR_TEST_PANIC_ON_USR2", "1")]);
    sv.wait_message("app", "up", secs(10.0));
    assert!(path.exists());
    sv.signal(libc::SIGUSR2);
    assert_ne!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    sv.wait_message("internal", "internal error: ", secs(1.0));
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_missing_directory_is_a_fatal_error_at_start() {
    let dir = TempDir::new("files");
    let written = dir.path().join("written-first");
    let missing = dir.path().join("no-such-dir").join("secret");
    let config = json!({
        "files": [
            { "path": written, "template": "first" },
            { "path": missing, "template": "literal-content-xyz" }
        ],
        "env": { "pass": ["PATH"] },
        "jobs": {
            "init": [{ "name": "first", "cmd": ["echo", "ran"] }],
            "main": [{ "name": "app", "cmd": ["echo", "ran"] }]
        }
    });
    let mut sv = start_no_vault(&config, &[]);
    assert_eq!(sv.wait_exit(secs(10.0)), 1, "{}", sv.dump());
    let expected = format!(
        "cannot write {}: its directory {} does not exist; no job was started",
        missing.display(),
        missing.parent().unwrap().display()
    );
    let record = sv.wait_message("internal", &expected, secs(1.0));
    assert_eq!(record["stream"], 1);
    assert!(sv.messages("first").is_empty() && sv.messages("app").is_empty());
    assert!(
        !all_messages(&sv)
            .iter()
            .any(|m| m.starts_with("job ") || m.contains("literal-content-xyz")),
        "{}",
        sv.dump()
    );
    assert!(
        names(dir.path()).is_empty(),
        "none is written when one cannot be"
    );
}

/// simplevisor started in a mount namespace of its own, with a tmpfs mounted (with `options`)
/// on `dir` first: the host never sees the mount, and it ends with simplevisor.
fn start_on_private_tmpfs(
    config: &Value,
    env: &[(&str, &str)],
    dir: &Path,
    options: &str,
) -> Option<Supervisor> {
    let unshare_works = harness::is_root()
        && Command::new("unshare")
            .args(["--mount", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !require("root and unshare --mount", unshare_works) {
        return None;
    }
    let script = format!(
        "mount -t tmpfs -o {options} simplevisor-test '{}' && exec \"$@\"",
        dir.display()
    );
    Some(start_wrapped(
        config,
        env,
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ],
    ))
}

/// A tmpfs of 8 KiB cannot hold a file of 64 KiB: `ENOSPC` while writing is a fatal error at
/// start naming the path.
#[test]
fn a_full_file_system_is_a_fatal_error_at_start() {
    let dir = TempDir::new("files");
    let path = dir.path().join("big");
    let config = json!({
        "env": { "pass": ["PATH"], "vault-replace": ["BIG"] },
        "files": [{ "path": path, "template": "{{ .BIG }}" }],
        "jobs": { "main": [{ "name": "app", "cmd": ["echo", "ran"] }] }
    });
    let big = "x".repeat(64 * 1024);
    let Some(mut sv) = start_on_private_tmpfs(&config, &[("BIG", &big)], dir.path(), "size=8k")
    else {
        return;
    };
    assert_eq!(sv.wait_exit(secs(10.0)), 1, "{}", sv.dump());
    sv.wait_message(
        "internal",
        &format!(
            "cannot write {}: no space left on the file system; no job was started",
            path.display()
        ),
        secs(1.0),
    );
    assert!(sv.messages("app").is_empty());
    assert!(!all_messages(&sv).iter().any(|m| m.contains("xxxxxxxx")));
}

#[test]
fn a_read_only_file_system_is_a_fatal_error_at_start() {
    let dir = TempDir::new("files");
    let path = dir.path().join("secret");
    let config = json!({
        "env": { "pass": ["PATH"] },
        "files": [{ "path": path, "template": "value" }],
        "jobs": { "main": [{ "name": "app", "cmd": ["echo", "ran"] }] }
    });
    let Some(mut sv) = start_on_private_tmpfs(&config, &[], dir.path(), "ro") else {
        return;
    };
    assert_eq!(sv.wait_exit(secs(10.0)), 1, "{}", sv.dump());
    sv.wait_message(
        "internal",
        &format!(
            "cannot write {}: the file system is read-only; choose a writable directory",
            path.display()
        ),
        secs(1.0),
    );
    assert!(sv.messages("app").is_empty());
}

/// The PEM blocks of a file, to compare and to look for in records.
fn pem_body(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The public key of a certificate or of a private key, as openssl prints it.
fn public_key(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn pki_config(dir: &Path, extra: Value) -> (Value, [PathBuf; 3]) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let chain = dir.join("ca.pem");
    let mut config = json!({
        "env": { "pass": ["PATH"], "vault-replace": ["CERT", "KEY", "CA"] },
        "files": [
            { "path": cert, "template": "{{ .CERT }}\n", "mode": "0444", "env": "TLS_CERT_FILE" },
            { "path": key, "template": "{{ .KEY }}\n", "mode": "0400", "env": "TLS_KEY_FILE" },
            { "path": chain, "template": "{{ .CA }}\n", "mode": "0444" }
        ],
        "jobs": {
            "init": [{ "name": "first", "cmd": ["sh", "-c",
                "stat -c '%a' \"$TLS_CERT_FILE\" \"$TLS_KEY_FILE\"; grep -c 'BEGIN' \"$TLS_CERT_FILE\""] }],
            "main": [{ "name": "tls", "cmd": ["sh", "-c", "echo serving; exec sleep 100"] }]
        }
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    (config, [cert, key, chain])
}

const PKI_ENV: [(&str, &str); 3] = [
    ("CERT", "pki:web/app.example.com:Certificate"),
    ("KEY", "pki:web/app.example.com:PrivateKey"),
    ("CA", "pki:web/app.example.com:CAChain"),
];

#[test]
fn certificates_from_the_pki_engine_match_their_key_and_never_reach_a_record() {
    let Some(bao) = Bao::start() else { return };
    bao.pki("pki", "web", "example.com", "1h");
    let dir = TempDir::new("files");
    let (config, [cert, key, chain]) = pki_config(dir.path(), json!({}));
    let mut sv = start_vault(&config, &bao, &PKI_ENV);
    sv.wait_message("tls", "serving", secs(15.0));
    assert_eq!(sv.messages("first"), ["444", "400", "1"]);
    assert_eq!(
        public_key(&["x509", "-noout", "-pubkey", "-in"], &cert),
        public_key(&["pkey", "-pubout", "-in"], &key),
        "the key is the certificate's: both come from one issue"
    );
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains("app.example.com"));
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&chain)
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let secrets = [pem_body(&cert), pem_body(&key)];
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    for message in all_messages(&sv) {
        assert!(!message.contains("BEGIN"), "PEM in a record: {message}");
        for secret in &secrets {
            for line in secret.lines().filter(|l| l.len() > 20) {
                assert!(!message.contains(line), "PEM in a record: {message}");
            }
        }
    }
}

/// A certificate's lifetime counts as a lease: with `on-lease-expiry: exit`, a certificate of
/// 4 s is a fatal Vault error once less than a tenth of it (at least 1 s) is left, and the
/// files are removed on that exit too.
#[test]
fn an_expiring_certificate_is_a_fatal_vault_error_and_the_files_are_removed() {
    let Some(bao) = Bao::start() else { return };
    bao.pki("pki", "web", "example.com", "4s");
    let dir = TempDir::new("files");
    let (config, [cert, ..]) = pki_config(dir.path(), json!({}));
    let mut sv = start_vault(&config, &bao, &PKI_ENV);
    sv.wait_message("tls", "serving", secs(15.0));
    assert!(cert.exists());
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        sv.messages("internal")
            .iter()
            .any(|m| m.contains("pki:web/app.example.com")),
        "the expiry names the certificate:\n{}",
        sv.dump()
    );
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

/// A certificate Vault refuses to issue (a name the role does not allow) fails the start
/// (exit 1) naming the reference, before any file is written or job started.
#[test]
fn a_refused_certificate_fails_the_start_before_any_file_is_written() {
    let Some(bao) = Bao::start() else { return };
    bao.pki("pki", "web", "example.com", "1h");
    let dir = TempDir::new("files");
    let (config, _) = pki_config(dir.path(), json!({}));
    let env = [
        ("CERT", "pki:web/app.example.org:Certificate"),
        ("KEY", "pki:web/app.example.org:PrivateKey"),
        ("CA", "pki:web/app.example.org:CAChain"),
    ];
    let mut sv = start_vault(&config, &bao, &env);
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    sv.wait_message(
        "internal",
        "cannot issue pki:web/app.example.org (pki/issue/web)",
        secs(1.0),
    );
    assert!(sv.messages("first").is_empty());
    assert!(names(dir.path()).is_empty());
}
