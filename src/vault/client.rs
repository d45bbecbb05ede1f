//! The HTTP side of Vault: one reused `ureq` agent, the address, TLS trust (`VAULT_CACERT`,
//! `VAULT_SKIP_VERIFY`), the TLS client certificate (`VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY`),
//! the `VAULT_NAMESPACE` header, a timeout on every request, and Vault's `{"errors": [...]}`
//! bodies turned into [`RequestError`]s that never carry a secret.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::Agent;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::Log;
use super::lease::retry_delay;

/// The longest a single request may take unless `vault.request-timeout` says otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Vault's answers are small JSON objects; anything larger is not a Vault answer.
const MAX_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

/// Why a request failed. The text comes from the transport or from Vault's `errors` list,
/// which name paths and reasons, not values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No answer: connection refused, timeout, TLS failure, ...
    Transport(String),
    /// Vault answered with a non-2xx status.
    Status { code: u16, errors: String },
    /// A 2xx answer that is not the JSON we expect.
    BadResponse(String),
    /// TLS failed for a reason that retrying cannot fix: a server certificate not signed by
    /// a trusted CA, or a client certificate the server refuses.
    Tls(String),
    /// A credential file cannot be read or is empty (names the file, never its content).
    Credential(String),
}

impl RequestError {
    /// Worth retrying: Vault may be starting, sealed, overloaded or briefly unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            RequestError::Transport(_) => true,
            RequestError::Status { code, .. } => *code >= 500 || *code == 429,
            RequestError::BadResponse(_) | RequestError::Tls(_) | RequestError::Credential(_) => {
                false
            }
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Transport(reason) => write!(f, "cannot reach Vault: {reason}"),
            RequestError::Status { code, errors } if errors.is_empty() => {
                write!(f, "Vault answered {code}")
            }
            RequestError::Status { code, errors } => write!(f, "Vault answered {code}: {errors}"),
            RequestError::BadResponse(reason) => {
                write!(f, "unexpected answer from Vault: {reason}")
            }
            RequestError::Tls(reason) | RequestError::Credential(reason) => f.write_str(reason),
        }
    }
}

/// A Vault endpoint: address, TLS trust and namespace. Cheap to clone (the agent is shared).
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    /// `VAULT_ADDR` without a trailing `/`.
    addr: String,
    /// The longest any single request may take; callers with a deadline pass less.
    request_timeout: Duration,
    /// The settings this client was built from (addresses, names of files, the namespace;
    /// never secrets), to build it again: certificate files are read anew at every login, as
    /// credential files are. Shared, so that the client stays small.
    settings: Arc<Vec<(String, String)>>,
}

/// The variables a [`Client`] is built from; none of them holds a secret.
const CLIENT_VARIABLES: &[&str] = &[
    "VAULT_ADDR",
    "VAULT_CACERT",
    "VAULT_SKIP_VERIFY",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_NAMESPACE",
];

/// The value of `name` in `env`; empty counts as unset, as in the Vault CLI.
pub fn env_var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

impl Client {
    /// Builds the client from `VAULT_ADDR`, `VAULT_CACERT`, `VAULT_SKIP_VERIFY`,
    /// `VAULT_CLIENT_CERT` + `VAULT_CLIENT_KEY` and `VAULT_NAMESPACE`. Errors are settings
    /// mistakes, found before any request.
    pub fn from_env(env: &[(String, String)]) -> Result<Client, Vec<String>> {
        // Every problem is collected, so that one fix-and-retry round fixes them all.
        let mut problems = Vec::new();
        let addr = match env_var(env, "VAULT_ADDR") {
            None => {
                problems.push("VAULT_ADDR is not set".to_string());
                ""
            }
            Some(addr) if !(addr.starts_with("http://") || addr.starts_with("https://")) => {
                problems.push(format!(
                    "VAULT_ADDR must start with http:// or https:// (got {addr:?})"
                ));
                ""
            }
            Some(addr) => addr,
        };
        let skip_verify = match env_var(env, "VAULT_SKIP_VERIFY") {
            None => false,
            Some(value) => parse_bool(value).unwrap_or_else(|| {
                problems.push(format!(
                    "VAULT_SKIP_VERIFY must be true or false (got {value:?})"
                ));
                false
            }),
        };
        let mut tls = TlsConfig::builder().disable_verification(skip_verify);
        if let Some(path) = env_var(env, "VAULT_CACERT") {
            match read_ca_file(path) {
                Ok(roots) => tls = tls.root_certs(roots),
                Err(problem) => problems.push(problem),
            }
        }
        match (
            env_var(env, "VAULT_CLIENT_CERT"),
            env_var(env, "VAULT_CLIENT_KEY"),
        ) {
            (Some(cert), Some(key)) => match read_client_cert(cert, key) {
                Ok(client_cert) => tls = tls.client_cert(Some(client_cert)),
                Err(problem) => problems.push(problem),
            },
            (Some(_), None) => problems.push(
                "VAULT_CLIENT_KEY is not set (VAULT_CLIENT_CERT is): a client certificate needs its private key"
                    .into(),
            ),
            (None, Some(_)) => problems.push(
                "VAULT_CLIENT_CERT is not set (VAULT_CLIENT_KEY is): a private key needs its client certificate"
                    .into(),
            ),
            (None, None) => {}
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_global(Some(REQUEST_TIMEOUT))
            // Vault answers are a few KiB: small buffers keep the process small.
            .input_buffer_size(16 * 1024)
            .output_buffer_size(4 * 1024)
            // Renewals are minutes apart and servers close idle connections anyway: keeping
            // none saves memory (and every renewal's TLS handshake runs on the renewer's
            // small stack, which the tests exercise).
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .max_redirects(0)
            .user_agent("simplevisor")
            .build();
        let settings = CLIENT_VARIABLES
            .iter()
            .filter_map(|name| {
                env_var(env, name).map(|value| (name.to_string(), value.to_string()))
            })
            .collect();
        Ok(Client {
            agent: Agent::new_with_config(config),
            addr: addr.trim_end_matches('/').to_string(),
            request_timeout: REQUEST_TIMEOUT,
            settings: Arc::new(settings),
        })
    }

    /// The same client built again, reading `VAULT_CACERT`, `VAULT_CLIENT_CERT` and
    /// `VAULT_CLIENT_KEY` anew (a renewed client certificate, a rotated CA bundle).
    pub fn reloaded(&self) -> Result<Client, String> {
        Client::from_env(&self.settings)
            .map(|client| client.with_request_timeout(self.request_timeout))
            .map_err(|problems| problems.join("; "))
    }

    /// Sets `vault.request-timeout`.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Client {
        self.request_timeout = timeout;
        self
    }

    /// The longest any single request may take.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// `VAULT_ADDR` as given (without a trailing `/`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One request to `/v1/<path>`, giving up after `timeout`. A 204 answer is `Value::Null`.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let url = format!("{}/v1/{}", self.addr, path);
        let timeout = Some(timeout.min(self.request_timeout));
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2);
        if let Some(token) = token {
            headers.push(("X-Vault-Token", token));
        }
        if let Some(namespace) = env_var(&self.settings, "VAULT_NAMESPACE") {
            headers.push(("X-Vault-Namespace", namespace));
        }
        let result = match method {
            Method::Get => {
                let mut request = self.agent.get(&url);
                for (name, value) in &headers {
                    request = request.header(*name, *value);
                }
                request.config().timeout_global(timeout).build().call()
            }
            Method::Post | Method::Put => {
                let mut request = if method == Method::Post {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                for (name, value) in &headers {
                    request = request.header(*name, *value);
                }
                let body = body.map_or_else(|| "{}".to_string(), Value::to_string);
                request
                    .content_type("application/json")
                    .config()
                    .timeout_global(timeout)
                    .build()
                    .send(body)
            }
        };
        let mut response = result.map_err(|e| transport_error(&self.addr, e))?;
        let code = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| RequestError::Transport(e.to_string()))?;
        if (200..300).contains(&code) {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text)
                .map_err(|_| RequestError::BadResponse(format!("{path}: not JSON")));
        }
        Err(RequestError::Status {
            code,
            errors: error_list(&text),
        })
    }
}

/// A request that got no answer. TLS failures that retrying cannot fix say what to check.
fn transport_error(addr: &str, error: ureq::Error) -> RequestError {
    let tls = match &error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls.and_then(|tls| tls_hint(addr, tls)) {
        Some(reason) => RequestError::Tls(reason),
        None => RequestError::Transport(error.to_string()),
    }
}

/// What to check for a TLS failure that is a settings mistake; `None` for the others.
fn tls_hint(addr: &str, error: &rustls::Error) -> Option<String> {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(reason) => Some(format!(
            "cannot reach Vault: the TLS certificate of {addr} is not accepted ({reason}): VAULT_CACERT must name the CA that signed it (and the certificate must name the host of VAULT_ADDR)"
        )),
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::CertificateRequired
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::UnsupportedCertificate
            | Alert::AccessDenied),
        ) => Some(format!(
            "cannot reach Vault: {addr} refused the TLS connection ({alert:?}): it wants a client certificate it trusts (VAULT_CLIENT_CERT and VAULT_CLIENT_KEY)"
        )),
        _ => None,
    }
}

/// Vault's `{"errors": ["..."]}` joined with `; `; empty when the body has none.
fn error_list(body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return String::new();
    };
    let Some(errors) = value.get("errors").and_then(Value::as_array) else {
        return String::new();
    };
    // Vault wraps plugin errors in multi-line text ("1 error occurred:\n\t* ..."): one line
    // reads better in a record.
    errors
        .iter()
        .filter_map(Value::as_str)
        .map(|error| error.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Go's `strconv.ParseBool`, which the Vault CLI uses for `VAULT_SKIP_VERIFY`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Every certificate of the PEM file `path`: only these are trusted, as with the Vault CLI.
fn read_ca_file(path: &str) -> Result<RootCerts, String> {
    let pem = std::fs::read(path).map_err(|e| format!("VAULT_CACERT {path}: {e}"))?;
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("VAULT_CACERT {path}: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "VAULT_CACERT {path}: no PEM certificate in the file"
        ));
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

/// The TLS client certificate: the certificate chain of the PEM file `cert_path` and the
/// first private key of `key_path`, checked to belong together here (rustls would only find
/// out at the first connection, where ureq turns it into a panic).
fn read_client_cert(cert_path: &str, key_path: &str) -> Result<ClientCert, String> {
    let pem =
        std::fs::read(cert_path).map_err(|e| format!("VAULT_CLIENT_CERT {cert_path}: {e}"))?;
    let mut chain: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => chain.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("VAULT_CLIENT_CERT {cert_path}: {e}")),
        }
    }
    if chain.is_empty() {
        return Err(format!(
            "VAULT_CLIENT_CERT {cert_path}: no PEM certificate in the file"
        ));
    }
    // The key's own parse errors are not quoted: they could show part of the key.
    let pem = std::fs::read(key_path).map_err(|e| format!("VAULT_CLIENT_KEY {key_path}: {e}"))?;
    let key: Option<PrivateKey<'static>> = ureq::tls::parse_pem(&pem).find_map(|item| match item {
        Ok(PemItem::PrivateKey(key)) => Some(key),
        _ => None,
    });
    let key = key.ok_or_else(|| {
        format!(
            "VAULT_CLIENT_KEY {key_path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file"
        )
    })?;
    check_key_pair(&chain, &pem).map_err(|reason| {
        format!("VAULT_CLIENT_CERT {cert_path} and VAULT_CLIENT_KEY {key_path}: {reason}")
    })?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// What rustls will check when it builds the TLS configuration: the key (the first of the
/// PEM text `key_pem`, as for ureq) is usable and is the key of the first certificate.
fn check_key_pair(chain: &[Certificate<'static>], key_pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| "the private key cannot be parsed".to_string())?;
    let certs = chain
        .iter()
        .map(|cert| CertificateDer::from(cert.der().to_vec()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map(drop)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "the private key is not the key of the certificate".to_string()
            }
            other => format!("unusable certificate or key ({other})"),
        })
}

/// The last attempt of a start-up retry comes this long before the deadline, so that its
/// failure is reported by the deadline, not after it.
const LAST_ATTEMPT_MARGIN: Duration = Duration::from_millis(100);

/// Runs `attempt` (given its request timeout) until it succeeds, fails for good, or `deadline`
/// passes: transient failures are retried after 0.25 s, 0.5 s, ... up to 5 s between attempts,
/// the last attempt just before the deadline. Each failed attempt is a record naming `what`
/// was tried, the attempt number, the reason and the next delay (never a secret: reasons are
/// transport errors and Vault's error lists).
pub fn retrying<T>(
    deadline: Instant,
    what: &str,
    log: &dyn Log,
    mut attempt: impl FnMut(Duration) -> Result<T, RequestError>,
) -> Result<T, RequestError> {
    let mut failures: u32 = 0;
    loop {
        // Even at the deadline one attempt is made, with a short timeout.
        let timeout = time_left(deadline).max(Duration::from_secs(1));
        match attempt(timeout) {
            Err(error) if error.is_transient() => {
                failures = failures.saturating_add(1);
                let left = time_left(deadline);
                if left <= LAST_ATTEMPT_MARGIN {
                    log.error(&format!(
                        "vault: {what}: attempt {failures} failed: {error}; giving up (startup-timeout reached)"
                    ));
                    return Err(error);
                }
                let delay =
                    retry_delay(failures, Duration::from_millis(250), Duration::from_secs(5))
                        .min(left - LAST_ATTEMPT_MARGIN);
                log.error(&format!(
                    "vault: {what}: attempt {failures} failed: {error}; next attempt in {}",
                    crate::config::duration::format(delay)
                ));
                std::thread::sleep(delay);
            }
            other => return other,
        }
    }
}

/// Time left until `deadline`, as a request timeout; zero when it has passed.
pub fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_or_malformed_address_is_a_settings_error() {
        let err = Client::from_env(&env(&[])).err().unwrap();
        assert_eq!(err, ["VAULT_ADDR is not set"]);
        let err = Client::from_env(&env(&[("VAULT_ADDR", "")])).err().unwrap();
        assert_eq!(err, ["VAULT_ADDR is not set"]);
        let err = Client::from_env(&env(&[("VAULT_ADDR", "vault:8200")]))
            .err()
            .unwrap();
        assert!(err[0].contains("http://"), "{err:?}");
    }

    #[test]
    fn skip_verify_accepts_go_booleans_only() {
        for ok in ["1", "true", "T", "0", "False"] {
            let settings = env(&[("VAULT_ADDR", "https://x"), ("VAULT_SKIP_VERIFY", ok)]);
            assert!(Client::from_env(&settings).is_ok(), "{ok}");
        }
        let settings = env(&[("VAULT_ADDR", "https://x"), ("VAULT_SKIP_VERIFY", "yes")]);
        assert!(Client::from_env(&settings).err().unwrap()[0].contains("VAULT_SKIP_VERIFY"));
    }

    #[test]
    fn unreadable_or_empty_ca_file_is_a_settings_error() {
        let settings = env(&[
            ("VAULT_ADDR", "https://x"),
            ("VAULT_CACERT", "/nonexistent/ca.pem"),
        ]);
        let err = Client::from_env(&settings).err().unwrap();
        assert!(
            err[0].starts_with("VAULT_CACERT /nonexistent/ca.pem"),
            "{err:?}"
        );
        let settings = env(&[("VAULT_ADDR", "https://x"), ("VAULT_CACERT", "/dev/null")]);
        let err = Client::from_env(&settings).err().unwrap();
        assert!(err[0].contains("no PEM certificate"), "{err:?}");
    }

    #[test]
    fn every_unusable_setting_is_reported_not_only_the_first() {
        let settings = env(&[
            ("VAULT_SKIP_VERIFY", "yes"),
            ("VAULT_CACERT", "/nonexistent/ca.pem"),
            ("VAULT_CLIENT_CERT", "/nonexistent/client.pem"),
        ]);
        let err = Client::from_env(&settings).err().unwrap();
        assert_eq!(err.len(), 4, "{err:?}");
        assert_eq!(err[0], "VAULT_ADDR is not set");
        assert!(err[1].starts_with("VAULT_SKIP_VERIFY"), "{err:?}");
        assert!(
            err[2].starts_with("VAULT_CACERT /nonexistent/ca.pem"),
            "{err:?}"
        );
        assert!(err[3].starts_with("VAULT_CLIENT_KEY is not set"), "{err:?}");
        // A client certificate that cannot be read is named even with VAULT_ADDR malformed.
        let settings = env(&[
            ("VAULT_ADDR", "vault:8200"),
            ("VAULT_CLIENT_CERT", "/nonexistent/client.pem"),
            ("VAULT_CLIENT_KEY", "/nonexistent/client.key"),
        ]);
        let err = Client::from_env(&settings).err().unwrap();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(
            err[1].starts_with("VAULT_CLIENT_CERT /nonexistent/client.pem"),
            "{err:?}"
        );
    }

    #[test]
    fn trailing_slash_of_the_address_is_dropped() {
        let client = Client::from_env(&env(&[("VAULT_ADDR", "http://127.0.0.1:8200/")])).unwrap();
        assert_eq!(client.addr(), "http://127.0.0.1:8200");
    }

    #[test]
    fn error_bodies_are_read_and_statuses_classified() {
        assert_eq!(
            error_list(r#"{"errors":["permission denied","x"]}"#),
            "permission denied; x"
        );
        assert_eq!(error_list(r#"{"errors":[]}"#), "");
        assert_eq!(error_list("<html>"), "");
        let status = |code| RequestError::Status {
            code,
            errors: String::new(),
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(403).is_transient());
        assert!(!status(404).is_transient());
        assert!(RequestError::Transport("refused".into()).is_transient());
        assert_eq!(status(404).to_string(), "Vault answered 404");
    }

    #[test]
    fn unreachable_vault_is_a_transport_error() {
        // A port nothing listens on: bind, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            Client::from_env(&env(&[("VAULT_ADDR", &format!("http://127.0.0.1:{port}"))])).unwrap();
        let err = client
            .request(
                Method::Get,
                "sys/health",
                None,
                None,
                Duration::from_secs(2),
            )
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}
