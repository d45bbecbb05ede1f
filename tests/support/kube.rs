//! The one piece of Kubernetes that OpenBao's `kubernetes` auth talks to: the TokenReview API
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`), over HTTPS with a server certificate
//! of the test's CA, as an API server serves it. It answers for the service-account tokens it
//! was told about, and "not authenticated" for any other, on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use super::front::{read_request, respond};
use super::pki::Ca;

#[derive(Default)]
struct State {
    /// Token -> (namespace, service account).
    tokens: Mutex<Vec<(String, String, String)>>,
    reviews: AtomicUsize,
    stopping: AtomicBool,
}

pub struct TokenReview {
    pub port: u16,
    /// `https://127.0.0.1:<port>`, for OpenBao's `kubernetes_host` (with the CA as
    /// `kubernetes_ca_cert`).
    pub host: String,
    state: Arc<State>,
}

impl TokenReview {
    /// The stub, serving a server certificate of `ca`.
    pub fn start(ca: &Ca) -> TokenReview {
        let issued = ca.server("token-review");
        let certs = CertificateDer::pem_file_iter(&issued.cert_file)
            .expect("stub certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("stub certificate");
        let key = PrivateKeyDer::from_pem_file(&issued.key_file).expect("stub key");
        let tls = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("stub TLS configuration"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token review stub");
        let port = listener.local_addr().expect("stub addr").port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&shared);
                let tls = Arc::clone(&tls);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let Ok(connection) = rustls::ServerConnection::new(tls) else {
                        return;
                    };
                    let mut stream = rustls::StreamOwned::new(connection, stream);
                    let _ = serve(&mut stream, &shared);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                });
            }
        });
        TokenReview {
            port,
            host: format!("https://127.0.0.1:{port}"),
            state,
        }
    }

    /// `token` now authenticates as `system:serviceaccount:<namespace>:<account>`.
    pub fn accept(&self, token: &str, namespace: &str, account: &str) {
        self.state.tokens.lock().unwrap().push((
            token.to_string(),
            namespace.to_string(),
            account.to_string(),
        ));
    }

    /// `token` no longer authenticates (rotated away).
    pub fn forget(&self, token: &str) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .retain(|(t, _, _)| t != token);
    }

    /// How many reviews OpenBao asked for.
    pub fn reviews(&self) -> usize {
        self.state.reviews.load(Ordering::SeqCst)
    }
}

impl Drop for TokenReview {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: &mut (impl Read + Write), state: &State) -> std::io::Result<()> {
    let (head, body) = read_request(stream)?;
    if !head.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews") {
        return respond(stream, 404, "{}");
    }
    state.reviews.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = request["spec"]["token"].as_str().unwrap_or("");
    let known = state
        .tokens
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _, _)| t == token)
        .cloned();
    let status = match known {
        Some((_, namespace, account)) => json!({
            "authenticated": true,
            "user": {
                "username": format!("system:serviceaccount:{namespace}:{account}"),
                "uid": format!("uid-{namespace}-{account}"),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}")],
            },
            "audiences": request["spec"]["audiences"].clone(),
        }),
        None => json!({ "authenticated": false, "error": "invalid bearer token" }),
    };
    let answer = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": { "creationTimestamp": null },
        "spec": request["spec"].clone(),
        "status": status,
    });
    respond(stream, 201, &answer.to_string())
}
