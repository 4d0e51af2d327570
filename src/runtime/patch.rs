//! Topic patches: the change one commit made to a topic's snapshot, as JSON Patch operations (RFC 6902's `add`,
//! `remove` and `replace`, plus `append` for a growing string) addressed by JSON Pointers (RFC 6901).
//!
//! A producer describes its change once, from what it wrote (never by diffing snapshots); the hub serialises it once
//! for every subscriber and folds it into its cached snapshot when a full one is needed; clients (the web app,
//! `examples/watch.rs`) apply the same operations to the snapshot they hold. `append` exists because streamed agent
//! output grows one string: with `replace`, every token would resend the whole reply so far.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation of a patch. Applied in order; each sees the document as the previous ones left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PatchOp {
    /// Inserts `value` at `path`: into an array at an index (the rest shift up) or at `-` (the end), or as an
    /// object member (replacing one of the same name).
    Add { path: String, value: Value },
    /// Removes the array element (the rest shift down) or object member at `path`.
    Remove { path: String },
    /// Replaces the existing value at `path`.
    Replace { path: String, value: Value },
    /// Appends `value` to the string at `path`.
    Append { path: String, value: String },
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOp::Add { path: path.into(), value }
    }

    pub fn remove(path: impl Into<String>) -> Self {
        PatchOp::Remove { path: path.into() }
    }

    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOp::Replace { path: path.into(), value }
    }

    pub fn append(path: impl Into<String>, text: impl Into<String>) -> Self {
        PatchOp::Append { path: path.into(), value: text.into() }
    }

    pub fn path(&self) -> &str {
        match self {
            PatchOp::Add { path, .. }
            | PatchOp::Remove { path }
            | PatchOp::Replace { path, .. }
            | PatchOp::Append { path, .. } => path,
        }
    }
}

/// Why a patch does not apply to a document: the document is not the one the patch was made for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0:?} is not a JSON Pointer (it must be empty or start with '/')")]
    BadPointer(String),
    #[error("nothing at {0:?}")]
    Missing(String),
    #[error("{path:?}: {why}")]
    Mismatch { path: String, why: &'static str },
}

/// The JSON Pointer of `segments` (`["transcript", "-"]` → `/transcript/-`), escaping `~` and `/`.
pub fn pointer<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        for c in s.as_ref().chars() {
            match c {
                '~' => out.push_str("~0"),
                '/' => out.push_str("~1"),
                c => out.push(c),
            }
        }
    }
    out
}

/// Applies `ops` in order. On error the document may be partly patched: callers discard it.
pub fn apply(doc: &mut Value, ops: &[PatchOp]) -> Result<(), PatchError> {
    ops.iter().try_for_each(|op| apply_one(doc, op))
}

fn tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| PatchError::BadPointer(path.to_owned()))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// An array index token: digits without a leading zero (RFC 6901).
fn index(token: &str, path: &str) -> Result<usize, PatchError> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return Err(PatchError::Mismatch { path: path.to_owned(), why: "not an array index" });
    }
    token.parse().map_err(|_| PatchError::Mismatch { path: path.to_owned(), why: "array index out of range" })
}

fn child<'a>(node: &'a mut Value, token: &str, path: &str) -> Result<&'a mut Value, PatchError> {
    let found = match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(index(token, path)?),
        _ => None,
    };
    found.ok_or_else(|| PatchError::Missing(path.to_owned()))
}

fn apply_one(doc: &mut Value, op: &PatchOp) -> Result<(), PatchError> {
    let path = op.path();
    let mut toks = tokens(path)?;
    let Some(last) = toks.pop() else {
        // The whole document.
        return match op {
            PatchOp::Add { value, .. } | PatchOp::Replace { value, .. } => {
                *doc = value.clone();
                Ok(())
            }
            PatchOp::Append { value, .. } => append_to(doc, value, path),
            PatchOp::Remove { .. } => {
                Err(PatchError::Mismatch { path: path.to_owned(), why: "cannot remove the root" })
            }
        };
    };
    let mut parent = doc;
    for t in &toks {
        parent = child(parent, t, path)?;
    }
    let mismatch = |why| PatchError::Mismatch { path: path.to_owned(), why };
    match (op, parent) {
        (PatchOp::Add { value, .. }, Value::Object(map)) => {
            map.insert(last, value.clone());
        }
        (PatchOp::Add { value, .. }, Value::Array(items)) => {
            let at = if last == "-" { items.len() } else { index(&last, path)? };
            if at > items.len() {
                return Err(mismatch("array index past the end"));
            }
            items.insert(at, value.clone());
        }
        (PatchOp::Remove { .. }, Value::Object(map)) => {
            map.remove(&last).ok_or_else(|| PatchError::Missing(path.to_owned()))?;
        }
        (PatchOp::Remove { .. }, Value::Array(items)) => {
            let at = index(&last, path)?;
            if at >= items.len() {
                return Err(PatchError::Missing(path.to_owned()));
            }
            items.remove(at);
        }
        (PatchOp::Replace { value, .. }, parent) => *child(parent, &last, path)? = value.clone(),
        (PatchOp::Append { value, .. }, parent) => append_to(child(parent, &last, path)?, value, path)?,
        _ => return Err(mismatch("the parent is neither an object nor an array")),
    }
    Ok(())
}

fn append_to(target: &mut Value, text: &str, path: &str) -> Result<(), PatchError> {
    match target {
        Value::String(s) => {
            s.push_str(text);
            Ok(())
        }
        _ => Err(PatchError::Mismatch { path: path.to_owned(), why: "append needs a string" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_follow_rfc_6902_plus_append() {
        let mut doc = json!({ "items": [1, 2], "text": "he", "meta": { "a/b": 1, "m~n": 2 } });
        let ops = [
            PatchOp::add("/items/-", json!(3)),
            PatchOp::add("/items/0", json!(0)),
            PatchOp::remove("/items/2"),
            PatchOp::replace("/meta/a~1b", json!("x")),
            PatchOp::remove(pointer(&["meta", "m~n"])),
            PatchOp::add("/meta/new", json!(null)),
            PatchOp::append("/text", "llo"),
        ];
        apply(&mut doc, &ops).unwrap();
        assert_eq!(doc, json!({ "items": [0, 1, 3], "text": "hello", "meta": { "a/b": "x", "new": null } }));
    }

    #[test]
    fn a_patch_for_another_document_is_refused() {
        let doc = json!({ "items": [1], "text": 5 });
        for (op, err) in [
            (PatchOp::remove("/items/1"), PatchError::Missing("/items/1".into())),
            (PatchOp::replace("/nope", json!(1)), PatchError::Missing("/nope".into())),
            (
                PatchOp::add("/items/2", json!(1)),
                PatchError::Mismatch { path: "/items/2".into(), why: "array index past the end" },
            ),
            (
                PatchOp::add("/items/01", json!(1)),
                PatchError::Mismatch { path: "/items/01".into(), why: "not an array index" },
            ),
            (
                PatchOp::append("/text", "x"),
                PatchError::Mismatch { path: "/text".into(), why: "append needs a string" },
            ),
            (PatchOp::remove("items"), PatchError::BadPointer("items".into())),
            (
                PatchOp::add("/text/a", json!(1)),
                PatchError::Mismatch { path: "/text/a".into(), why: "the parent is neither an object nor an array" },
            ),
        ] {
            assert_eq!(apply(&mut doc.clone(), &[op]), Err(err));
        }
    }

    #[test]
    fn ops_serialise_as_json_patch() {
        let ops = vec![PatchOp::append("/partialText", "hi"), PatchOp::remove("/a/0")];
        let text = serde_json::to_string(&ops).unwrap();
        assert_eq!(text, r#"[{"op":"append","path":"/partialText","value":"hi"},{"op":"remove","path":"/a/0"}]"#);
        assert_eq!(serde_json::from_str::<Vec<PatchOp>>(&text).unwrap(), ops);
    }
}
