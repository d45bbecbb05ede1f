//! Certificates and JWTs the tests make themselves: a CA, a server certificate for 127.0.0.1,
//! client certificates, and ES256-signed JWTs. Nothing here is fetched or kept between runs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

/// A CA whose files live in `dir`: `<name>.pem` (certificate) and `<name>-key.pem`.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_file: PathBuf,
    dir: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
}

impl Ca {
    /// A new CA named `name` (also its common name), written to `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let cert_pem = cert.pem();
        let cert_file = dir.join(format!("{name}.pem"));
        std::fs::write(&cert_file, &cert_pem).expect("write CA");
        Ca {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_file,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for 127.0.0.1, files `<name>.pem` and `<name>-key.pem`.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            vec!["127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        let cert_file = self.dir.join(format!("{name}.pem"));
        let key_file = self.dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Issued {
            cert_file,
            key_file,
            cert_pem: cert.pem(),
        }
    }
}

/// An ES256 key pair that signs JWTs; Vault verifies them with [`JwtSigner::public_pem`].
pub struct JwtSigner {
    key: EcdsaKeyPair,
    pub public_pem: String,
}

impl JwtSigner {
    pub fn new() -> JwtSigner {
        let pair = KeyPair::generate().expect("JWT key");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pair.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("JWT key for ring");
        JwtSigner {
            key,
            public_pem: pair.public_key_pem(),
        }
    }

    /// A JWT with `claims`, plus `iat`, `nbf` and `exp` (`exp_in` seconds from now; negative:
    /// expired).
    pub fn sign(&self, claims: Value, exp_in: i64) -> String {
        let now = now();
        let mut claims = claims;
        claims["iat"] = json!(now - 60);
        claims["nbf"] = json!(now - 60);
        claims["exp"] = json!(now + exp_in);
        let header = b64(json!({"alg": "ES256", "typ": "JWT"}).to_string().as_bytes());
        let body = b64(claims.to_string().as_bytes());
        let input = format!("{header}.{body}");
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign JWT");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Base64url without padding (RFC 7515).
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
