//! The command-line side of the control socket: `simplevisor status|health|restart|stop|
//! start|signal|reload|rotate`. Sends one request, prints the answer, and turns it into the exit status:
//! 0 done, 1 not reachable or refused (or not ready), 2 usage error or unknown job.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::protocol::Request;
use crate::config::DEFAULT_CONTROL_SOCKET;

/// How long to wait for an answer: the server answers within a second.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read (a status of thousands of jobs is well below).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// `status`, `health`, `restart`, `stop`, `start`, `signal`, `reload`, `rotate` and their
/// options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlCall {
    pub request: Request,
    /// `--socket`; else `$SIMPLEVISOR_SOCKET`, else the default path.
    pub socket: Option<PathBuf>,
    /// `status --json`.
    pub json: bool,
}

/// Runs the command; returns the exit status.
pub fn run(call: &ControlCall) -> u8 {
    let socket = call
        .socket
        .clone()
        .or_else(|| {
            std::env::var_os("SIMPLEVISOR_SOCKET")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
    let answer = match exchange(&socket, &call.request) {
        Ok(answer) => answer,
        Err(reason) => {
            eprintln!(
                "simplevisor: cannot reach simplevisor at {}: {reason}",
                socket.display()
            );
            return 1;
        }
    };
    if answer.get("ok").and_then(Value::as_bool) != Some(true) {
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        eprintln!("simplevisor: {error}");
        return match answer.get("code").and_then(Value::as_u64) {
            Some(2) => 2,
            _ => 1,
        };
    }
    match &call.request {
        Request::Status => {
            if call.json {
                let status = answer.get("status").cloned().unwrap_or(Value::Null);
                crate::stdout::print(&format!("{status}\n"), 0)
            } else {
                let table = answer.get("table").and_then(Value::as_str).unwrap_or("");
                crate::stdout::print(table, 0)
            }
        }
        Request::Reload | Request::Rotate => {
            let lines = answer.get("lines").and_then(Value::as_array);
            let text: String = lines
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|line| format!("{line}\n"))
                .collect();
            crate::stdout::print(&text, 0)
        }
        Request::Health { .. } => 0,
        _ => 0,
    }
}

/// One request, one answer.
fn exchange(socket: &std::path::Path, request: &Request) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{}\n", request.to_json()).as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "no answer within 2s".to_string()
            }
            _ => e.to_string(),
        })?;
    serde_json::from_slice(&text).map_err(|_| "the answer is not JSON".to_string())
}
