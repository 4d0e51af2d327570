//! Input validation shared by the domain messages: every refusal is a `DomainError::Invalid` naming the field.

use super::{DomainError, DomainResult};

/// Longest prompt or message text accepted (64 KiB).
pub const MAX_TEXT: usize = 64 * 1024;

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// A human-entered single-line name: non-empty after trimming, at most `max` characters, no control characters.
pub fn name(field: &'static str, value: &str, max: usize) -> DomainResult<()> {
    let v = value.trim();
    if v.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(DomainError::invalid(field, format!("must be at most {max} characters")));
    }
    if has_control(v) {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An identifier: 1 to 100 characters of `[A-Za-z0-9._-]`.
pub fn id(field: &'static str, value: &str) -> DomainResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(field, "must be 1-100 characters of letters, digits, '.', '_' or '-'"))
    }
}

/// Free text (prompts, messages): non-empty, at most [`MAX_TEXT`] bytes.
pub fn text(field: &'static str, value: &str) -> DomainResult<()> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(DomainError::invalid(field, format!("must be at most {MAX_TEXT} bytes")));
    }
    Ok(())
}

/// The SHA-256 of a secret (session token, OAuth state) as hex: exactly 64 ASCII hex digits. Secrets themselves are
/// never passed to actors, so anything else is a caller bug.
pub fn sha256_hex(field: &'static str, value: &str) -> DomainResult<()> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(DomainError::invalid(field, "must be a SHA-256 hash: 64 hex digits"))
    }
}

/// An identifier issued elsewhere (user ids, session ids, provider account ids): 1 to `max` characters, no whitespace
/// or control characters, otherwise opaque.
pub fn opaque_id(field: &'static str, value: &str, max: usize) -> DomainResult<()> {
    if value.is_empty() || value.chars().count() > max {
        return Err(DomainError::invalid(field, format!("must be 1 to {max} characters")));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(DomainError::invalid(field, "must not contain whitespace or control characters"));
    }
    Ok(())
}

/// A git branch name, by the rules of `git check-ref-format --branch`.
pub fn branch(value: &str) -> DomainResult<()> {
    let bad = |why: &str| Err(DomainError::invalid("branch", why.to_owned()));
    if value.is_empty() || value.len() > 200 {
        return bad("must be 1-200 characters");
    }
    if value.starts_with('-') || value.starts_with('/') || value.ends_with('/') || value.ends_with('.') {
        return bad("must not start with '-' or '/' or end with '/' or '.'");
    }
    if value.ends_with(".lock") || value.contains("..") || value.contains("//") || value.contains("@{") || value == "@"
    {
        return bad("must not contain '..', '//', '@{' or end with '.lock'");
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c)) {
        return bad("must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if value.split('/').any(|part| part.starts_with('.')) {
        return bad("no path component may start with '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_rules() {
        for ok in ["main", "feat/login-page", "fix/a.b", "release-1.2"] {
            assert!(branch(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "/x", "x/", "a..b", "a b", "a:b", "x.lock", "a//b", "a@{b", "a/.b", "x.", "a\tb", "@"] {
            assert!(branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_ids() {
        assert!(name("title", "  ", 10).is_err());
        assert!(name("title", "ok", 10).is_ok());
        assert!(name("title", "0123456789x", 10).is_err());
        assert!(name("title", "a\u{7}", 10).is_err());
        assert!(id("repo_id", "repo-1.x_y").is_ok());
        assert!(id("repo_id", "a/b").is_err());
        assert!(text("prompt", &"x".repeat(MAX_TEXT + 1)).is_err());
        assert!(opaque_id("user_id", "u-1|github:42", 20).is_ok());
        assert!(opaque_id("user_id", "a b", 20).is_err());
        assert!(opaque_id("user_id", "", 20).is_err());
        assert!(opaque_id("user_id", "abc", 2).is_err());
    }

    #[test]
    fn hashes() {
        assert!(sha256_hex("token_hash", &"ab".repeat(32)).is_ok());
        assert!(sha256_hex("token_hash", &"ab".repeat(31)).is_err());
        assert!(sha256_hex("token_hash", &"zz".repeat(32)).is_err());
    }
}
