//! Entity keys: how a key is written as text (for outbox rows and recovery) and how it becomes a file name that can
//! never leave its kind's directory.

use std::fmt::Debug;
use std::hash::Hash;

use super::error::KeyError;

/// A key that identifies one actor instance of a kind.
///
/// `encode`/`decode` must round-trip: the runtime stores encoded keys (outbox targets, recovery markers) and turns them
/// back into keys after a restart.
pub trait EntityKey: Clone + Eq + Hash + Debug + Send + Sync + Unpin + 'static {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Result<Self, KeyError>;
}

impl EntityKey for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Result<Self, KeyError> {
        Ok(text.to_owned())
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl EntityKey for $t {
            fn encode(&self) -> String {
                self.to_string()
            }
            fn decode(text: &str) -> Result<Self, KeyError> {
                text.parse().map_err(|_| KeyError::Malformed(text.to_owned()))
            }
        }
    )*};
}
int_key!(u32, u64, i64);

/// Longest file name stem we produce; ext4 and most file systems allow 255 bytes per name.
const MAX_STEM: usize = 180;

/// Turns an encoded key into a file name stem that is safe on any POSIX file system.
///
/// Bytes outside `[A-Za-z0-9_-]` are percent-encoded (so `.`, `/` and NUL cannot form a path), which keeps the mapping
/// injective. Stems longer than [`MAX_STEM`] keep a readable prefix plus a 128-bit hash of the whole key; the runtime
/// also stores the full key inside the database and refuses to open a file that belongs to another key.
pub fn file_stem(encoded: &str) -> Result<String, KeyError> {
    if encoded.is_empty() {
        return Err(KeyError::Empty);
    }
    let mut out = String::with_capacity(encoded.len());
    for b in encoded.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
    if out.len() <= MAX_STEM {
        return Ok(out);
    }
    let mut cut = MAX_STEM - 40;
    // Never cut a `%XX` escape in half: the prefix stays a valid escaped string.
    while out.as_bytes()[cut - 1] == b'%' || out.as_bytes()[cut - 2] == b'%' {
        cut -= 1;
    }
    Ok(format!("{}~{}", &out[..cut], hash128_hex(encoded)))
}

/// [`hash128`] of `text` as 32 hex digits: a name derived from text too long to be a file name.
pub fn hash128_hex(text: &str) -> String {
    let (h1, h2) = hash128(text.as_bytes());
    format!("{h1:016x}{h2:016x}")
}

/// Two independent FNV-1a 64-bit hashes (different offset bases): stable across builds and platforms, unlike
/// `std::hash`, which is what a file name derived from it needs.
fn hash128(bytes: &[u8]) -> (u64, u64) {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for &byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
        b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
    }
    (a, b)
}

/// A stable 64-bit hash of an encoded key, used to place actors on arbiters and registry shards.
pub fn placement_hash(encoded: &str) -> u64 {
    hash128(encoded.as_bytes()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_stay_readable() {
        assert_eq!(file_stem("org-42_a").unwrap(), "org-42_a");
    }

    #[test]
    fn path_characters_are_escaped() {
        for key in ["../etc/passwd", "/abs", "a/b", "..", ".", "nul\0byte", "back\\slash", "dot.file"] {
            let stem = file_stem(key).unwrap();
            assert!(!stem.contains('/') && !stem.contains('\0') && !stem.contains('.'), "{key:?} -> {stem}");
            assert!(!stem.contains('\\'));
        }
        assert_eq!(file_stem("../x").unwrap(), "%2E%2E%2Fx");
        assert_eq!(file_stem("\0").unwrap(), "%00");
    }

    #[test]
    fn escaping_is_injective_on_tricky_pairs() {
        assert_ne!(file_stem("%2E").unwrap(), file_stem(".").unwrap());
        assert_ne!(file_stem("a b").unwrap(), file_stem("a%20b").unwrap());
    }

    #[test]
    fn empty_key_is_refused() {
        assert!(matches!(file_stem(""), Err(KeyError::Empty)));
    }

    #[test]
    fn very_long_keys_are_bounded_and_distinct() {
        let a = "x".repeat(10_000);
        let mut b = a.clone();
        b.push('y');
        let sa = file_stem(&a).unwrap();
        let sb = file_stem(&b).unwrap();
        assert!(sa.len() <= MAX_STEM + 40, "{}", sa.len());
        assert_ne!(sa, sb);
        let slashes = "/".repeat(5_000);
        let s = file_stem(&slashes).unwrap();
        assert!(s.len() < 255 && !s.contains('/'));
    }

    #[test]
    fn unicode_keys_are_escaped_bytewise() {
        let s = file_stem("ü").unwrap();
        assert_eq!(s, "%C3%BC");
    }
}
