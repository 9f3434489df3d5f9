//! Encryption of secret values at rest: AES-256-GCM, a random 96-bit nonce per value,
//! the secret's name as associated data (a ciphertext moved to another name does not
//! decrypt). The stored form is `nonce || ciphertext+tag`.
//!
//! Must not: log or format a key or a plaintext.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{Context, bail};
use base64::Engine as _;

const NONCE_LEN: usize = 12;

/// The key that encrypts and decrypts every secret. `Debug` shows nothing.
#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        if bytes.len() != 32 {
            bail!("a secret key must be 32 bytes, not {}", bytes.len());
        }
        Ok(SecretKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(
            bytes,
        ))))
    }

    /// A key from base64 text (standard alphabet, surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .context("decode the secret key as base64")?;
        Self::from_bytes(&bytes)
    }

    /// A fresh random key, as base64 (what a new key file holds).
    pub fn generate_base64() -> String {
        let key = Aes256Gcm::generate_key(OsRng);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Encrypts `value` for the secret `name`.
    pub fn encrypt(&self, name: &str, value: &str) -> anyhow::Result<Vec<u8>> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let payload = Payload {
            msg: value.as_bytes(),
            aad: name.as_bytes(),
        };
        let sealed = self
            .0
            .encrypt(&nonce, payload)
            .map_err(|_| anyhow::anyhow!("encrypt secret {name}"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`SecretKey::encrypt`] made for `name`. Fails on a wrong key, a
    /// wrong name or altered bytes.
    pub fn decrypt(&self, name: &str, stored: &[u8]) -> anyhow::Result<String> {
        if stored.len() < NONCE_LEN + 16 {
            bail!("secret {name}: the stored value is too short to be a ciphertext");
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: name.as_bytes(),
        };
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| {
                anyhow::anyhow!("secret {name} does not decrypt (a different key, or altered)")
            })?;
        String::from_utf8(plain).with_context(|| format!("secret {name} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_base64(&SecretKey::generate_base64()).expect("key")
    }

    #[test]
    fn round_trip_and_random_nonce() {
        let k = key();
        let a = k.encrypt("API_TOKEN", "hunter2").expect("encrypt");
        let b = k.encrypt("API_TOKEN", "hunter2").expect("encrypt");
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.decrypt("API_TOKEN", &a).expect("decrypt"), "hunter2");
    }

    #[test]
    fn wrong_key_wrong_name_or_tampering_fails() {
        let k = key();
        let sealed = k.encrypt("A", "value").expect("encrypt");
        assert!(key().decrypt("A", &sealed).is_err());
        assert!(k.decrypt("B", &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.decrypt("A", &bad).is_err());
        assert!(k.decrypt("A", &sealed[..5]).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert!(SecretKey::from_base64("AAAA").is_err());
        assert!(SecretKey::from_bytes(&[7; 32]).is_ok());
        assert!(format!("{:?}", key()).contains("***"));
    }
}
