//! Optional built-in accounts (`--accounts true`; compiled in, off by
//! default): register, log in, refresh, log out, change password, profile,
//! over HTTP (`/v1/auth/...`, `/v1/me`, [`http`]).
//!
//! The access tokens issued are the JWTs the protocol verifies
//! ([`crate::auth`]: HS256, `sub` = the user name), short-lived; refresh
//! tokens are random 256-bit secrets stored hashed, rotated on every use
//! (presenting a rotated one again signs the account out everywhere),
//! revoked on logout and on a password change. Passwords are Argon2id
//! ([`password`]); bcrypt hashes imported from an older system
//! ([`import_jsonl`]) verify once and are re-hashed. Logins are rate-limited
//! per account and per address. With accounts off (tokens from an external
//! identity provider) none of the routes exist.

pub mod http;
pub mod password;
pub mod store;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::ids::{now_ms, UserId};
use crate::metrics::{account, AccountEvent};
use crate::ratelimit::{Action, Decision, Limits, MemoryRateLimiter};
use password::{HashError, Hasher, Stored};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;
use store::{Account, AccountStore, RefreshRecord};

/// Refresh records kept per account (live and rotated); the oldest go first.
pub const MAX_REFRESH_RECORDS: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
pub const MAX_AVATAR_URL_BYTES: usize = 2048;

/// What went wrong, in the protocol's error vocabulary ([`http`] maps it to
/// a status and a JSON body).
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; retry later")]
    RateLimited(Duration),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<HashError> for AccountError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => {
                AccountError::Unavailable("too many logins in progress; retry".into())
            }
            HashError::Failed(m) => AccountError::Internal(m),
        }
    }
}

impl From<crate::store::StoreError> for AccountError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "account store failed");
        AccountError::Internal("account store failed; retry".into())
    }
}

/// An access token and a refresh token, as returned to the client.
#[derive(Debug, serde::Serialize)]
pub struct Tokens {
    pub user: String,
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct Profile {
    pub user: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub created_at: u64,
}

impl From<&Account> for Profile {
    fn from(a: &Account) -> Self {
        Profile {
            user: a.user.clone(),
            display_name: a.display_name.clone(),
            avatar_url: a.avatar_url.clone(),
            created_at: a.created_ms,
        }
    }
}

/// A profile change: `Some(None)` clears a field, `None` leaves it.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub display_name: Option<Option<String>>,
    pub avatar_url: Option<Option<String>>,
}

pub struct Accounts {
    store: AccountStore,
    hasher: Hasher,
    auth: Authenticator,
    limiter: MemoryRateLimiter,
    access_ttl_secs: u64,
    refresh_ttl: Duration,
    /// Read-modify-write of account records (hashing runs outside it).
    write: tokio::sync::Mutex<()>,
}

/// Lower-cases and checks a user name: 3 to 32 of `a-z 0-9 . _ -`, starting
/// with a letter or digit. It is the JWT `sub` and the protocol's user id.
pub fn normalize_username(name: &str) -> Result<String, AccountError> {
    let n = name.trim().to_lowercase();
    let ok_len = (3..=32).contains(&n.len());
    let ok_chars = n
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_start = n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_start && UserId::new(&n).is_ok() {
        Ok(n)
    } else {
        Err(AccountError::BadRequest(
            "username: 3 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit".into(),
        ))
    }
}

fn check_password(p: &str) -> Result<(), AccountError> {
    if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::BadRequest(format!(
            "password: at least {MIN_PASSWORD_CHARS} characters, at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_display_name(n: &str) -> Result<String, AccountError> {
    let n = n.trim();
    if n.is_empty() || n.chars().count() > MAX_DISPLAY_NAME_CHARS || n.chars().any(char::is_control)
    {
        return Err(AccountError::BadRequest(format!(
            "display_name: 1 to {MAX_DISPLAY_NAME_CHARS} characters, no control characters"
        )));
    }
    Ok(n.to_string())
}

fn check_avatar_url(u: &str) -> Result<String, AccountError> {
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= MAX_AVATAR_URL_BYTES
        && !u.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(AccountError::BadRequest(format!(
            "avatar_url: an http(s) URL of at most {MAX_AVATAR_URL_BYTES} bytes"
        )));
    }
    Ok(u.to_string())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Drops expired records, then the oldest, down to the bound.
fn prune(refresh: &mut Vec<RefreshRecord>, now: u64) {
    refresh.retain(|r| r.expires_ms > now);
    if refresh.len() > MAX_REFRESH_RECORDS {
        let extra = refresh.len() - MAX_REFRESH_RECORDS;
        refresh.drain(..extra);
    }
}

impl Accounts {
    pub fn new(store: AccountStore, auth: Authenticator, config: &Config) -> anyhow::Result<Self> {
        anyhow::ensure!(
            auth.can_mint(),
            "--accounts issues tokens: it needs the HS256 secret (--jwt-secret or the generated \
             one), not --jwt-public-key (an external identity provider issues tokens then)"
        );
        let mut limits = Limits::none();
        if !config.no_rate_limits {
            limits.set(Action::Other, config.limit_login);
        }
        Ok(Accounts {
            store,
            hasher: Hasher::new(config.accounts_hash_concurrency),
            auth,
            limiter: MemoryRateLimiter::new(limits),
            access_ttl_secs: config.access_token_ttl_secs,
            refresh_ttl: Duration::from_secs(config.refresh_token_ttl_secs),
            write: tokio::sync::Mutex::new(()),
        })
    }

    fn limit(&self, keys: &[String]) -> Result<(), AccountError> {
        let mut wait = Duration::ZERO;
        for k in keys {
            let Ok(id) = UserId::new(k) else { continue };
            if let Decision::Deny { retry_after } =
                self.limiter
                    .check_at(&id, Action::Other, std::time::Instant::now())
            {
                wait = wait.max(retry_after);
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(AccountError::RateLimited(wait))
        }
    }

    /// Mints an access token and a new refresh token, recorded in `account`.
    fn issue(&self, account: &mut Account) -> Result<Tokens, AccountError> {
        let now = now_ms();
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let refresh_token = format!("{}.{secret}", account.user);
        account.refresh.push(RefreshRecord {
            hash: sha256_hex(&secret),
            expires_ms: now + self.refresh_ttl.as_millis() as u64,
            rotated: false,
        });
        prune(&mut account.refresh, now);
        let access_token = self
            .auth
            .mint(&account.user, self.access_ttl_secs)
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        Ok(Tokens {
            user: account.user.clone(),
            access_token,
            token_type: "Bearer",
            expires_in: self.access_ttl_secs,
            refresh_token,
            refresh_expires_in: self.refresh_ttl.as_secs(),
        })
    }

    pub async fn register(
        &self,
        username: &str,
        password: String,
        display_name: Option<String>,
        peer: IpAddr,
    ) -> Result<Tokens, AccountError> {
        let user = normalize_username(username)?;
        check_password(&password)?;
        let display_name = display_name
            .as_deref()
            .map(check_display_name)
            .transpose()?;
        self.limit(&[format!("register:ip:{peer}")])?;
        if self.store.get(&user).await?.is_some() {
            return Err(AccountError::Conflict(format!("username {user} is taken")));
        }
        let hash = self.hasher.hash(password).await?;
        let _w = self.write.lock().await;
        if self.store.get(&user).await?.is_some() {
            return Err(AccountError::Conflict(format!("username {user} is taken")));
        }
        let mut account = Account {
            user,
            password: hash.as_str().to_string(),
            display_name,
            avatar_url: None,
            created_ms: now_ms(),
            refresh: Vec::new(),
        };
        let tokens = self.issue(&mut account)?;
        self.store.put(account).await?;
        account_event(AccountEvent::Registered);
        Ok(tokens)
    }

    /// Checks a password; upgrades an imported bcrypt hash on success.
    async fn check_login(&self, user: &str, password: String) -> Result<Account, AccountError> {
        let wrong = || AccountError::Unauthorized("wrong username or password".into());
        let account = self.store.get(user).await?;
        let stored = account.as_ref().and_then(Account::stored_password);
        let was_bcrypt = matches!(stored, Some(Stored::Bcrypt(_)));
        if !self.hasher.verify(password.clone(), stored).await? {
            account_event(AccountEvent::LoginFailed);
            return Err(wrong());
        }
        let mut account = account.ok_or_else(wrong)?;
        if was_bcrypt {
            let upgraded = self.hasher.hash(password).await?;
            let _w = self.write.lock().await;
            if let Some(mut fresh) = self.store.get(user).await? {
                if fresh.password == account.password {
                    fresh.password = upgraded.as_str().to_string();
                    self.store.put(fresh.clone()).await?;
                    account_event(AccountEvent::BcryptUpgraded);
                }
                account = fresh;
            }
        }
        Ok(account)
    }

    pub async fn login(
        &self,
        username: &str,
        password: String,
        peer: IpAddr,
    ) -> Result<Tokens, AccountError> {
        // A malformed name cannot exist; still rate-limited per address.
        let user = normalize_username(username).unwrap_or_default();
        if let Err(e) = self.limit(&[format!("login:user:{user}"), format!("login:ip:{peer}")]) {
            account_event(AccountEvent::LoginRateLimited);
            return Err(e);
        }
        if password.len() > MAX_PASSWORD_BYTES || user.is_empty() {
            account_event(AccountEvent::LoginFailed);
            return Err(AccountError::Unauthorized(
                "wrong username or password".into(),
            ));
        }
        let checked = self.check_login(&user, password).await?;
        let _w = self.write.lock().await;
        let mut account = self.store.get(&checked.user).await?.unwrap_or(checked);
        let tokens = self.issue(&mut account)?;
        self.store.put(account).await?;
        account_event(AccountEvent::LoginOk);
        Ok(tokens)
    }

    /// Exchanges a refresh token for new tokens; the old one is spent.
    pub async fn refresh(&self, token: &str) -> Result<Tokens, AccountError> {
        let refused = |why: &str| {
            account_event(AccountEvent::RefreshRefused);
            AccountError::Unauthorized(why.to_string())
        };
        let Some((user, secret)) = token.rsplit_once('.') else {
            return Err(refused("invalid refresh token"));
        };
        let hash = sha256_hex(secret);
        let _w = self.write.lock().await;
        let Some(mut account) = self.store.get(user).await? else {
            return Err(refused("invalid refresh token"));
        };
        let now = now_ms();
        let Some(i) = account.refresh.iter().position(|r| r.hash == hash) else {
            return Err(refused("invalid or revoked refresh token"));
        };
        let record = account.refresh[i].clone();
        if record.expires_ms <= now {
            account.refresh.remove(i);
            self.store.put(account).await?;
            return Err(refused("refresh token expired; log in again"));
        }
        if record.rotated {
            // Used twice: someone else holds a copy. Sign the account out everywhere.
            tracing::warn!(
                user,
                "a rotated refresh token was presented again; revoking all"
            );
            account.refresh.clear();
            self.store.put(account).await?;
            return Err(refused(
                "refresh token already used; every session of this account was signed out",
            ));
        }
        account.refresh[i].rotated = true;
        let tokens = self.issue(&mut account)?;
        self.store.put(account).await?;
        account_event(AccountEvent::Refreshed);
        Ok(tokens)
    }

    /// Revokes a refresh token (idempotent: an unknown token is not an error).
    pub async fn logout(&self, token: &str) -> Result<(), AccountError> {
        let Some((user, secret)) = token.rsplit_once('.') else {
            return Ok(());
        };
        let hash = sha256_hex(secret);
        let _w = self.write.lock().await;
        if let Some(mut account) = self.store.get(user).await? {
            let before = account.refresh.len();
            account.refresh.retain(|r| r.hash != hash);
            if account.refresh.len() != before {
                self.store.put(account).await?;
            }
        }
        Ok(())
    }

    /// Changes the password (the current one is required), revokes every
    /// refresh token of the account, and returns new tokens for this client.
    pub async fn change_password(
        &self,
        user: &UserId,
        current: String,
        new: String,
        peer: IpAddr,
    ) -> Result<Tokens, AccountError> {
        check_password(&new)?;
        if let Err(e) = self.limit(&[
            format!("login:user:{}", user.as_str()),
            format!("login:ip:{peer}"),
        ]) {
            account_event(AccountEvent::LoginRateLimited);
            return Err(e);
        }
        let checked = self
            .check_login(user.as_str(), current)
            .await
            .map_err(|e| match e {
                AccountError::Unauthorized(_) => {
                    AccountError::Unauthorized("current password is wrong".into())
                }
                e => e,
            })?;
        let hash = self.hasher.hash(new).await?;
        let _w = self.write.lock().await;
        let mut account = self.store.get(&checked.user).await?.unwrap_or(checked);
        account.password = hash.as_str().to_string();
        account.refresh.clear();
        let tokens = self.issue(&mut account)?;
        self.store.put(account).await?;
        account_event(AccountEvent::PasswordChanged);
        Ok(tokens)
    }

    pub async fn profile(&self, user: &UserId) -> Result<Profile, AccountError> {
        match self.store.get(user.as_str()).await? {
            Some(a) => Ok(Profile::from(&a)),
            None => Err(AccountError::NotFound(format!("no account {user}"))),
        }
    }

    pub async fn update_profile(
        &self,
        user: &UserId,
        update: ProfileUpdate,
    ) -> Result<Profile, AccountError> {
        let display_name = match update.display_name {
            Some(Some(n)) => Some(Some(check_display_name(&n)?)),
            other => other,
        };
        let avatar_url = match update.avatar_url {
            Some(Some(u)) => Some(Some(check_avatar_url(&u)?)),
            other => other,
        };
        let _w = self.write.lock().await;
        let Some(mut account) = self.store.get(user.as_str()).await? else {
            return Err(AccountError::NotFound(format!("no account {user}")));
        };
        if let Some(n) = display_name {
            account.display_name = n;
        }
        if let Some(u) = avatar_url {
            account.avatar_url = u;
        }
        let profile = Profile::from(&account);
        self.store.put(account).await?;
        Ok(profile)
    }
}

fn account_event(e: AccountEvent) {
    account(e);
}

/// One line of an import file: `{"user": "...", "bcrypt": "$2b$...",
/// "display_name": "..."}` (display name optional).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    user: String,
    bcrypt: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub added: usize,
    /// Users that already had an account (left as they are).
    pub existing: usize,
}

/// Imports accounts with bcrypt hashes from an older system, one JSON object
/// per line, into the store of `data_dir` (the server must not be running:
/// only one process may open the store). Each verifies once at its first
/// login and is then re-hashed with Argon2id.
pub fn import_jsonl(
    data_dir: &std::path::Path,
    fsync: crate::config::FsyncPolicy,
    input: impl std::io::BufRead,
) -> anyhow::Result<Imported> {
    let store = crate::store::embedded::EmbeddedStore::open(&data_dir.join("store"), fsync)
        .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", data_dir.display()))?;
    let accounts = AccountStore::open(store.database(), fsync)?;
    let mut done = Imported::default();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| anyhow::anyhow!("line {}: {e}", n + 1);
        let l: ImportLine = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let user = normalize_username(&l.user).map_err(|e| at(e.to_string()))?;
        let Some(Stored::Bcrypt(hash)) = Stored::parse(&l.bcrypt) else {
            return Err(at(
                "bcrypt: not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters)".into(),
            ));
        };
        let display_name = l
            .display_name
            .as_deref()
            .map(check_display_name)
            .transpose()
            .map_err(|e| at(e.to_string()))?;
        let avatar_url = l
            .avatar_url
            .as_deref()
            .map(check_avatar_url)
            .transpose()
            .map_err(|e| at(e.to_string()))?;
        if accounts.get_blocking(&user)?.is_some() {
            done.existing += 1;
            continue;
        }
        accounts.put_blocking(&Account {
            user,
            password: hash,
            display_name,
            avatar_url,
            created_ms: now_ms(),
            refresh: Vec::new(),
        })?;
        done.added += 1;
    }
    store
        .flush_blocking()
        .map_err(|e| anyhow::anyhow!("syncing the store: {e}"))?;
    Ok(done)
}

/// `--limit-login`'s default: a burst of 10, then one attempt every 10 s,
/// per account and per address.
pub const DEFAULT_LIMIT_LOGIN: &str = "0.1:10";
