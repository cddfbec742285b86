//! API key secrets: generated with the OS-seeded CSPRNG, shown once, stored as SHA-256.
//! Lookups hash the presented secret and find it by digest, so no comparison ever runs over the
//! secret itself; the final digest check is constant-time.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

pub const SECRET_PREFIX: &str = "sk-sy-";
const SECRET_LEN: usize = 40;
/// Characters of the secret kept for display in listings (prefix + 4).
const DISPLAY_LEN: usize = 10;

pub fn generate_secret() -> String {
    let body = Alphanumeric.sample_string(&mut rand::rng(), SECRET_LEN);
    format!("{SECRET_PREFIX}{body}")
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_LEN).collect()
}

pub fn new_key_id() -> String {
    format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Constant-time equality of two digests.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_prefixed_and_hash_stably() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + SECRET_LEN);
        assert!(digests_equal(&hash_secret(&a), &hash_secret(&a)));
        assert!(!digests_equal(&hash_secret(&a), &hash_secret(&b)));
        assert_eq!(display_prefix(&a).len(), 10);
    }
}
