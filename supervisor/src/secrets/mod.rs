//! Secrets: named values stored encrypted in the job store ([`crypto`]), granted to
//! jobs by name, shipped decrypted only to the worker running a job they are granted to
//! (the script's `secrets.NAME`), and masked out of that run's output ([`mask`]).
//!
//! The key comes from `--secret-key`/`TRAITOR_SECRET_KEY` (base64 of 32 bytes), else
//! from `--secret-key-file`; standalone mode with neither uses `<data-dir>/secret.key`,
//! created with mode 0600 the first time a secret is saved. Cluster mode has no default:
//! every node must be given the same key, and without one secrets cannot be saved or
//! read (a run of a job with grants fails with a clear error).
//!
//! Must not: log, format or return a value or the key anywhere but in the `StartRun`
//! of a run the value is granted to.

pub mod crypto;
pub mod mask;
pub mod vault;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, bail};

pub use crypto::SecretKey;
pub use mask::Masker;
pub use vault::{RunSecrets, Vault};

/// Largest secret value, bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// `[A-Z_][A-Z0-9_]{0,63}`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Where the key comes from, loaded once, on first use.
#[derive(Debug, Default)]
pub struct KeySource {
    /// Base64 text given directly (flag or environment).
    inline: Option<String>,
    /// A key file given explicitly (must exist).
    file: Option<PathBuf>,
    /// Standalone's default file, created on first write if missing.
    default_file: Option<PathBuf>,
    loaded: OnceLock<SecretKey>,
}

impl KeySource {
    pub fn new(
        inline: Option<String>,
        file: Option<PathBuf>,
        default_file: Option<PathBuf>,
    ) -> Self {
        KeySource {
            inline,
            file,
            default_file,
            loaded: OnceLock::new(),
        }
    }

    /// A source with a fixed key (tests, `exec`).
    pub fn fixed(key: SecretKey) -> Self {
        let s = KeySource::default();
        let _ = s.loaded.set(key);
        s
    }

    /// Checks at start-up that a given key is readable, so a typo fails early.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.inline.is_some() || self.file.is_some() {
            self.key(false)?;
        }
        Ok(())
    }

    /// The key; `create` allows making standalone's default file. `Ok(None)`: no key
    /// is configured (or, without `create`, the default file does not exist yet).
    pub fn key(&self, create: bool) -> anyhow::Result<Option<SecretKey>> {
        if let Some(k) = self.loaded.get() {
            return Ok(Some(k.clone()));
        }
        let key = if let Some(text) = &self.inline {
            SecretKey::from_base64(text).context("read TRAITOR_SECRET_KEY")?
        } else if let Some(path) = &self.file {
            read_key_file(path)?
        } else if let Some(path) = &self.default_file {
            if path.exists() {
                read_key_file(path)?
            } else if create {
                create_key_file(path)?
            } else {
                return Ok(None);
            }
        } else {
            return Ok(None);
        };
        Ok(Some(self.loaded.get_or_init(|| key).clone()))
    }

    /// The key, or an error a user can act on.
    pub fn require(&self, create: bool) -> anyhow::Result<SecretKey> {
        match self.key(create)? {
            Some(k) => Ok(k),
            None => bail!(
                "no secret key is configured (set TRAITOR_SECRET_KEY or --secret-key-file; \
                 cluster mode has no default key file)"
            ),
        }
    }
}

fn read_key_file(path: &std::path::Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the secret key file {}", path.display()))?;
    SecretKey::from_base64(&text).with_context(|| format!("the secret key file {}", path.display()))
}

fn create_key_file(path: &std::path::Path) -> anyhow::Result<SecretKey> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = SecretKey::generate_base64();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create the secret key file {}", path.display()))?;
    f.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write the secret key file {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new secret key file");
    SecretKey::from_base64(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["A", "_", "API_TOKEN_2", &"X".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "1A", "A-B", "A B", "Ä", &"X".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn default_key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret.key");
        let src = KeySource::new(None, None, Some(path.clone()));
        assert!(src.key(false).expect("no key yet").is_none());
        let k = src.require(true).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = k.encrypt("A", "v").expect("encrypt");
        let again = KeySource::new(None, None, Some(path));
        let k2 = again.require(false).expect("read back");
        assert_eq!(k2.decrypt("A", &sealed).expect("same key"), "v");
    }
}
