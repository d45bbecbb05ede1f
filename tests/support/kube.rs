//! The one piece of Kubernetes that OpenBao's `kubernetes` auth talks to: the TokenReview API
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`). It answers for the service-account
//! tokens it was told about, and "not authenticated" for any other, on 127.0.0.1.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::front::{read_request, respond};

#[derive(Default)]
struct State {
    /// Token -> (namespace, service account).
    tokens: Mutex<Vec<(String, String, String)>>,
    reviews: AtomicUsize,
    stopping: AtomicBool,
}

pub struct TokenReview {
    pub port: u16,
    /// `http://127.0.0.1:<port>`, for OpenBao's `kubernetes_host`.
    pub host: String,
    state: Arc<State>,
}

impl TokenReview {
    pub fn start() -> TokenReview {
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
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        TokenReview {
            port,
            host: format!("http://127.0.0.1:{port}"),
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

fn serve(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (head, body) = read_request(&mut stream)?;
    if !head.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews") {
        return respond(&mut stream, 404, "{}");
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
    respond(&mut stream, 201, &answer.to_string())
}
