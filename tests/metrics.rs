//! Metrics and HTTP probes through the binary (`metrics-listen`), with the real thing: a
//! Prometheus (Debian package `prometheus`) started on loopback with a scrape interval of 1 s,
//! asked over its HTTP API; `promtool` on the live exposition; the example alert rules and
//! every query of the example dashboard run against that Prometheus.

mod harness;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness::{Supervisor, TempDir, require, run, secs, start_with_env};
use support::bao::Bao;

/// A loopback port free right now (the kernel's choice, released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One `GET` (HTTP/1.1, `Connection: close`): status and body.
fn get(port: u16, target: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no head: {answer}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status: {head}"))?;
    Ok((status, body.to_string()))
}

/// `text` for a URL query.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` every 100 ms until it gives a value, for at most `timeout`.
fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus on loopback scraping simplevisor's `metrics_port` every second, with the
/// example alert rules loaded; stopped (by its pid) on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn start(metrics_port: u16) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus-alerts.yml");
        let config = dir.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: simplevisor\n    honor_labels: true\n    \
                 static_configs:\n      - targets: [\"127.0.0.1:{metrics_port}\"]\n",
                rules.display()
            ),
        );
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            port,
            _dir: dir,
        };
        eventually("prometheus ready", secs(30.0), || {
            get(port, "/-/ready").ok().filter(|(s, _)| *s == 200)
        });
        prometheus
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let (status, body) = get(
            self.port,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        )
        .unwrap();
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status, 200, "{promql}: {body}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the one series `promql` gives, once it gives one.
    fn value(&self, promql: &str) -> f64 {
        eventually(promql, secs(30.0), || {
            self.query(promql)
                .first()
                .and_then(|series| series["value"][1].as_str().and_then(|v| v.parse().ok()))
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// simplevisor with `metrics-listen` on a free loopback port, no control socket, a job that
/// crashes at once (restarted every 100 ms to 200 ms) and a chatty one.
fn start_supervisor() -> (Supervisor, u16) {
    let port = free_port();
    let config = json!({
        "metrics-listen": format!("127.0.0.1:{port}"),
        "control-socket": "",
        "restart-backoff": {"initial": "100ms", "max": "200ms"},
        "jobs": {"main": [
            {"name": "crasher", "cmd": ["sh", "-c", "echo crashing; exit 3"]},
            {"name": "chatty", "cmd": ["sh", "-c", "while :; do echo tick; sleep 0.05; done"]}
        ]}
    });
    let supervisor = run(&config.to_string()).arg("--no-vault").start();
    eventually("/livez answers", secs(10.0), || {
        get(port, "/livez").ok().filter(|(s, _)| *s == 200)
    });
    (supervisor, port)
}

#[test]
fn prometheus_scrapes_simplevisor_and_sees_the_restarts_grow() {
    if !require("prometheus (Debian package prometheus)", have("prometheus")) {
        return;
    }
    let (_supervisor, port) = start_supervisor();
    let prometheus = Prometheus::start(port);
    assert_eq!(prometheus.value("up{job=\"simplevisor\"}"), 1.0);
    let query = "simplevisor_job_restarts_total{job=\"crasher\"}";
    let first = prometheus.value(query);
    eventually("restarts grow", secs(30.0), || {
        (prometheus.value(query) > first).then_some(())
    });
    assert_eq!(
        prometheus.value("simplevisor_job_last_exit_code{job=\"crasher\"}"),
        3.0
    );
}

/// Every query of the example dashboard, and the expression of every example alert without
/// its threshold, returns data for a running simplevisor with Vault (a token, a KV secret and a
/// certificate from OpenBao); no body ever shows the token, the secret or the certificate.
#[test]
fn every_query_of_the_dashboard_and_the_alerts_returns_data() {
    if !require("prometheus (Debian package prometheus)", have("prometheus")) {
        return;
    }
    let Some(bao) = Bao::start() else { return };
    bao.kv("kv", 2);
    bao.kv_put("kv", 2, "app", json!({"password": "metrics-secret-value"}));
    bao.pki("pki", "web", "example.com", "1h");
    let token = bao.token(&["root"], "1h", "");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    let rules = std::fs::read_to_string(root.join("examples/prometheus-alerts.yml")).unwrap();
    for line in rules.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr: ") {
            // The series, not whether the alert fires now.
            let cut = [" > ", " < ", " == "]
                .iter()
                .filter_map(|op| expr.find(op))
                .min()
                .unwrap_or(expr.len());
            queries.push(expr[..cut].to_string());
        }
    }
    let port = free_port();
    let config = json!({
        "metrics-listen": format!("127.0.0.1:{port}"),
        "control-socket": "",
        "restart-backoff": {"initial": "100ms", "max": "200ms"},
        "env": {"pass": ["PATH"], "vault-replace": ["APP_PASSWORD", "CERT"]},
        "jobs": {"main": [
            {"name": "crasher", "cmd": ["sh", "-c", "echo crashing; exit 3"]},
            {"name": "chatty", "cmd": ["sh", "-c", "while :; do echo tick; sleep 0.05; done"]}
        ]}
    });
    let mut env = bao.env();
    env.extend([
        ("VAULT_TOKEN".to_string(), token.clone()),
        (
            "APP_PASSWORD".to_string(),
            "secret:app:password".to_string(),
        ),
        (
            "CERT".to_string(),
            "pki:web/www.example.com:Certificate".to_string(),
        ),
    ]);
    let _supervisor = start_with_env(&config, &env);
    let body = eventually("/metrics with Vault", secs(20.0), || {
        get(port, "/metrics")
            .ok()
            .filter(|(s, b)| *s == 200 && b.contains("simplevisor_vault_token_ttl_seconds "))
            .map(|(_, body)| body)
    });
    for secret in [token.as_str(), "metrics-secret-value", "BEGIN CERTIFICATE"] {
        assert!(!body.contains(secret), "the body shows {secret:?}:\n{body}");
    }
    assert!(
        body.contains("simplevisor_vault_lease_ttl_seconds{reference=\"pki:web/www.example.com\"}"),
        "{body}"
    );
    let prometheus = Prometheus::start(port);
    // A few scrapes, so that rates have two samples.
    eventually("five scrapes", secs(30.0), || {
        let scrapes = prometheus.value("count_over_time(simplevisor_up[1m])");
        (scrapes >= 5.0).then_some(())
    });
    let mut empty = Vec::new();
    for query in &queries {
        let query = query
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        if prometheus.query(&query).is_empty() {
            empty.push(query);
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
}

#[test]
fn the_log_counters_are_exact_and_promtool_passes_the_live_exposition() {
    let port = free_port();
    let config = json!({
        "metrics-listen": format!("127.0.0.1:{port}"),
        "control-socket": "",
        "jobs": {"main": [{"name": "counted", "cmd": ["sh", "-c",
            "i=0; while [ $i -lt 1000 ]; do echo out $i; i=$((i+1)); done; \
             i=0; while [ $i -lt 17 ]; do echo err >&2; i=$((i+1)); done; exec sleep 60"]}]}
    });
    let mut supervisor = run(&config.to_string()).arg("--no-vault").start();
    supervisor.wait_count("counted", 1017, secs(10.0));
    let body = eventually("metrics", secs(10.0), || {
        get(port, "/metrics").ok().filter(|(s, _)| *s == 200)
    })
    .1;
    for expected in [
        "simplevisor_log_lines_total{job=\"counted\",stream=\"stdout\"} 1000",
        "simplevisor_log_lines_total{job=\"counted\",stream=\"stderr\"} 17",
        // "out 0\n" .. "out 999\n": 10 * 6 + 90 * 7 + 900 * 8 bytes; "err\n" 17 times.
        "simplevisor_log_bytes_total{job=\"counted\",stream=\"stdout\"} 7890",
        "simplevisor_log_bytes_total{job=\"counted\",stream=\"stderr\"} 68",
        "simplevisor_job_state{job=\"counted\",kind=\"main\",state=\"running\"} 1",
    ] {
        assert!(body.lines().any(|l| l == expected), "{expected}\n{body}");
    }
    if require("promtool (Debian package prometheus)", have("promtool")) {
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let output = promtool.wait_with_output().unwrap();
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// 64 idle connections, a slow client, an oversized request, garbage and half-closed sockets
/// at once: a chatty job goes on logging, and `/readyz` still answers once a slot is free
/// (503: the crashing job keeps simplevisor from being ready).
#[test]
fn misbehaving_clients_hold_nothing_up() {
    let (mut supervisor, port) = start_supervisor();
    let connect = || TcpStream::connect(("127.0.0.1", port)).unwrap();
    let idle: Vec<TcpStream> = (0..64).map(|_| connect()).collect();
    let mut slow = connect();
    slow.write_all(b"GET /metr").unwrap();
    let mut oversized = connect();
    let _ = oversized.write_all(&vec![b'a'; 64 << 10]);
    let mut garbage = connect();
    let _ = garbage.write_all(b"\x16\x03\x01\x00\xa5\x01\x00");
    let half = connect();
    let _ = half.shutdown(Shutdown::Write);
    let ticks = supervisor.messages("chatty").len();
    supervisor.wait_count("chatty", ticks + 20, secs(5.0));
    drop(idle);
    let (status, body) = eventually("/readyz answers", secs(10.0), || get(port, "/readyz").ok());
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
}

/// Served from the very start: while Vault start-up retries against a closed port, `/livez`
/// answers, `/readyz` says why not, and the phase is `vault`.
#[test]
fn probes_answer_while_vault_start_up_retries() {
    let closed = free_port();
    let port = free_port();
    let config = json!({
        "metrics-listen": format!("127.0.0.1:{port}"),
        "control-socket": "",
        "env": {"pass": ["PATH"], "vault-replace": ["DB_PASSWORD"]},
        "vault": {"startup-timeout": "60s"},
        "jobs": {"main": [{"name": "web", "cmd": ["sleep", "30"]}]},
    });
    let mut supervisor = run(&config.to_string())
        .env("VAULT_ADDR", &format!("http://127.0.0.1:{closed}"))
        .env("VAULT_TOKEN", "root")
        .env("DB_PASSWORD", "secret:app/db:password")
        .start();
    supervisor.wait_message("internal", "attempt 1", secs(10.0));
    assert_eq!(get(port, "/livez").unwrap(), (200, "live\n".to_string()));
    assert_eq!(
        get(port, "/readyz").unwrap(),
        (503, "not ready: phase vault\n".to_string())
    );
    let (status, body) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("simplevisor_phase{phase=\"vault\"} 1"),
        "{body}"
    );
    assert!(body.contains("simplevisor_ready 0"), "{body}");
    supervisor.signal(libc::SIGTERM);
    assert_eq!(supervisor.wait_exit(secs(10.0)), 0);
}
