//! Encryption at rest of the secrets foundry has to read back: users' GitHub OAuth tokens, which prove control of a
//! GitHub account when an organization connects one. AES-256-GCM (ring) under one 32-byte key per server.
//!
//! A sealed value is `v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`: the format version, the first 8 hex digits of
//! a hash of the key (so a value sealed under another key is reported as such, not as garbage), a random 96-bit nonce
//! per encryption, and the AEAD output. The caller's `context` (user, provider, account) is the associated data: a
//! sealed token copied to another row or another user does not open.
//!
//! The key comes from a file of 64 hex digits: `--token-key-file`, or `<data dir>/token-key`, generated on first start
//! with mode 0600. A key file that others can read is refused, as ssh refuses such private keys.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::integrations::github::app::{base64_decode, base64url};

/// The key file's name in the data directory when no `--token-key-file` is given.
pub const KEY_FILE_NAME: &str = "token-key";
const VERSION: &str = "v1";

/// What can go wrong loading a key or opening a sealed value. Messages never contain key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum SecretsError {
    #[error("token key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error(
        "sealed with token key {sealed_with}, but this server's token key is {current} \
         (was --token-key-file or <data dir>/{KEY_FILE_NAME} replaced?)"
    )]
    WrongKey { sealed_with: String, current: String },
    #[error("the sealed value does not decrypt: damaged, or moved from another user or account")]
    Damaged,
    #[error("not a sealed value (expected {VERSION}:<key id>:<data>)")]
    Malformed,
    #[error("the OS random generator failed")]
    Random,
}

/// Seals and opens values under the server's token key. A runtime service (`Runtime::provide`).
pub struct TokenCipher {
    key: LessSafeKey,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

impl TokenCipher {
    pub fn from_key(key: [u8; 32]) -> TokenCipher {
        // The id names the key without revealing it: a domain-separated hash, truncated.
        let key_id = hex(&Sha256::new().chain_update(b"foundry token key id\0").chain_update(key).finalize()[..4]);
        // AES-256 takes any 32 bytes, so this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, &key).expect("AES-256-GCM accepts a 32-byte key");
        TokenCipher { key: LessSafeKey::new(unbound), key_id, rng: SystemRandom::new() }
    }

    /// A fresh random key (not written anywhere): for tests and tools.
    pub fn generate() -> Result<TokenCipher, SecretsError> {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| SecretsError::Random)?;
        Ok(TokenCipher::from_key(key))
    }

    /// The key in an existing file (64 hex digits), refused if others may read it.
    pub fn load(path: &Path) -> Result<TokenCipher, SecretsError> {
        let err = |message: String| SecretsError::KeyFile { path: path.to_owned(), message };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        check_private(&meta).map_err(err)?;
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key = parse_hex_key(&text).ok_or_else(|| err("must hold 64 hex digits (a 32-byte key)".into()))?;
        Ok(TokenCipher::from_key(key))
    }

    /// [`load`](Self::load), generating the file (mode 0600, never overwriting) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<TokenCipher, SecretsError> {
        if !path.exists() {
            let mut key = [0u8; 32];
            SystemRandom::new().fill(&mut key).map_err(|_| SecretsError::Random)?;
            match write_new_key(path, &key) {
                Ok(()) => tracing::info!(path = %path.display(), "generated the token key"),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SecretsError::KeyFile { path: path.to_owned(), message: e.to_string() }),
            }
        }
        TokenCipher::load(path)
    }

    /// The key's public id (8 hex digits), as written into every sealed value.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `value` is in a sealed format (of any key); anything else is a legacy plaintext value.
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with("v1:")
    }

    /// Encrypts `plaintext`, bound to `context` (which [`open`](Self::open) must repeat).
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SecretsError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{VERSION}:{}:{}", self.key_id, base64url(&out)))
    }

    /// Decrypts a value [`seal`](Self::seal) produced for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SecretsError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SecretsError::Malformed);
        };
        if key_id != self.key_id {
            return Err(SecretsError::WrongKey { sealed_with: key_id.to_owned(), current: self.key_id.clone() });
        }
        let mut data = base64_decode(data).ok_or(SecretsError::Malformed)?;
        if data.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SecretsError::Malformed);
        }
        let mut rest = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| SecretsError::Malformed)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut rest)
            .map_err(|_| SecretsError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretsError::Damaged)
    }
}

#[cfg(unix)]
fn check_private(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("is accessible by others (mode {mode:o}); allow only its owner: chmod 600"));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// Creates `path` with the key (fails if it exists), readable by its owner only from the first byte on.
fn write_new_key(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", hex(key)).as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let a = TokenCipher::generate().unwrap();
        let b = TokenCipher::generate().unwrap();
        let sealed = a.seal("gho_secret", "u1/github/42").unwrap();
        assert!(TokenCipher::is_sealed(&sealed) && !sealed.contains("gho_secret"), "{sealed}");
        assert_ne!(sealed, a.seal("gho_secret", "u1/github/42").unwrap(), "a fresh nonce each time");
        assert_eq!(a.open(&sealed, "u1/github/42").unwrap(), "gho_secret");
        assert_eq!(a.open(&sealed, "u2/github/42"), Err(SecretsError::Damaged), "bound to its row");
        assert!(matches!(b.open(&sealed, "u1/github/42"), Err(SecretsError::WrongKey { .. })));
        // A character in the middle: the last one of unpadded base64 carries bits the decoder drops, so changing
        // it may leave the bytes as they were.
        let mut flipped: Vec<char> = sealed.chars().collect();
        let middle = flipped.len() - 8;
        flipped[middle] = if flipped[middle] == 'A' { 'B' } else { 'A' };
        let flipped: String = flipped.into_iter().collect();
        assert_eq!(a.open(&flipped, "u1/github/42"), Err(SecretsError::Damaged));
        assert_eq!(a.open("gho_plain", "x"), Err(SecretsError::Malformed));
        assert!(!TokenCipher::is_sealed("gho_plain"));
    }

    #[test]
    fn key_files_are_generated_private_and_refused_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(KEY_FILE_NAME);
        let first = TokenCipher::load_or_create(&path).unwrap();
        let again = TokenCipher::load_or_create(&path).unwrap();
        assert_eq!(first.key_id(), again.key_id(), "the file is reused, not replaced");
        let sealed = first.seal("t", "c").unwrap();
        assert_eq!(TokenCipher::load(&path).unwrap().open(&sealed, "c").unwrap(), "t");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = TokenCipher::load(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
        }
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not hex").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(TokenCipher::load(&bad).unwrap_err().to_string().contains("64 hex digits"));
        assert!(TokenCipher::load(&dir.path().join("missing")).is_err(), "load never creates");
    }
}
