//! The control protocol: one request line, one answer line, both JSON objects.
//!
//! Requests: `{"command":"status"}`, `{"command":"health","live":false}`,
//! `{"command":"restart","jobs":["web"]}` (also `stop`, `start`),
//! `{"command":"signal","signal":"HUP","jobs":["web"]}`, `{"command":"reload"}`,
//! `{"command":"rotate"}`.
//! Answers: `{"ok":true,...}` (`reload` and `rotate` add `"lines":[...]`, printed one a line) or `{"ok":false,"code":1|2,"error":"..."}`; code 2 is a usage
//! error (unknown job or signal), 1 a refusal.

use serde_json::{Value, json};

/// The largest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Health {
        live: bool,
    },
    /// `restart`, `stop` or `start` of the named jobs.
    Jobs {
        command: JobCommand,
        jobs: Vec<String>,
    },
    Signal {
        signal: String,
        jobs: Vec<String>,
    },
    /// Re-read the configuration file and apply it to the jobs.
    Reload,
    /// Fetch every Vault secret anew now.
    Rotate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobCommand {
    Restart,
    Stop,
    Start,
}

impl JobCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            JobCommand::Restart => "restart",
            JobCommand::Stop => "stop",
            JobCommand::Start => "start",
        }
    }

    pub fn parse(text: &str) -> Option<JobCommand> {
        [JobCommand::Restart, JobCommand::Stop, JobCommand::Start]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

impl Request {
    /// The line to send (without its `\n`).
    pub fn to_json(&self) -> Value {
        match self {
            Request::Status => json!({"command": "status"}),
            Request::Health { live } => json!({"command": "health", "live": live}),
            Request::Jobs { command, jobs } => json!({"command": command.as_str(), "jobs": jobs}),
            Request::Signal { signal, jobs } => {
                json!({"command": "signal", "signal": signal, "jobs": jobs})
            }
            Request::Reload => json!({"command": "reload"}),
            Request::Rotate => json!({"command": "rotate"}),
        }
    }

    /// A request line as received; the error is the answer to send (a usage error). As in the
    /// configuration file, a key given twice, a key the command does not take or a value of
    /// the wrong type is refused rather than guessed at.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let not_object = || "the request is not a JSON object".to_string();
        let value: Value = serde_json::from_slice(line).map_err(|_| not_object())?;
        let object = value.as_object().ok_or_else(not_object)?;
        let text = std::str::from_utf8(line).map_err(|_| not_object())?;
        if let Some(key) = crate::config::duplicates::find(text).first() {
            return Err(format!(
                "{} is given twice in the request; give it once",
                crate::quote::quoted(key)
            ));
        }
        let command = match object.get("command") {
            None => return Err("the request has no \"command\"".into()),
            Some(Value::String(command)) => command.as_str(),
            Some(_) => return Err("\"command\" must be a string".into()),
        };
        let takes: &[&str] = match command {
            "status" | "reload" | "rotate" => &[],
            "health" => &["live"],
            "signal" => &["signal", "jobs"],
            other if JobCommand::parse(other).is_some() => &["jobs"],
            other => return Err(format!("unknown command {}", crate::quote::quoted(other))),
        };
        if let Some(key) = object
            .keys()
            .find(|k| k.as_str() != "command" && !takes.contains(&k.as_str()))
        {
            return Err(format!("{command} takes no {}", crate::quote::quoted(key)));
        }
        let jobs = || -> Result<Vec<String>, String> {
            let list = match object.get("jobs") {
                None => return Err(format!("{command} needs \"jobs\"")),
                Some(Value::Array(list)) => list,
                Some(_) => return Err("\"jobs\" must be a list of job names".into()),
            };
            let names: Vec<String> = list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("\"jobs\" must be a list of job names")?;
            if names.is_empty() {
                return Err(format!("{command} needs at least one job"));
            }
            Ok(names)
        };
        match command {
            "status" => Ok(Request::Status),
            "reload" => Ok(Request::Reload),
            "rotate" => Ok(Request::Rotate),
            "health" => match object.get("live") {
                None => Ok(Request::Health { live: false }),
                Some(Value::Bool(live)) => Ok(Request::Health { live: *live }),
                Some(_) => Err("\"live\" must be true or false".into()),
            },
            "signal" => match object.get("signal") {
                None => Err("signal needs \"signal\"".into()),
                Some(Value::String(signal)) => Ok(Request::Signal {
                    signal: signal.clone(),
                    jobs: jobs()?,
                }),
                Some(_) => Err("\"signal\" must be a signal name such as \"HUP\"".into()),
            },
            other => match JobCommand::parse(other) {
                Some(command) => Ok(Request::Jobs {
                    command,
                    jobs: jobs()?,
                }),
                None => Err(format!("unknown command {}", crate::quote::quoted(other))),
            },
        }
    }

    /// What the request is, for the record every command leaves.
    pub fn describe(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Health { live: false } => "health".into(),
            Request::Health { live: true } => "health --live".into(),
            Request::Jobs { command, jobs } => format!("{} {}", command.as_str(), jobs.join(" ")),
            Request::Signal { signal, jobs } => format!("signal {signal} {}", jobs.join(" ")),
            Request::Reload => "reload".into(),
            Request::Rotate => "rotate".into(),
        }
    }
}

/// A refusal: `code` 2 for usage errors (nothing was done), 1 otherwise.
pub fn refusal(code: u8, error: &str) -> Value {
    json!({"ok": false, "code": code, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Status,
            Request::Health { live: true },
            Request::Jobs {
                command: JobCommand::Stop,
                jobs: vec!["web".into(), "worker".into()],
            },
            Request::Signal {
                signal: "HUP".into(),
                jobs: vec!["web".into()],
            },
            Request::Reload,
            Request::Rotate,
        ] {
            let line = request.to_json().to_string();
            assert_eq!(Request::parse(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(
            Request::parse(b"status")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            Request::parse(br#"{"command":"reboot"}"#)
                .unwrap_err()
                .contains("unknown command \"reboot\"")
        );
        assert!(
            Request::parse(br#"{"command":"stop"}"#)
                .unwrap_err()
                .contains("needs \"jobs\"")
        );
        assert!(
            Request::parse(br#"{"command":"stop","jobs":[]}"#)
                .unwrap_err()
                .contains("at least one")
        );
        assert!(
            Request::parse(br#"{"command":"signal","jobs":["a"]}"#)
                .unwrap_err()
                .contains("\"signal\"")
        );
    }

    #[test]
    fn strict_requests_refuse_what_they_would_otherwise_guess() {
        let error = |line: &str| Request::parse(line.as_bytes()).unwrap_err();
        assert!(
            error(r#"{"command":"status","command":"stop"}"#)
                .contains("\"command\" is given twice")
        );
        assert!(error(r#"{"command":"stop","jobs":["a"],"jobs":["b"]}"#).contains("given twice"));
        assert!(
            error(r#"{"command":"health","live":"yes"}"#)
                .contains("\"live\" must be true or false")
        );
        assert!(error(r#"{"command":"health","live":1}"#).contains("must be true or false"));
        assert!(error(r#"{"command":7}"#).contains("\"command\" must be a string"));
        assert!(error(r#"{"command":"stop","jobs":"web"}"#).contains("list of job names"));
        assert!(error(r#"{"command":"stop","jobs":["web",3]}"#).contains("list of job names"));
        assert!(error(r#"{"command":"signal","signal":1,"jobs":["web"]}"#).contains("signal name"));
        assert!(
            error(r#"{"command":"status","verbose":true}"#).contains("status takes no \"verbose\"")
        );
        assert!(
            error(r#"{"command":"stop","jobs":["a"],"live":true}"#)
                .contains("stop takes no \"live\"")
        );
        assert!(error(r#"["command","status"]"#).contains("not a JSON object"));
        assert!(error("\"status\"").contains("not a JSON object"));
        assert_eq!(
            Request::parse(br#"{"command":"health"}"#),
            Ok(Request::Health { live: false })
        );
    }
}
