//! Credentials: argon2 password hashes for users and random API tokens stored as SHA-256
//! digests. Verification of a Basic password is expensive by design, so successful checks are
//! remembered briefly (keyed by a digest of the credentials, never the password itself).

use std::collections::HashMap;
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

    pub fn verify(&self, username: &str, password: &str, password_hash: &str, now_ms: i64) -> bool {
        let key = Self::key(username, password, password_hash);
        if let Ok(entries) = self.entries.lock() {
            if entries.get(&key).is_some_and(|expires| *expires > now_ms) {
                return true;
            }
        }
        if !verify_password(password, password_hash) {
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
