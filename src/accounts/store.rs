//! Where accounts live: one record per user in the embedded store's fjall
//! database, in a keyspace of its own (`accounts`), so they survive restarts
//! with the rooms. A record holds the password hash (PHC string), the profile
//! and the user's refresh tokens (SHA-256 hashes only, never the tokens).
//! Writes are synced like message batches (`--fsync`).

use super::password::Stored;
use crate::config::FsyncPolicy;
use crate::store::{StoreError, StoreResult};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub user: String,
    /// PHC string: `$argon2id$...`, or `$2b$...` if imported and not yet upgraded.
    pub password: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    pub created_ms: u64,
    /// Issue order, oldest first; bounded by `MAX_REFRESH_RECORDS`.
    #[serde(default)]
    pub refresh: Vec<RefreshRecord>,
}

impl Account {
    pub fn stored_password(&self) -> Option<Stored> {
        Stored::parse(&self.password)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// SHA-256 of the token's secret, hex.
    pub hash: String,
    pub expires_ms: u64,
    /// Already exchanged for a new one: presenting it again means it leaked.
    pub rotated: bool,
}

#[derive(Clone)]
pub struct AccountStore {
    inner: Arc<(Database, Keyspace)>,
    fsync: FsyncPolicy,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key(user: &str) -> Vec<u8> {
    let mut k = b"u:".to_vec();
    k.extend_from_slice(user.as_bytes());
    k
}

impl AccountStore {
    pub const KEYSPACE: &'static str = "accounts";

    pub fn open(db: Database, fsync: FsyncPolicy) -> StoreResult<AccountStore> {
        let ks = db
            .keyspace(Self::KEYSPACE, KeyspaceCreateOptions::default)
            .map_err(err)?;
        Ok(AccountStore {
            inner: Arc::new((db, ks)),
            fsync,
        })
    }

    pub fn get_blocking(&self, user: &str) -> StoreResult<Option<Account>> {
        match self.inner.1.get(key(user)).map_err(err)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("account {user}: {e}"))),
            None => Ok(None),
        }
    }

    pub fn put_blocking(&self, account: &Account) -> StoreResult<()> {
        let bytes = serde_json::to_vec(account).map_err(err)?;
        let (db, ks) = &*self.inner;
        ks.insert(key(&account.user), bytes).map_err(err)?;
        let mode = match self.fsync {
            FsyncPolicy::Always => PersistMode::SyncData,
            FsyncPolicy::Never => PersistMode::Buffer,
        };
        db.persist(mode).map_err(err)
    }

    pub async fn get(&self, user: &str) -> StoreResult<Option<Account>> {
        let (this, user) = (self.clone(), user.to_string());
        tokio::task::spawn_blocking(move || this.get_blocking(&user))
            .await
            .map_err(err)?
    }

    pub async fn put(&self, account: Account) -> StoreResult<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.put_blocking(&account))
            .await
            .map_err(err)?
    }
}
