//! Command-line parsing (docs/behaviour.md) and the choice of the configuration file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::control::client::ControlCall;
use crate::control::protocol::{JobCommand, Request};

pub const USAGE: &str = "\
simplevisor - a process supervisor for containers: PID 1, Vault secrets, JSON logs

Usage:
  simplevisor [run] [--config PATH] [--no-vault]   supervise the configured jobs (default)
  simplevisor check [--config PATH] [--no-vault]   validate config and environment, start nothing
  simplevisor schema                               print the config file's JSON Schema
  simplevisor --version | --help

Talking to a running simplevisor (its control socket):
  simplevisor status [--json]          every job's state, pid, uptime, restarts, last exit
  simplevisor health [--live]          exit 0 if ready (--live: if it answers), else 1
  simplevisor restart JOB...           stop gracefully and start again at once
  simplevisor stop JOB...              stop gracefully; stays stopped until started
  simplevisor start JOB...             start a stopped job
  simplevisor signal SIG JOB...        send SIG to the jobs' process groups
  simplevisor reload                   re-read the config file and apply it to the jobs
  simplevisor rotate                   fetch every Vault secret anew now (a rotation)

Options:
  -c, --config PATH   configuration file (default: $SIMPLEVISOR_CONFIG, else simplevisor.json
                      next to the simplevisor binary)
      --no-vault      use vault-replace values literally; never contact Vault
      --socket PATH   control socket (default: $SIMPLEVISOR_SOCKET, else /run/simplevisor.sock)
  -h, --help          print this help
  -V, --version       print the version

Exit status: 0 success or shutdown by signal, 1 job or Vault failure,
2 usage or configuration error, or an essential job's own status.
Control commands: 0 done, 1 not reachable or refused (not ready, for health),
2 usage error or unknown job (nothing done).";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Check(Options),
    Schema,
    Help,
    Version,
    /// A request to a running simplevisor.
    Control(ControlCall),
}

const CONTROL_COMMANDS: &[&str] = &[
    "status", "health", "restart", "stop", "start", "signal", "reload", "rotate",
];

/// Options shared by `run` and `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub no_vault: bool,
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = OsString>,
{
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut subcommand: Option<String> = None;
    let mut options = Options::default();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('c') | Long("config") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                options.config = Some(PathBuf::from(value));
            }
            Long("no-vault") => options.no_vault = true,
            Value(value) if subcommand.is_none() => {
                let value = value
                    .into_string()
                    .map_err(|v| format!("unknown command {}", v.to_string_lossy()))?;
                match value.as_str() {
                    "run" | "check" | "schema" => subcommand = Some(value),
                    control if CONTROL_COMMANDS.contains(&control) => {
                        if options != Options::default() {
                            return Err(format!("{control} takes no --config or --no-vault"));
                        }
                        return parse_control(control, &mut parser).map(Command::Control);
                    }
                    other => {
                        return Err(format!(
                            "unknown command '{other}' (expected run, check, schema, status, health, restart, stop, start, signal, reload or rotate)"
                        ));
                    }
                }
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    match subcommand.as_deref() {
        None | Some("run") => Ok(Command::Run(options)),
        Some("check") => Ok(Command::Check(options)),
        _ if options != Options::default() => Err("schema takes no options".to_string()),
        _ => Ok(Command::Schema),
    }
}

/// The arguments of a control command after its name.
fn parse_control(name: &str, parser: &mut lexopt::Parser) -> Result<ControlCall, String> {
    use lexopt::prelude::*;
    let mut socket = None;
    let mut json = false;
    let mut live = false;
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("socket") => {
                socket = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("json") if name == "status" => json = true,
            Long("live") if name == "health" => live = true,
            Value(value) => words.push(
                value
                    .into_string()
                    .map_err(|v| format!("not a job name: {}", v.to_string_lossy()))?,
            ),
            other => return Err(format!("{name}: {}", other.unexpected())),
        }
    }
    let request = match name {
        "status" | "health" | "reload" | "rotate" if !words.is_empty() => {
            return Err(format!("{name} takes no job names"));
        }
        "status" => Request::Status,
        "health" => Request::Health { live },
        "reload" => Request::Reload,
        "rotate" => Request::Rotate,
        "signal" => {
            if words.len() < 2 {
                return Err("usage: simplevisor signal SIG JOB...".into());
            }
            let signal = words.remove(0);
            if crate::signals::parse_name(&signal).is_none() {
                return Err(format!("unknown signal '{signal}'"));
            }
            Request::Signal {
                signal,
                jobs: words,
            }
        }
        other => {
            if words.is_empty() {
                return Err(format!("usage: simplevisor {other} JOB..."));
            }
            let command = JobCommand::parse(other).ok_or(format!("unknown command '{other}'"))?;
            Request::Jobs {
                command,
                jobs: words,
            }
        }
    };
    Ok(ControlCall {
        request,
        socket,
        json,
    })
}

/// The configuration file: `--config`, else `$SIMPLEVISOR_CONFIG`, else `simplevisor.json` in
/// the directory of the binary (`exe`).
pub fn config_path(flag: Option<&Path>, env: Option<OsString>, exe: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    if let Some(path) = env.filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = exe.and_then(Path::parent).unwrap_or(Path::new("."));
    dir.join("simplevisor.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Command, String> {
        parse(list.iter().map(OsString::from))
    }

    #[test]
    fn run_is_the_default_command() {
        assert_eq!(args(&[]), Ok(Command::Run(Options::default())));
        assert_eq!(
            args(&["--no-vault", "--config", "x.json"]),
            Ok(Command::Run(Options {
                config: Some("x.json".into()),
                no_vault: true
            }))
        );
        assert_eq!(
            args(&["run", "-c", "y.json"]),
            Ok(Command::Run(Options {
                config: Some("y.json".into()),
                no_vault: false
            }))
        );
    }

    #[test]
    fn check_schema_help_version() {
        assert_eq!(
            args(&["check", "--no-vault"]),
            Ok(Command::Check(Options {
                config: None,
                no_vault: true
            }))
        );
        assert_eq!(args(&["schema"]), Ok(Command::Schema));
        assert_eq!(args(&["--help"]), Ok(Command::Help));
        assert_eq!(args(&["check", "-h"]), Ok(Command::Help));
        assert_eq!(args(&["--version"]), Ok(Command::Version));
        assert_eq!(
            args(&["status", "--json", "--socket", "/s"]),
            Ok(Command::Control(ControlCall {
                request: Request::Status,
                socket: Some(PathBuf::from("/s")),
                json: true,
            }))
        );
        assert_eq!(
            args(&["signal", "HUP", "a", "b"]),
            Ok(Command::Control(ControlCall {
                request: Request::Signal {
                    signal: "HUP".into(),
                    jobs: vec!["a".into(), "b".into()]
                },
                socket: None,
                json: false,
            }))
        );
        for (word, request) in [("reload", Request::Reload), ("rotate", Request::Rotate)] {
            assert_eq!(
                args(&[word, "--socket", "/s"]),
                Ok(Command::Control(ControlCall {
                    request,
                    socket: Some(PathBuf::from("/s")),
                    json: false,
                }))
            );
        }
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(
            args(&["launch"])
                .unwrap_err()
                .contains("unknown command 'launch'")
        );
        assert!(
            args(&["start"])
                .unwrap_err()
                .contains("usage: simplevisor start JOB...")
        );
        assert!(
            args(&["status", "web"])
                .unwrap_err()
                .contains("takes no job names")
        );
        assert!(
            args(&["reload", "web"])
                .unwrap_err()
                .contains("takes no job names")
        );
        assert!(args(&["rotate", "--json"]).is_err());
        assert!(
            args(&["signal", "web"])
                .unwrap_err()
                .contains("usage: simplevisor signal")
        );
        assert!(
            args(&["signal", "NOPE", "web"])
                .unwrap_err()
                .contains("unknown signal")
        );
        assert!(args(&["--no-vault", "status"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["run", "check"]).is_err());
        assert!(args(&["--config"]).is_err());
        assert!(args(&["schema", "--no-vault"]).is_err());
    }

    #[test]
    fn config_path_precedence() {
        let exe = Path::new("/opt/sv/simplevisor");
        assert_eq!(
            config_path(None, None, Some(exe)),
            PathBuf::from("/opt/sv/simplevisor.json")
        );
        assert_eq!(
            config_path(None, Some("/env.json".into()), Some(exe)),
            PathBuf::from("/env.json")
        );
        assert_eq!(
            config_path(
                Some(Path::new("/flag.json")),
                Some("/env.json".into()),
                Some(exe)
            ),
            PathBuf::from("/flag.json")
        );
        assert_eq!(
            config_path(None, Some("".into()), Some(exe)),
            PathBuf::from("/opt/sv/simplevisor.json")
        );
    }
}
