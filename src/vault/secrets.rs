//! Fetching the secrets of an [`EnvPlan`]: the four types (`db`, `secret` KV v1/v2,
//! `aws-user`, `pki`), their fields, each `(type, path)` asked once, and the leases that come
//! back. A certificate's lifetime counts as a lease that cannot be renewed (nor revoked), so
//! that the expiry rule covers it. Errors name the variable, the reference and the path, never
//! a value.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::Log;
use super::client::{Client, Method, RequestError, retrying};
use super::login::seconds;
use crate::config::{Named, VaultSettings};
use crate::environment::{EnvPlan, SecretKind, SecretRef, pki_role_and_name};

/// A lease Vault gave us with a secret.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Empty for a certificate: it only expires, there is nothing to renew or revoke.
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
                if reference.kind == SecretKind::Pki {
                    let answer = issue(client, token, &path, reference, deadline, log)
                        .map_err(|e| format!("{variable}: cannot issue {label} ({path}): {e}"))?;
                    leases.push(
                        certificate_lease(&answer, &label, SystemTime::now())
                            .map_err(|e| format!("{variable}: {label}: {e}"))?,
                    );
                    entry.insert(certificate_data(answer))
                } else {
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
        SecretKind::Pki => {
            let role = pki_role_and_name(path).map_or(path, |(role, _)| role);
            format!("{}/issue/{role}", settings.pki_mount)
        }
    }
}

/// `POST <pki-mount>/issue/<role>` with the common name: one certificate and its key.
fn issue(
    client: &Client,
    token: &str,
    path: &str,
    reference: &SecretRef,
    deadline: Instant,
    log: &dyn Log,
) -> Result<Value, RequestError> {
    let name = pki_role_and_name(&reference.path).map_or("", |(_, name)| name);
    let body = json!({ "common_name": name });
    let what = format!("issuing a certificate for {name}");
    retrying(deadline, &what, log, |timeout| {
        client.request(Method::Post, path, Some(token), Some(&body), timeout)
    })
}

/// A certificate's lifetime as a lease: `expiration` (Unix seconds) − `now`, not renewable,
/// with no id (certificates are not revoked; they expire). An answer without a usable
/// expiration is an error: a certificate that seemed never to expire would never be replaced.
fn certificate_lease(answer: &Value, label: &str, now: SystemTime) -> Result<Lease, String> {
    let expiration = answer
        .pointer("/data/expiration")
        .and_then(Value::as_u64)
        .ok_or("Vault's answer has no expiration (Unix seconds) for the certificate, so its lifetime is unknown")?;
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(expiration);
    let ttl = expires
        .duration_since(now)
        .ok()
        .filter(|ttl| !ttl.is_zero())
        .ok_or(
            "the certificate Vault issued has already expired (check the role's ttl and both clocks)",
        )?;
    Ok(Lease {
        id: String::new(),
        label: label.to_string(),
        ttl,
        renewable: false,
    })
}

/// The fields of an issued certificate; `ca_chain` becomes its PEM blocks joined by `\n`, or
/// the issuing CA when Vault sends no chain.
fn certificate_data(mut answer: Value) -> Value {
    let mut data = answer
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null);
    let chain: Vec<&str> = data
        .get("ca_chain")
        .and_then(Value::as_array)
        .map(|blocks| blocks.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let chain = if chain.is_empty() {
        data.get("issuing_ca").cloned().unwrap_or(Value::Null)
    } else {
        Value::String(chain.join("\n"))
    };
    if let Some(object) = data.as_object_mut() {
        object.insert("ca_chain".into(), chain);
    }
    data
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
        (SecretKind::Pki, "Certificate") => &["certificate"],
        (SecretKind::Pki, "PrivateKey") => &["private_key"],
        (SecretKind::Pki, "IssuingCA") => &["issuing_ca"],
        (SecretKind::Pki, "CAChain") => &["ca_chain"],
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
    fn a_certificate_is_issued_at_its_role_and_its_fields_are_pem_text() {
        let settings = VaultSettings {
            pki_mount: "pki-int".into(),
            ..VaultSettings::default()
        };
        let cert = reference(SecretKind::Pki, "web/www.example.com", "Certificate");
        assert_eq!(api_path(&settings, &cert, 1), "pki-int/issue/web");
        let answer = json!({"data": {
            "certificate": "CERT", "private_key": "KEY", "issuing_ca": "ROOT",
            "ca_chain": ["INTERMEDIATE", "ROOT"], "expiration": 1
        }});
        let data = certificate_data(answer);
        let get = |name| field(&data, &reference(SecretKind::Pki, "web/x", name)).unwrap();
        assert_eq!(get("Certificate"), "CERT");
        assert_eq!(get("PrivateKey"), "KEY");
        assert_eq!(get("IssuingCA"), "ROOT");
        assert_eq!(get("CAChain"), "INTERMEDIATE\nROOT");
        for no_chain in [json!(null), json!([])] {
            let data =
                certificate_data(json!({"data": {"issuing_ca": "ROOT", "ca_chain": no_chain}}));
            assert_eq!(
                field(&data, &reference(SecretKind::Pki, "web/x", "CAChain")).unwrap(),
                "ROOT"
            );
        }
    }

    #[test]
    fn a_certificates_lifetime_is_a_lease_that_only_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let answer = json!({"lease_id": "", "data": {"expiration": 1_000_030}});
        let lease = certificate_lease(&answer, "pki:web/x", now).unwrap();
        assert_eq!(lease.ttl, Duration::from_secs(30));
        assert!(!lease.renewable && lease.id.is_empty());
        assert_eq!(lease.label, "pki:web/x");
        // Never "does not expire": no usable expiration is an error.
        for bad in [
            json!({"data": {}}),
            json!({"data": {"expiration": "soon"}}),
            json!({"data": {"expiration": 1_000_000}}),
            json!({"data": {"expiration": 5}}),
        ] {
            assert!(certificate_lease(&bad, "pki:web/x", now).is_err(), "{bad}");
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
