//! How the session's writes reach the `session` topic: as patches, not whole snapshots. A lifecycle write (a prompt,
//! a status change, a rename ...) is wrapped in [`publishing`], which compares the snapshot's fields other than the
//! transcript before and after, and adds the transcript items it appended (the transcript only ever grows); the agent
//! loop's streamed batches describe themselves ([`ApplyTurnEvents`](super::agent)), since they run ~40 times a
//! second. Either way a change costs what it changed, whatever the transcript's length.

use diesel::sqlite::SqliteConnection;
use serde_json::{Map, Value};

use super::schema::{self, TranscriptItem};
use super::{SessionDetail, TOPIC};
use crate::actors::{DomainError, DomainResult, SessionKey};
use crate::runtime::{PatchOp, Tx};

/// Where streamed text gathers until it becomes an item.
pub(super) const PARTIAL_TEXT: &str = "/partialText";
/// The end of the transcript array, where new items go.
pub(super) const TRANSCRIPT_END: &str = "/transcript/-";

/// The snapshot's fields other than the transcript, and the transcript's last item, as of the start of a write.
struct Before {
    head: Map<String, Value>,
    last_seq: i64,
}

fn to_json<T: serde::Serialize>(value: &T) -> DomainResult<Value> {
    serde_json::to_value(value).map_err(|e| DomainError::Db(diesel::result::Error::SerializationError(Box::new(e))))
}

/// `add` of a new transcript item.
pub(super) fn add_item(item: &TranscriptItem) -> DomainResult<PatchOp> {
    Ok(PatchOp::add(TRANSCRIPT_END, to_json(item)?))
}

/// Appends streamed text, extending the previous operation if it appended too (one operation per batch of deltas).
pub(super) fn append_text(ops: &mut Vec<PatchOp>, text: &str) {
    if let Some(PatchOp::Append { path, value }) = ops.last_mut() {
        if path == PARTIAL_TEXT {
            value.push_str(text);
            return;
        }
    }
    ops.push(PatchOp::append(PARTIAL_TEXT, text));
}

/// The snapshot without its transcript (the same fields, serialised the same way: it is built by the same code).
fn head(key: &SessionKey, db: &mut SqliteConnection) -> DomainResult<Option<Before>> {
    let Some(meta) = schema::meta(db)? else { return Ok(None) };
    let detail = SessionDetail::new(key, meta, Vec::new(), schema::queued(db)?);
    let Value::Object(mut head) = to_json(&detail)? else {
        return Err(DomainError::Unprocessable("the session snapshot is not a JSON object".into()));
    };
    head.remove("transcript");
    Ok(Some(Before { head, last_seq: schema::last_seq(db)? }))
}

/// Runs `f`, a write of the session, and publishes its change on the `session` topic: a patch of what differs
/// (streamed text that grew is appended, not replaced), or the full snapshot if the session did not exist before.
pub(super) fn publishing<T>(
    key: &SessionKey,
    tx: &mut Tx<'_>,
    f: impl FnOnce(&mut Tx<'_>) -> DomainResult<T>,
) -> DomainResult<T> {
    let before = head(key, tx.conn())?;
    let out = f(tx)?;
    let Some(before) = before else {
        tx.touch(TOPIC);
        return Ok(out);
    };
    let Some(after) = head(key, tx.conn())? else { return Ok(out) };
    let mut ops = Vec::new();
    for item in schema::transcript_after(tx.conn(), before.last_seq)? {
        ops.push(add_item(&item)?);
    }
    for (field, now) in after.head {
        let was = before.head.get(&field);
        if was == Some(&now) {
            continue;
        }
        let path = crate::runtime::patch::pointer(&[field.as_str()]);
        match (was, &now) {
            (Some(Value::String(was)), Value::String(now)) if !was.is_empty() && now.starts_with(was.as_str()) => {
                ops.push(PatchOp::append(path, &now[was.len()..]))
            }
            _ => ops.push(PatchOp::replace(path, now)),
        }
    }
    tx.patch(TOPIC, ops);
    Ok(out)
}
