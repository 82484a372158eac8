//! Credentials: argon2 password hashes for users and random API tokens stored as SHA-256
//! digests. Verification of a Basic password is expensive by design, so successful checks are
//! remembered briefly (keyed by a digest of the credentials, never the password itself), and
//! failed ones are limited per client address and per user name ([`LoginGuard`]): a password
//! cannot be guessed at the rate requests arrive, and a flood of wrong passwords cannot keep
//! every CPU busy with argon2.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "rbt_";

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new API token (shown once) and the digest to store.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let digest = token_digest(&token);
    (token, digest)
}

pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn validate_new_password(password: &str) -> Result<(), crate::domain::ValidationError> {
    if password.chars().count() < 8 {
        return Err(crate::domain::ValidationError::new(
            "password",
            "must be at least 8 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(crate::domain::ValidationError::new(
            "password",
            "is too long",
        ));
    }
    Ok(())
}

/// Remembers recently verified Basic credentials for a short time.
#[derive(Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<String, i64>>,
}

const CACHE_TTL_MS: i64 = 60_000;
const CACHE_MAX: usize = 1024;

impl CredentialCache {
    fn key(username: &str, password: &str, password_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(username.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.update([0]);
        // Including the stored hash invalidates the entry when the password changes.
        h.update(password_hash.as_bytes());
        hex::encode(h.finalize())
    }

    /// These credentials were verified less than a minute ago.
    pub fn is_cached(
        &self,
        username: &str,
        password: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> bool {
        let key = Self::key(username, password, password_hash);
        self.entries
            .lock()
            .is_ok_and(|entries| entries.get(&key).is_some_and(|expires| *expires > now_ms))
    }

    pub fn verify(&self, username: &str, password: &str, password_hash: &str, now_ms: i64) -> bool {
        if self.is_cached(username, password, password_hash, now_ms) {
            return true;
        }
        if !verify_password(password, password_hash) {
            return false;
        }
        let key = Self::key(username, password, password_hash);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_MAX {
                entries.retain(|_, expires| *expires > now_ms);
                if entries.len() >= CACHE_MAX {
                    entries.clear();
                }
            }
            entries.insert(key, now_ms + CACHE_TTL_MS);
        }
        true
    }
}

/// Sliding window of failed password checks.
pub const FAILURE_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Failures a client address may have in the window before it must wait.
pub const FAILURES_PER_CLIENT: usize = 20;
/// Failures one user name may have in the window (from any address) before it must wait: a
/// spread-out guess at one account. Bounded work, at the price that such an attack also makes
/// the real user wait (API tokens are not affected).
pub const FAILURES_PER_USER: usize = 100;
/// Keys remembered at most (the oldest activity goes first beyond this).
const THROTTLE_KEYS_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Client(IpAddr),
    User(String),
}

/// Limits failed password checks (see the module docs) and how many argon2 verifications run
/// at once.
pub struct LoginGuard {
    failures: Mutex<HashMap<ThrottleKey, VecDeque<i64>>>,
    verifications: tokio::sync::Semaphore,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            failures: Mutex::default(),
            verifications: tokio::sync::Semaphore::new(cpus),
        }
    }
}

impl LoginGuard {
    fn keys(client: IpAddr, username: &str) -> [(ThrottleKey, usize); 2] {
        [
            (ThrottleKey::Client(client), FAILURES_PER_CLIENT),
            (
                ThrottleKey::User(username.to_lowercase()),
                FAILURES_PER_USER,
            ),
        ]
    }

    /// Seconds to wait before this client may try `username` again, or `None` when it may now.
    pub fn retry_after(&self, client: IpAddr, username: &str, now_ms: i64) -> Option<u64> {
        let Ok(mut failures) = self.failures.lock() else {
            return None;
        };
        let mut wait_ms = 0;
        for (key, limit) in Self::keys(client, username) {
            let Some(times) = failures.get_mut(&key) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now_ms - t >= FAILURE_WINDOW_MS)
            {
                times.pop_front();
            }
            if times.len() >= limit {
                // Allowed again once enough of the window's failures have aged out.
                if let Some(t) = times.get(times.len() - limit) {
                    wait_ms = wait_ms.max(t + FAILURE_WINDOW_MS - now_ms);
                }
            }
        }
        (wait_ms > 0).then(|| u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1))
    }

    pub fn record_failure(&self, client: IpAddr, username: &str, now_ms: i64) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= THROTTLE_KEYS_MAX {
            failures
                .retain(|_, times| times.back().is_some_and(|t| now_ms - t < FAILURE_WINDOW_MS));
            if failures.len() >= THROTTLE_KEYS_MAX {
                // Still full of recent failures: forget the quietest half rather than grow.
                let mut last: Vec<i64> = failures
                    .values()
                    .filter_map(|t| t.back().copied())
                    .collect();
                last.sort_unstable();
                let cutoff = last[last.len() / 2];
                failures.retain(|_, times| times.back().is_some_and(|t| *t > cutoff));
            }
        }
        for (key, limit) in Self::keys(client, username) {
            let times = failures.entry(key).or_default();
            times.push_back(now_ms);
            // Only the newest `limit` matter for the decision.
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    /// A correct password from this client: its own failures are forgiven (not the user's
    /// failures from elsewhere).
    pub fn record_success(&self, client: IpAddr) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&ThrottleKey::Client(client));
        }
    }

    /// Waits for a verification slot (one per CPU): argon2 is slow and memory-hungry by design.
    pub async fn verification_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.verifications.acquire().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_are_limited_per_client_and_per_user() {
        let guard = LoginGuard::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = 1_000_000;
        for i in 0..FAILURES_PER_CLIENT {
            assert_eq!(guard.retry_after(a, "admin", t0), None, "attempt {i}");
            guard.record_failure(a, "admin", t0 + i as i64);
        }
        // The client is throttled for any user; another client is not.
        assert_eq!(guard.retry_after(a, "admin", t0 + 1_000), Some(299));
        assert!(guard.retry_after(a, "other", t0 + 1_000).is_some());
        assert_eq!(guard.retry_after(b, "admin", t0 + 1_000), None);
        // Free again once the oldest failure leaves the window.
        assert_eq!(guard.retry_after(a, "admin", t0 + FAILURE_WINDOW_MS), None);
        // A success forgives the client's failures.
        for i in 0..FAILURES_PER_CLIENT {
            guard.record_failure(b, "ops", t0 + i as i64);
        }
        assert!(guard.retry_after(b, "ops", t0 + 100).is_some());
        guard.record_success(b);
        assert_eq!(guard.retry_after(b, "ops", t0 + 100), None);
    }

    #[test]
    fn one_user_name_is_limited_across_clients() {
        let guard = LoginGuard::default();
        let t0 = 5_000_000;
        for i in 0..FAILURES_PER_USER {
            let client: IpAddr = format!("10.1.{}.{}", i / 250, i % 250).parse().unwrap();
            guard.record_failure(client, "Admin", t0);
        }
        let fresh: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(
            guard.retry_after(fresh, "admin", t0 + 10).is_some(),
            "case-insensitive"
        );
        assert_eq!(guard.retry_after(fresh, "someone-else", t0 + 10), None);
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let guard = LoginGuard::default();
        for i in 0..(THROTTLE_KEYS_MAX as u32 + 500) {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(i));
            guard.record_failure(client, &format!("user{i}"), 1_000 + i64::from(i));
        }
        assert!(guard.failures.lock().unwrap().len() <= THROTTLE_KEYS_MAX + 2);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_digested() {
        let (a, da) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(token_digest(&a), da);
        assert_eq!(da.len(), 64);
    }
}
