//! Fetching the secrets of an [`EnvPlan`]: the three types (`db`, `secret` KV v1/v2,
//! `aws-user`), their fields, each `(type, path)` asked once, and the leases that come back.
//! Errors name the variable, the reference and the path, never a value.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Log;
use super::client::{Client, Method, RequestError, retrying};
use super::login::seconds;
use crate::config::{Named, VaultSettings};
use crate::environment::{EnvPlan, SecretKind, SecretRef};

/// A lease Vault gave us with a secret.
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: String,
    /// `type:path`, for messages (lease ids are not shown).
    pub label: String,
    pub ttl: Duration,
    pub renewable: bool,
}

/// Fetches every reference of `plan`, each `(type, path)` once, retrying transient failures
/// until `deadline`. Leases are appended to `leases` as they come, so that the caller can
/// revoke them even when a later fetch fails.
pub fn fetch_all(
    client: &Client,
    token: &str,
    settings: &VaultSettings,
    plan: &EnvPlan,
    deadline: Instant,
    leases: &mut Vec<Lease>,
    log: &dyn Log,
) -> Result<BTreeMap<String, String>, String> {
    let mut fetched: BTreeMap<(SecretKind, &str), Value> = BTreeMap::new();
    let mut kv_version: Option<u8> = None;
    let mut values = BTreeMap::new();
    for (variable, reference) in &plan.replacements {
        let label = format!("{}:{}", reference.kind.as_str(), reference.path);
        let key = (reference.kind, reference.path.as_str());
        let data = match fetched.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let version = match (reference.kind, kv_version) {
                    (SecretKind::Secret, None) => {
                        let version =
                            detect_kv_version(client, token, &settings.kv_mount, deadline, log)
                                .map_err(|e| {
                                    format!(
                                        "{variable}: {label}: cannot detect the KV version of \
                                         mount {}: {e}",
                                        settings.kv_mount
                                    )
                                })?;
                        kv_version = Some(version);
                        version
                    }
                    (_, version) => version.unwrap_or(1),
                };
                let path = api_path(settings, reference, version);
                let what = format!("reading {label} for {variable}");
                let answer = retrying(deadline, &what, log, |timeout| {
                    client.request(Method::Get, &path, Some(token), None, timeout)
                })
                .map_err(|e| format!("{variable}: cannot read {label} ({path}): {e}"))?;
                if let Some(lease) = lease_of(&answer, &label)
                    .map_err(|e| format!("{variable}: reading {label} ({path}): {e}"))?
                {
                    leases.push(lease);
                }
                entry.insert(secret_data(answer, version, reference.kind))
            }
        };
        let value = field(data, reference).map_err(|problem| format!("{variable}: {problem}"))?;
        values.insert(variable.clone(), value);
    }
    Ok(values)
}

/// The API path of a reference (KV v2 reads go through `<mount>/data/`).
fn api_path(settings: &VaultSettings, reference: &SecretRef, kv_version: u8) -> String {
    let path = reference.path.trim_start_matches('/');
    match reference.kind {
        SecretKind::Db => format!("{}/creds/{path}", settings.db_mount),
        SecretKind::AwsUser => format!("{}/creds/{path}", settings.aws_mount),
        SecretKind::Secret if kv_version == 2 => format!("{}/data/{path}", settings.kv_mount),
        SecretKind::Secret => format!("{}/{path}", settings.kv_mount),
    }
}

/// KV version of `mount`, as the Vault CLI finds it: `options.version` of
/// `sys/internal/ui/mounts/<mount>`; a Vault without that endpoint (404) has only version 1.
fn detect_kv_version(
    client: &Client,
    token: &str,
    mount: &str,
    deadline: Instant,
    log: &dyn Log,
) -> Result<u8, RequestError> {
    let path = format!("sys/internal/ui/mounts/{mount}");
    let what = format!("detecting the KV version of mount {mount}");
    match retrying(deadline, &what, log, |timeout| {
        client.request(Method::Get, &path, Some(token), None, timeout)
    }) {
        Ok(answer) => {
            let version = answer
                .pointer("/data/options/version")
                .and_then(Value::as_str);
            Ok(if version == Some("2") { 2 } else { 1 })
        }
        Err(RequestError::Status { code: 404, .. }) => Ok(1),
        Err(error) => Err(error),
    }
}

/// The lease of a secret, if it has one; a lease without a usable TTL is an error.
fn lease_of(answer: &Value, label: &str) -> Result<Option<Lease>, RequestError> {
    let Some(id) = answer
        .get("lease_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(Lease {
        id: id.to_string(),
        label: label.to_string(),
        ttl: seconds(answer.get("lease_duration"), "lease_duration")?,
        renewable: answer
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// The object holding the fields: `data`, or `data.data` for KV v2.
fn secret_data(mut answer: Value, kv_version: u8, kind: SecretKind) -> Value {
    let data = answer
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null);
    match kind {
        SecretKind::Secret if kv_version == 2 => {
            let mut data = data;
            data.get_mut("data").map(Value::take).unwrap_or(Value::Null)
        }
        _ => data,
    }
}

/// The value of the reference's field; the error names the reference and field.
fn field(data: &Value, reference: &SecretRef) -> Result<String, String> {
    let label = format!("{}:{}", reference.kind.as_str(), reference.path);
    let keys: &[&str] = match (reference.kind, reference.field.as_str()) {
        (SecretKind::Db, "Username") => &["username"],
        (SecretKind::Db, "Password") => &["password"],
        (SecretKind::AwsUser, "KeyId") => &["access_key"],
        (SecretKind::AwsUser, "SecretKey") => &["secret_key"],
        (SecretKind::AwsUser, "SessionToken") => &["security_token", "session_token"],
        (SecretKind::Secret, field) => &[field][..],
        (_, field) => {
            return Err(format!(
                "{label}: unknown field {field:?} for type {}",
                reference.kind.as_str()
            ));
        }
    };
    let found = keys
        .iter()
        .filter_map(|key| data.get(*key))
        .find(|value| !value.is_null());
    match found {
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(format!(
            "{label}: field {:?} is not a string",
            reference.field
        )),
        None => Err(format!("{label}: no field {:?}", reference.field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reference(kind: SecretKind, path: &str, field: &str) -> SecretRef {
        SecretRef {
            kind,
            path: path.into(),
            field: field.into(),
        }
    }

    #[test]
    fn api_paths_follow_the_type_and_kv_version() {
        let settings = VaultSettings::default();
        let db = reference(SecretKind::Db, "prod-db", "Username");
        assert_eq!(api_path(&settings, &db, 1), "database/creds/prod-db");
        let aws = reference(SecretKind::AwsUser, "deploy", "KeyId");
        assert_eq!(api_path(&settings, &aws, 1), "aws/creds/deploy");
        let kv = reference(SecretKind::Secret, "app/config", "key");
        assert_eq!(api_path(&settings, &kv, 1), "kv/app/config");
        assert_eq!(api_path(&settings, &kv, 2), "kv/data/app/config");
    }

    #[test]
    fn fields_map_to_vault_keys_and_errors_name_reference_and_field_only() {
        let creds = json!({"username": "v-user", "password": "s3cret", "n": 1});
        let db = |field| reference(SecretKind::Db, "prod-db", field);
        assert_eq!(field(&creds, &db("Username")).unwrap(), "v-user");
        assert_eq!(field(&creds, &db("Password")).unwrap(), "s3cret");
        let err = field(&creds, &db("password")).unwrap_err();
        assert!(
            err.contains("db:prod-db") && err.contains("\"password\""),
            "{err}"
        );

        let kv = |name| reference(SecretKind::Secret, "app", name);
        let err = field(&creds, &kv("missing")).unwrap_err();
        assert_eq!(err, "secret:app: no field \"missing\"");
        let err = field(&creds, &kv("n")).unwrap_err();
        assert_eq!(err, "secret:app: field \"n\" is not a string");

        let aws = json!({"access_key": "AKIA", "secret_key": "sk", "security_token": null});
        let aws_ref = |name| reference(SecretKind::AwsUser, "deploy", name);
        assert_eq!(field(&aws, &aws_ref("KeyId")).unwrap(), "AKIA");
        assert_eq!(field(&aws, &aws_ref("SecretKey")).unwrap(), "sk");
        assert!(field(&aws, &aws_ref("SessionToken")).is_err());
        let sts = json!({"session_token": "st"});
        assert_eq!(field(&sts, &aws_ref("SessionToken")).unwrap(), "st");
    }

    #[test]
    fn leases_are_taken_only_when_vault_gives_an_id() {
        let kv = json!({"lease_id": "", "lease_duration": 2764800, "renewable": false});
        assert!(lease_of(&kv, "secret:x").unwrap().is_none());
        let db =
            json!({"lease_id": "database/creds/r/abc", "lease_duration": 5, "renewable": true});
        let lease = lease_of(&db, "db:r").unwrap().unwrap();
        assert_eq!(lease.ttl, Duration::from_secs(5));
        assert!(lease.renewable);
    }

    #[test]
    fn a_lease_without_a_usable_ttl_is_an_error_not_a_lease_that_never_expires() {
        for answer in [
            json!({"lease_id": "database/creds/r/abc", "renewable": true}),
            json!({"lease_id": "database/creds/r/abc", "lease_duration": "5"}),
            json!({"lease_id": "database/creds/r/abc", "lease_duration": -1}),
        ] {
            let error = lease_of(&answer, "db:r").unwrap_err().to_string();
            assert!(error.contains("no usable lease_duration"), "{error}");
        }
    }

    #[test]
    fn kv_v2_fields_are_under_data_data() {
        let answer = json!({"data": {"data": {"k": "v"}, "metadata": {}}});
        assert_eq!(
            secret_data(answer, 2, SecretKind::Secret),
            json!({"k": "v"})
        );
        let answer = json!({"data": {"k": "v"}});
        assert_eq!(
            secret_data(answer, 1, SecretKind::Secret),
            json!({"k": "v"})
        );
    }
}
