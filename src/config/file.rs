//! The shape of the configuration file: the keys allowed at each level, and the JSON Schema
//! printed by `simplevisor schema` (for editors). A unit test keeps the two in step.

use serde_json::{Value, json};

use super::{ExpiryPolicy, LogFormat, Named, RestartPolicy};

/// `$schema` lets an editor find the schema; simplevisor ignores its value.
pub const TOP_KEYS: &[&str] = &[
    "$schema",
    "env",
    "jobs",
    "stop-timeout",
    "restart-backoff",
    "vault",
    "shutdown-delay",
    "control-socket",
    "files",
    "metrics-listen",
];
pub const FILE_KEYS: &[&str] = &["path", "template", "mode", "owner", "env"];
pub const ENV_KEYS: &[&str] = &[
    "pass",
    "pass-all",
    "vault-token",
    "vault-replace",
    "vault-template",
];
pub const JOBS_KEYS: &[&str] = &["init", "main"];
pub const JOB_KEYS: &[&str] = &[
    "cmd",
    "name",
    "run-as",
    "kill-signal",
    "stop-timeout",
    "workdir",
    "log-format",
    "restart",
    "essential",
    "ready",
    "after",
    "max-restarts",
    "reload-signal",
];
/// The keys of [`JOB_KEYS`] that apply to main jobs only (its last ones).
pub const MAIN_ONLY_KEYS: &[&str] = &[
    "restart",
    "essential",
    "ready",
    "after",
    "max-restarts",
    "reload-signal",
];
pub const READY_KEYS: &[&str] = &["tcp", "http", "exec", "interval", "timeout"];
pub const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier", "reset-after"];
pub const VAULT_KEYS: &[&str] = &[
    "kv-mount",
    "db-mount",
    "aws-mount",
    "pki-mount",
    "approle-mount",
    "on-lease-expiry",
    "revoke-on-exit",
    "startup-timeout",
    "request-timeout",
    "auth",
];
/// Every key of `vault.auth`; [`auth_keys`] tells which belong to which method.
pub const AUTH_KEYS: &[&str] = &[
    "method",
    "token-file",
    "mount",
    "secret-id-file",
    "role",
    "jwt-file",
    "name",
];
/// The login methods of `vault.auth.method`.
pub const AUTH_METHODS: &[&str] = &["token", "approle", "kubernetes", "jwt", "cert"];

/// The keys `vault.auth` may hold with `method` (an unknown method: none but `method`).
pub fn auth_keys(method: &str) -> &'static [&'static str] {
    match method {
        "token" => &["method", "token-file"],
        "approle" => &["method", "mount", "secret-id-file"],
        "kubernetes" | "jwt" => &["method", "role", "mount", "jwt-file"],
        "cert" => &["method", "name", "mount"],
        _ => &["method"],
    }
}

/// The default service-account token of a Kubernetes pod.
pub const KUBERNETES_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

fn duration(description: &str) -> Value {
    json!({"type": "string", "pattern": DURATION_PATTERN, "description": description})
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn schema_value() -> Value {
    let job = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["cmd"],
        "properties": {
            "cmd": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "argv; a program without '/' is looked up in the job's PATH"},
            "name": {"type": "string", "minLength": 1,
                     "description": "the process field of the job's log records; default: basename of cmd[0]"},
            "run-as": {"type": "string", "pattern": "^[^:]+(:[^:]+)?$",
                       "description": "\"user\", \"user:group\" or numeric ids; user only means group root"},
            "kill-signal": {"type": "string", "description": "signal name sent to the job's process group to stop it, e.g. \"INT\"; default TERM"},
            "stop-timeout": duration("grace after kill-signal before SIGKILL; default: the top-level stop-timeout"),
            "workdir": {"type": "string", "minLength": 1, "description": "working directory"},
            "log-format": {"enum": LogFormat::names(), "description": "json: lines that are JSON objects are embedded as objects"},
            "restart": {"enum": RestartPolicy::names(), "description": "main jobs only; default always"},
            "essential": {"type": "boolean", "description": "main jobs only: when it exits, everything stops with its status"},
            "ready": {
                "type": "object",
                "additionalProperties": false,
                "description": "main jobs only: the check that makes the job running; exactly one of tcp, http, exec",
                "properties": {
                    "tcp": {"type": "string", "description": "host:port that accepts a connection, e.g. 127.0.0.1:8080"},
                    "http": {"type": "string", "pattern": "^http://", "description": "URL answering 2xx to GET"},
                    "exec": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "command exiting 0, run as the job"},
                    "interval": duration("time between checks until one passes; default 1s"),
                    "timeout": duration("the longest one check may take; default 1s")
                }
            },
            "after": strings("main jobs only: names of main jobs that must be running before this one starts"),
            "max-restarts": {"type": "integer", "minimum": 0, "description": "main jobs only: quick restarts in a row before the job fails and everything stops (exit 1)"},
            "reload-signal": {"type": "string", "description": "main jobs only: the signal the job gets when the secrets are rotated, instead of a restart, e.g. \"HUP\""}
        }
    });
    let file = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["path", "template"],
        "properties": {
            "path": {"type": "string", "pattern": "^/", "description": "absolute path of the file; its directory must exist"},
            "template": {"type": "string", "description": "Go template of the content, over the resolved vault-replace variables"},
            "mode": {"type": "string", "pattern": "^0[0-7]{3}$", "description": "the file's mode, exactly (the umask does not apply); default \"0400\""},
            "owner": {"type": "string", "pattern": "^[^:]+(:[^:]+)?$", "description": "\"user\", \"user:group\" or numeric ids; default: simplevisor's own"},
            "env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "a variable the jobs get, set to the file's path"}
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "simplevisor configuration",
        "type": "object",
        "additionalProperties": false,
        "required": ["jobs"],
        "properties": {
            "$schema": {"type": "string", "description": "where an editor finds this schema; ignored"},
            "env": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "pass": strings("variables passed to the jobs"),
                    "pass-all": {"type": "boolean", "description": "pass every variable except VAULT_TOKEN, VAULT_SECRET_ID, VAULT_ROLE_ID (unless named in pass)"},
                    "vault-token": {"type": "boolean", "description": "add VAULT_TOKEN and VAULT_ADDR for the jobs"},
                    "vault-replace": strings("variables holding type:path:field references, replaced by the secret"),
                    "vault-template": strings("variables holding Go templates over the vault-replace variables")
                }
            },
            "jobs": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "init": {"type": "array", "items": job.clone(), "description": "run one at a time, in order; each must exit 0"},
                    "main": {"type": "array", "items": job, "description": "run in parallel after the init jobs, restarted per policy"}
                }
            },
            "stop-timeout": duration("default grace after kill-signal before SIGKILL; default 5s"),
            "shutdown-delay": duration("how long jobs keep running after the first SIGTERM/SIGINT (health fails meanwhile); default 0s"),
            "control-socket": {"type": "string", "description": "Unix socket for status and control commands; default /run/simplevisor.sock, \"\" turns it off"},
            "files": {"type": "array", "items": file, "description": "files rendered from templates before the first init job and removed on exit"},
            "metrics-listen": {"type": "string", "minLength": 1, "description": "IP:PORT on which to serve /metrics (Prometheus), /readyz and /livez over HTTP; absent: off"},
            "restart-backoff": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "initial": duration("first restart delay; default 1s"),
                    "max": duration("longest restart delay; default 60s"),
                    "multiplier": {"type": "number", "minimum": 1, "maximum": 1000, "description": "default 2"},
                    "reset-after": duration("a run this long resets the backoff; default 60s")
                }
            },
            "vault": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "kv-mount": {"type": "string", "description": "default kv"},
                    "db-mount": {"type": "string", "description": "default database"},
                    "aws-mount": {"type": "string", "description": "default aws"},
                    "pki-mount": {"type": "string", "description": "default pki"},
                    "approle-mount": {"type": "string", "description": "default approle"},
                    "on-lease-expiry": {"enum": ExpiryPolicy::names(), "description": "default exit"},
                    "revoke-on-exit": {"type": "boolean", "description": "default true"},
                    "startup-timeout": duration("how long to retry an unreachable Vault at start; default 30s"),
                    "request-timeout": duration("the longest one request to Vault may take; default 10s"),
                    "auth": auth_schema()
                }
            }
        }
    })
}

/// `vault.auth`: one object shape per method.
fn auth_schema() -> Value {
    let file =
        |description: &str| json!({"type": "string", "minLength": 1, "description": description});
    let text =
        |description: &str| json!({"type": "string", "minLength": 1, "description": description});
    let method = |name: &str, required: &[&str], properties: Value| {
        let mut properties = properties;
        properties["method"] = json!({"const": name});
        let mut required: Vec<&str> = required.to_vec();
        required.insert(0, "method");
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
    };
    json!({
        "description": "how simplevisor logs in to Vault; default: VAULT_TOKEN, else AppRole with VAULT_ROLE_ID and VAULT_SECRET_ID",
        "oneOf": [
            method("token", &[], json!({
                "token-file": file("a file holding the token, read at every login; default: VAULT_TOKEN")
            })),
            method("approle", &[], json!({
                "mount": text("default: approle-mount"),
                "secret-id-file": file("a file holding the secret id, read at every login; default: VAULT_SECRET_ID")
            })),
            method("kubernetes", &["role"], json!({
                "role": text("the Vault role bound to the service account"),
                "mount": text("default kubernetes"),
                "jwt-file": file(&format!("the service-account token, read at every login; default {KUBERNETES_JWT_FILE}"))
            })),
            method("jwt", &["role", "jwt-file"], json!({
                "role": text("the Vault role"),
                "mount": text("default jwt"),
                "jwt-file": file("a file holding the JWT, read at every login")
            })),
            method("cert", &[], json!({
                "name": text("the certificate role; default: every role Vault has"),
                "mount": text("default cert")
            }))
        ]
    })
}

/// The JSON Schema of the file, pretty-printed.
pub fn schema() -> String {
    serde_json::to_string_pretty(&schema_value()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    }

    #[test]
    fn the_schema_and_the_validator_know_the_same_keys() {
        let s = schema_value();
        let p = &s["properties"];
        assert_eq!(keys(&s), sorted(TOP_KEYS));
        assert_eq!(keys(&p["env"]), sorted(ENV_KEYS));
        assert_eq!(keys(&p["jobs"]), sorted(JOBS_KEYS));
        assert_eq!(
            keys(&p["jobs"]["properties"]["main"]["items"]),
            sorted(JOB_KEYS)
        );
        assert_eq!(keys(&p["restart-backoff"]), sorted(BACKOFF_KEYS));
        assert_eq!(keys(&p["files"]["items"]), sorted(FILE_KEYS));
        assert_eq!(keys(&p["vault"]), sorted(VAULT_KEYS));
        assert_eq!(
            keys(&p["jobs"]["properties"]["main"]["items"]["properties"]["ready"]),
            sorted(READY_KEYS)
        );
        let mut auth_keys_of_schema: Vec<String> = Vec::new();
        let mut methods = Vec::new();
        for shape in p["vault"]["properties"]["auth"]["oneOf"]
            .as_array()
            .unwrap()
        {
            let method = shape["properties"]["method"]["const"].as_str().unwrap();
            methods.push(method);
            assert_eq!(keys(shape), sorted(auth_keys(method)), "{method}");
            auth_keys_of_schema.extend(keys(shape));
        }
        auth_keys_of_schema.sort();
        auth_keys_of_schema.dedup();
        assert_eq!(auth_keys_of_schema, sorted(AUTH_KEYS));
        assert_eq!(methods, AUTH_METHODS);
    }
}
