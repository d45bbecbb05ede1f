//! The one environment every job gets (docs/environment.md), as pure functions: which variables are secret
//! references, which are templates, and the final filtered list. Vault itself is elsewhere;
//! this module only says what to ask it and what to do with its answers.

use std::collections::BTreeMap;

use crate::config::{EnvSettings, FileSpec, Named, Problem};

/// A secret type of a `type:path:field` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKind {
    /// `db`: `<db-mount>/creds/<path>`, fields `Username`, `Password`.
    Db,
    /// `secret`: KV v1 or v2 at `<kv-mount>`, any field.
    Secret,
    /// `aws-user`: `<aws-mount>/creds/<path>`, fields `KeyId`, `SecretKey`, `SessionToken`.
    AwsUser,
    /// `pki`: a certificate issued at `<pki-mount>/issue/<role>`, path `ROLE/COMMON_NAME`,
    /// fields `Certificate`, `PrivateKey`, `IssuingCA`, `CAChain`.
    Pki,
}

impl crate::config::Named for SecretKind {
    const ALL: &'static [Self] = &[
        SecretKind::Db,
        SecretKind::Secret,
        SecretKind::AwsUser,
        SecretKind::Pki,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SecretKind::Db => "db",
            SecretKind::Secret => "secret",
            SecretKind::AwsUser => "aws-user",
            SecretKind::Pki => "pki",
        }
    }
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

/// simplevisor's own Vault credentials: never passed by `pass-all`, only when named in `pass`.
pub const CREDENTIALS: [&str; 3] = ["VAULT_TOKEN", "VAULT_SECRET_ID", "VAULT_ROLE_ID"];

/// Parses every reference and checks every template by rendering it with placeholder values.
/// `no_vault`: references are literal values, so they are not parsed. Problems carry the JSON
/// path of the list entry (`env.vault-replace[0]`) and name the variable, never its value (a
/// malformed reference may be a pasted secret).
pub fn plan(
    settings: &EnvSettings,
    process_env: &[(String, String)],
    no_vault: bool,
) -> Result<EnvPlan, Vec<Problem>> {
    let lookup = |name: &str| process_env.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut problems = Vec::new();
    let mut plan = EnvPlan::default();
    let mut present_replacements = Vec::new();
    for (i, name) in settings.vault_replace.iter().enumerate() {
        let Some(value) = lookup(name) else { continue };
        present_replacements.push(name.clone());
        if no_vault {
            continue;
        }
        match parse_reference(value) {
            Ok(reference) => plan.replacements.push((name.clone(), reference)),
            Err(message) => problems.push(Problem::new(
                format!("env.vault-replace[{i}]"),
                format!("{name}: {message}"),
            )),
        }
    }
    let placeholders = placeholders(&present_replacements);
    for (i, name) in settings.vault_template.iter().enumerate() {
        let Some(source) = lookup(name) else { continue };
        match crate::template::render(source, &placeholders) {
            Ok(_) => plan.templates.push((name.clone(), source.clone())),
            Err(message) => problems.push(Problem::new(
                format!("env.vault-template[{i}]"),
                format!(
                    "{name}: the template does not render: {message} (templates may refer only to vault-replace variables that are set: {})",
                    listed(&present_replacements)
                ),
            )),
        }
    }
    plan.needs_vault = !no_vault && (!plan.replacements.is_empty() || settings.vault_token);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// Renders the template of every entry of `files` with placeholder values for the
/// `vault-replace` variables set in `process_env`: a template naming one that is not set would
/// fail when written. Problems are at `files[i].template`.
pub fn check_file_templates(
    files: &[FileSpec],
    settings: &EnvSettings,
    process_env: &[(String, String)],
) -> Vec<Problem> {
    let present: Vec<String> = settings
        .vault_replace
        .iter()
        .filter(|name| process_env.iter().any(|(k, _)| k == *name))
        .cloned()
        .collect();
    let placeholders = placeholders(&present);
    files
        .iter()
        .enumerate()
        .filter_map(|(i, file)| {
            let message = crate::template::render(&file.template, &placeholders).err()?;
            Some(Problem::new(
                format!("files[{i}].template"),
                format!(
                    "the template of {} does not render: {message} (templates may refer only to vault-replace variables that are set: {})",
                    file.path.display(),
                    listed(&present)
                ),
            ))
        })
        .collect()
}

/// `<NAME>` for each name: what templates are tried with before any secret is known.
fn placeholders(names: &[String]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|name| (name.clone(), format!("<{name}>")))
        .collect()
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none are".to_string()
    } else {
        names.join(", ")
    }
}

/// Parses `type:path:field`; the error explains the format without repeating the value.
pub fn parse_reference(value: &str) -> Result<SecretRef, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let [kind, path, field] = parts[..] else {
        return Err(format!(
            "the value is not a reference of the form type:path:field (it has {} colon-separated part(s), not 3), e.g. db:prod-db:Password",
            parts.len()
        ));
    };
    if path.is_empty() || field.is_empty() {
        return Err("the path and the field of type:path:field must not be empty".into());
    }
    let Some(kind) = SecretKind::parse(kind) else {
        return Err(format!(
            "unknown secret type \"{}\"; the types are {}",
            kind.chars().take(20).collect::<String>(),
            SecretKind::names().join(", ")
        ));
    };
    let allowed: &[&str] = match kind {
        SecretKind::Db => &["Username", "Password"],
        SecretKind::AwsUser => &["KeyId", "SecretKey", "SessionToken"],
        SecretKind::Pki => &["Certificate", "PrivateKey", "IssuingCA", "CAChain"],
        SecretKind::Secret => &[],
    };
    if !allowed.is_empty() && !allowed.contains(&field) {
        return Err(format!(
            "a {} reference has the fields {} (case-sensitive), not \"{}\"",
            kind.as_str(),
            allowed.join(", "),
            field.chars().take(40).collect::<String>()
        ));
    }
    if kind == SecretKind::Pki && pki_role_and_name(path).is_none() {
        return Err(
            "a pki path is ROLE/COMMON_NAME, both non-empty, e.g. pki:web/www.example.com:Certificate"
                .into(),
        );
    }
    Ok(SecretRef {
        kind,
        path: path.to_string(),
        field: field.to_string(),
    })
}

/// The role and common name of a `pki` path `ROLE/COMMON_NAME` (split at the first `/`);
/// `None` unless both are non-empty.
pub fn pki_role_and_name(path: &str) -> Option<(&str, &str)> {
    let (role, name) = path.split_once('/')?;
    (!role.is_empty() && !name.is_empty()).then_some((role, name))
}

/// What `vault-token: true` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultInjection {
    pub token: String,
    pub addr: String,
}

/// Builds the job environment: `resolved` maps each `vault-replace` variable to its value
/// (from Vault, or the literal with `--no-vault`), templates are rendered against it, then
/// `pass`/`pass-all` filtering, the `env` of each file (replacing a passed variable of that
/// name) and the optional Vault injection apply. Errors name the variable,
/// never a value.
pub fn build(
    settings: &EnvSettings,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    resolved: &BTreeMap<String, String>,
    injection: Option<&VaultInjection>,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(process_env.len());
    for (name, value) in process_env {
        let value = if let Some(secret) = resolved.get(name) {
            secret.clone()
        } else if let Some((_, source)) = plan.templates.iter().find(|(t, _)| t == name) {
            crate::template::render(source, resolved).map_err(|_| {
                // The message of a failure with real values could quote one; say only where.
                format!("the template in {name} failed to render with the resolved secrets")
            })?
        } else {
            value.clone()
        };
        let named = settings.pass.contains(name);
        let passes = named || (settings.pass_all && !CREDENTIALS.contains(&name.as_str()));
        if passes {
            env.push((name.clone(), value));
        }
    }
    for (name, path) in &settings.files {
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), path.clone()));
    }
    if let Some(vault) = injection {
        env.retain(|(k, _)| k != "VAULT_TOKEN" && k != "VAULT_ADDR");
        env.push(("VAULT_TOKEN".into(), vault.token.clone()));
        env.push(("VAULT_ADDR".into(), vault.addr.clone()));
    }
    Ok(env)
}

/// simplevisor's own environment as text; a variable that is not UTF-8 is passed on lossily.
pub fn process_environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
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

#[cfg(test)]
mod tests;
