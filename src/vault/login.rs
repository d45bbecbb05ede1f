//! Getting and keeping a token: `VAULT_TOKEN` (looked up to learn its TTL) or AppRole login
//! with `VAULT_ROLE_ID` + `VAULT_SECRET_ID`, `renew-self`, and `revoke-self` for a token we
//! created ourselves.

use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, Method, RequestError, env_var};

/// How simplevisor logs in; read once from its environment.
#[derive(Clone)]
pub enum Credentials {
    Token(String),
    AppRole { role_id: String, secret_id: String },
}

impl Credentials {
    /// `VAULT_TOKEN` wins; otherwise both AppRole variables are needed. The error names what
    /// is missing.
    pub fn from_env(env: &[(String, String)]) -> Result<Credentials, String> {
        if let Some(token) = env_var(env, "VAULT_TOKEN") {
            return Ok(Credentials::Token(token.to_string()));
        }
        match (
            env_var(env, "VAULT_ROLE_ID"),
            env_var(env, "VAULT_SECRET_ID"),
        ) {
            (Some(role_id), Some(secret_id)) => Ok(Credentials::AppRole {
                role_id: role_id.to_string(),
                secret_id: secret_id.to_string(),
            }),
            (Some(_), None) => Err("VAULT_SECRET_ID is not set (VAULT_ROLE_ID is)".into()),
            (None, Some(_)) => Err("VAULT_ROLE_ID is not set (VAULT_SECRET_ID is)".into()),
            (None, None) => {
                Err("no Vault login: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID".into())
            }
        }
    }

    /// Whether a login creates a token of ours (which we then revoke on exit).
    pub fn creates_token(&self) -> bool {
        matches!(self, Credentials::AppRole { .. })
    }
}

/// A token and what Vault said about its lifetime (a TTL of zero: it never expires).
pub struct Token {
    pub value: String,
    pub ttl: Duration,
    pub renewable: bool,
}

/// Logs in: looks up `VAULT_TOKEN`, or logs in at `auth/<approle_mount>/login`.
pub fn login(
    client: &Client,
    credentials: &Credentials,
    approle_mount: &str,
    timeout: Duration,
) -> Result<Token, RequestError> {
    match credentials {
        Credentials::Token(token) => {
            let answer = client.request(
                Method::Get,
                "auth/token/lookup-self",
                Some(token),
                None,
                timeout,
            )?;
            let data = answer.get("data").unwrap_or(&Value::Null);
            Ok(Token {
                value: token.clone(),
                ttl: seconds(data.get("ttl")),
                renewable: data
                    .get("renewable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        }
        Credentials::AppRole { role_id, secret_id } => {
            let body = json!({ "role_id": role_id, "secret_id": secret_id });
            let answer = client.request(
                Method::Post,
                &format!("auth/{approle_mount}/login"),
                None,
                Some(&body),
                timeout,
            )?;
            let (ttl, renewable) = auth_lifetime(&answer)?;
            let value = answer
                .pointer("/auth/client_token")
                .and_then(Value::as_str)
                .filter(|token| !token.is_empty())
                .ok_or_else(|| RequestError::BadResponse("login answer without a token".into()))?;
            Ok(Token {
                value: value.to_string(),
                ttl,
                renewable,
            })
        }
    }
}

/// `auth/token/renew-self`: the new TTL and whether it stays renewable.
pub fn renew_self(
    client: &Client,
    token: &str,
    timeout: Duration,
) -> Result<(Duration, bool), RequestError> {
    let answer = client.request(
        Method::Post,
        "auth/token/renew-self",
        Some(token),
        Some(&json!({})),
        timeout,
    )?;
    auth_lifetime(&answer)
}

/// `auth/token/revoke-self`.
pub fn revoke_self(client: &Client, token: &str, timeout: Duration) -> Result<(), RequestError> {
    client
        .request(
            Method::Post,
            "auth/token/revoke-self",
            Some(token),
            None,
            timeout,
        )
        .map(drop)
}

fn auth_lifetime(answer: &Value) -> Result<(Duration, bool), RequestError> {
    let auth = answer
        .get("auth")
        .filter(|auth| auth.is_object())
        .ok_or_else(|| RequestError::BadResponse("answer without auth".into()))?;
    Ok((
        seconds(auth.get("lease_duration")),
        auth.get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    ))
}

/// A JSON number of seconds (Vault's TTLs); anything else counts as zero.
pub fn seconds(value: Option<&Value>) -> Duration {
    Duration::from_secs(value.and_then(Value::as_u64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn token_wins_over_approle() {
        let creds = Credentials::from_env(&env(&[
            ("VAULT_TOKEN", "t"),
            ("VAULT_ROLE_ID", "r"),
            ("VAULT_SECRET_ID", "s"),
        ]))
        .ok()
        .unwrap();
        assert!(matches!(creds, Credentials::Token(_)));
        assert!(!creds.creates_token());
    }

    #[test]
    fn approle_needs_both_ids_and_errors_name_the_missing_one() {
        let creds =
            Credentials::from_env(&env(&[("VAULT_ROLE_ID", "r"), ("VAULT_SECRET_ID", "s")]))
                .ok()
                .unwrap();
        assert!(creds.creates_token());
        let err = |pairs: &[(&str, &str)]| Credentials::from_env(&env(pairs)).err().unwrap();
        assert!(err(&[("VAULT_ROLE_ID", "r")]).starts_with("VAULT_SECRET_ID is not set"));
        assert!(err(&[("VAULT_SECRET_ID", "s")]).starts_with("VAULT_ROLE_ID is not set"));
        let none = err(&[("VAULT_TOKEN", "")]);
        assert!(none.contains("VAULT_TOKEN") && none.contains("VAULT_ROLE_ID"));
    }
}
