//! From the file's text to a [`Config`], collecting every problem with its JSON path.
//!
//! The file is parsed into a `serde_json::Value` first (syntax errors carry line and column),
//! then walked by hand: unlike `deny_unknown_fields`, which stops at the first surprise, the
//! walk reports every unknown key, wrong type and bad value in one go.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::file::{
    AUTH_KEYS, AUTH_METHODS, BACKOFF_KEYS, ENV_KEYS, FILE_KEYS, JOB_KEYS, JOBS_KEYS,
    KUBERNETES_JWT_FILE, MAIN_ONLY_KEYS, READY_KEYS, TOP_KEYS, VAULT_KEYS, auth_keys,
};
use super::{
    AuthSettings, BackoffSettings, Config, ConfigError, DEFAULT_FILE_MODE, EnvSettings, FileSpec,
    JobKind, JobSpec, LogFormat, Named, Probe, Problem, ReadyCheck, RestartPolicy, VaultSettings,
    duration, order, quoted,
};
use crate::identity::UserDb;
use crate::signals;

/// The largest configuration file read; larger ones are refused without reading further
/// (`--config /dev/zero` must fail at once, not fill memory).
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// Longest job name: it is the `process` field of every record of the job.
const MAX_NAME: usize = 128;

/// Reads, parses and validates the configuration file at `file`.
pub fn load(file: &Path, users: &UserDb) -> Result<Config, ConfigError> {
    let read_error = |error| ConfigError::Read {
        file: file.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfigError::TooLarge {
            file: file.to_path_buf(),
        });
    }
    parse_bytes(&bytes, file, users)
}

/// Validates the bytes of a configuration file (`file` is only used in messages).
pub fn parse_bytes(bytes: &[u8], file: &Path, users: &UserDb) -> Result<Config, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, file, users),
        Err(error) => {
            let (line, column) = position_of(bytes, error.valid_up_to());
            Err(ConfigError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: "invalid UTF-8 (save the file as UTF-8)".into(),
            })
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` of valid UTF-8 `bytes[..offset]`.
fn position_of(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    (line, column)
}

/// Validates the text of a configuration file (`file` is only used in messages).
pub fn parse(text: &str, file: &Path, users: &UserDb) -> Result<Config, ConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|error| ConfigError::Syntax {
        file: file.to_path_buf(),
        // serde_json reports column 0 at the start of a line (and for an empty file).
        line: error.line().max(1),
        column: error.column().max(1),
        message: syntax_message(&error),
    })?;
    let mut v = Validator {
        problems: Vec::new(),
        users,
    };
    for path in super::duplicates::find(text) {
        v.problem(
            &path,
            "is given twice in the same object; only one may stay (JSON parsers would silently keep the last)",
        );
    }
    let config = v.config(&root, file);
    if v.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            file: file.to_path_buf(),
            problems: v.problems,
        })
    }
}

/// serde_json's message without its own " at line L column C" suffix (we print our own).
fn syntax_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let trimmed = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let hint = match trimmed {
        t if t.starts_with("expected `,` or `}`") || t.starts_with("expected `,` or `]`") => {
            " (is a comma missing at the end of the previous line?)"
        }
        t if t.starts_with("trailing comma") => " (remove the comma before it)",
        t if t.starts_with("key must be a string") => " (keys need double quotes)",
        _ => "",
    };
    format!("{trimmed}{hint}")
}

struct Validator<'a> {
    problems: Vec<Problem>,
    users: &'a UserDb,
}

impl Validator<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    /// The object at `path`, with unknown keys reported; `None` (and a problem) if it is not
    /// an object.
    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = value.as_object() else {
            self.problem(path, format!("must be an object, not {}", kind_of(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = match closest(key, known) {
                    Some(near) => format!("did you mean \"{near}\"? "),
                    None => String::new(),
                };
                self.problem(
                    &join(path, key),
                    format!(
                        "unknown key {}; {hint}valid keys here: {}",
                        quoted(key),
                        known.join(", ")
                    ),
                );
            }
        }
        Some(map)
    }

    fn string(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        match map.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    &join(path, key),
                    format!("must be a string, not {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn bool(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match map.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(
                    &join(path, key),
                    format!("must be true or false, not {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn strings(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Vec<String> {
        let Some(value) = map.get(key) else {
            return Vec::new();
        };
        let path = join(path, key);
        let Some(items) = value.as_array() else {
            self.problem(
                &path,
                format!("must be an array of strings, not {}", kind_of(value)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s.to_string()),
                None => self.problem(
                    &format!("{path}[{i}]"),
                    format!("must be a string, not {}", kind_of(item)),
                ),
            }
        }
        out
    }

    fn duration(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(text) = self.string(map, path, key) else {
            return default;
        };
        match duration::parse(&text) {
            Ok(d) => d,
            Err(message) => {
                self.problem(&join(path, key), message);
                default
            }
        }
    }

    fn choice<T: Named>(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        default: T,
    ) -> T {
        let Some(text) = self.string(map, path, key) else {
            return default;
        };
        match T::parse(&text) {
            Some(value) => value,
            None => {
                let names: Vec<String> = T::names().iter().map(|n| format!("\"{n}\"")).collect();
                self.problem(
                    &join(path, key),
                    format!("{} is not one of {}", quoted(&text), names.join(", ")),
                );
                default
            }
        }
    }

    fn config(&mut self, root: &Value, file: &Path) -> Config {
        let empty = Map::new();
        let map = self.object(root, "(top level)", TOP_KEYS).unwrap_or(&empty);
        let stop_timeout = self.duration(map, "", "stop-timeout", Duration::from_secs(5));
        let env = match map.get("env") {
            Some(value) => self.env(value),
            None => EnvSettings::default(),
        };
        let backoff = match map.get("restart-backoff") {
            Some(value) => self.backoff(value),
            None => BackoffSettings::default(),
        };
        let vault = match map.get("vault") {
            Some(value) => self.vault(value),
            None => VaultSettings::default(),
        };
        let (init, main) = match map.get("jobs") {
            Some(jobs) => self.jobs(jobs, stop_timeout),
            None => {
                if root.is_object() {
                    self.problem(
                        "jobs",
                        "is required: add \"jobs\": {\"main\": [{\"cmd\": [...]}]}",
                    );
                }
                (Vec::new(), Vec::new())
            }
        };
        self.unique_names(&init, &main);
        let shutdown_delay = self.duration(map, "", "shutdown-delay", Duration::ZERO);
        let control_socket = self.control_socket(map);
        let files = match map.get("files") {
            Some(value) => self.files(value, &env),
            None => Vec::new(),
        };
        let mut env = env;
        env.files = files
            .iter()
            .filter_map(|file| {
                let name = file.env.clone()?;
                Some((name, file.path.to_string_lossy().into_owned()))
            })
            .collect();
        let metrics_listen = self.metrics_listen(map);
        Config {
            source: PathBuf::from(file),
            env,
            init,
            main,
            backoff,
            vault,
            control_socket,
            shutdown_delay,
            files,
            metrics_listen,
        }
    }

    /// `metrics-listen`: an `IP:PORT` (no host name: binding never waits for a name lookup).
    fn metrics_listen(&mut self, map: &Map<String, Value>) -> Option<std::net::SocketAddr> {
        let text = self.string(map, "", "metrics-listen")?;
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    "metrics-listen",
                    format!(
                        "{} is not an address like 0.0.0.0:9100, 127.0.0.1:9100 or [::]:9100 (an IP address and a port; host names are not resolved; leave the key out to turn metrics off)",
                        quoted(&text)
                    ),
                );
                None
            }
        }
    }

    /// `files`: every entry checked, and paths and `env` names unique across entries.
    fn files(&mut self, value: &Value, env: &EnvSettings) -> Vec<FileSpec> {
        let Some(items) = value.as_array() else {
            self.problem(
                "files",
                format!("must be an array of files, not {}", kind_of(value)),
            );
            return Vec::new();
        };
        let mut files: Vec<FileSpec> = Vec::new();
        let mut paths: BTreeMap<PathBuf, usize> = BTreeMap::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("files[{i}]");
            // Checked on the raw values, so that a duplicate is reported even next to another
            // mistake in the same entry.
            let text = |key: &str| item.get(key).and_then(Value::as_str);
            if let Some(file_path) = text("path") {
                match paths.get(Path::new(file_path)) {
                    Some(first) => self.problem(
                        &join(&path, "path"),
                        format!(
                            "{} is also the path of files[{first}]; each file is written once",
                            quoted(file_path)
                        ),
                    ),
                    None => {
                        paths.insert(PathBuf::from(file_path), i);
                    }
                }
            }
            if let Some(name) = text("env") {
                match names.get(name) {
                    Some(first) => self.problem(
                        &join(&path, "env"),
                        format!(
                            "{} is also the env of files[{first}]; a variable holds one path",
                            quoted(name)
                        ),
                    ),
                    None => {
                        names.insert(name.to_string(), i);
                    }
                }
            }
            let Some(file) = self.file(item, &path, env) else {
                continue;
            };
            files.push(file);
        }
        files
    }

    /// One entry of `files`. The template is rendered once with a placeholder for every
    /// `vault-replace` variable, so that a parse error or a name that can never be resolved is
    /// found now (which of them are set is known only with the environment).
    fn file(&mut self, value: &Value, path: &str, env: &EnvSettings) -> Option<FileSpec> {
        let map = self.object(value, path, FILE_KEYS)?;
        for key in ["path", "template"] {
            if !map.contains_key(key) {
                self.problem(&join(path, key), "is required");
            }
        }
        let file_path =
            self.string(map, path, "path")
                .and_then(|text| match file_path_problem(&text) {
                    Some(message) => {
                        self.problem(&join(path, "path"), message);
                        None
                    }
                    None => Some(PathBuf::from(text)),
                });
        let template = self.string(map, path, "template").and_then(|source| {
            let placeholders: BTreeMap<String, String> = env
                .vault_replace
                .iter()
                .map(|name| (name.clone(), format!("<{name}>")))
                .collect();
            match crate::template::render(&source, &placeholders) {
                Ok(_) => Some(source),
                Err(message) => {
                    self.problem(
                        &join(path, "template"),
                        format!(
                            "the template does not render: {message} (templates may refer only to vault-replace variables: {})",
                            if env.vault_replace.is_empty() {
                                "there are none".to_string()
                            } else {
                                env.vault_replace.join(", ")
                            }
                        ),
                    );
                    None
                }
            }
        });
        let mode = match self.string(map, path, "mode") {
            None => Some(DEFAULT_FILE_MODE),
            Some(text) => {
                let mode = parse_mode(&text);
                if mode.is_none() {
                    self.problem(
                        &join(path, "mode"),
                        format!(
                            "{} is not a mode of four octal digits from \"0000\" to \"0777\" (setuid, setgid and sticky bits are refused), e.g. \"0440\"",
                            quoted(&text)
                        ),
                    );
                }
                mode
            }
        };
        let owner = match self.string(map, path, "owner") {
            None => Some(None),
            Some(text) if text.contains('\0') => {
                self.problem(&join(path, "owner"), "must not contain a NUL byte");
                None
            }
            Some(text) => match self.users.resolve(&text) {
                Ok(identity) => Some(Some(identity)),
                Err(message) => {
                    self.problem(&join(path, "owner"), message);
                    None
                }
            },
        };
        let env_name = match self.string(map, path, "env") {
            Some(name) if !is_variable_name(&name) => {
                self.problem(
                    &join(path, "env"),
                    format!(
                        "{} is not a variable name: letters, digits and _, not starting with a digit",
                        quoted(&name)
                    ),
                );
                None
            }
            other => Some(other),
        };
        Some(FileSpec {
            path: file_path?,
            template: template?,
            mode: mode?,
            owner: owner?,
            env: env_name?,
        })
    }

    /// `control-socket`: a path (default [`DEFAULT_CONTROL_SOCKET`]), `""` for none.
    fn control_socket(&mut self, map: &Map<String, Value>) -> Option<PathBuf> {
        let Some(path) = self.string(map, "", "control-socket") else {
            return Some(PathBuf::from(super::DEFAULT_CONTROL_SOCKET));
        };
        if path.is_empty() {
            return None;
        }
        // sun_path holds 108 bytes, the last a NUL.
        if path.len() > 107 {
            self.problem(
                "control-socket",
                format!(
                    "{} is longer than 107 bytes, the most a Unix socket path may have",
                    quoted(&path)
                ),
            );
            return None;
        }
        if path.contains('\0') {
            self.problem("control-socket", "must not contain a NUL byte");
            return None;
        }
        Some(PathBuf::from(path))
    }

    fn env(&mut self, value: &Value) -> EnvSettings {
        let Some(map) = self.object(value, "env", ENV_KEYS) else {
            return EnvSettings::default();
        };
        let settings = EnvSettings {
            pass: self.strings(map, "env", "pass"),
            pass_all: self.bool(map, "env", "pass-all").unwrap_or(false),
            vault_token: self.bool(map, "env", "vault-token").unwrap_or(false),
            vault_replace: self.strings(map, "env", "vault-replace"),
            vault_template: self.strings(map, "env", "vault-template"),
            files: Vec::new(),
        };
        for (i, name) in settings.vault_template.iter().enumerate() {
            if settings.vault_replace.contains(name) {
                self.problem(
                    &format!("env.vault-template[{i}]"),
                    format!(
                        "{name} is listed in both vault-replace and vault-template; a variable is either a secret reference or a template"
                    ),
                );
            }
        }
        for (key, list) in [
            ("pass", &settings.pass),
            ("vault-replace", &settings.vault_replace),
            ("vault-template", &settings.vault_template),
        ] {
            for (i, name) in list.iter().enumerate() {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    self.problem(
                        &format!("env.{key}[{i}]"),
                        format!("{} is not a valid variable name", quoted(name)),
                    );
                }
            }
        }
        settings
    }

    fn backoff(&mut self, value: &Value) -> BackoffSettings {
        let defaults = BackoffSettings::default();
        let path = "restart-backoff";
        let Some(map) = self.object(value, path, BACKOFF_KEYS) else {
            return defaults;
        };
        let initial = self.duration(map, path, "initial", defaults.initial);
        let max = self.duration(map, path, "max", defaults.max);
        let reset_after = self.duration(map, path, "reset-after", defaults.reset_after);
        let multiplier = match map.get("multiplier") {
            None => defaults.multiplier,
            Some(value) => match value.as_f64() {
                Some(m) if (1.0..=1000.0).contains(&m) => m,
                _ => {
                    self.problem(
                        "restart-backoff.multiplier",
                        format!("must be a number from 1 to 1000, not {value}"),
                    );
                    defaults.multiplier
                }
            },
        };
        if initial.is_zero() {
            self.problem(
                "restart-backoff.initial",
                "must be more than zero (a job that fails at once would be restarted in a busy loop)",
            );
        }
        if initial > max {
            self.problem(
                "restart-backoff.max",
                "must not be less than restart-backoff.initial",
            );
        }
        BackoffSettings {
            initial,
            max,
            multiplier,
            reset_after,
        }
    }

    fn vault(&mut self, value: &Value) -> VaultSettings {
        let defaults = VaultSettings::default();
        let path = "vault";
        let Some(map) = self.object(value, path, VAULT_KEYS) else {
            return defaults;
        };
        let mount = |v: &mut Self, key: &str, default: &str| match v.string(map, path, key) {
            Some(m) if m.trim_matches('/').is_empty() => {
                v.problem(&join(path, key), "must not be empty");
                default.to_string()
            }
            Some(m) => m.trim_matches('/').to_string(),
            None => default.to_string(),
        };
        let kv_mount = mount(self, "kv-mount", &defaults.kv_mount);
        let db_mount = mount(self, "db-mount", &defaults.db_mount);
        let aws_mount = mount(self, "aws-mount", &defaults.aws_mount);
        let pki_mount = mount(self, "pki-mount", &defaults.pki_mount);
        let approle_mount = mount(self, "approle-mount", &defaults.approle_mount);
        let request_timeout = self.duration(map, path, "request-timeout", defaults.request_timeout);
        let auth = map
            .get("auth")
            .and_then(|auth| self.auth(auth, &approle_mount));
        if request_timeout < Duration::from_millis(100) {
            self.problem(
                "vault.request-timeout",
                "must be at least 100ms (no answer from Vault arrives sooner)",
            );
        }
        VaultSettings {
            kv_mount,
            db_mount,
            aws_mount,
            pki_mount,
            approle_mount,
            on_lease_expiry: self.choice(map, path, "on-lease-expiry", defaults.on_lease_expiry),
            revoke_on_exit: self
                .bool(map, path, "revoke-on-exit")
                .unwrap_or(defaults.revoke_on_exit),
            startup_timeout: self.duration(map, path, "startup-timeout", defaults.startup_timeout),
            request_timeout,
            auth,
        }
    }

    /// `vault.auth`: the method, its required keys, and no key of another method.
    fn auth(&mut self, value: &Value, approle_mount: &str) -> Option<AuthSettings> {
        let path = "vault.auth";
        let map = self.object(value, path, AUTH_KEYS)?;
        let Some(method) = self.string(map, path, "method") else {
            if !map.contains_key("method") {
                self.problem(
                    "vault.auth.method",
                    format!("is required: one of {}", AUTH_METHODS.join(", ")),
                );
            }
            return None;
        };
        if !AUTH_METHODS.contains(&method.as_str()) {
            self.problem(
                "vault.auth.method",
                format!(
                    "{} is not a login method; methods: {}",
                    quoted(&method),
                    AUTH_METHODS.join(", ")
                ),
            );
            return None;
        }
        let allowed = auth_keys(&method);
        for key in map.keys() {
            if AUTH_KEYS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
                self.problem(
                    &join(path, key),
                    format!(
                        "is not a key of method {method}; its keys: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        let mount = |v: &mut Self, default: &str| match v.string(map, path, "mount") {
            Some(m) if m.trim_matches('/').is_empty() => {
                v.problem("vault.auth.mount", "must not be empty");
                default.to_string()
            }
            Some(m) => m.trim_matches('/').to_string(),
            None => default.to_string(),
        };
        let auth = match method.as_str() {
            "token" => AuthSettings::Token {
                token_file: self.auth_file(map, "token-file"),
            },
            "approle" => AuthSettings::AppRole {
                mount: mount(self, approle_mount),
                secret_id_file: self.auth_file(map, "secret-id-file"),
            },
            "kubernetes" => {
                let role = self.auth_text(map, "role", true);
                let mount = mount(self, "kubernetes");
                let jwt_file = self.auth_file(map, "jwt-file");
                AuthSettings::Kubernetes {
                    role: role?,
                    mount,
                    jwt_file: jwt_file.unwrap_or_else(|| PathBuf::from(KUBERNETES_JWT_FILE)),
                }
            }
            "jwt" => {
                let role = self.auth_text(map, "role", true);
                let mount = mount(self, "jwt");
                let jwt_file = self.auth_file(map, "jwt-file");
                if jwt_file.is_none() && !map.contains_key("jwt-file") {
                    self.problem(
                        "vault.auth.jwt-file",
                        "is required with method jwt: the file holding the JWT",
                    );
                }
                AuthSettings::Jwt {
                    role: role?,
                    mount,
                    jwt_file: jwt_file?,
                }
            }
            _ => AuthSettings::Cert {
                name: self.auth_text(map, "name", false),
                mount: mount(self, "cert"),
            },
        };
        Some(auth)
    }

    /// A non-empty string of `vault.auth`; a problem if `required` and absent.
    fn auth_text(&mut self, map: &Map<String, Value>, key: &str, required: bool) -> Option<String> {
        let path = format!("vault.auth.{key}");
        match self.string(map, "vault.auth", key) {
            Some(text) if text.is_empty() || text.contains('\0') => {
                self.problem(&path, "must be a non-empty string without NUL bytes");
                None
            }
            Some(text) => Some(text),
            None => {
                if required && !map.contains_key(key) {
                    let method = map.get("method").and_then(Value::as_str).unwrap_or("");
                    self.problem(&path, format!("is required with method {method}"));
                }
                None
            }
        }
    }

    /// A file named in `vault.auth` (only named here: it is read at every login).
    fn auth_file(&mut self, map: &Map<String, Value>, key: &str) -> Option<PathBuf> {
        self.auth_text(map, key, false).map(PathBuf::from)
    }

    fn jobs(&mut self, value: &Value, stop_timeout: Duration) -> (Vec<JobSpec>, Vec<JobSpec>) {
        let Some(map) = self.object(value, "jobs", JOBS_KEYS) else {
            return (Vec::new(), Vec::new());
        };
        let mut lists = [Vec::new(), Vec::new()];
        for (slot, (key, kind)) in [("init", JobKind::Init), ("main", JobKind::Main)]
            .into_iter()
            .enumerate()
        {
            let Some(list) = map.get(key) else { continue };
            let path = format!("jobs.{key}");
            let Some(items) = list.as_array() else {
                self.problem(
                    &path,
                    format!("must be an array of jobs, not {}", kind_of(list)),
                );
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(job) = self.job(item, &format!("{path}[{i}]"), kind, stop_timeout) {
                    lists[slot].push((i, job));
                }
            }
        }
        let [init, main] = lists;
        let init: Vec<JobSpec> = init.into_iter().map(|(_, (job, _))| job).collect();
        let mut main: Vec<(usize, (JobSpec, Vec<String>))> = main;
        self.resolve_after(&init, &mut main);
        (init, main.into_iter().map(|(_, (job, _))| job).collect())
    }

    /// Turns the `after` names of every main job into indices: unknown names, init jobs and
    /// cycles are problems at `jobs.main[i].after`.
    fn resolve_after(&mut self, init: &[JobSpec], main: &mut [(usize, (JobSpec, Vec<String>))]) {
        let names: Vec<String> = main.iter().map(|(_, (job, _))| job.name.clone()).collect();
        for (file_index, (job, after)) in main.iter_mut() {
            for (k, name) in after.iter().enumerate() {
                let path = format!("jobs.main[{file_index}].after[{k}]");
                match names.iter().position(|n| n == name) {
                    Some(first) => {
                        if !job.after.contains(&first) {
                            job.after.push(first);
                        }
                    }
                    None if init.iter().any(|j| &j.name == name) => self.problem(
                        &path,
                        format!(
                            "{} is an init job; init jobs all finish before any main job starts, so list only main jobs here",
                            quoted(name)
                        ),
                    ),
                    None => self.problem(
                        &path,
                        format!(
                            "no main job is named {}; main jobs: {}",
                            quoted(name),
                            names.join(", ")
                        ),
                    ),
                }
            }
        }
        let edges: Vec<Vec<usize>> = main.iter().map(|(_, (job, _))| job.after.clone()).collect();
        if let Some(cycle) = order::find_cycle(&edges) {
            let file_index = main[cycle[0]].0;
            let names: Vec<&str> = cycle.iter().map(|&j| main[j].1.0.name.as_str()).collect();
            self.problem(
                &format!("jobs.main[{file_index}].after"),
                format!(
                    "the start order has a cycle: {}; no job of it could ever start",
                    names.join(" waits for ")
                ),
            );
            for (_, (job, _)) in main.iter_mut() {
                job.after.clear();
            }
        }
    }

    /// A `ready` object: exactly one of `tcp`, `http`, `exec`, with `interval` and `timeout`.
    fn ready(&mut self, value: &Value, path: &str) -> Option<ReadyCheck> {
        let map = self.object(value, path, READY_KEYS)?;
        let given: Vec<&str> = ["tcp", "http", "exec"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        if given.len() != 1 {
            self.problem(path, "needs exactly one of \"tcp\", \"http\" or \"exec\"");
            return None;
        }
        let probe = match given[0] {
            "tcp" => {
                let addr = self.string(map, path, "tcp")?;
                match addr.parse::<std::net::SocketAddr>() {
                    Ok(addr) => Probe::Tcp(addr),
                    Err(_) => {
                        self.problem(
                            &join(path, "tcp"),
                            format!(
                                "{} is not an address like 127.0.0.1:8080 or [::1]:8080 (host names are not resolved)",
                                quoted(&addr)
                            ),
                        );
                        return None;
                    }
                }
            }
            "http" => {
                let url = self.string(map, path, "http")?;
                let Some((addr, target)) = http_target(&url) else {
                    self.problem(
                        &join(path, "http"),
                        format!(
                            "{} is not a URL like http://127.0.0.1:8080/healthz (http only, an IP address, not a host name)",
                            quoted(&url)
                        ),
                    );
                    return None;
                };
                let target = target.to_string();
                Probe::Http {
                    url,
                    addr,
                    path: target,
                }
            }
            _ => {
                let cmd = self.strings(map, path, "exec");
                if cmd.is_empty() || cmd[0].is_empty() {
                    self.problem(&join(path, "exec"), "must name a program to run");
                    return None;
                }
                if cmd.iter().any(|a| a.contains('\0')) {
                    self.problem(&join(path, "exec"), "must not contain a NUL byte");
                    return None;
                }
                Probe::Exec(cmd)
            }
        };
        let interval = self.duration(map, path, "interval", Duration::from_secs(1));
        let timeout = self.duration(map, path, "timeout", Duration::from_secs(1));
        for (key, value) in [("interval", interval), ("timeout", timeout)] {
            if value < Duration::from_millis(10) {
                self.problem(&join(path, key), "must be at least 10ms");
            }
        }
        Some(ReadyCheck {
            probe,
            interval,
            timeout,
        })
    }

    fn job(
        &mut self,
        value: &Value,
        path: &str,
        kind: JobKind,
        stop_timeout: Duration,
    ) -> Option<(JobSpec, Vec<String>)> {
        let map = self.object(value, path, JOB_KEYS)?;
        let cmd = match map.get("cmd") {
            None => {
                self.problem(
                    path,
                    "has no \"cmd\": add the command as an array of strings",
                );
                Vec::new()
            }
            Some(_) => {
                let cmd = self.strings(map, path, "cmd");
                if map.get("cmd").is_some_and(Value::is_array) && cmd.is_empty() {
                    self.problem(
                        &join(path, "cmd"),
                        "must not be empty: give at least the program",
                    );
                } else if cmd.first().is_some_and(String::is_empty) {
                    self.problem(&format!("{path}.cmd[0]"), "the program must not be empty");
                }
                for (i, arg) in cmd.iter().enumerate() {
                    if arg.contains('\0') {
                        self.problem(
                            &format!("{path}.cmd[{i}]"),
                            "must not contain a NUL byte (a program cannot receive one)",
                        );
                    }
                }
                cmd
            }
        };
        let name = self.string(map, path, "name").unwrap_or_else(|| {
            let program = cmd.first().map(String::as_str).unwrap_or("");
            program.rsplit('/').next().unwrap_or(program).to_string()
        });
        // A name taken from cmd[0] must meet the same rules; the problem then says where it
        // came from and how to give one.
        let (name_path, derived) = if map.contains_key("name") {
            (join(path, "name"), "")
        } else {
            (
                format!("{path}.cmd[0]"),
                " (the job's name is taken from the program's file name; set \"name\")",
            )
        };
        let name_problem = if name.is_empty() {
            // Only when cmd[0] itself is not already reported (missing or empty).
            (map.contains_key("name") || cmd.first().is_some_and(|p| !p.is_empty()))
                .then(|| format!("gives an empty job name{derived}"))
        } else if name.len() > MAX_NAME {
            Some(format!(
                "{} is longer than {MAX_NAME} bytes; choose a short name{derived}",
                quoted(&name)
            ))
        } else if name.chars().any(char::is_control) {
            Some(format!(
                "{} holds a control character; use printable characters only{derived}",
                quoted(&name)
            ))
        } else {
            None
        };
        if let Some(message) = name_problem {
            let message = if map.contains_key("name") && name.is_empty() {
                "must not be empty".to_string()
            } else {
                message
            };
            self.problem(&name_path, message);
        }
        let kill_signal = match self.string(map, path, "kill-signal") {
            None => nix::sys::signal::Signal::SIGTERM,
            Some(text) => match signals::parse_name(&text) {
                Some(nix::sys::signal::Signal::SIGSTOP) => {
                    self.problem(
                        &join(path, "kill-signal"),
                        "STOP cannot stop a job, it only pauses it; use TERM, INT, QUIT or KILL",
                    );
                    nix::sys::signal::Signal::SIGTERM
                }
                Some(signal) => signal,
                None => {
                    self.problem(
                        &join(path, "kill-signal"),
                        format!(
                            "unknown signal {}; valid names: {}",
                            quoted(&text),
                            signals::valid_names().join(", ")
                        ),
                    );
                    nix::sys::signal::Signal::SIGTERM
                }
            },
        };
        let mut reload_signal = match self.string(map, path, "reload-signal") {
            None => None,
            Some(text) => match signals::parse_name(&text) {
                Some(
                    signal
                    @ (nix::sys::signal::Signal::SIGSTOP | nix::sys::signal::Signal::SIGKILL),
                ) => {
                    self.problem(
                        &join(path, "reload-signal"),
                        format!(
                            "{} would {} the job rather than tell it to reload; use a signal the job handles, e.g. HUP or USR1",
                            signals::name_of(signal as i32),
                            if signal == nix::sys::signal::Signal::SIGSTOP { "pause" } else { "kill" }
                        ),
                    );
                    None
                }
                Some(signal) => Some(signal),
                None => {
                    self.problem(
                        &join(path, "reload-signal"),
                        format!(
                            "unknown signal {}; valid names: {}",
                            quoted(&text),
                            signals::valid_names().join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let run_as = match self.string(map, path, "run-as") {
            None => None,
            Some(text) if text.contains('\0') => {
                self.problem(&join(path, "run-as"), "must not contain a NUL byte");
                None
            }
            Some(text) => match self.users.resolve(&text) {
                Ok(identity) => Some(identity),
                Err(message) => {
                    self.problem(&join(path, "run-as"), message);
                    None
                }
            },
        };
        let workdir = match self.string(map, path, "workdir") {
            Some(dir) if dir.is_empty() => {
                self.problem(&join(path, "workdir"), "must not be empty");
                None
            }
            Some(dir) if dir.contains('\0') => {
                self.problem(&join(path, "workdir"), "must not contain a NUL byte");
                None
            }
            other => other.map(PathBuf::from),
        };
        let log_format = self.choice(map, path, "log-format", LogFormat::Text);
        let mut restart = self.choice(map, path, "restart", RestartPolicy::Always);
        let mut essential = self.bool(map, path, "essential").unwrap_or(false);
        let mut ready = match map.get("ready") {
            Some(value) => self.ready(value, &join(path, "ready")),
            None => None,
        };
        let mut after = self.strings(map, path, "after");
        let mut max_restarts = match map.get("max-restarts") {
            None => None,
            Some(value) => match value.as_u64().map(u32::try_from) {
                Some(Ok(n)) => Some(n),
                _ => {
                    self.problem(
                        &join(path, "max-restarts"),
                        format!(
                            "must be a whole number from 0 to {}, not {}",
                            u32::MAX,
                            quoted(&value.to_string())
                        ),
                    );
                    None
                }
            },
        };
        if kind == JobKind::Init {
            ready = None;
            after.clear();
            max_restarts = None;
            reload_signal = None;
            for &key in MAIN_ONLY_KEYS {
                if map.contains_key(key) {
                    self.problem(
                        &join(path, key),
                        format!(
                            "applies to main jobs only: init jobs run once and must succeed; move the job to jobs.main or remove \"{key}\""
                        ),
                    );
                }
            }
            restart = RestartPolicy::Never;
            essential = false;
        }
        let spec = JobSpec {
            name,
            kind,
            cmd,
            run_as,
            kill_signal,
            stop_timeout: self.duration(map, path, "stop-timeout", stop_timeout),
            inherits_stop_timeout: !map.contains_key("stop-timeout"),
            workdir,
            log_format,
            restart,
            essential,
            ready,
            after: Vec::new(),
            max_restarts,
            reload_signal,
        };
        Some((spec, after))
    }

    fn unique_names(&mut self, init: &[JobSpec], main: &[JobSpec]) {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        let located = init
            .iter()
            .enumerate()
            .map(|(i, j)| (format!("jobs.init[{i}]"), j))
            .chain(
                main.iter()
                    .enumerate()
                    .map(|(i, j)| (format!("jobs.main[{i}]"), j)),
            );
        for (path, job) in located {
            if job.name == super::RESERVED_JOB_NAME {
                self.problem(
                    &join(&path, "name"),
                    "\"internal\" is reserved for simplevisor's own records; choose another name",
                );
            }
            if let Some(first) = seen.get(job.name.as_str()) {
                self.problem(
                    &path,
                    format!(
                        "duplicate job name {} (also used by {first}); names must be unique, set \"name\" on one of them",
                        quoted(&job.name)
                    ),
                );
            } else {
                seen.insert(&job.name, path);
            }
        }
    }
}

/// The `host:port` and path of an `http://` URL whose host is an IP address (readiness checks
/// resolve no names: the event loop must never block).
pub fn http_target(url: &str) -> Option<(std::net::SocketAddr, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let addr = match authority.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => format!("{authority}:80").parse().ok()?,
    };
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some((addr, path))
}

/// Why `text` cannot be the `path` of a file, if it cannot.
fn file_path_problem(text: &str) -> Option<String> {
    let path = Path::new(text);
    if text.contains('\0') {
        Some("must not contain a NUL byte".into())
    } else if !path.is_absolute() {
        Some(format!(
            "{} is relative; give an absolute path (simplevisor's working directory is no place to count on)",
            quoted(text)
        ))
    } else if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        Some(format!(
            "{} contains \"..\"; give the path without it",
            quoted(text)
        ))
    } else if text.ends_with('/') || path.file_name().is_none() {
        Some(format!(
            "{} names a directory; give the path of the file to write",
            quoted(text)
        ))
    } else {
        None
    }
}

/// `"0000"` … `"0777"`: four octal digits, the first 0 (no setuid, setgid or sticky bit).
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix('0')?;
    if digits.len() != 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The JSON path of `key` in the object at `path`; a key too long to quote is cut there too.
fn join(path: &str, key: &str) -> String {
    let key = if key.is_empty() {
        "\"\"".to_string()
    } else if key.chars().count() > 100 {
        let cut: String = key.chars().take(100).collect();
        format!("{cut}...")
    } else {
        key.to_string()
    };
    if path.is_empty() || path == "(top level)" {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The known key closest to a typo (`kill_signal` → `kill-signal`), if any is close.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    known
        .iter()
        .map(|k| (edit_distance(&normal(key), k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
