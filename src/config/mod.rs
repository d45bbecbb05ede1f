//! The configuration: the keys of the file and its JSON Schema (`file`), its validation into
//! the typed [`Config`] every other module consumes (`validate`, `duplicates` for keys given
//! twice), duration strings (`duration`), the start order of `after` (`order`), and the one
//! spelling of every config enum ([`Named`]).
//!
//! Loading never stops at the first mistake: every problem is collected so that an operator
//! fixes a config in one round trip.

pub mod duplicates;
pub mod duration;
pub mod file;
pub mod order;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::identity::Identity;

pub use crate::quote::quoted;
pub use validate::load;

/// A validated configuration. Every value here has been checked; nothing downstream re-validates.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages).
    pub source: PathBuf,
    pub env: EnvSettings,
    pub init: Vec<JobSpec>,
    pub main: Vec<JobSpec>,
    pub backoff: BackoffSettings,
    pub vault: VaultSettings,
    /// Where the control socket listens; `None` when turned off (`""`).
    pub control_socket: Option<PathBuf>,
    /// How long the jobs keep running after the first shutdown signal.
    pub shutdown_delay: Duration,
    /// `files`: rendered and written before the first init job, removed on exit.
    pub files: Vec<FileSpec>,
    /// Where `/metrics`, `/readyz` and `/livez` are served over HTTP; `None` when not asked for.
    pub metrics_listen: Option<SocketAddr>,
}

/// One entry of `files` (docs/files.md).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Absolute, without `..`, naming a file (not a directory).
    pub path: PathBuf,
    /// A Go template over the resolved `vault-replace` variables.
    pub template: String,
    /// The permission bits the file gets, exactly: `0o000..=0o777`.
    pub mode: u32,
    /// `None`: simplevisor's own user and group.
    pub owner: Option<Identity>,
    /// The variable the jobs get, set to `path`.
    pub env: Option<String>,
}

/// The mode of a file without `mode`: readable by its owner only.
pub const DEFAULT_FILE_MODE: u32 = 0o400;

/// The `process` of simplevisor's own records, so no job may be called so.
pub const RESERVED_JOB_NAME: &str = "internal";

/// The control socket unless the config says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/simplevisor.sock";

impl Config {
    /// Every job, init jobs first, in file order.
    pub fn jobs(&self) -> impl Iterator<Item = &JobSpec> {
        self.init.iter().chain(self.main.iter())
    }

    /// The names of the main jobs `job` lists in `after`.
    pub fn after_names(&self, job: &JobSpec) -> Vec<String> {
        job.after
            .iter()
            .filter_map(|&first| self.main.get(first).map(|j| j.name.clone()))
            .collect()
    }
}

/// The `env` section (docs/environment.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSettings {
    pub pass: Vec<String>,
    pub pass_all: bool,
    pub vault_token: bool,
    pub vault_replace: Vec<String>,
    pub vault_template: Vec<String>,
    /// The `env` of each entry of `files` with its path: set for the jobs after `pass`.
    pub files: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Init,
    Main,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// A config enum spelled one way everywhere (validation, `check`, the schema, messages): its
/// values and their names in the file.
pub trait Named: Sized + Copy + 'static {
    const ALL: &'static [Self];

    fn as_str(self) -> &'static str;

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == text)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

impl Named for RestartPolicy {
    const ALL: &'static [Self] = &[
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

impl Named for LogFormat {
    const ALL: &'static [Self] = &[LogFormat::Text, LogFormat::Json];

    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Named for ExpiryPolicy {
    const ALL: &'static [Self] = &[ExpiryPolicy::Exit, ExpiryPolicy::Restart];

    fn as_str(self) -> &'static str {
        match self {
            ExpiryPolicy::Exit => "exit",
            ExpiryPolicy::Restart => "restart",
        }
    }
}

/// One job of `jobs.init` or `jobs.main`, with every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Unique across all jobs; the `process` field of its log records.
    pub name: String,
    pub kind: JobKind,
    /// Non-empty argv.
    pub cmd: Vec<String>,
    /// The identity to drop to, resolved against `/etc/passwd` and `/etc/group` at load time.
    pub run_as: Option<Identity>,
    pub kill_signal: Signal,
    pub stop_timeout: Duration,
    /// The entry has no `stop-timeout` of its own: it follows the top-level one.
    pub inherits_stop_timeout: bool,
    pub workdir: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Always `Never` for init jobs (they are not restarted).
    pub restart: RestartPolicy,
    /// Always false for init jobs.
    pub essential: bool,
    /// Main jobs only: the check that makes the job `running` (until then it is `starting`).
    pub ready: Option<ReadyCheck>,
    /// Main jobs only: indices (into `Config::main`) of the jobs that must be running first.
    pub after: Vec<usize>,
    /// Main jobs only: quick restarts in a row before the job counts as failed.
    pub max_restarts: Option<u32>,
    /// Main jobs only: what the job gets when the secrets are rotated, instead of a restart.
    pub reload_signal: Option<Signal>,
}

/// A readiness check of a main job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
}

/// What a readiness check tries; addresses are parsed once, at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to the address succeeds.
    Tcp(SocketAddr),
    /// `GET` of an `http://` URL answers 2xx.
    Http {
        url: String,
        addr: SocketAddr,
        /// The path (and query) to request.
        path: String,
    },
    /// The command exits 0 (run with the job's identity and environment).
    Exec(Vec<String>),
}

impl Probe {
    /// How the check is named in records and `status`: `tcp 127.0.0.1:8080`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Tcp(addr) => format!("tcp {addr}"),
            Probe::Http { url, .. } => format!("http {url}"),
            Probe::Exec(cmd) => format!("exec {}", cmd.join(" ")),
        }
    }
}

/// `restart-backoff`: the n-th consecutive quick exit waits `min(initial * multiplier^(n-1), max)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffSettings {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub reset_after: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryPolicy {
    Exit,
    Restart,
}

/// The `vault` section (docs/vault.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub kv_mount: String,
    pub db_mount: String,
    pub aws_mount: String,
    pub pki_mount: String,
    pub approle_mount: String,
    pub on_lease_expiry: ExpiryPolicy,
    pub revoke_on_exit: bool,
    pub startup_timeout: Duration,
    /// The longest one request may take (a Vault that accepts but never answers).
    pub request_timeout: Duration,
    /// `vault.auth`; `None`: `VAULT_TOKEN`, else AppRole from the environment.
    pub auth: Option<AuthSettings>,
}

/// `vault.auth`: the login method and where its credentials are (docs/vault.md). Files are
/// only named here: they are read at every login, since projected tokens rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    /// The token in `token_file`, else in `VAULT_TOKEN`.
    Token { token_file: Option<PathBuf> },
    /// Role id from `VAULT_ROLE_ID`; secret id from `secret_id_file`, else `VAULT_SECRET_ID`.
    AppRole {
        mount: String,
        secret_id_file: Option<PathBuf>,
    },
    /// The service-account token in `jwt_file`, posted with `role`.
    Kubernetes {
        role: String,
        mount: String,
        jwt_file: PathBuf,
    },
    /// The JWT in `jwt_file`, posted with `role`.
    Jwt {
        role: String,
        mount: String,
        jwt_file: PathBuf,
    },
    /// The TLS client certificate (`VAULT_CLIENT_CERT`); `name` picks Vault's certificate role.
    Cert { name: Option<String>, mount: String },
}

impl AuthSettings {
    /// The value of `method`.
    pub fn method(&self) -> &'static str {
        match self {
            AuthSettings::Token { .. } => "token",
            AuthSettings::AppRole { .. } => "approle",
            AuthSettings::Kubernetes { .. } => "kubernetes",
            AuthSettings::Jwt { .. } => "jwt",
            AuthSettings::Cert { .. } => "cert",
        }
    }
}

impl Default for VaultSettings {
    fn default() -> Self {
        VaultSettings {
            kv_mount: "kv".into(),
            db_mount: "database".into(),
            aws_mount: "aws".into(),
            pki_mount: "pki".into(),
            approle_mount: "approle".into(),
            on_lease_expiry: ExpiryPolicy::Exit,
            revoke_on_exit: true,
            startup_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            auth: None,
        }
    }
}

/// One semantic problem, located by the JSON path of the offending key
/// (`jobs.main[1].kill-signal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An absurd config can hold thousands of mistakes; the first hundred are enough to act on.
const MAX_PROBLEMS_SHOWN: usize = 100;

/// Why a configuration could not be loaded. Every variant is an exit with status 2.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`](validate::MAX_FILE_SIZE).
    TooLarge { file: PathBuf },
    /// The file is not valid JSON (1-based line and column).
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON is well-formed but wrong; every problem found.
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, error } => {
                write!(f, "cannot read config file {}: {error}", file.display())
            }
            ConfigError::TooLarge { file } => write!(
                f,
                "{}: the config file is larger than 1 MiB; a configuration is a few KiB (is this the right file?)",
                file.display()
            ),
            ConfigError::Syntax {
                file,
                line,
                column,
                message,
            } => write!(
                f,
                "{}:{line}:{column}: invalid JSON: {message}",
                file.display()
            ),
            ConfigError::Invalid { file, problems } => {
                write!(
                    f,
                    "{}: {} problem(s) found:",
                    file.display(),
                    problems.len()
                )?;
                for p in problems.iter().take(MAX_PROBLEMS_SHOWN) {
                    write!(f, "\n  {p}")?;
                }
                if problems.len() > MAX_PROBLEMS_SHOWN {
                    write!(
                        f,
                        "\n  ... and {} more (fix these first)",
                        problems.len() - MAX_PROBLEMS_SHOWN
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::SecretKind;

    fn round_trips<T: Named + PartialEq + std::fmt::Debug>() {
        for &value in T::ALL {
            assert_eq!(T::parse(value.as_str()), Some(value));
        }
        assert_eq!(T::parse("bogus"), None);
    }

    #[test]
    fn every_enum_name_round_trips() {
        round_trips::<RestartPolicy>();
        round_trips::<LogFormat>();
        round_trips::<ExpiryPolicy>();
        round_trips::<SecretKind>();
        assert_eq!(RestartPolicy::names(), ["always", "on-failure", "never"]);
    }
}
