//! Login methods and mutual TLS against a real OpenBao, every time over HTTPS with a CA the
//! test makes: JWT (keys the test makes; bad signature, expired, rotated file), Kubernetes
//! (OpenBao's real `kubernetes` auth, a TokenReview stub in place of the API server), TLS
//! certificate login, plain mutual TLS with a token file, a wrong CA, logging in again when
//! the token is revoked under `on-lease-expiry: restart`, and `check` on `vault.auth`.

mod harness;
mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use harness::{BIN, Supervisor, secs, start_with_env, wait_until};
use support::TempDir;
use support::bao::{Bao, Https, ROOT_TOKEN};
use support::kube::TokenReview;
use support::pki::{Ca, JwtSigner};

const APP_POLICY: &str = r#"
path "kv/data/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"#;

/// A job that shows a digest of the token it was given (so a new login shows as a new
/// digest, never the token itself) and stays up.
fn config(auth: Value, on_lease_expiry: &str) -> Value {
    json!({
        "env": { "pass": ["PATH", "K"], "vault-replace": ["K"], "vault-token": true },
        "jobs": { "main": [ { "name": "app", "cmd": ["sh", "-c",
            "echo \"up $(printf %s \"$VAULT_TOKEN\" | cksum | cut -d' ' -f1) $K\"; exec sleep 100"] } ] },
        "vault": { "auth": auth, "on-lease-expiry": on_lease_expiry, "startup-timeout": "20s" }
    })
}

/// The CA and an OpenBao serving its API over HTTPS with a server certificate of that CA;
/// `mutual`: every client must show a certificate of the CA (the fixture uses `admin`).
fn https_bao(ca: &Ca, mutual: bool) -> Option<Bao> {
    let server = ca.server("bao-server");
    let admin = ca.client("admin");
    Bao::start_https(Https {
        ca_file: ca.cert_file.clone(),
        cert_file: server.cert_file,
        key_file: server.key_file,
        require_client_ca: mutual.then(|| ca.cert_file.clone()),
        admin: mutual.then_some((admin.cert_file, admin.key_file)),
    })
    .inspect(|bao| {
        assert!(bao.addr.starts_with("https://"));
        bao.kv("kv", 2);
        bao.kv_put("kv", 2, "app", json!({"key": "kv-value"}));
        bao.policy("app", APP_POLICY);
    })
}

fn env(bao: &Bao, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = bao.env();
    env.push(("K".into(), "secret:app:key".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn any_internal(sv: &Supervisor, text: &str) -> bool {
    sv.messages("internal").iter().any(|m| m.contains(text))
}

/// None of simplevisor's own records shows any of `secrets`.
fn assert_never_shows(sv: &Supervisor, secrets: &[&str]) {
    for message in sv.messages("internal") {
        for secret in secrets {
            assert!(!message.contains(secret), "a secret in {message:?}");
        }
    }
}

/// The token digests the job printed, in order.
fn digests(sv: &Supervisor) -> Vec<String> {
    sv.messages("app")
        .iter()
        .filter_map(|m| m.strip_prefix("up ").map(str::to_string))
        .collect()
}

/// Revokes, from outside, every token issued by logins at `mount`; then simplevisor must log in
/// again and restart the job with a new token.
fn revoke_and_see_a_new_login(sv: &mut Supervisor, bao: &Bao, mount: &str) {
    bao.api(
        "PUT",
        &format!("sys/leases/revoke-prefix/auth/{mount}/login"),
        json!({}),
    );
    sv.wait_message("internal", "the token was revoked", secs(15.0));
    sv.wait_message("internal", "logged in again", secs(15.0));
    sv.wait_count("app", 2, secs(15.0));
    let seen = digests(sv);
    assert_eq!(seen.len(), 2, "{}", sv.dump());
    assert_ne!(seen[0], seen[1], "a new token after the new login");
    assert!(seen[1].ends_with("kv-value"), "{}", sv.dump());
}

fn jwt_claims(sub: &str) -> Value {
    json!({ "iss": "https://issuer.test", "sub": sub, "aud": "simplevisor" })
}

/// OpenBao's `jwt` auth at `jwt`, trusting `signer`, with a role `app` whose tokens live 6 s
/// (renewable); no leeway, so that an expired JWT is refused at once.
fn jwt_auth(bao: &Bao, signer: &JwtSigner) {
    bao.api("POST", "sys/auth/jwt", json!({ "type": "jwt" }));
    bao.api(
        "POST",
        "auth/jwt/config",
        json!({ "jwt_validation_pubkeys": [signer.public_pem], "bound_issuer": "https://issuer.test" }),
    );
    bao.api(
        "POST",
        "auth/jwt/role/app",
        json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_subject": "app",
            "bound_audiences": ["simplevisor"],
            "expiration_leeway": -1,
            "clock_skew_leeway": -1,
            "token_policies": ["app"],
            "token_ttl": "6s",
            "token_max_ttl": "1h",
        }),
    );
}

/// JWT login over HTTPS; the JWT file is rotated, the first JWT expires, the token is revoked:
/// the re-login reads the file again (the old JWT would be refused) and the job restarts with
/// the new token.
#[test]
fn jwt_login_reads_the_rotated_file_when_logging_in_again() {
    let dir = TempDir::new("auth-jwt");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let signer = JwtSigner::new();
    jwt_auth(&bao, &signer);
    let jwt_file = dir.path().join("jwt");
    let first = signer.sign(jwt_claims("app"), 6);
    std::fs::write(&jwt_file, format!("{first}\n")).unwrap();
    let auth = json!({ "method": "jwt", "role": "app", "jwt-file": jwt_file });
    let mut sv = start_with_env(&config(auth, "restart"), &env(&bao, &[]));
    sv.wait_message("app", "up ", secs(15.0));
    assert!(
        any_internal(&sv, "logged in with JWT at auth/jwt (role app) at https://"),
        "{}",
        sv.dump()
    );
    let second = signer.sign(jwt_claims("app"), 3600);
    std::fs::write(&jwt_file, &second).unwrap();
    // Until the first JWT has expired, a login with it would still succeed.
    wait_until("OpenBao refuses the first JWT", secs(15.0), || {
        let body = json!({ "role": "app", "jwt": first });
        match bao.status_as(ROOT_TOKEN, "POST", "auth/jwt/login", body) {
            200 => false,
            400 => true,
            other => panic!("a login with the first JWT: HTTP {other}"),
        }
    });
    revoke_and_see_a_new_login(&mut sv, &bao, "jwt");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_never_shows(&sv, &[&first, &second, "kv-value"]);
}

/// A JWT signed by another key, and an expired one, are refused at once (not retried) with
/// Vault's reason; the JWT itself is never shown.
#[test]
fn a_badly_signed_or_expired_jwt_fails_clearly() {
    let dir = TempDir::new("auth-jwt-bad");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let trusted = JwtSigner::new();
    jwt_auth(&bao, &trusted);
    let jwt_file = dir.path().join("jwt");
    let auth = json!({ "method": "jwt", "role": "app", "jwt-file": jwt_file });
    let cases = [
        (
            "bad signature",
            JwtSigner::new().sign(jwt_claims("app"), 3600),
            "signature",
        ),
        ("expired", trusted.sign(jwt_claims("app"), -3600), "expired"),
    ];
    for (case, jwt, reason) in cases {
        std::fs::write(&jwt_file, &jwt).unwrap();
        let begun = Instant::now();
        let mut sv = start_with_env(&config(auth.clone(), "exit"), &env(&bao, &[]));
        assert_eq!(sv.wait_exit(secs(15.0)), 1, "{case}: {}", sv.dump());
        assert!(begun.elapsed() < secs(10.0), "{case}: retried");
        let failure = sv
            .messages("internal")
            .into_iter()
            .find(|m| m.contains("logging in with JWT at auth/jwt (role app)"))
            .unwrap_or_else(|| panic!("{case}: {}", sv.dump()));
        assert!(
            failure.contains("failed: Vault answered 400") && failure.contains(reason),
            "{case}: {failure}"
        );
        assert_never_shows(&sv, &[&jwt]);
    }
}

/// Kubernetes login: OpenBao's real `kubernetes` auth asks the TokenReview stub about the
/// service-account token. The token file is rotated and the stub forgets the old token: the
/// login after the revocation can only succeed with the token read anew.
#[test]
fn kubernetes_login_uses_the_service_account_token_read_at_every_login() {
    let dir = TempDir::new("auth-k8s");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let review = TokenReview::start(&ca);
    bao.api(
        "POST",
        "sys/auth/kubernetes",
        json!({ "type": "kubernetes" }),
    );
    bao.api(
        "POST",
        "auth/kubernetes/config",
        json!({ "kubernetes_host": review.host, "disable_local_ca_jwt": true,
                "kubernetes_ca_cert": ca.cert_pem }),
    );
    bao.api(
        "POST",
        "auth/kubernetes/role/app",
        json!({
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["shop"],
            "token_policies": ["app"],
            "token_ttl": "6s",
            "token_max_ttl": "1h",
        }),
    );
    let signer = JwtSigner::new();
    let sa = |n: u32| {
        signer.sign(
            json!({ "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:shop:app",
                    "kubernetes.io": { "namespace": "shop", "serviceaccount": { "name": "app", "uid": "uid-shop-app" } },
                    "n": n }),
            3600,
        )
    };
    let (first, second) = (sa(1), sa(2));
    review.accept(&first, "shop", "app");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &first).unwrap();
    let auth = json!({ "method": "kubernetes", "role": "app", "jwt-file": token_file });
    let mut sv = start_with_env(&config(auth, "restart"), &env(&bao, &[]));
    sv.wait_message("app", "up ", secs(15.0));
    assert!(
        any_internal(
            &sv,
            "logged in with Kubernetes at auth/kubernetes (role app) at https://"
        ),
        "{}",
        sv.dump()
    );
    assert!(review.reviews() >= 1);
    std::fs::write(&token_file, &second).unwrap();
    review.forget(&first);
    review.accept(&second, "shop", "app");
    revoke_and_see_a_new_login(&mut sv, &bao, "kubernetes");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_never_shows(&sv, &[&first, &second]);
}

/// A service account the role is not bound to is refused with Vault's reason.
#[test]
fn kubernetes_login_for_another_service_account_is_refused() {
    let dir = TempDir::new("auth-k8s-other");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let review = TokenReview::start(&ca);
    bao.api("POST", "sys/auth/k8s", json!({ "type": "kubernetes" }));
    bao.api(
        "POST",
        "auth/k8s/config",
        json!({ "kubernetes_host": review.host, "disable_local_ca_jwt": true,
                "kubernetes_ca_cert": ca.cert_pem }),
    );
    bao.api(
        "POST",
        "auth/k8s/role/app",
        json!({ "bound_service_account_names": ["app"], "bound_service_account_namespaces": ["shop"],
                "token_policies": ["app"] }),
    );
    let token = JwtSigner::new().sign(
        json!({ "sub": "system:serviceaccount:shop:intruder" }),
        3600,
    );
    review.accept(&token, "shop", "intruder");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let auth =
        json!({ "method": "kubernetes", "role": "app", "mount": "k8s", "jwt-file": token_file });
    let mut sv = start_with_env(&config(auth, "exit"), &env(&bao, &[]));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(&sv, "logging in with Kubernetes at auth/k8s (role app)"),
        "{}",
        sv.dump()
    );
    assert!(any_internal(&sv, "Vault answered 403"), "{}", sv.dump());
    assert_never_shows(&sv, &[&token]);
}

/// TLS certificate login over OpenBao's TLS listener with a client certificate of the test's
/// CA, and a new login with the renewed certificate after the token is revoked.
#[test]
fn cert_login_with_a_client_certificate_logs_in_again_after_revocation() {
    let dir = TempDir::new("auth-cert");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let client = ca.client("app-client");
    bao.api("POST", "sys/auth/cert", json!({ "type": "cert" }));
    bao.api(
        "POST",
        "auth/cert/certs/app",
        json!({ "certificate": ca.cert_pem, "allowed_common_names": ["app-client"],
                "token_policies": ["app"], "token_ttl": "6s", "token_max_ttl": "1h" }),
    );
    let auth = json!({ "method": "cert", "name": "app" });
    let extra = [
        ("VAULT_CLIENT_CERT", client.cert_file.to_str().unwrap()),
        ("VAULT_CLIENT_KEY", client.key_file.to_str().unwrap()),
    ];
    let mut sv = start_with_env(&config(auth.clone(), "restart"), &env(&bao, &extra));
    sv.wait_message("app", "up ", secs(15.0));
    assert!(
        any_internal(
            &sv,
            "logged in with the TLS client certificate at auth/cert at https://"
        ),
        "{}",
        sv.dump()
    );
    // The certificate is renewed (same files) and the role allows only the new one: the login
    // after the revocation reads the files anew.
    let renewed = ca.client("app-client-renewed");
    std::fs::copy(&renewed.cert_file, &client.cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &client.key_file).unwrap();
    bao.api(
        "POST",
        "auth/cert/certs/app",
        json!({ "certificate": ca.cert_pem, "allowed_common_names": ["app-client-renewed"],
                "token_policies": ["app"], "token_ttl": "6s", "token_max_ttl": "1h" }),
    );
    revoke_and_see_a_new_login(&mut sv, &bao, "cert");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());

    // A certificate the role does not allow is refused.
    let other = ca.client("someone-else");
    let extra = [
        ("VAULT_CLIENT_CERT", other.cert_file.to_str().unwrap()),
        ("VAULT_CLIENT_KEY", other.key_file.to_str().unwrap()),
    ];
    let mut sv = start_with_env(&config(auth, "exit"), &env(&bao, &extra));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(
            &sv,
            "logging in with the TLS client certificate at auth/cert at https://"
        ) && any_internal(&sv, "failed: Vault answered"),
        "{}",
        sv.dump()
    );
}

/// A Vault that requires a client certificate of its CA: refused clearly without one; with one,
/// a token from a file works, the file is read again when the token is revoked, and the token
/// from the file is not revoked on exit (it is not simplevisor's).
#[test]
fn mutual_tls_with_a_token_file() {
    let dir = TempDir::new("auth-mtls");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, true) else {
        return;
    };
    let token_file = dir.path().join("vault-token");
    let first = bao.token(&["app"], "6s", "1h");
    std::fs::write(&token_file, format!("{first}\n")).unwrap();
    let auth = json!({ "method": "token", "token-file": token_file });

    let mut sv = start_with_env(&config(auth.clone(), "restart"), &env(&bao, &[]));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(&sv, "refused the TLS connection")
            && any_internal(&sv, "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY"),
        "{}",
        sv.dump()
    );

    let client = ca.client("app-client");
    let extra = [
        ("VAULT_CLIENT_CERT", client.cert_file.to_str().unwrap()),
        ("VAULT_CLIENT_KEY", client.key_file.to_str().unwrap()),
    ];
    let mut sv = start_with_env(&config(auth, "restart"), &env(&bao, &extra));
    sv.wait_message("app", "up ", secs(15.0));
    assert!(
        any_internal(
            &sv,
            &format!("logged in with the token in {}", token_file.display())
        ),
        "{}",
        sv.dump()
    );
    let second = bao.token(&["app"], "1h", "");
    std::fs::write(&token_file, &second).unwrap();
    bao.api("POST", "auth/token/revoke", json!({ "token": first }));
    sv.wait_message("internal", "the token was revoked", secs(15.0));
    sv.wait_message("internal", "logged in again with the token in", secs(15.0));
    sv.wait_count("app", 2, secs(15.0));
    let seen = digests(&sv);
    assert_ne!(seen[0], seen[1], "{}", sv.dump());
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_eq!(
        bao.status_as(&second, "GET", "auth/token/lookup-self", json!({})),
        200,
        "the token from the file was revoked"
    );
    assert_never_shows(&sv, &[&first, &second]);
}

/// A server certificate from another CA fails at once (not retried until startup-timeout)
/// and says what to check.
#[test]
fn a_wrong_ca_fails_at_once_with_a_clear_message() {
    let dir = TempDir::new("auth-wrong-ca");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let other = Ca::new(dir.path(), "other-ca");
    let token = bao.token(&["app"], "1h", "");
    let mut env = env(&bao, &[("VAULT_TOKEN", &token)]);
    for (key, value) in &mut env {
        if key == "VAULT_CACERT" {
            *value = other.cert_file.display().to_string();
        }
    }
    let begun = Instant::now();
    let mut sv = start_with_env(&config(json!({ "method": "token" }), "exit"), &env);
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(begun.elapsed() < secs(10.0), "retried: {}", sv.dump());
    assert!(
        any_internal(&sv, "is not accepted")
            && any_internal(&sv, "VAULT_CACERT must name the CA that signed it"),
        "{}",
        sv.dump()
    );
    assert_never_shows(&sv, &[&token]);
}

fn check(config: &Value, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = TempDir::new("auth-check");
    let file = dir.path().join("simplevisor.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `check` validates `vault.auth` without contacting Vault (the address is unreachable):
/// credential files, the client certificate and key, and names the method in its summary.
#[test]
fn check_validates_vault_auth_without_contacting_vault() {
    let dir = TempDir::new("auth-check-files");
    let ca = Ca::new(dir.path(), "test-ca");
    let client = ca.client("client");
    let other = ca.client("other");
    let jwt = dir.path().join("jwt");
    let empty = dir.path().join("empty");
    std::fs::write(&jwt, "header.body.signature-not-shown\n").unwrap();
    std::fs::write(&empty, "\n").unwrap();
    let cfg = |auth: Value| {
        json!({
            "env": { "vault-replace": ["K"] },
            "jobs": { "main": [ { "cmd": ["sleep", "1"] } ] },
            "vault": { "auth": auth }
        })
    };
    let cert = client.cert_file.to_str().unwrap();
    let key = client.key_file.to_str().unwrap();
    let base = [("VAULT_ADDR", "https://127.0.0.1:1"), ("K", "secret:a:b")];

    let (code, out, err) = check(
        &cfg(json!({ "method": "kubernetes", "role": "app", "jwt-file": jwt })),
        &base,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "login: kubernetes at auth/kubernetes (role app, jwt-file {})",
            jwt.display()
        )),
        "{out}"
    );
    assert!(!out.contains("signature-not-shown"));

    let missing = dir.path().join("missing");
    let (code, _, err) = check(
        &cfg(json!({ "method": "jwt", "role": "app", "jwt-file": missing })),
        &base,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "vault.auth.jwt-file {}: No such file",
            missing.display()
        )),
        "{err}"
    );
    let (code, _, err) = check(
        &cfg(json!({ "method": "token", "token-file": empty })),
        &base,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "vault.auth.token-file {}: the file is empty",
            empty.display()
        )),
        "{err}"
    );

    // Client certificate and key: both or neither, and they must belong together.
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        base.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .collect()
    };
    let run_check = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check(&cfg(json!({ "method": "cert", "name": "app" })), &env)
    };
    let (code, out, err) = run_check(with(&[
        ("VAULT_CLIENT_CERT", cert),
        ("VAULT_CLIENT_KEY", key),
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("login: cert at auth/cert (name app, VAULT_CLIENT_CERT)"),
        "{out}"
    );
    let (code, _, err) = run_check(with(&[("VAULT_CLIENT_CERT", cert)]));
    assert_eq!(code, 2);
    assert!(
        err.contains("VAULT_CLIENT_KEY is not set (VAULT_CLIENT_CERT is)"),
        "{err}"
    );
    let (code, _, err) = run_check(with(&[]));
    assert_eq!(code, 2);
    assert!(
        err.contains("vault.auth method cert logs in with a TLS client certificate"),
        "{err}"
    );
    let other_key = other.key_file.to_str().unwrap();
    let (code, _, err) = run_check(with(&[
        ("VAULT_CLIENT_CERT", cert),
        ("VAULT_CLIENT_KEY", other_key),
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("the private key is not the key of the certificate"),
        "{err}"
    );
    let key_text = std::fs::read_to_string(&client.key_file).unwrap();
    assert!(!err.contains(key_text.lines().nth(1).unwrap()));

    // Unknown method: a configuration error with its JSON path.
    let (code, _, err) = check(&cfg(json!({ "method": "ldap" })), &base);
    assert_eq!(code, 2);
    assert!(
        err.contains("vault.auth.method: \"ldap\" is not a login method"),
        "{err}"
    );
}

/// AppRole with the secret id in a file: the secret id is rotated (the old one destroyed) and
/// the token revoked; the login after that reads the new secret id.
#[test]
fn approle_reads_the_rotated_secret_id_file_when_logging_in_again() {
    let dir = TempDir::new("auth-approle");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let (role_id, first) = bao.approle("approle", "app", &["app"], "6s");
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, &first).unwrap();
    let auth = json!({ "method": "approle", "secret-id-file": secret_file });
    let mut sv = start_with_env(
        &config(auth, "restart"),
        &env(&bao, &[("VAULT_ROLE_ID", &role_id)]),
    );
    sv.wait_message("app", "up ", secs(15.0));
    assert!(
        any_internal(&sv, "logged in with AppRole at auth/approle at https://"),
        "{}",
        sv.dump()
    );
    let second = bao.api("POST", "auth/approle/role/app/secret-id", json!({}))["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&secret_file, &second).unwrap();
    bao.api(
        "POST",
        "auth/approle/role/app/secret-id/destroy",
        json!({ "secret_id": first }),
    );
    revoke_and_see_a_new_login(&mut sv, &bao, "approle");
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0, "{}", sv.dump());
    assert_never_shows(&sv, &[&first, &second, &role_id]);
}

/// Where logging in again cannot work, under `on-lease-expiry: restart`: a token given in
/// `VAULT_TOKEN` (exit 1, naming it), and a credential file gone since the start (exit 1,
/// naming the file, never its content).
#[test]
fn a_given_token_or_a_vanished_file_cannot_log_in_again() {
    let dir = TempDir::new("auth-no-relogin");
    let ca = Ca::new(dir.path(), "test-ca");
    let Some(bao) = https_bao(&ca, false) else {
        return;
    };
    let token = bao.token(&["app"], "6s", "1h");
    let mut sv = start_with_env(
        &config(json!({ "method": "token" }), "restart"),
        &env(&bao, &[("VAULT_TOKEN", &token)]),
    );
    sv.wait_message("app", "up ", secs(15.0));
    bao.api("POST", "auth/token/revoke", json!({ "token": token }));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(&sv, "the token given in VAULT_TOKEN is gone"),
        "{}",
        sv.dump()
    );
    assert_never_shows(&sv, &[&token]);

    let signer = JwtSigner::new();
    jwt_auth(&bao, &signer);
    let jwt_file = dir.path().join("jwt");
    let jwt = signer.sign(jwt_claims("app"), 3600);
    std::fs::write(&jwt_file, &jwt).unwrap();
    let auth = json!({ "method": "jwt", "role": "app", "jwt-file": jwt_file });
    let mut sv = start_with_env(&config(auth, "restart"), &env(&bao, &[]));
    sv.wait_message("app", "up ", secs(15.0));
    std::fs::remove_file(&jwt_file).unwrap();
    bao.api("PUT", "sys/leases/revoke-prefix/auth/jwt/login", json!({}));
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert!(
        any_internal(
            &sv,
            &format!(
                "logging in again with JWT at auth/jwt (role app) failed: vault.auth.jwt-file {}: No such file",
                jwt_file.display()
            )
        ),
        "{}",
        sv.dump()
    );
    assert_never_shows(&sv, &[&jwt]);
}
