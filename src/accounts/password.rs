//! Password hashing off the async threads: Argon2id with the `argon2` crate's
//! defaults (m = 19 MiB, t = 2, p = 1, OWASP's minimum) in `spawn_blocking`,
//! at most `concurrency` at once, and a bounded number of callers waiting for
//! a turn (more are refused with `unavailable`, never queued without bound).
//! Bcrypt hashes imported from an older system are only verified.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Callers allowed to wait for a hashing slot; more get `Busy`.
pub const MAX_WAITING: usize = 256;

/// A stored password hash: PHC strings (`$argon2id$...`, `$2b$...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Argon2id(String),
    /// Imported; replaced by an Argon2id hash at the first successful login.
    Bcrypt(String),
}

impl Stored {
    pub fn parse(phc: &str) -> Option<Stored> {
        if phc.starts_with("$argon2id$") {
            Some(Stored::Argon2id(phc.to_string()))
        } else if ["$2a$", "$2b$", "$2y$", "$2x$"]
            .iter()
            .any(|p| phc.starts_with(p))
            && phc.len() == 60
        {
            Some(Stored::Bcrypt(phc.to_string()))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Stored::Argon2id(s) | Stored::Bcrypt(s) => s,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password operations waiting")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

pub struct Hasher {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// An Argon2id hash of a random password, made once: unknown users are
/// verified against it, so a login takes as long whether or not the user exists.
static DUMMY: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
    Argon2::default()
        .hash_password(&rand::random::<[u8; 32]>())
        .ok()
        .map(|h| h.to_string())
});

impl Hasher {
    pub fn new(concurrency: usize) -> Hasher {
        Hasher {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|e| HashError::Failed(e.to_string()))?;
        let start = std::time::Instant::now();
        let r = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()));
        crate::metrics::METRICS
            .password_hashing
            .observe_duration(start.elapsed());
        r
    }

    /// A new Argon2id hash (random salt) of `password`.
    pub async fn hash(&self, password: String) -> Result<Stored, HashError> {
        self.run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| Stored::Argon2id(h.to_string()))
                .map_err(|e| HashError::Failed(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `stored` (`None`: an unknown user, checked
    /// against a dummy hash for the same cost).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<Stored>,
    ) -> Result<bool, HashError> {
        self.run(move || match stored {
            None => {
                if let Some(dummy) = DUMMY.as_deref() {
                    let _ = Argon2::default().verify_password(password.as_bytes(), dummy);
                }
                false
            }
            Some(Stored::Argon2id(h)) => Argon2::default()
                .verify_password(password.as_bytes(), h.as_str())
                .is_ok(),
            // bcrypt looks at the first 72 bytes only: a longer password
            // cannot have been set through the old system's bcrypt honestly.
            Some(Stored::Bcrypt(h)) => {
                password.len() <= 72 && bcrypt::verify(password.as_bytes(), &h).unwrap_or(false)
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_round_trip_and_bcrypt_verify() {
        let h = Hasher::new(2);
        let stored = h.hash("correct horse".into()).await.unwrap();
        assert!(stored
            .as_str()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h
            .verify("correct horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!h.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        // Made with `htpasswd -bnBC 4 "" hunter22`, as an older system would have.
        let old =
            Stored::parse("$2y$04$md4CAKuGJtuKmefuwL.Vt.TMby3ttyh0gjIJIfUUqADa1Y8flSL1G").unwrap();
        assert!(matches!(old, Stored::Bcrypt(_)));
        assert!(h
            .verify("hunter22".into(), Some(old.clone()))
            .await
            .unwrap());
        assert!(!h.verify("hunter23".into(), Some(old)).await.unwrap());
        assert_eq!(Stored::parse("plaintext"), None);
    }
}
