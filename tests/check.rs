//! `simplevisor check` warnings through the binary: a `cmd[0]` the job could not execute and a
//! `workdir` that does not exist are reported on stderr, and the exit status stays what the
//! configuration alone decides (an init job may still create either).

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use harness::{BIN, TempDir};

fn check(config: &str, path: &str) -> Output {
    Command::new(BIN)
        .args(["check", "--no-vault", "--config", config])
        .env_remove("SIMPLEVISOR_CONFIG")
        .env("PATH", path)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unrunnable_programs_and_missing_workdirs_are_warnings() {
    let dir = TempDir::new("check");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let not_executable = bin.join("plain-file");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.write(
        "c.json",
        r#"{"env": {"pass": ["PATH"]}, "jobs": {
            "init": [{"name": "missing", "cmd": ["no-such-program-xyz"]}],
            "main": [
                {"name": "plain", "cmd": ["plain-file"]},
                {"name": "absolute", "cmd": ["/nonexistent/bin/server"]},
                {"name": "elsewhere", "cmd": ["sh", "-c", "true"], "workdir": "/nonexistent/dir"},
                {"name": "fine", "cmd": ["sh", "-c", "true"], "workdir": "/"}
            ]}}"#,
    );
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = check(config.to_str().unwrap(), &path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "only warnings: {err}");
    assert!(text(&out.stdout).contains("c.json: OK"));
    for expected in [
        format!(
            "warning: jobs.init[0].cmd[0]: no-such-program-xyz: command not found in PATH {path}; job missing would fail to start"
        ),
        format!(
            "warning: jobs.main[0].cmd[0]: {} is not executable; job plain would fail to start",
            not_executable.display()
        ),
        "warning: jobs.main[1].cmd[0]: /nonexistent/bin/server: No such file or directory".into(),
        "warning: jobs.main[2].workdir: /nonexistent/dir is not an existing directory; job elsewhere would fail to start".into(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(!err.contains("fine"), "{err}");
}

#[test]
fn the_program_is_looked_up_in_the_jobs_path_or_else_in_simplevisors() {
    let dir = TempDir::new("check");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("only-here");
    std::fs::write(&tool, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The job's own PATH (passed in env) finds it, although simplevisor's PATH would not.
    let config = dir.write(
        "own.json",
        r#"{"env": {"pass": ["PATH"]}, "jobs": {"main": [{"cmd": ["only-here"]}]}}"#,
    );
    let out = Command::new(BIN)
        .args(["check", "--no-vault", "--config", config.to_str().unwrap()])
        .env_remove("SIMPLEVISOR_CONFIG")
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), "", "found in the job's PATH");

    // PATH not passed: the job has none, so simplevisor's own PATH is searched.
    let config = dir.write(
        "none.json",
        r#"{"jobs": {"main": [{"cmd": ["only-here"]}, {"cmd": ["no-such-program-xyz"]}]}}"#,
    );
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = check(config.to_str().unwrap(), &path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "jobs.main[1].cmd[0]: no-such-program-xyz: command not found in PATH {path}"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn warnings_do_not_hide_configuration_errors() {
    let dir = TempDir::new("check");
    let config = dir.write(
        "c.json",
        r#"{"jobs": {"main": [{"cmd": ["no-such-program-xyz"], "restart": "sometimes"}]}}"#,
    );
    let out = check(config.to_str().unwrap(), "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn run_reports_every_unusable_vault_setting_as_check_does() {
    let dir = TempDir::new("check");
    let config = dir.write(
        "c.json",
        r#"{"env": {"vault-replace": ["DB_PASSWORD"]}, "jobs": {"main": [{"cmd": ["true"]}]}}"#,
    );
    let config = config.to_str().unwrap();
    for command in ["check", "run"] {
        let out = Command::new(BIN)
            .args([command, "--config", config])
            .env_remove("SIMPLEVISOR_CONFIG")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ROLE_ID")
            .env_remove("VAULT_SECRET_ID")
            .env("DB_PASSWORD", "db:app:Password")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        // check writes to stderr; run, whose output has started, writes records to stdout.
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for expected in ["VAULT_ADDR is not set", "no Vault login: set VAULT_TOKEN"] {
            assert!(
                said.contains(expected),
                "{command}: missing {expected:?}: {said}"
            );
        }
    }
}

#[test]
fn files_are_listed_without_their_content_and_a_missing_directory_is_a_warning() {
    let dir = TempDir::new("check");
    let config = dir.write(
        "c.json",
        &format!(
            r#"{{"env": {{"vault-replace": ["DB_PASSWORD"]}},
                "files": [
                  {{"path": "{}/db-password", "template": "{{{{ .DB_PASSWORD }}}}", "env": "DB_PASSWORD_FILE"}},
                  {{"path": "/nonexistent-dir-xyz/tls.pem", "template": "literal-secret-text", "mode": "0440", "owner": "0:0"}}
                ],
                "jobs": {{"main": [{{"cmd": ["sh"], "reload-signal": "HUP"}}]}}}}"#,
            dir.path().display()
        ),
    );
    let out = Command::new(BIN)
        .args(["check", "--no-vault", "--config", config.to_str().unwrap()])
        .env_remove("SIMPLEVISOR_CONFIG")
        .env("PATH", "/usr/bin:/bin")
        .env("DB_PASSWORD", "devpass-value")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "a warning only: {stderr}");
    assert!(
        stdout.contains(&format!(
            "files: 2\n  {}/db-password | mode 0400 | owner simplevisor's own user and group | env DB_PASSWORD_FILE\n  /nonexistent-dir-xyz/tls.pem | mode 0440 | owner uid 0 gid 0 (root)\n",
            dir.path().display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("| reload-signal HUP"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: files[1].path: /nonexistent-dir-xyz is not an existing directory; writing /nonexistent-dir-xyz/tls.pem would fail at start"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for said in [&stdout, &stderr] {
        assert!(
            !said.contains("literal-secret-text") && !said.contains("devpass-value"),
            "content shown: {said}"
        );
    }
}

#[test]
fn a_file_template_naming_an_unset_variable_is_a_configuration_error() {
    let dir = TempDir::new("check");
    let config = dir.write(
        "c.json",
        r#"{"env": {"vault-replace": ["CERT"]},
            "files": [{"path": "/tmp/x.pem", "template": "{{ .CERT }}"}],
            "jobs": {"main": [{"cmd": ["sh"]}]}}"#,
    );
    let out = check(config.to_str().unwrap(), "/usr/bin:/bin");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("files[0].template: the template of /tmp/x.pem does not render"),
        "{err}"
    );
}

#[test]
fn the_metrics_address_is_listed() {
    let dir = TempDir::new("check-metrics");
    let config = dir.write(
        "c.json",
        r#"{"metrics-listen": "127.0.0.1:9100", "jobs": {"main": [{"cmd": ["/bin/true"]}]}}"#,
    );
    let out = check(config.to_str().unwrap(), "/usr/bin:/bin");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("metrics: http://127.0.0.1:9100/metrics, probes /readyz and /livez"),
        "{}",
        text(&out.stdout)
    );
}
