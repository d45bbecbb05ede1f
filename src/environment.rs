//! The one environment every job gets (SPEC 3), as pure functions: which variables are secret
//! references, which are templates, and the final filtered list. Vault itself is elsewhere;
//! this module only says what to ask it and what to do with its answers.

use std::collections::BTreeMap;

use crate::config::{EnvSettings, Problem};

/// A secret type of a `type:path:field` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKind {
    /// `db`: `<db-mount>/creds/<path>`, fields `Username`, `Password`.
    Db,
    /// `secret`: KV v1 or v2 at `<kv-mount>`, any field.
    Secret,
    /// `aws-user`: `<aws-mount>/creds/<path>`, fields `KeyId`, `SecretKey`, `SessionToken`.
    AwsUser,
}

/// A parsed `type:path:field` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub kind: SecretKind,
    pub path: String,
    pub field: String,
}

/// What the environment needs, found without contacting Vault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPlan {
    /// `vault-replace` variables present in the environment, with their parsed reference
    /// (or, with `--no-vault`, their literal value is used instead).
    pub replacements: Vec<(String, SecretRef)>,
    /// `vault-template` variables present in the environment, with their template source.
    pub templates: Vec<(String, String)>,
    /// Whether Vault must be contacted (a replacement is present or `vault-token` is true).
    pub needs_vault: bool,
}

/// Parses every reference and checks every template by rendering it with placeholder values.
/// `no_vault`: references are literal values, so they are not parsed. Problems carry the JSON
/// path of the list entry (`env.vault-replace[0]`) and name the variable.
pub fn plan(
    settings: &EnvSettings,
    process_env: &[(String, String)],
    no_vault: bool,
) -> Result<EnvPlan, Vec<Problem>> {
    let _ = (settings, process_env, no_vault);
    todo!()
}

/// What `vault-token: true` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultInjection {
    pub token: String,
    pub addr: String,
}

/// Builds the job environment: `resolved` maps each `vault-replace` variable to its value
/// (from Vault, or the literal with `--no-vault`), templates are rendered against it, then
/// `pass`/`pass-all` filtering and the optional Vault injection apply. Errors name the variable,
/// never a value.
pub fn build(
    settings: &EnvSettings,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    resolved: &BTreeMap<String, String>,
    injection: Option<&VaultInjection>,
) -> Result<Vec<(String, String)>, String> {
    let _ = (settings, process_env, plan, resolved, injection);
    todo!()
}

/// The environment of a job with `run-as`: `HOME`, `USER` and `LOGNAME` are the target user's.
pub fn with_identity(env: &[(String, String)], user: &str, home: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"))
        .cloned()
        .collect();
    out.push(("HOME".into(), home.into()));
    out.push(("USER".into(), user.into()));
    out.push(("LOGNAME".into(), user.into()));
    out
}
