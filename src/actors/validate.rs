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

/// Longest identifier of any kind: GitHub's limit for repository names (logins are at most 39 characters).
pub const MAX_ID: usize = 100;

/// An identifier: 1 to [`MAX_ID`] characters of `[A-Za-z0-9._-]`, and not `.` or `..`. Identifiers become URL path
/// segments, file names and git refs, so no control characters, no separators and no names of directories.
///
/// Each kind of id has its own function below (all on this rule today): the HTTP edge and the domain messages call
/// the same one, so a request is refused at the edge, before any actor or file exists, for exactly the reasons the
/// domain would refuse it.
pub fn id(field: &'static str, value: &str) -> DomainResult<()> {
    let charset = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if value.is_empty() || value.len() > MAX_ID || !charset {
        return Err(DomainError::invalid(
            field,
            format!("must be 1-{MAX_ID} characters of letters, digits, '.', '_' or '-'"),
        ));
    }
    if value == "." || value == ".." {
        return Err(DomainError::invalid(field, "must not be '.' or '..'"));
    }
    Ok(())
}

/// An organization id (our own namespace; usually its GitHub login).
pub fn org_id(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// A repository id within its organization (GitHub repository names allow `.`, `-` and `_`, up to 100 characters).
pub fn repo_id(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// A task id within its repository (`t<n>`, assigned by the repository).
pub fn task_id(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// A session id within its task (`s<n>`, assigned by the task).
pub fn session_id(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// A user id (`u_<hex>`, assigned at sign-up).
pub fn user_id(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// An account login (GitHub: letters, digits and `-`, at most 39; dev sign-in: any identifier).
pub fn login(field: &'static str, value: &str) -> DomainResult<()> {
    id(field, value)
}

/// Longest display name (organization, user, task title, session name).
pub const MAX_NAME: usize = 200;

/// A display name (organization, user, task title, session name): see [`name`], at most [`MAX_NAME`] characters.
pub fn display_name(field: &'static str, value: &str) -> DomainResult<()> {
    name(field, value, MAX_NAME)
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

/// Longest email address, in characters.
pub const MAX_EMAIL: usize = 320;

/// An email address as the sign-in index takes it: something before and after the first `@`, no whitespace or
/// control characters, at most [`MAX_EMAIL`] characters.
pub fn email(field: &'static str, value: &str) -> DomainResult<()> {
    if value.chars().count() > MAX_EMAIL {
        return Err(DomainError::invalid(field, format!("is longer than {MAX_EMAIL} characters")));
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err(DomainError::invalid(field, "is not an email address"));
    };
    if local.is_empty() || domain.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::invalid(field, "is not an email address"));
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

/// The rules above as named JSON Schemas for the API's OpenAPI document (`#[schema(value_type = validate::schema::Id)]`
/// on a body field, `#[param(value_type = ...)]` on a path or query parameter). Each admits only values its check
/// accepts (fewer where a regular expression cannot say the rule exactly: the description says so), so a client
/// that generates requests from the document is never refused for their shape. Patterns use only what JSON Schema
/// (ECMA-262) and Python's `re` read alike: classes, escapes, no lookaround.
pub mod schema {
    use std::borrow::Cow;

    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    /// Characters Rust's `str::trim` removes (Unicode `White_Space`), as a class body.
    const SPACE: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    /// Control characters (`char::is_control`: Unicode `Cc`), as a class body.
    const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

    fn string(description: &str, min: usize, max: usize, pattern: Option<String>) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(pattern)
            .build()
            .into()
    }

    /// A single-line name of at most `max` characters (see [`super::name`]): some character that is neither
    /// whitespace nor control, and no control character at all (the check only looks inside the trimmed name,
    /// the pattern everywhere).
    fn name(description: &str, max: usize) -> RefOr<Schema> {
        let pattern = format!("^[^{CONTROL}]*[^{SPACE}{CONTROL}][^{CONTROL}]*$");
        string(description, 1, max, Some(pattern))
    }

    macro_rules! rule {
        ($(#[$doc:meta])* $name:ident => $schema:expr) => {
            $(#[$doc])*
            pub struct $name;

            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $schema
                }
            }

            impl utoipa::ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }
            }
        };
    }

    rule!(
        /// [`super::id`]: organization, repository, task, session and user ids, logins.
        Id => string(
            "1-100 characters of letters, digits, '.', '_' and '-', and not '.' or '..'",
            1,
            super::MAX_ID,
            // At least one character that is not a dot, or only dots but three or more.
            Some(r"^(?:[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*|\.{3,})$".to_owned()),
        )
    );
    rule!(
        /// [`super::display_name`]: organization, user, task and session names.
        DisplayName => name(
            "a single-line name: not blank, no control characters, at most 200 characters (stored trimmed)",
            super::MAX_NAME,
        )
    );
    rule!(
        /// [`super::name`] with 100 characters: the profile label of an organization or member.
        Label => name("a single-line label: not blank, no control characters, at most 100 characters", 100)
    );
    rule!(
        /// [`super::name`] with 2,000 characters: a repository's remote URL.
        RemoteUrl => name("the git remote URL: not blank, no control characters, at most 2000 characters", 2000)
    );
    rule!(
        /// [`super::text`]: prompts, messages and guidance. The limit is 64 KiB of UTF-8; 16,384 characters never
        /// exceed it.
        Text => string(
            "free text that is not blank, at most 64 KiB of UTF-8 (16384 characters always fit)",
            1,
            super::MAX_TEXT / 4,
            Some(format!("[^{SPACE}]")),
        )
    );
    rule!(
        /// [`super::email`].
        Email => string(
            "an email address: something before and after an '@', no whitespace or control characters",
            3,
            super::MAX_EMAIL,
            Some(format!("^[^@{SPACE}{CONTROL}]+@[^{SPACE}{CONTROL}]+$")),
        )
    );
    rule!(
        /// [`super::branch`]. The pattern is a subset of git's rules (no dots or `@`): everything it admits is a
        /// valid branch name.
        Branch => string(
            "a git branch name (git check-ref-format --branch); this pattern admits a safe subset: '/'-separated \
             parts of letters, digits, '_' and '-', none starting with '-'",
            1,
            200,
            Some(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*)*$".to_owned()),
        )
    );
    rule!(
        /// [`crate::integrations::workspace::validate_path`]: a file in a task's checkout. The pattern is a subset
        /// (no part starting with '.'): everything it admits is a path inside the repository.
        FilePath => string(
            "a relative path inside the repository, never into .git or above it; this pattern admits a safe subset: \
             '/'-separated parts of letters, digits, '.', '_' and '-', none starting with '.' or '-'",
            1,
            1024,
            Some(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*$".to_owned()),
        )
    );
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
        for bad in ["", ".", "..", "a\nb", "a\u{0}", "a b", "é", &"x".repeat(MAX_ID + 1)] {
            assert!(org_id("org", bad).is_err(), "{bad:?}");
        }
        for ok in ["...", ".github", "a..b", "repo-1.x_y", &"x".repeat(MAX_ID)] {
            assert!(repo_id("repo", ok).is_ok(), "{ok:?}");
        }
        for bad in ["", " ", "a\nb", "a\rb", "tab\there", "\u{1b}[31m", &"x".repeat(MAX_NAME + 1)] {
            assert!(display_name("name", bad).is_err(), "{bad:?}");
        }
        assert!(display_name("name", "  Acme Corp  ").is_ok());
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
