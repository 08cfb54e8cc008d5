//! JWT authentication: HS256 with a shared secret, or RS256/ES256 with a
//! public key. The algorithm is fixed by configuration, never taken from the
//! token, so `alg: none` and algorithm-confusion tokens are refused.

use crate::ids::{now_ms, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Clock skew tolerated on `exp` / `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The user's tenant: required with `--tenants`, refused without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Why a token was refused. The `Display` text goes to the client, so it is
/// in our words and never carries a library's error text.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token too long")]
    TooLong,
    #[error("invalid token: {}", describe(.0))]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// RFC 7515 §4.1.11: a `crit` header names extensions that must be
    /// understood; roomcast understands none, so any `crit` is refused.
    #[error("invalid token: critical header extensions are not supported")]
    Critical,
    #[error("invalid subject: {0}")]
    Subject(String),
    #[error("invalid tenant: {0}")]
    Tenant(String),
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not yet valid (nbf)",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            "algorithm not accepted"
        }
        K::UnsupportedAlgorithm => "algorithm not supported",
        K::MissingRequiredClaim(c) if c == "exp" => "missing claim exp",
        K::MissingRequiredClaim(c) if c == "sub" => "missing claim sub",
        K::MissingRequiredClaim(_) => "missing a required claim",
        K::InvalidClaimFormat(_) => "a claim has the wrong type",
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "malformed",
        _ => "rejected",
    }
}

#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    /// Present only for HS256, where the same secret can mint tokens.
    signing: Option<EncodingKey>,
    /// `--tenants`: tokens must carry a `tenant` claim (else they must not).
    tenants: bool,
    /// `--system-user`: the system sender, a `sub` no token may have.
    system: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("alg", &self.validation.algorithms)
            .finish()
    }
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            signing: Some(EncodingKey::from_secret(secret)),
            tenants: false,
            system: None,
        }
    }

    /// RS256 for an RSA public key, ES256 for an EC (P-256) public key.
    pub fn from_public_key_pem(pem: &[u8]) -> anyhow::Result<Self> {
        let (key, alg) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (k, Algorithm::ES256)
        } else {
            anyhow::bail!("JWT public key: not an RSA or EC public key in PEM form");
        };
        Ok(Self {
            key,
            validation: validation(alg),
            signing: None,
            tenants: false,
            system: None,
        })
    }

    /// Builds the authenticator from configuration: the public key if given,
    /// else the configured secret, else the secret file in the data dir
    /// (created with 256 random bits on first use).
    pub fn from_config(
        secret: Option<&str>,
        public_key: Option<&Path>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(path) = public_key {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading JWT public key {}: {e}", path.display()))?;
            return Self::from_public_key_pem(&pem);
        }
        if let Some(secret) = secret {
            anyhow::ensure!(
                secret.len() >= 16,
                "ROOMCAST_JWT_SECRET must be at least 16 bytes"
            );
            return Ok(Self::hs256(secret.as_bytes()));
        }
        Ok(Self::hs256(load_or_create_secret(data_dir)?.as_bytes()))
    }

    /// With tenants on (`--tenants`), every token must carry a `tenant` claim;
    /// with them off, none may (so turning tenants off never merges them).
    pub fn with_tenants(mut self, on: bool) -> Self {
        self.tenants = on;
        self
    }

    /// Refuses tokens whose `sub` is the system sender's id (`--system-user`).
    pub fn with_system_user(mut self, system: &str) -> Self {
        self.system = Some(system.to_string());
        self
    }

    /// The user a token names; with tenants, scoped with its `tenant` claim.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLong);
        }
        if jsonwebtoken::decode_header(token)?.crit.is_some() {
            return Err(AuthError::Critical);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        let user = UserId::plain(&data.claims.sub).map_err(AuthError::Subject)?;
        if self.system.as_deref() == Some(user.as_str()) {
            return Err(AuthError::Subject(format!(
                "{user} is the system sender's id, which no token may claim"
            )));
        }
        match (self.tenants, data.claims.tenant) {
            (true, Some(t)) => {
                crate::proto::ids::check_tenant(&t).map_err(AuthError::Tenant)?;
                Ok(UserId::scoped(&t, &user))
            }
            (true, None) => Err(AuthError::Tenant(
                "missing claim tenant (this server serves several tenants)".into(),
            )),
            (false, Some(_)) => Err(AuthError::Tenant(
                "this server has no tenants; a token with a tenant claim is not for it".into(),
            )),
            (false, None) => Ok(user),
        }
    }

    /// Whether this authenticator can mint tokens (HS256 secret, not a public key).
    pub fn can_mint(&self) -> bool {
        self.signing.is_some()
    }

    /// Mints a token for `user` valid for `ttl_secs` (HS256 only).
    pub fn mint(&self, user: &str, ttl_secs: u64) -> anyhow::Result<String> {
        self.mint_in(None, user, ttl_secs)
    }

    /// Mints a token for `user` of `tenant` (a `tenant` claim, unchecked here:
    /// the server checks it) valid for `ttl_secs` (HS256 only).
    pub fn mint_in(
        &self,
        tenant: Option<&str>,
        user: &str,
        ttl_secs: u64,
    ) -> anyhow::Result<String> {
        let key = self
            .signing
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("minting needs the HS256 secret; with a public key, mint tokens with your identity provider"))?;
        UserId::plain(user).map_err(|e| anyhow::anyhow!(e))?;
        let now = now_ms() / 1000;
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl_secs,
            iat: Some(now),
            tenant: tenant.map(str::to_string),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

/// Name of the generated secret file inside the data dir.
pub const SECRET_FILE: &str = "jwt-secret";

/// Reads DATA_DIR/jwt-secret, creating it (mode 0600, 64 hex chars) if absent.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            f.sync_all().ok();
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().to_string())
        }
        Err(e) => anyhow::bail!("creating {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn minted_tokens_verify() {
        let a = Authenticator::hs256(b"0123456789abcdef0123");
        let t = a.mint("alice", 60).unwrap();
        assert_eq!(a.verify(&t).unwrap().as_str(), "alice");
        let other = Authenticator::hs256(b"another-secret-entirely");
        assert!(other.verify(&t).is_err());
    }

    #[test]
    fn alg_none_and_expired_are_refused() {
        let a = Authenticator::hs256(b"0123456789abcdef0123");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(format!(
            r#"{{"sub":"mallory","exp":{}}}"#,
            now_ms() / 1000 + 600
        ));
        assert!(a.verify(&format!("{header}.{claims}.")).is_err());
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: now_ms() / 1000 - 3600,
                iat: None,
                tenant: None,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(a.verify(&expired).is_err());
        assert!(a.verify("garbage").is_err());
    }

    #[test]
    fn unknown_crit_header_is_refused() {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123");
        let a = Authenticator::hs256(b"0123456789abcdef0123");
        let claims = Claims {
            sub: "alice".into(),
            exp: now_ms() / 1000 + 600,
            iat: None,
            tenant: None,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["x-must-understand".into()]);
        let t = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let e = a.verify(&t).unwrap_err();
        assert!(matches!(e, AuthError::Critical), "{e}");
        // The same token without `crit` is fine: the refusal is the header's.
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert!(a.verify(&t).is_ok());
    }

    #[test]
    fn refusals_are_in_our_words() {
        let a = Authenticator::hs256(b"0123456789abcdef0123");
        for bad in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
            let msg = a.verify(bad).unwrap_err().to_string();
            assert!(msg.starts_with("invalid token: "), "{msg}");
            for internal in ["Json", "Base64", "Error", "line ", "column"] {
                assert!(!msg.contains(internal), "{bad}: {msg}");
            }
        }
    }

    #[test]
    fn tenant_claims_scope_the_user_only_with_tenants_on() {
        let a = Authenticator::hs256(b"0123456789abcdef0123");
        let t = a.with_tenants(true);
        let acme = t.mint_in(Some("acme"), "alice", 60).unwrap();
        let u = t.verify(&acme).unwrap();
        assert_eq!((u.tenant(), u.public()), (Some("acme"), "alice"));
        let plain = t.mint("alice", 60).unwrap();
        assert!(matches!(t.verify(&plain), Err(AuthError::Tenant(_))));
        let bad = t.mint_in(Some("no spaces"), "alice", 60).unwrap();
        assert!(matches!(t.verify(&bad), Err(AuthError::Tenant(_))));
        let single = Authenticator::hs256(b"0123456789abcdef0123");
        assert!(matches!(single.verify(&acme), Err(AuthError::Tenant(_))));
        assert_eq!(single.verify(&plain).unwrap().as_str(), "alice");
        // A sub can never be a scoped id, tenants or not.
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "acme\u{1f}alice".into(),
                exp: now_ms() / 1000 + 600,
                iat: None,
                tenant: None,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        assert!(matches!(single.verify(&forged), Err(AuthError::Subject(_))));
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = load_or_create_secret(dir.path()).unwrap();
        let s2 = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(s1.len(), 64);
    }
}
