//! docs/API.md stays the complete reference of error codes: every code string the source passes to an error
//! constructor (`ApiError::new` / `bad_request` / `unavailable`, the WebSocket error frames built from them in
//! src/http/ws/, a connection hook's `Refusal::new`, and `DomainError::code` in src/actors/error.rs) must be listed
//! there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Codes the source defines but no client ever receives, with the reason.
const NEVER_SENT: &[(&str, &str)] =
    &[("storage", "DomainError::Db is answered as 500 `internal` (src/http/error.rs); its code stays in the log")];

/// Constructors whose first string-literal argument is an error code.
const CONSTRUCTORS: &[&str] = &[
    "ApiError::new(",
    "ApiError::bad_request(",
    "ApiError::unavailable(",
    "Self::new(",
    "Self::unavailable(",
    // A connection hook's refusal reaches the client as the error frame's code.
    "Refusal::new(",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a call's arguments: from just after its `(` to the matching `)`.
fn arguments(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}

fn first_literal(args: &str) -> Option<&str> {
    let start = args.find('"')? + 1;
    let len = args[start..].find('"')?;
    Some(&args[start..start + len])
}

fn is_code(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The codes used in one file's non-test code.
fn codes_in(text: &str, out: &mut BTreeSet<String>) {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    for ctor in CONSTRUCTORS {
        for (at, _) in text.match_indices(ctor) {
            if let Some(lit) = first_literal(arguments(&text[at + ctor.len()..])) {
                if is_code(lit) {
                    out.insert(lit.to_owned());
                }
            }
        }
    }
    // `DomainError::code`: one `Variant => "code"` arm per line.
    if let Some(body) = text.split("pub fn code(&self)").nth(1) {
        let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
        for line in body.lines() {
            if let Some((_, rhs)) = line.split_once("=> \"") {
                out.insert(rhs.trim_end_matches(['"', ',']).to_owned());
            }
        }
    }
}

fn codes_in_source() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut codes = BTreeSet::new();
    for file in files {
        codes_in(&std::fs::read_to_string(&file).unwrap(), &mut codes);
    }
    codes
}

#[test]
fn every_error_code_in_the_source_is_documented() {
    let codes = codes_in_source();
    // The scan finds what it must (else a refactor of the constructors would make this test vacuous).
    for known in ["not_found", "invalid_frame", "unknown_topic", "overloaded", "task_archived", "sandbox_refused"] {
        assert!(codes.contains(known), "the scan no longer finds {known:?}: {codes:?}");
    }
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/API.md")).unwrap();
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !NEVER_SENT.iter().any(|(n, _)| n == c))
        .filter(|c| !docs.contains(&format!("`{c}`")))
        .collect();
    assert!(missing.is_empty(), "error codes used in src/ but not listed in docs/API.md: {missing:?}");
}

#[test]
fn the_scanner_reads_multi_line_calls_and_ignores_messages() {
    let mut codes = BTreeSet::new();
    codes_in(
        r#"
        ApiError::new(
            StatusCode::CONFLICT,
            "some_code",
            format!("{x}"),
        );
        ApiError::bad_request("other_code", "a message with spaces");
        fn f() { Self::new(StatusCode::BAD_REQUEST, code, message) }
        unavailable("a message");
        #[cfg(test)]
        ApiError::bad_request("test_only", "m");
        "#,
        &mut codes,
    );
    assert_eq!(codes, BTreeSet::from(["some_code".to_owned(), "other_code".to_owned()]));
}
