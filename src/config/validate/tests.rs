//! Validation on in-memory files: every rule, and every problem reported at once.

use super::*;
use crate::config::ExpiryPolicy;
use crate::identity::UserDb;

fn users() -> UserDb {
    UserDb::parse(
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
        "root:x:0:\nwww-data:x:33:\n",
    )
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("test.json"), &users())
}

fn problems(text: &str) -> Vec<String> {
    match load_text(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_minimal_config_gets_every_default() {
    let c =
        load_text(r#"{"jobs": {"main": [{"cmd": ["/usr/bin/web", "--port", "80"]}]}}"#).unwrap();
    let job = &c.main[0];
    assert_eq!(job.name, "web");
    assert_eq!(job.kill_signal, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(job.stop_timeout, Duration::from_secs(5));
    assert_eq!(job.restart, RestartPolicy::Always);
    assert_eq!(job.log_format, LogFormat::Text);
    assert!(!job.essential && job.run_as.is_none() && job.workdir.is_none());
    assert_eq!(c.backoff, BackoffSettings::default());
    assert_eq!(c.vault, VaultSettings::default());
    assert_eq!(c.env, EnvSettings::default());
}

#[test]
fn every_key_is_read() {
    let c = load_text(
        r#"{
        "env": {"pass": ["PATH"], "pass-all": true, "vault-token": true,
                "vault-replace": ["A"], "vault-template": ["B"]},
        "stop-timeout": "10s",
        "restart-backoff": {"initial": "500ms", "max": "30s", "multiplier": 1.5, "reset-after": "2m"},
        "vault": {"kv-mount": "secret/", "db-mount": "db", "aws-mount": "cloud", "approle-mount": "ar",
                  "on-lease-expiry": "restart", "revoke-on-exit": false, "startup-timeout": "1m"},
        "jobs": {
            "init": [{"cmd": ["migrate"], "stop-timeout": "1s"}],
            "main": [{"name": "w", "cmd": ["x"], "run-as": "www-data:www-data", "kill-signal": "sigint",
                      "workdir": "/srv", "log-format": "json", "restart": "on-failure", "essential": true}]
        }
    }"#,
    )
    .unwrap();
    assert!(c.env.pass_all && c.env.vault_token);
    assert_eq!(c.init[0].stop_timeout, Duration::from_secs(1));
    assert_eq!(c.init[0].restart, RestartPolicy::Never);
    let w = &c.main[0];
    assert_eq!(
        w.stop_timeout,
        Duration::from_secs(10),
        "top-level default applies"
    );
    assert_eq!(w.kill_signal, nix::sys::signal::Signal::SIGINT);
    assert_eq!(w.run_as.as_ref().unwrap().uid, 33);
    assert_eq!(
        (w.log_format, w.restart, w.essential),
        (LogFormat::Json, RestartPolicy::OnFailure, true)
    );
    assert_eq!(c.backoff.multiplier, 1.5);
    assert_eq!(c.vault.kv_mount, "secret");
    assert_eq!(c.vault.on_lease_expiry, ExpiryPolicy::Restart);
    assert!(!c.vault.revoke_on_exit);
}

#[test]
fn the_original_readme_example_is_a_syntax_error_with_line_and_column() {
    let text = include_str!("../../../tests/fixtures/original-readme.json");
    match load_text(text) {
        Err(ConfigError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            assert_eq!((line, column), (6, 5));
            assert!(message.contains("comma missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let found = problems(
        r#"{
        "env": {"vault-replace": ["X"], "vault-template": ["X"], "passs": []},
        "stop-timeout": "forever",
        "jobs": {
            "init": [{"cmd": ["a"], "restart": "always", "essential": true}],
            "main": [
                {"cmd": []},
                {"name": "b", "cmd": ["b"], "kill_signal": "TERM"},
                {"name": "b", "cmd": ["c"], "kill-signal": "TERMINATE", "run-as": "nobody-at-all"},
                {"cmd": ["d"], "run-as": "www-data:nogroup", "restart": "sometimes", "log-format": "xml"}
            ]
        }
    }"#,
    );
    let all = found.join("\n");
    for expected in [
        "env.vault-template[0]: X is listed in both vault-replace and vault-template",
        "env.passs: unknown key \"passs\"; did you mean \"pass\"?",
        "stop-timeout: \"forever\" is not a duration",
        "jobs.init[0].restart: applies to main jobs only",
        "jobs.init[0].essential: applies to main jobs only",
        "jobs.main[0].cmd: must not be empty",
        "jobs.main[1].kill_signal: unknown key \"kill_signal\"; did you mean \"kill-signal\"?",
        "jobs.main[2].kill-signal: unknown signal \"TERMINATE\"; valid names: HUP, INT,",
        "jobs.main[2].run-as: user \"nobody-at-all\" does not exist",
        "jobs.main[2]: duplicate job name \"b\" (also used by jobs.main[1])",
        "jobs.main[3].run-as: group \"nogroup\" does not exist",
        "jobs.main[3].restart: \"sometimes\" is not one of \"always\", \"on-failure\", \"never\"",
        "jobs.main[3].log-format: \"xml\" is not one of \"text\", \"json\"",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // STOP is rejected as a kill-signal, so the list of valid names must not offer it.
    let unknown = found.iter().find(|p| p.contains("TERMINATE")).unwrap();
    assert!(
        !unknown.split([' ', ',']).any(|name| name == "STOP"),
        "{unknown}"
    );
    assert_eq!(found.len(), 13, "{all}");
}

#[test]
fn wrong_types_and_missing_parts() {
    let all = problems(r#"{"env": [], "jobs": {"main": {"cmd": ["x"]}}}"#).join("\n");
    assert!(
        all.contains("env: must be an object, not an array"),
        "{all}"
    );
    assert!(
        all.contains("jobs.main: must be an array of jobs, not an object"),
        "{all}"
    );
    let all = problems(r#"{"jobs": {"main": [{"name": "x"}, {"cmd": [1]}, "job"]}}"#).join("\n");
    assert!(all.contains("jobs.main[0]: has no \"cmd\""), "{all}");
    assert!(
        all.contains("jobs.main[1].cmd[0]: must be a string, not a number"),
        "{all}"
    );
    assert!(
        all.contains("jobs.main[2]: must be an object, not a string"),
        "{all}"
    );
    let all = problems(r#"{"env": {}}"#).join("\n");
    assert!(all.contains("jobs: is required"), "{all}");
    let all = problems(r#"[1]"#).join("\n");
    assert!(all.contains("(top level): must be an object"), "{all}");
}

#[test]
fn backoff_and_names_sanity() {
    let all = problems(
        r#"{"restart-backoff": {"initial": "0s", "max": "1s", "multiplier": 0.5},
            "jobs": {"main": [{"name": "internal", "cmd": ["x"]}, {"cmd": ["/a/x"]}, {"cmd": ["/b/x"]}]}}"#,
    )
    .join("\n");
    assert!(
        all.contains("restart-backoff.multiplier: must be a number from 1 to 1000"),
        "{all}"
    );
    assert!(
        all.contains("restart-backoff.initial: must be more than zero"),
        "{all}"
    );
    assert!(
        all.contains("jobs.main[0].name: \"internal\" is reserved"),
        "{all}"
    );
    assert!(
        all.contains("jobs.main[2]: duplicate job name \"x\""),
        "{all}"
    );
    let all =
        problems(r#"{"restart-backoff": {"initial": "2m", "max": "1m"}, "jobs": {}}"#).join("\n");
    assert!(
        all.contains("restart-backoff.max: must not be less than restart-backoff.initial"),
        "{all}"
    );
}

#[test]
fn no_main_jobs_is_valid() {
    let c = load_text(r#"{"jobs": {"init": [{"cmd": ["true"]}]}}"#).unwrap();
    assert!(c.main.is_empty());
    let c = load_text(r#"{"jobs": {}}"#).unwrap();
    assert!(c.init.is_empty() && c.main.is_empty());
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load(Path::new("/nonexistent/simplevisor.json"), &users()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/simplevisor.json: No such file"),
        "{err}"
    );
}

#[test]
fn a_key_given_twice_is_refused() {
    let all = problems(r#"{"jobs": {"main": [{"cmd": ["rm", "-rf", "/data"], "cmd": ["true"]}]}}"#)
        .join("\n");
    assert!(
        all.contains("jobs.main[0].cmd: is given twice in the same object"),
        "{all}"
    );
}

#[test]
fn operations_keys_are_read_with_their_defaults() {
    let c = load_text(r#"{"jobs": {"main": [{"cmd": ["a"]}]}}"#).unwrap();
    assert_eq!(
        c.control_socket,
        Some(PathBuf::from("/run/simplevisor.sock"))
    );
    assert_eq!(c.shutdown_delay, Duration::ZERO);
    assert!(c.main[0].ready.is_none() && c.main[0].after.is_empty());
    assert_eq!(c.main[0].max_restarts, None);
    let c = load_text(
        r#"{"control-socket": "", "shutdown-delay": "5s", "jobs": {"main": [
            {"name": "db", "cmd": ["db"], "ready": {"tcp": "127.0.0.1:5432", "interval": "200ms"}},
            {"name": "web", "cmd": ["web"], "after": ["db"], "max-restarts": 3,
             "ready": {"http": "http://127.0.0.1:8080/healthz", "timeout": "2s"}},
            {"name": "worker", "cmd": ["w"], "after": ["db", "web"], "ready": {"exec": ["true"]}}
        ]}}"#,
    )
    .unwrap();
    assert_eq!(c.control_socket, None);
    assert_eq!(c.shutdown_delay, Duration::from_secs(5));
    let db = c.main[0].ready.as_ref().unwrap();
    assert_eq!(db.probe, Probe::Tcp("127.0.0.1:5432".parse().unwrap()));
    assert_eq!(
        (db.interval, db.timeout),
        (Duration::from_millis(200), Duration::from_secs(1))
    );
    assert_eq!(c.main[1].after, [0]);
    assert_eq!(c.main[1].max_restarts, Some(3));
    assert_eq!(c.main[2].after, [0, 1]);
    assert_eq!(
        c.main[2].ready.as_ref().unwrap().probe,
        Probe::Exec(vec!["true".into()])
    );
}

#[test]
fn start_order_mistakes_are_named_with_their_path() {
    let found = problems(
        r#"{"jobs": {"init": [{"name": "migrate", "cmd": ["m"]}], "main": [
            {"name": "a", "cmd": ["a"], "after": ["b"]},
            {"name": "b", "cmd": ["b"], "after": ["c"]},
            {"name": "c", "cmd": ["c"], "after": ["a", "nope", "migrate"]}
        ]}}"#,
    );
    assert!(
        found.iter().any(|p| p.starts_with(
            "jobs.main[2].after[1]: no main job is named \"nope\"; main jobs: a, b, c"
        )),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("jobs.main[2].after[2]: \"migrate\" is an init job")),
        "{found:?}"
    );
    assert!(found.iter().any(|p| p == "jobs.main[0].after: the start order has a cycle: a waits for b waits for c waits for a; no job of it could ever start"), "{found:?}");
    let found = problems(r#"{"jobs": {"main": [{"name": "a", "cmd": ["a"], "after": ["a"]}]}}"#);
    assert!(found[0].contains("a waits for a"), "{found:?}");
}

#[test]
fn readiness_and_restart_limit_mistakes_are_named() {
    let long = format!("/tmp/{}.sock", "x".repeat(110));
    let found = problems(&format!(
        r#"{{"control-socket": "{long}",
            "jobs": {{"init": [{{"cmd": ["i"], "ready": {{"tcp": "127.0.0.1:1"}}, "max-restarts": 1}}], "main": [
            {{"name": "a", "cmd": ["a"], "ready": {{}}}},
            {{"name": "b", "cmd": ["b"], "ready": {{"tcp": "localhost:80"}}}},
            {{"name": "c", "cmd": ["c"], "ready": {{"http": "https://127.0.0.1/"}}}},
            {{"name": "d", "cmd": ["d"], "ready": {{"exec": []}}, "max-restarts": -1}},
            {{"name": "e", "cmd": ["e"], "ready": {{"tcp": "127.0.0.1:1", "http": "http://127.0.0.1/", "interval": "0s"}}}}
        ]}}}}"#
    ));
    for expected in [
        "control-socket: ",
        "jobs.init[0].ready: applies to main jobs only",
        "jobs.init[0].max-restarts: applies to main jobs only",
        "jobs.main[0].ready: needs exactly one of",
        "jobs.main[1].ready.tcp: \"localhost:80\" is not an address",
        "jobs.main[2].ready.http: \"https://127.0.0.1/\" is not a URL",
        "jobs.main[3].ready.exec: must name a program",
        "jobs.main[3].max-restarts: must be a whole number",
        "jobs.main[4].ready: needs exactly one of",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected}: {found:?}"
        );
    }
}

#[test]
fn http_targets_are_ip_addresses_with_a_path() {
    let target = |url| http_target(url).map(|(a, p)| (a.to_string(), p.to_string()));
    assert_eq!(
        target("http://127.0.0.1:8080/healthz"),
        Some(("127.0.0.1:8080".into(), "/healthz".into()))
    );
    assert_eq!(
        target("http://127.0.0.1"),
        Some(("127.0.0.1:80".into(), "/".into()))
    );
    assert_eq!(
        target("http://[::1]:81/x?y=1"),
        Some(("[::1]:81".into(), "/x?y=1".into()))
    );
    assert_eq!(target("http://example.com/"), None);
    assert_eq!(target("https://127.0.0.1/"), None);
}

fn with_auth(auth: &str) -> String {
    format!(
        r#"{{"vault": {{"approle-mount": "ar", "auth": {auth}}}, "jobs": {{"main": [{{"cmd": ["x"]}}]}}}}"#
    )
}

#[test]
fn vault_auth_methods_get_their_defaults() {
    let auth = |text: &str| load_text(&with_auth(text)).unwrap().vault.auth.unwrap();
    assert_eq!(
        auth(r#"{"method": "token"}"#),
        AuthSettings::Token { token_file: None }
    );
    assert_eq!(
        auth(r#"{"method": "token", "token-file": "/run/t"}"#),
        AuthSettings::Token {
            token_file: Some(PathBuf::from("/run/t"))
        }
    );
    // AppRole's mount defaults to approle-mount.
    assert_eq!(
        auth(r#"{"method": "approle", "secret-id-file": "/run/s"}"#),
        AuthSettings::AppRole {
            mount: "ar".into(),
            secret_id_file: Some(PathBuf::from("/run/s"))
        }
    );
    assert_eq!(
        auth(r#"{"method": "kubernetes", "role": "app"}"#),
        AuthSettings::Kubernetes {
            role: "app".into(),
            mount: "kubernetes".into(),
            jwt_file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        }
    );
    assert_eq!(
        auth(r#"{"method": "jwt", "role": "ci", "mount": "/gitlab/", "jwt-file": "/run/jwt"}"#),
        AuthSettings::Jwt {
            role: "ci".into(),
            mount: "gitlab".into(),
            jwt_file: PathBuf::from("/run/jwt"),
        }
    );
    assert_eq!(
        auth(r#"{"method": "cert"}"#),
        AuthSettings::Cert {
            name: None,
            mount: "cert".into()
        }
    );
    let none = load_text(&with_auth("null").replace(r#", "auth": null"#, ""));
    assert_eq!(none.unwrap().vault.auth, None);
}

#[test]
fn vault_auth_mistakes_are_reported_with_their_path() {
    let p = problems(&with_auth(r#"{"method": "ldap"}"#));
    assert!(
        p[0].starts_with(r#"vault.auth.method: "ldap" is not a login method; methods: token, approle, kubernetes, jwt, cert"#),
        "{p:?}"
    );
    let p = problems(&with_auth(r#"{"role": "x"}"#));
    assert_eq!(
        p,
        ["vault.auth.method: is required: one of token, approle, kubernetes, jwt, cert"]
    );
    let p = problems(&with_auth(r#"{"method": "jwt", "mount": ""}"#));
    assert_eq!(
        p,
        [
            "vault.auth.role: is required with method jwt",
            "vault.auth.mount: must not be empty",
            "vault.auth.jwt-file: is required with method jwt: the file holding the JWT",
        ]
    );
    let p = problems(&with_auth(
        r#"{"method": "kubernetes", "role": "", "jwt_file": "/x"}"#,
    ));
    assert!(
        p[0].starts_with(
            r#"vault.auth.jwt_file: unknown key "jwt_file"; did you mean "jwt-file"?"#
        ),
        "{p:?}"
    );
    assert_eq!(
        p[1],
        "vault.auth.role: must be a non-empty string without NUL bytes"
    );
    // A key of another method is a mistake too: it would be silently ignored.
    let p = problems(&with_auth(
        r#"{"method": "cert", "role": "app", "jwt-file": 3}"#,
    ));
    assert_eq!(
        p[..2],
        [
            "vault.auth.jwt-file: is not a key of method cert; its keys: method, name, mount",
            "vault.auth.role: is not a key of method cert; its keys: method, name, mount",
        ]
    );
    let p = problems(&with_auth(r#""kubernetes""#));
    assert_eq!(p, ["vault.auth: must be an object, not a string"]);
}

#[test]
fn a_name_taken_from_cmd_meets_the_same_rules() {
    let found = problems(r#"{"jobs": {"main": [{"cmd": ["/"]}, {"cmd": ["bin/"]}]}}"#);
    assert!(
        found[0].starts_with("jobs.main[0].cmd[0]: gives an empty job name"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("jobs.main[1].cmd[0]: gives an empty job name"),
        "{found:?}"
    );
    let long = format!(
        r#"{{"jobs": {{"main": [{{"cmd": ["/opt/{}"]}}]}}}}"#,
        "p".repeat(200)
    );
    let found = problems(&long);
    assert!(
        found[0].contains("longer than 128 bytes") && found[0].contains("set \"name\""),
        "{found:?}"
    );
    // With a name given, cmd[0] may be anything.
    load_text(r#"{"jobs": {"main": [{"name": "root", "cmd": ["/"]}]}}"#).unwrap();
}

#[test]
fn an_empty_key_has_a_visible_path() {
    let found = problems(r#"{"": 1, "jobs": {"main": [{"cmd": ["a"], "": 2}]}}"#);
    assert!(
        found.iter().any(|p| p.starts_with(r#""": unknown key """#)),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(r#"jobs.main[0]."": unknown key"#)),
        "{found:?}"
    );
}

#[test]
fn files_get_their_defaults_and_every_key_is_read() {
    let c = load_text(
        r#"{"env": {"vault-replace": ["CERT", "KEY"]},
            "vault": {"pki-mount": "/pki-int/"},
            "files": [
              {"path": "/run/tls/cert.pem", "template": "{{ .CERT }}"},
              {"path": "/run/tls/key.pem", "template": "{{ .KEY }}", "mode": "0440",
               "owner": "www-data:www-data", "env": "TLS_KEY_FILE"}
            ],
            "jobs": {"main": [{"cmd": ["nginx"], "reload-signal": "hup"}]}}"#,
    )
    .unwrap();
    assert_eq!(c.vault.pki_mount, "pki-int");
    assert_eq!(VaultSettings::default().pki_mount, "pki");
    let [cert, key] = &c.files[..] else {
        panic!("{:?}", c.files)
    };
    assert_eq!(cert.path, PathBuf::from("/run/tls/cert.pem"));
    assert_eq!(
        (cert.mode, cert.owner.is_none(), &cert.env),
        (0o400, true, &None)
    );
    assert_eq!(key.mode, 0o440);
    assert_eq!(key.owner.as_ref().map(|o| (o.uid, o.gid)), Some((33, 33)));
    assert_eq!(key.env.as_deref(), Some("TLS_KEY_FILE"));
    assert_eq!(key.template, "{{ .KEY }}");
    assert_eq!(
        c.main[0].reload_signal,
        Some(nix::sys::signal::Signal::SIGHUP)
    );
    let plain = load_text(r#"{"jobs": {"main": [{"cmd": ["x"]}]}}"#).unwrap();
    assert!(plain.files.is_empty() && plain.main[0].reload_signal.is_none());
}

#[test]
fn file_mistakes_are_all_reported_with_their_path() {
    let found = problems(
        r#"{"env": {"vault-replace": ["A"]},
            "files": [
              {"path": "relative/x", "template": "{{ .A }}"},
              {"path": "/run/../etc/x", "template": "x"},
              {"path": "/run/a", "template": "{{ .B }}"},
              {"path": "/run/a", "template": "{{ if .A }}"},
              {"path": "/run/m1", "template": "x", "mode": "0644"},
              {"path": "/run/m2", "template": "x", "mode": "4755"},
              {"path": "/run/m3", "template": "x", "mode": "644"},
              {"path": "/run/m4", "template": "x", "mode": "0800"},
              {"path": "/run/o", "template": "x", "owner": "nosuchuser"},
              {"path": "/run/e1", "template": "x", "env": "1BAD"},
              {"path": "/run/e2", "template": "x", "env": "A-B"},
              {"path": "/run/dir/", "template": "x"},
              {"path": "/run/n\u0000", "template": "x"},
              {"template": "x"},
              {"path": "/run/k", "template": "x", "colour": "red"},
              {"path": "/run/d1", "template": "x", "env": "SAME"},
              {"path": "/run/d2", "template": "x", "env": "SAME"},
              {"path": "/run/t", "template": "{{ .A | nosuchfunc }}"}
            ],
            "jobs": {"init": [{"cmd": ["i"], "reload-signal": "HUP"}],
                     "main": [{"name": "a", "cmd": ["a"], "reload-signal": "NOPE"},
                              {"name": "b", "cmd": ["b"], "reload-signal": "STOP"}]}}"#,
    );
    for expected in [
        "files[0].path: \"relative/x\" is relative",
        "files[1].path: \"/run/../etc/x\" contains \"..\"",
        "files[2].template: the template does not render",
        "files[3].template: the template does not render",
        "files[3].path: \"/run/a\" is also the path of files[2]",
        "files[6].mode: \"644\" is not a mode of four octal digits",
        "files[5].mode: \"4755\" is not a mode",
        "files[7].mode: \"0800\" is not a mode",
        "files[8].owner: ",
        "files[9].env: \"1BAD\" is not a variable name",
        "files[10].env: \"A-B\" is not a variable name",
        "files[11].path: \"/run/dir/\" names a directory",
        "files[12].path: must not contain a NUL byte",
        "files[13].path: is required",
        "files[14].colour: unknown key",
        "files[16].env: \"SAME\" is also the env of files[15]",
        "files[17].template: the template does not render",
        "jobs.init[0].reload-signal: applies to main jobs only",
        "jobs.main[0].reload-signal: unknown signal \"NOPE\"",
        "jobs.main[1].reload-signal: STOP would pause the job",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected}: {found:?}"
        );
    }
    // 0644 is a valid mode: only the entries above are wrong.
    assert!(
        !found.iter().any(|p| p.starts_with("files[4]")),
        "{found:?}"
    );
    let not_array = problems(r#"{"files": {}, "jobs": {}}"#);
    assert!(
        not_array
            .iter()
            .any(|p| p.starts_with("files: must be an array")),
        "{not_array:?}"
    );
}

#[test]
fn metrics_listen_is_off_unless_given_and_takes_an_ip_and_a_port() {
    let c = load_text(r#"{"jobs": {"main": [{"cmd": ["a"]}]}}"#).unwrap();
    assert_eq!(c.metrics_listen, None);
    for (text, expected) in [
        ("0.0.0.0:9100", "0.0.0.0:9100"),
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("[::]:9100", "[::]:9100"),
        ("[::1]:80", "[::1]:80"),
    ] {
        let c = load_text(&format!(
            r#"{{"metrics-listen": "{text}", "jobs": {{"main": [{{"cmd": ["a"]}}]}}}}"#
        ))
        .unwrap();
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some(expected)
        );
    }
}

#[test]
fn a_metrics_address_that_does_not_parse_is_named_with_its_path() {
    for text in [
        "localhost:9100",
        ":9100",
        "9100",
        "0.0.0.0",
        "0.0.0.0:99999",
        "::1:9100",
        "",
        " 127.0.0.1:9100",
    ] {
        let found = problems(&format!(
            r#"{{"metrics-listen": "{text}", "jobs": {{"main": [{{"cmd": ["a"]}}]}}}}"#
        ));
        let expected = format!("metrics-listen: \"{text}\" is not an address like 0.0.0.0:9100");
        assert!(
            found.iter().any(|p| p.starts_with(&expected)),
            "{text}: {found:?}"
        );
    }
    let found = problems(r#"{"metrics-listen": 9100, "jobs": {"main": [{"cmd": ["a"]}]}}"#);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("metrics-listen: must be a string")),
        "{found:?}"
    );
}

#[test]
fn the_main_only_keys_are_job_keys() {
    use crate::config::file::{JOB_KEYS, MAIN_ONLY_KEYS};
    assert!(JOB_KEYS.ends_with(MAIN_ONLY_KEYS), "{JOB_KEYS:?}");
}
