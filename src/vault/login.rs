//! Getting and keeping a token. The login methods (docs/vault.md, "Login methods"): a token
//! given in `VAULT_TOKEN` or in a file (looked up to learn its TTL), AppRole, Kubernetes, JWT
//! and TLS certificate login; then `renew-self`, and `revoke-self` for a token we created.
//!
//! Credential files are named here and read at every login, never kept: projected
//! service-account tokens and JWTs rotate, and a re-login must use the current one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, Method, RequestError, env_var};
use crate::config::AuthSettings;

/// How simplevisor logs in. Secrets given in the environment are kept (the environment is
/// blanked once read); secrets in files are only named.
#[derive(Clone)]
pub enum Credentials {
    /// `VAULT_TOKEN`: a token someone else made; there is no logging in again with it.
    Token(String),
    /// A token in a file, read again at every login (e.g. written by Vault Agent).
    TokenFile(PathBuf),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretId,
    },
    /// `kubernetes` and `jwt` logins: a JWT from a file, posted with a role.
    Jwt {
        kind: JwtKind,
        mount: String,
        role: String,
        file: PathBuf,
    },
    /// TLS client certificate login (the certificate is the client's, see `VAULT_CLIENT_CERT`).
    Cert { mount: String, name: Option<String> },
}

/// Where the AppRole secret id is.
#[derive(Clone)]
pub enum SecretId {
    Given(String),
    File(PathBuf),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum JwtKind {
    Kubernetes,
    Jwt,
}

impl Credentials {
    /// Without `vault.auth`: `VAULT_TOKEN` wins; otherwise both AppRole variables are needed,
    /// with AppRole at `approle_mount`. The error names what is missing.
    pub fn from_env(env: &[(String, String)], approle_mount: &str) -> Result<Credentials, String> {
        if let Some(token) = env_var(env, "VAULT_TOKEN") {
            return Ok(Credentials::Token(token.to_string()));
        }
        match (
            env_var(env, "VAULT_ROLE_ID"),
            env_var(env, "VAULT_SECRET_ID"),
        ) {
            (Some(role_id), Some(secret_id)) => Ok(Credentials::AppRole {
                mount: approle_mount.to_string(),
                role_id: role_id.to_string(),
                secret_id: SecretId::Given(secret_id.to_string()),
            }),
            (Some(_), None) => Err("VAULT_SECRET_ID is not set (VAULT_ROLE_ID is)".into()),
            (None, Some(_)) => Err("VAULT_ROLE_ID is not set (VAULT_SECRET_ID is)".into()),
            (None, None) => {
                Err("no Vault login: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID".into())
            }
        }
    }

    /// The credentials `vault.auth` (when given) or the environment rule choose, with every
    /// problem found without contacting Vault: missing variables, and credential files that
    /// cannot be read or are empty (read once here to tell; read again at every login).
    pub fn from_settings(
        auth: Option<&AuthSettings>,
        env: &[(String, String)],
        approle_mount: &str,
    ) -> Result<Credentials, Vec<String>> {
        let Some(auth) = auth else {
            return Credentials::from_env(env, approle_mount).map_err(|e| vec![e]);
        };
        let credentials = match auth {
            AuthSettings::Token { token_file: None } => match env_var(env, "VAULT_TOKEN") {
                Some(token) => Credentials::Token(token.to_string()),
                None => {
                    return Err(vec![
                        "VAULT_TOKEN is not set (vault.auth method token without token-file)"
                            .into(),
                    ]);
                }
            },
            AuthSettings::Token {
                token_file: Some(file),
            } => Credentials::TokenFile(file.clone()),
            AuthSettings::AppRole {
                mount,
                secret_id_file,
            } => {
                let role_id = env_var(env, "VAULT_ROLE_ID");
                let secret_id = match secret_id_file {
                    Some(file) => Some(SecretId::File(file.clone())),
                    None => env_var(env, "VAULT_SECRET_ID")
                        .map(|secret_id| SecretId::Given(secret_id.to_string())),
                };
                match (role_id, secret_id) {
                    (Some(role_id), Some(secret_id)) => Credentials::AppRole {
                        mount: mount.clone(),
                        role_id: role_id.to_string(),
                        secret_id,
                    },
                    (role_id, secret_id) => {
                        let mut problems = Vec::new();
                        if role_id.is_none() {
                            problems.push(
                                "VAULT_ROLE_ID is not set (vault.auth method approle)".to_string(),
                            );
                        }
                        match &secret_id {
                            None => problems.push(
                                "VAULT_SECRET_ID is not set (vault.auth method approle without secret-id-file)"
                                    .to_string(),
                            ),
                            // A missing VAULT_ROLE_ID must not hide a bad secret-id-file.
                            Some(SecretId::File(file)) => {
                                if let Err(e) = read_credential("secret-id-file", file) {
                                    problems.push(e.to_string());
                                }
                            }
                            Some(SecretId::Given(_)) => {}
                        }
                        return Err(problems);
                    }
                }
            }
            AuthSettings::Kubernetes {
                role,
                mount,
                jwt_file,
            } => Credentials::Jwt {
                kind: JwtKind::Kubernetes,
                mount: mount.clone(),
                role: role.clone(),
                file: jwt_file.clone(),
            },
            AuthSettings::Jwt {
                role,
                mount,
                jwt_file,
            } => Credentials::Jwt {
                kind: JwtKind::Jwt,
                mount: mount.clone(),
                role: role.clone(),
                file: jwt_file.clone(),
            },
            AuthSettings::Cert { name, mount } => {
                if env_var(env, "VAULT_CLIENT_CERT").is_none() {
                    return Err(vec![
                        "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY are not set: vault.auth method cert logs in with a TLS client certificate"
                            .into(),
                    ]);
                }
                Credentials::Cert {
                    mount: mount.clone(),
                    name: name.clone(),
                }
            }
        };
        match credentials.file() {
            Some((key, file)) => match read_credential(key, file) {
                Ok(_) => Ok(credentials),
                Err(e) => Err(vec![e.to_string()]),
            },
            None => Ok(credentials),
        }
    }

    /// The credential file, with the `vault.auth` key naming it.
    fn file(&self) -> Option<(&'static str, &Path)> {
        match self {
            Credentials::TokenFile(file) => Some(("token-file", file)),
            Credentials::AppRole {
                secret_id: SecretId::File(file),
                ..
            } => Some(("secret-id-file", file)),
            Credentials::Jwt { file, .. } => Some(("jwt-file", file)),
            _ => None,
        }
    }

    /// Whether a login creates a token of ours (which we then revoke on exit). A token from a
    /// file is not ours: whoever writes the file (Vault Agent, an init container) made it and
    /// may hand it to others too.
    pub fn creates_token(&self) -> bool {
        !matches!(self, Credentials::Token(_) | Credentials::TokenFile(_))
    }

    /// Whether logging in again can bring a new token: every method but a token given in
    /// `VAULT_TOKEN` (a token file is read again).
    pub fn can_login_again(&self) -> bool {
        !matches!(self, Credentials::Token(_))
    }

    /// How we log in, for records: the method and where, never a secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Token(_) => "with VAULT_TOKEN".into(),
            Credentials::TokenFile(file) => format!("with the token in {}", file.display()),
            Credentials::AppRole { mount, .. } => format!("with AppRole at auth/{mount}"),
            Credentials::Jwt {
                kind, mount, role, ..
            } => format!(
                "with {} at auth/{mount} (role {role})",
                match kind {
                    JwtKind::Kubernetes => "Kubernetes",
                    JwtKind::Jwt => "JWT",
                }
            ),
            Credentials::Cert { mount, .. } => {
                format!("with the TLS client certificate at auth/{mount}")
            }
        }
    }
}

/// The largest credential file read: far above any token, secret id or JWT, and small
/// enough that a file pointed at `/dev/zero` or a huge sparse file costs nothing.
pub const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// The content of a credential file, without surrounding white space (a trailing newline is
/// common). Errors name the file and the `vault.auth` key, never the content.
fn read_credential(key: &str, file: &Path) -> Result<String, RequestError> {
    read_credential_file(file)
        .map_err(|e| RequestError::Credential(format!("vault.auth.{key} {}: {e}", file.display())))
}

/// Reads a credential file without ever blocking or taking more than
/// [`MAX_CREDENTIAL_FILE`] bytes: it is opened non-blocking (a FIFO cannot hold us), and must
/// be a regular file (symlinks are followed, as Kubernetes projects its tokens through them)
/// of at most that size. The credential is what is left once surrounding white space is
/// trimmed; one that still holds a control character (a line break inside, a NUL) is refused,
/// since no token, secret id or JWT has one and Vault would only refuse it after retries.
/// The error says what is wrong, without the path and never with the content.
pub fn read_credential_file(file: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(|e| e.to_string())?;
    let meta = opened.metadata().map_err(|e| e.to_string())?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!("is {what}; a credential must be in a regular file"));
    }
    let too_large = || {
        format!(
            "the file is larger than {} KiB; a credential file holds one token, secret id or JWT",
            MAX_CREDENTIAL_FILE / 1024
        )
    };
    if meta.len() > MAX_CREDENTIAL_FILE {
        return Err(too_large());
    }
    // The file may grow after the fstat: never read more than the limit and one byte.
    let mut bytes = Vec::new();
    opened
        .take(MAX_CREDENTIAL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|_| "the file is not text (UTF-8)".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("the file is empty".into());
    }
    if text.chars().any(char::is_control) {
        return Err(
            "the credential holds a control character (a line break, a NUL) inside; the file must hold one credential on one line"
                .into(),
        );
    }
    Ok(text.to_string())
}

/// A token and what Vault said about its lifetime (a TTL of zero: it never expires).
pub struct Token {
    pub value: String,
    pub ttl: Duration,
    pub renewable: bool,
}

/// Logs in: looks up a given token, or logs in with the method, reading its file now.
pub fn login(
    client: &Client,
    credentials: &Credentials,
    timeout: Duration,
) -> Result<Token, RequestError> {
    let (mount, body) = match credentials {
        Credentials::Token(token) => return look_up(client, token.clone(), timeout),
        Credentials::TokenFile(file) => {
            let token = read_credential("token-file", file)?;
            return look_up(client, token, timeout);
        }
        Credentials::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            let secret_id = match secret_id {
                SecretId::Given(secret_id) => secret_id.clone(),
                SecretId::File(file) => read_credential("secret-id-file", file)?,
            };
            (mount, json!({ "role_id": role_id, "secret_id": secret_id }))
        }
        Credentials::Jwt {
            mount, role, file, ..
        } => {
            let jwt = read_credential("jwt-file", file)?;
            (mount, json!({ "role": role, "jwt": jwt }))
        }
        Credentials::Cert { mount, name } => match name {
            Some(name) => (mount, json!({ "name": name })),
            None => (mount, json!({})),
        },
    };
    let answer = client.request(
        Method::Post,
        &format!("auth/{mount}/login"),
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

/// `auth/token/lookup-self` of a token someone gave us: its TTL and renewability.
fn look_up(client: &Client, token: String, timeout: Duration) -> Result<Token, RequestError> {
    let answer = client.request(
        Method::Get,
        "auth/token/lookup-self",
        Some(&token),
        None,
        timeout,
    )?;
    let data = answer.get("data").unwrap_or(&Value::Null);
    Ok(Token {
        value: token,
        ttl: seconds(data.get("ttl"), "data.ttl")?,
        renewable: data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
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
        seconds(auth.get("lease_duration"), "auth.lease_duration")?,
        auth.get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    ))
}

/// A JSON number of seconds (Vault's TTLs); anything else counts as zero.
/// A TTL field of a Vault answer, in whole seconds. A missing or unusable one is an error,
/// never "does not expire" (0 stops renewal).
pub fn seconds(value: Option<&Value>, field: &str) -> Result<Duration, RequestError> {
    value
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            RequestError::BadResponse(format!("no usable {field} (whole seconds) in the answer"))
        })
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
        let creds = Credentials::from_env(
            &env(&[
                ("VAULT_TOKEN", "t"),
                ("VAULT_ROLE_ID", "r"),
                ("VAULT_SECRET_ID", "s"),
            ]),
            "approle",
        )
        .ok()
        .unwrap();
        assert!(matches!(creds, Credentials::Token(_)));
        assert!(!creds.creates_token());
    }

    #[test]
    fn approle_needs_both_ids_and_errors_name_the_missing_one() {
        let creds = Credentials::from_env(
            &env(&[("VAULT_ROLE_ID", "r"), ("VAULT_SECRET_ID", "s")]),
            "approle",
        )
        .ok()
        .unwrap();
        assert!(creds.creates_token());
        let err =
            |pairs: &[(&str, &str)]| Credentials::from_env(&env(pairs), "approle").err().unwrap();
        assert!(err(&[("VAULT_ROLE_ID", "r")]).starts_with("VAULT_SECRET_ID is not set"));
        assert!(err(&[("VAULT_SECRET_ID", "s")]).starts_with("VAULT_ROLE_ID is not set"));
        let none = err(&[("VAULT_TOKEN", "")]);
        assert!(none.contains("VAULT_TOKEN") && none.contains("VAULT_ROLE_ID"));
    }

    fn settings(auth: AuthSettings, pairs: &[(&str, &str)]) -> Result<Credentials, Vec<String>> {
        Credentials::from_settings(Some(&auth), &env(pairs), "approle")
    }

    #[test]
    fn vault_auth_chooses_the_method_and_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("sv-login-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credential");
        std::fs::write(&file, "  value-not-shown\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n\t").unwrap();
        let missing = dir.join("missing");

        let token = settings(
            AuthSettings::Token { token_file: None },
            &[("VAULT_TOKEN", "t")],
        );
        let token = token.ok().unwrap();
        assert!(!token.can_login_again() && !token.creates_token());
        let err = settings(AuthSettings::Token { token_file: None }, &[])
            .err()
            .unwrap();
        assert!(err[0].starts_with("VAULT_TOKEN is not set"), "{err:?}");
        // A token file: logging in again reads it again, but the token is not ours to revoke.
        let file_token = settings(
            AuthSettings::Token {
                token_file: Some(file.clone()),
            },
            &[("VAULT_TOKEN", "ignored")],
        )
        .ok()
        .unwrap();
        assert!(file_token.can_login_again() && !file_token.creates_token());
        assert_eq!(
            read_credential("token-file", &file).ok().unwrap(),
            "value-not-shown"
        );

        let approle = |secret_id_file: Option<PathBuf>| AuthSettings::AppRole {
            mount: "ar".into(),
            secret_id_file,
        };
        let err = settings(approle(None), &[]).err().unwrap();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].starts_with("VAULT_ROLE_ID is not set"));
        assert!(err[1].starts_with("VAULT_SECRET_ID is not set"));
        let creds = settings(approle(Some(file.clone())), &[("VAULT_ROLE_ID", "r")])
            .ok()
            .unwrap();
        assert!(creds.creates_token() && creds.can_login_again());
        assert_eq!(creds.describe(), "with AppRole at auth/ar");

        let jwt = |jwt_file: PathBuf| AuthSettings::Jwt {
            role: "ci".into(),
            mount: "jwt".into(),
            jwt_file,
        };
        let err = settings(jwt(missing.clone()), &[]).err().unwrap();
        assert!(
            err[0].starts_with(&format!("vault.auth.jwt-file {}: ", missing.display())),
            "{err:?}"
        );
        let err = settings(jwt(empty.clone()), &[]).err().unwrap();
        assert_eq!(
            err,
            [format!(
                "vault.auth.jwt-file {}: the file is empty",
                empty.display()
            )]
        );
        let kubernetes = settings(
            AuthSettings::Kubernetes {
                role: "app".into(),
                mount: "k8s".into(),
                jwt_file: file.clone(),
            },
            &[],
        )
        .ok()
        .unwrap();
        assert_eq!(
            kubernetes.describe(),
            "with Kubernetes at auth/k8s (role app)"
        );
        assert!(kubernetes.creates_token() && kubernetes.can_login_again());

        let cert = AuthSettings::Cert {
            name: None,
            mount: "cert".into(),
        };
        let err = settings(cert.clone(), &[]).err().unwrap();
        assert!(err[0].contains("VAULT_CLIENT_CERT"), "{err:?}");
        assert!(settings(cert, &[("VAULT_CLIENT_CERT", "/c.pem")]).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn credential_files_are_bounded_regular_files_holding_one_line() {
        let dir = std::env::temp_dir().join(format!("sv-credential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, content: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        let read = |path: &Path| read_credential_file(path);
        assert_eq!(read(&write("ok", b"\t s.abc \r\n")), Ok("s.abc".into()));
        let at_limit = write("limit", &vec![b'a'; MAX_CREDENTIAL_FILE as usize]);
        assert_eq!(read(&at_limit).map(|t| t.len()), Ok(64 * 1024));
        let over = write("over", &vec![b'a'; MAX_CREDENTIAL_FILE as usize + 1]);
        assert!(read(&over).unwrap_err().contains("larger than 64 KiB"));
        assert!(
            read(&write("crlf", b"s.abc\r\nX-Injected: 1\n"))
                .unwrap_err()
                .contains("control character")
        );
        assert!(
            read(&write("nul", b"s.a\0bc"))
                .unwrap_err()
                .contains("control character")
        );
        assert!(
            read(&write("binary", b"\xff\xfe"))
                .unwrap_err()
                .contains("not text")
        );
        assert!(read(&dir).unwrap_err().contains("is a directory"));
        assert!(
            read(Path::new("/dev/zero"))
                .unwrap_err()
                .contains("is a device")
        );
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read(&fifo).unwrap_err().contains("is a FIFO"));
        // Symlinks are followed (Kubernetes projects tokens through them).
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("ok"), &link).unwrap();
        assert_eq!(read(&link), Ok("s.abc".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_role_id_does_not_hide_a_missing_secret_id_file() {
        let missing = PathBuf::from("/nonexistent/secret-id");
        let auth = AuthSettings::AppRole {
            mount: "approle".into(),
            secret_id_file: Some(missing.clone()),
        };
        let err = settings(auth, &[]).err().unwrap();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].starts_with("VAULT_ROLE_ID is not set"), "{err:?}");
        assert!(
            err[1].starts_with(&format!(
                "vault.auth.secret-id-file {}: ",
                missing.display()
            )),
            "{err:?}"
        );
    }
}
