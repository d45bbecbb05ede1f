//! An OpenBao dev server on a free loopback port, root token `root`, configured through its
//! HTTP API: plain HTTP, `-dev-tls` with OpenBao's own CA, or an HTTPS listener with
//! certificates the test made ([`Bao::start_https`]).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::postgres::Postgres;
use super::{TempDir, free_port, skip};

pub const ROOT_TOKEN: &str = "root";

/// The `bao` binary: `SIMPLEVISOR_TEST_BAO`, else `.venv/bin/bao` of this crate.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("SIMPLEVISOR_TEST_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao"));
    if path.is_file() {
        Some(path)
    } else {
        skip(&format!("OpenBao binary not found at {}", path.display()));
        None
    }
}

pub struct Bao {
    child: Option<Child>,
    binary: PathBuf,
    pub port: u16,
    pub addr: String,
    tls: bool,
    /// The test's own TLS listener (then `addr` is its address).
    https: Option<Https>,
    dir: TempDir,
    agent: ureq::Agent,
}

/// A TLS listener with certificates the test made.
#[derive(Clone)]
pub struct Https {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require a client certificate signed by this CA (plain mutual TLS); without it, a
    /// client certificate is asked for but optional (what `cert` login needs).
    pub require_client_ca: Option<PathBuf>,
    /// The client certificate and key the fixture itself uses for its API calls.
    pub admin: Option<(PathBuf, PathBuf)>,
}

impl Bao {
    /// A plain-HTTP dev server; `None` (after a skip message) when OpenBao is not installed.
    pub fn start() -> Option<Bao> {
        Bao::launch(false)
    }

    /// A `-dev-tls` server with its own CA ([`Bao::ca_file`]).
    pub fn start_tls() -> Option<Bao> {
        Bao::launch(true)
    }

    /// A dev server whose API is served over HTTPS with the test's certificates (the dev
    /// listener stays plain HTTP on another port, unused).
    pub fn start_https(https: Https) -> Option<Bao> {
        Bao::launch_with(false, Some(https))
    }

    fn launch(tls: bool) -> Option<Bao> {
        Bao::launch_with(tls, None)
    }

    fn launch_with(tls: bool, https: Option<Https>) -> Option<Bao> {
        let binary = binary()?;
        // The dev server also binds port+1 for clustering: retry when either was taken.
        for _ in 0..5 {
            let port = free_port();
            let dir = TempDir::new("bao");
            let addr = match &https {
                Some(_) => format!("https://127.0.0.1:{}", free_port()),
                None => format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            };
            let mut bao = Bao {
                child: None,
                binary: binary.clone(),
                port,
                addr,
                tls,
                https: https.clone(),
                dir,
                agent: ureq::Agent::new_with_defaults(),
            };
            if bao.spawn() {
                return Some(bao);
            }
        }
        panic!("OpenBao dev server did not start (see its log in the temp dir)");
    }

    /// Starts the server process on `self.port` and waits until it answers; false if it died.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("bao.log")).expect("bao log");
        let mut command = Command::new(&self.binary);
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("bao log")))
            .stderr(Stdio::from(log));
        if self.tls {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", self.dir.path().display()));
        }
        if let Some(https) = &self.https {
            let listen = self.addr.trim_start_matches("https://");
            let mut hcl = format!(
                "listener \"tcp\" {{\n  address = \"{listen}\"\n  cluster_address = \"127.0.0.1:{}\"\n  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n",
                free_port(),
                https.cert_file.display(),
                https.key_file.display()
            );
            if let Some(ca) = &https.require_client_ca {
                hcl.push_str(&format!(
                    "  tls_require_and_verify_client_cert = true\n  tls_client_ca_file = \"{}\"\n",
                    ca.display()
                ));
            }
            hcl.push_str("}\n");
            let file = self.dir.path().join("listener.hcl");
            std::fs::write(&file, hcl).expect("listener config");
            command.arg(format!("-config={}", file.display()));
        }
        self.child = Some(command.spawn().expect("cannot run bao"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if self.tls && !self.ca_file().exists() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            self.agent = self.make_agent();
            if let Ok((200, _)) = self.call("GET", "sys/health", None, None) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop();
        false
    }

    fn make_agent(&self) -> ureq::Agent {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some((cert, key)) = self.https.as_ref().and_then(|https| https.admin.as_ref()) {
            let pem = std::fs::read(cert).expect("admin certificate");
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            let key = ureq::tls::PrivateKey::from_pem(&std::fs::read(key).expect("admin key"))
                .expect("admin key");
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&certs, key)));
        }
        if self.tls || self.https.is_some() {
            let pem = std::fs::read(self.ca_file()).expect("bao CA");
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls.build())
            .build()
            .new_agent()
    }

    /// The CA of a `-dev-tls` server, or the test's CA.
    pub fn ca_file(&self) -> PathBuf {
        match &self.https {
            Some(https) => https.ca_file.clone(),
            None => self.dir.path().join("vault-ca.pem"),
        }
    }

    /// Kills the server (its state is lost: dev servers keep everything in memory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections are still accepted by the kernel, nothing is
    /// answered until [`Bao::resume`].
    pub fn pause(&self) {
        self.send(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.send(libc::SIGCONT);
    }

    fn send(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Starts a fresh server on the same port (empty again, root token `root`).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "OpenBao did not restart");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The environment simplevisor needs to reach this server (without a login).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("VAULT_ADDR".to_string(), self.addr.clone())];
        if self.tls || self.https.is_some() {
            env.push((
                "VAULT_CACERT".to_string(),
                self.ca_file().display().to_string(),
            ));
        }
        env
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}/v1/{path}", self.addr);
        let result = match (method, body) {
            ("GET", _) => {
                let mut request = self.agent.get(&url);
                if let Some(token) = token {
                    request = request.header("X-Vault-Token", token);
                }
                request.call()
            }
            (_, body) => {
                let mut request = match method {
                    "PUT" => self.agent.put(&url),
                    "DELETE" => {
                        let mut request = self.agent.delete(&url);
                        if let Some(token) = token {
                            request = request.header("X-Vault-Token", token);
                        }
                        return request
                            .call()
                            .map(|r| (r.status().as_u16(), Value::Null))
                            .map_err(|e| e.to_string());
                    }
                    _ => self.agent.post(&url),
                };
                if let Some(token) = token {
                    request = request.header("X-Vault-Token", token);
                }
                request.send(body.unwrap_or(&json!({})).to_string())
            }
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// An API call with the root token; panics unless it succeeds.
    pub fn api(&self, method: &str, path: &str, body: Value) -> Value {
        self.api_as(ROOT_TOKEN, method, path, body)
    }

    /// An API call with `token`; panics unless it succeeds.
    pub fn api_as(&self, token: &str, method: &str, path: &str, body: Value) -> Value {
        match self.call(method, path, Some(token), Some(&body)) {
            Ok((status, value)) if (200..300).contains(&status) => value,
            Ok((status, value)) => panic!("bao {method} {path}: {status} {value}"),
            Err(e) => panic!("bao {method} {path}: {e}"),
        }
    }

    /// The HTTP status of an API call with `token`.
    pub fn status_as(&self, token: &str, method: &str, path: &str, body: Value) -> u16 {
        self.call(method, path, Some(token), Some(&body))
            .map_or(0, |(status, _)| status)
    }

    /// A policy named `name` with the given HCL.
    pub fn policy(&self, name: &str, hcl: &str) {
        self.api(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        );
    }

    /// A token with `policies` and `ttl`/`explicit_max_ttl` ("" for none).
    pub fn token(&self, policies: &[&str], ttl: &str, max_ttl: &str) -> String {
        let mut body = json!({ "policies": policies, "ttl": ttl });
        if !max_ttl.is_empty() {
            body["explicit_max_ttl"] = json!(max_ttl);
        }
        let answer = self.api("POST", "auth/token/create", body);
        answer["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// Enables AppRole at `mount` with a role `name` issuing tokens with `policies` and the
    /// given `period` (periodic tokens); returns (role_id, secret_id).
    pub fn approle(
        &self,
        mount: &str,
        name: &str,
        policies: &[&str],
        period: &str,
    ) -> (String, String) {
        self.approle_role(mount, name, policies, period);
        let role_id = self.api(
            "GET",
            &format!("auth/{mount}/role/{name}/role-id"),
            json!({}),
        )["data"]["role_id"]
            .as_str()
            .expect("role_id")
            .to_string();
        let secret_id = self.api(
            "POST",
            &format!("auth/{mount}/role/{name}/secret-id"),
            json!({}),
        )["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string();
        (role_id, secret_id)
    }

    /// Enables AppRole at `mount` with a role `name` issuing tokens with these policies and
    /// `period`.
    fn approle_role(&self, mount: &str, name: &str, policies: &[&str], period: &str) {
        self.api(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({ "type": "approle" }),
        );
        self.api(
            "POST",
            &format!("auth/{mount}/role/{name}"),
            json!({ "token_policies": policies, "token_period": period }),
        );
    }

    /// Like [`Bao::approle`], with ids chosen by the caller (to seed a restarted server the
    /// same way).
    pub fn approle_with_ids(
        &self,
        mount: &str,
        name: &str,
        policies: &[&str],
        period: &str,
        role_id: &str,
        secret_id: &str,
    ) {
        self.approle_role(mount, name, policies, period);
        self.api(
            "POST",
            &format!("auth/{mount}/role/{name}/role-id"),
            json!({ "role_id": role_id }),
        );
        self.api(
            "POST",
            &format!("auth/{mount}/role/{name}/custom-secret-id"),
            json!({ "secret_id": secret_id }),
        );
    }

    /// Mounts KV version `version` at `mount`.
    pub fn kv(&self, mount: &str, version: u8) {
        self.api(
            "POST",
            &format!("sys/mounts/{mount}"),
            json!({ "type": "kv", "options": { "version": version.to_string() } }),
        );
    }

    /// Writes `data` at `path` of the KV `mount` of version `version`.
    pub fn kv_put(&self, mount: &str, version: u8, path: &str, data: Value) {
        if version == 2 {
            self.api(
                "POST",
                &format!("{mount}/data/{path}"),
                json!({ "data": data }),
            );
        } else {
            self.api("POST", &format!("{mount}/{path}"), data);
        }
    }

    /// Mounts the database engine at `mount`, connected to `pg`, with a role `role` issuing
    /// PostgreSQL users with the given default and max TTL.
    pub fn database(&self, mount: &str, pg: &Postgres, role: &str, ttl: &str, max_ttl: &str) {
        self.api(
            "POST",
            &format!("sys/mounts/{mount}"),
            json!({ "type": "database" }),
        );
        self.api(
            "POST",
            &format!("{mount}/config/pg"),
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                    pg.port
                ),
                "username": "postgres",
                "password": pg.password,
                "allowed_roles": "*",
            }),
        );
        self.api(
            "POST",
            &format!("{mount}/roles/{role}"),
            json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": ttl,
                "max_ttl": max_ttl,
            }),
        );
    }

    /// Mounts the PKI engine at `mount` with a root CA, and a role `role` issuing
    /// certificates for `domain` and its subdomains with the given TTL.
    pub fn pki(&self, mount: &str, role: &str, domain: &str, ttl: &str) {
        self.api(
            "POST",
            &format!("sys/mounts/{mount}"),
            json!({ "type": "pki", "config": { "max_lease_ttl": "87600h" } }),
        );
        self.api(
            "POST",
            &format!("{mount}/root/generate/internal"),
            json!({ "common_name": "simplevisor test root", "ttl": "87600h" }),
        );
        self.api(
            "POST",
            &format!("{mount}/roles/{role}"),
            json!({
                "allowed_domains": domain,
                "allow_subdomains": true,
                "ttl": ttl,
                "max_ttl": ttl,
                "key_type": "ec",
                "key_bits": 256,
            }),
        );
    }

    /// The number of leases under `prefix` Vault knows about.
    pub fn lease_count(&self, prefix: &str) -> usize {
        match self.call(
            "GET",
            &format!("sys/leases/lookup/{prefix}?list=true"),
            Some(ROOT_TOKEN),
            None,
        ) {
            Ok((200, value)) => value["data"]["keys"].as_array().map_or(0, Vec::len),
            _ => 0,
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}
