//! The command line through the binary: config errors (exit 2, nothing started), `check`,
//! `schema`, `--version`, `--help`, and the config path precedence.

mod harness;

use std::process::{Command, Output};

use harness::{BIN, TempDir};

fn simplevisor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("SIMPLEVISOR_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/original-readme.json"
);

#[test]
fn the_original_readme_example_fails_with_line_and_column() {
    for command in ["check", "run"] {
        let out = simplevisor(&[command, "--config", FIXTURE], &[]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = text(&out.stderr);
        assert!(
            err.contains("original-readme.json:6:5: invalid JSON: expected `,` or `}` (is a comma missing at the end of the previous line?)"),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing started: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn every_problem_is_reported_at_once_and_nothing_runs() {
    let dir = TempDir::new("cli");
    let marker = dir.path().join("ran");
    let config = dir.write(
        "bad.json",
        &format!(
            r#"{{"jobs": {{"main": [
                {{"cmd": ["touch", "{}"], "kill_signal": "INT"}},
                {{"cmd": ["x"], "kill-signal": "NOPE", "run-as": "no-such-user-xyz"}},
                {{"cmd": ["y"], "stop-timeout": "soon"}}
            ]}}}}"#,
            marker.display()
        ),
    );
    let out = simplevisor(&["--config", config.to_str().unwrap(), "--no-vault"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for expected in [
        "4 problem(s) found",
        "jobs.main[0].kill_signal: unknown key \"kill_signal\"; did you mean \"kill-signal\"?",
        "jobs.main[1].kill-signal: unknown signal \"NOPE\"; valid names: HUP, INT, QUIT",
        "jobs.main[1].run-as: user \"no-such-user-xyz\" does not exist in /etc/passwd",
        "jobs.main[2].stop-timeout: \"soon\" is not a duration",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!marker.exists(), "a job ran despite the errors");
}

#[test]
fn environment_problems_are_config_errors_without_values() {
    let dir = TempDir::new("cli");
    let config = dir.write(
        "c.json",
        r#"{"env": {"vault-replace": ["PASSWORD"], "vault-template": ["URL"]}, "jobs": {"main": [{"cmd": ["true"]}]}}"#,
    );
    let out = simplevisor(
        &["check", "--config", config.to_str().unwrap()],
        &[
            ("PASSWORD", "hunter2-pasted-by-mistake"),
            ("URL", "{{ .HOST }}"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("env.vault-replace[0]: PASSWORD: the value is not a reference"),
        "{err}"
    );
    assert!(
        err.contains("env.vault-template[0]: URL: the template does not render"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn check_summarises_without_secret_values() {
    let dir = TempDir::new("cli");
    let config = dir.write(
        "c.json",
        r#"{"env": {"vault-replace": ["DB_PASSWORD"], "pass": ["DB_PASSWORD"]},
            "jobs": {"init": [{"name": "migrate", "cmd": ["true"]}],
                     "main": [{"name": "web", "cmd": ["sleep", "1"], "kill-signal": "INT", "essential": true}]}}"#,
    );
    let out = simplevisor(
        &["check", "--config", config.to_str().unwrap()],
        &[
            ("DB_PASSWORD", "db:prod-db:Password"),
            ("VAULT_ADDR", "https://vault.invalid:8200"),
            ("VAULT_TOKEN", "s.not-printed"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("s.not-printed"));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("migrate: true | kill-signal TERM | stop-timeout 5s"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "web: sleep 1 | kill-signal INT | stop-timeout 5s | restart always | essential"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("DB_PASSWORD <- db:prod-db:Password"),
        "{summary}"
    );
    let out = simplevisor(
        &["check", "--no-vault", "--config", config.to_str().unwrap()],
        &[("DB_PASSWORD", "devpass-literal")],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("devpass-literal"));
}

#[test]
fn config_path_precedence() {
    // A copy of the binary with its own simplevisor.json next to it.
    let dir = TempDir::new("cli");
    let bin = dir.path().join("simplevisor");
    std::fs::copy(BIN, &bin).unwrap();
    dir.write(
        "simplevisor.json",
        r#"{"jobs": {"main": [{"name": "beside", "cmd": ["true"]}]}}"#,
    );
    let env_file = dir.write(
        "env.json",
        r#"{"jobs": {"main": [{"name": "from-env", "cmd": ["true"]}]}}"#,
    );
    let flag_file = dir.write(
        "flag.json",
        r#"{"jobs": {"main": [{"name": "from-flag", "cmd": ["true"]}]}}"#,
    );
    let check = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(&bin);
        command
            .arg("check")
            .args(args)
            .env_remove("SIMPLEVISOR_CONFIG");
        if let Some(path) = env {
            command.env("SIMPLEVISOR_CONFIG", path);
        }
        // A copy just written may be "text file busy" for a moment: another test thread's
        // fork can hold the copy's write descriptor until its exec.
        for _ in 0..100 {
            match command.output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                result => return text(&result.unwrap().stdout),
            }
        }
        panic!("the copied binary stayed busy");
    };
    assert!(check(&[], None).contains("beside:"));
    assert!(check(&[], Some(env_file.to_str().unwrap())).contains("from-env:"));
    assert!(
        check(
            &["--config", flag_file.to_str().unwrap()],
            Some(env_file.to_str().unwrap())
        )
        .contains("from-flag:")
    );
}

#[test]
fn schema_version_help_and_usage_errors() {
    let out = simplevisor(&["schema"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["required"][0], "jobs");
    assert!(
        schema["properties"]["jobs"]["properties"]["main"]["items"]["properties"]["kill-signal"]
            .is_object()
    );

    let out = simplevisor(&["--version"], &[]);
    assert_eq!(
        text(&out.stdout),
        format!("simplevisor {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = simplevisor(&["--help"], &[]);
    assert!(text(&out.stdout).contains("simplevisor check [--config PATH] [--no-vault]"));

    for bad in [&["--bogus"][..], &["start"], &["--config"]] {
        let out = simplevisor(bad, &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(text(&out.stderr).contains("Run 'simplevisor --help' for usage."));
    }
    let out = simplevisor(&["--config", "/nonexistent/x.json"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("cannot read config file /nonexistent/x.json: No such file or directory")
    );
}

#[test]
fn check_reports_unusable_vault_settings_without_contacting_vault() {
    let dir = TempDir::new("cli");
    let config = dir.write(
        "c.json",
        r#"{"env": {"vault-replace": ["DB_PASSWORD"]}, "jobs": {"main": [{"cmd": ["true"]}]}}"#,
    );
    let config = config.to_str().unwrap();
    let env = [("DB_PASSWORD", "db:app:Password")];
    let out = simplevisor(&["check", "--config", config], &env);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("VAULT_ADDR is not set"), "{err}");
    // Nothing listens there; check must not care.
    let env = [
        ("DB_PASSWORD", "db:app:Password"),
        ("VAULT_ADDR", "http://127.0.0.1:9"),
        ("VAULT_TOKEN", "t"),
    ];
    let out = simplevisor(&["check", "--config", config], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = simplevisor(
        &["check", "--no-vault", "--config", config],
        &[("DB_PASSWORD", "x")],
    );
    assert_eq!(out.status.code(), Some(0));
}
