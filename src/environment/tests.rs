//! The environment rules of docs/environment.md, without processes or Vault.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn settings(pass: &[&str], replace: &[&str], template: &[&str]) -> EnvSettings {
    EnvSettings {
        pass: names(pass),
        pass_all: false,
        vault_token: false,
        vault_replace: names(replace),
        vault_template: names(template),
        files: Vec::new(),
    }
}

fn messages(result: Result<EnvPlan, Vec<Problem>>) -> String {
    result
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn references_are_parsed_and_absent_variables_skipped() {
    let s = settings(&[], &["USER", "PASS", "KEY", "ABSENT"], &[]);
    let e = env(&[
        ("USER", "db:prod-db:Username"),
        ("PASS", "db:prod-db:Password"),
        ("KEY", "aws-user:deploy:SessionToken"),
    ]);
    let plan = plan(&s, &e, false).unwrap();
    assert!(plan.needs_vault);
    let kinds: Vec<_> = plan
        .replacements
        .iter()
        .map(|(n, r)| (n.as_str(), r.kind, r.path.as_str(), r.field.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("USER", SecretKind::Db, "prod-db", "Username"),
            ("PASS", SecretKind::Db, "prod-db", "Password"),
            ("KEY", SecretKind::AwsUser, "deploy", "SessionToken"),
        ]
    );
}

#[test]
fn bad_references_are_explained_without_their_value() {
    let s = settings(&[], &["A", "B", "C", "D", "E"], &[]);
    let e = env(&[
        ("A", "hunter2"),
        ("B", "db:x:y:z"),
        ("C", "vaultdb:x:Password"),
        ("D", "db:x:password"),
        ("E", "secret::key"),
    ]);
    let all = messages(plan(&s, &e, false));
    assert!(all.contains("env.vault-replace[0]: A: the value is not a reference of the form type:path:field (it has 1"), "{all}");
    assert!(
        all.contains("env.vault-replace[1]: B:") && all.contains("4 colon-separated"),
        "{all}"
    );
    assert!(all.contains("C: unknown secret type \"vaultdb\""), "{all}");
    assert!(
        all.contains("D: a db reference has the fields Username, Password (case-sensitive)"),
        "{all}"
    );
    assert!(all.contains("E: the path and the field"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn templates_may_use_only_present_replacements() {
    let s = settings(&[], &["USER", "ABSENT"], &["URL", "BAD", "BROKEN"]);
    let e = env(&[
        ("USER", "db:d:Username"),
        ("HOME", "/root"),
        ("URL", "x://{{ .USER }}"),
        ("BAD", "{{ .HOME }}"),
        ("BROKEN", "{{ if .USER }}"),
    ]);
    let all = messages(plan(&s, &e, false));
    assert!(
        all.contains("env.vault-template[1]: BAD: the template does not render"),
        "{all}"
    );
    assert!(all.contains("HOME") && all.contains("set: USER"), "{all}");
    assert!(all.contains("env.vault-template[2]: BROKEN"), "{all}");
    assert!(!all.contains("vault-template[0]"), "{all}");
    let e = env(&[("URL", "{{ .ABSENT }}")]);
    let all = messages(plan(&s, &e, false));
    assert!(all.contains("none are"), "{all}");
}

#[test]
fn needs_vault_truth_table() {
    let e = env(&[("P", "secret:app:key")]);
    let mut s = settings(&[], &["P"], &[]);
    assert!(plan(&s, &e, false).unwrap().needs_vault);
    assert!(!plan(&s, &e, true).unwrap().needs_vault, "--no-vault");
    assert!(
        !plan(&s, &[], false).unwrap().needs_vault,
        "listed but absent"
    );
    s.vault_token = true;
    assert!(
        plan(&s, &[], false).unwrap().needs_vault,
        "vault-token alone"
    );
    assert!(!plan(&s, &[], true).unwrap().needs_vault);
}

#[test]
fn no_vault_takes_values_literally() {
    let s = settings(&["P", "URL"], &["P"], &["URL"]);
    let e = env(&[("P", "devpass"), ("URL", "db://{{ .P }}")]);
    let p = plan(&s, &e, true).unwrap();
    assert!(p.replacements.is_empty());
    let resolved = BTreeMap::from([("P".to_string(), "devpass".to_string())]);
    let built = build(&s, &e, &p, &resolved, None).unwrap();
    assert_eq!(built, env(&[("P", "devpass"), ("URL", "db://devpass")]));
}

#[test]
fn build_replaces_renders_filters_and_injects() {
    let s = settings(&["PATH", "URL", "VAULT_ADDR"], &["USER", "PASS"], &["URL"]);
    let e = env(&[
        ("PATH", "/bin"),
        ("USER", "db:d:Username"),
        ("PASS", "db:d:Password"),
        ("URL", "pg://{{ .USER }}:{{ .PASS }}@h"),
        ("OTHER", "x"),
        ("VAULT_ADDR", "http://old"),
    ]);
    let p = plan(&s, &e, false).unwrap();
    let resolved = BTreeMap::from([
        ("USER".to_string(), "u-123".to_string()),
        ("PASS".to_string(), "pw".to_string()),
    ]);
    let injection = VaultInjection {
        token: "tok".into(),
        addr: "https://vault:8200".into(),
    };
    let built = build(&s, &e, &p, &resolved, Some(&injection)).unwrap();
    assert_eq!(
        built,
        env(&[
            ("PATH", "/bin"),
            ("URL", "pg://u-123:pw@h"),
            ("VAULT_TOKEN", "tok"),
            ("VAULT_ADDR", "https://vault:8200"),
        ]),
        "replaced variables are not passed unless named in pass"
    );
}

#[test]
fn pass_all_never_leaks_credentials_unless_named() {
    let e = env(&[
        ("A", "1"),
        ("VAULT_TOKEN", "t"),
        ("VAULT_SECRET_ID", "s"),
        ("VAULT_ROLE_ID", "r"),
        ("VAULT_ADDR", "http://v"),
    ]);
    let mut s = settings(&[], &[], &[]);
    s.pass_all = true;
    let built = build(&s, &e, &EnvPlan::default(), &BTreeMap::new(), None).unwrap();
    assert_eq!(built, env(&[("A", "1"), ("VAULT_ADDR", "http://v")]));
    s.pass = names(&["VAULT_ROLE_ID"]);
    let built = build(&s, &e, &EnvPlan::default(), &BTreeMap::new(), None).unwrap();
    assert_eq!(
        built,
        env(&[
            ("A", "1"),
            ("VAULT_ROLE_ID", "r"),
            ("VAULT_ADDR", "http://v")
        ])
    );
}

#[test]
fn run_as_sets_home_user_logname() {
    let e = env(&[("HOME", "/root"), ("A", "1"), ("USER", "root")]);
    assert_eq!(
        with_identity(&e, "app", "/home/app"),
        env(&[
            ("A", "1"),
            ("HOME", "/home/app"),
            ("USER", "app"),
            ("LOGNAME", "app")
        ])
    );
}

#[test]
fn file_variables_come_after_pass_and_replace_a_passed_one() {
    let mut s = settings(&["PATH", "TLS_CERT_FILE"], &[], &[]);
    s.pass_all = true;
    s.files = vec![
        ("TLS_CERT_FILE".into(), "/run/tls/cert.pem".into()),
        ("DB_PASSWORD_FILE".into(), "/run/secrets/db".into()),
    ];
    let e = env(&[("PATH", "/bin"), ("TLS_CERT_FILE", "/old/cert.pem")]);
    let p = plan(&s, &e, false).unwrap();
    let built = build(&s, &e, &p, &BTreeMap::new(), None).unwrap();
    assert_eq!(
        built,
        env(&[
            ("PATH", "/bin"),
            ("TLS_CERT_FILE", "/run/tls/cert.pem"),
            ("DB_PASSWORD_FILE", "/run/secrets/db"),
        ])
    );
}

#[test]
fn file_templates_may_use_only_present_replacements() {
    let s = settings(&[], &["CERT", "ABSENT"], &[]);
    let e = env(&[("CERT", "pki:web/a.example.com:Certificate")]);
    let file = |template: &str| crate::config::FileSpec {
        path: "/run/x.pem".into(),
        template: template.into(),
        mode: 0o400,
        owner: None,
        env: None,
    };
    let files = [
        file("{{ .CERT }}"),
        file("{{ .ABSENT }}"),
        file("{{ .CERT }}"),
    ];
    let problems = check_file_templates(&files, &s, &e);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "files[1].template");
    assert!(
        problems[0].message.contains("ABSENT") && problems[0].message.contains("set: CERT"),
        "{}",
        problems[0].message
    );
    assert!(!problems[0].message.contains("pki:"), "no value is shown");
}

#[test]
fn pki_references_name_a_role_and_a_common_name() {
    let ok = parse_reference("pki:web/www.example.com:Certificate").unwrap();
    assert_eq!(ok.kind, SecretKind::Pki);
    assert_eq!(
        pki_role_and_name(&ok.path),
        Some(("web", "www.example.com"))
    );
    // Split at the first '/': the rest is the common name.
    assert_eq!(pki_role_and_name("web/a/b"), Some(("web", "a/b")));
    for field in ["PrivateKey", "IssuingCA", "CAChain"] {
        assert!(parse_reference(&format!("pki:web/a.example.com:{field}")).is_ok());
    }
    let err = parse_reference("pki:web/a.example.com:Key").unwrap_err();
    assert!(
        err.contains("Certificate, PrivateKey, IssuingCA, CAChain"),
        "{err}"
    );
    for path in ["web", "/a.example.com", "web/"] {
        let err = parse_reference(&format!("pki:{path}:Certificate")).unwrap_err();
        assert!(err.contains("ROLE/COMMON_NAME"), "{path}: {err}");
    }
}
