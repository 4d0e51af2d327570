//! The frames the connection writes, spliced from already-serialised JSON (snapshots, patches, event payloads)
//! instead of serialising `frames.rs`'s types per subscriber: one shared buffer per change, whatever the number of
//! subscribers. `mod.rs`'s tests parse each of them as the typed contract.

use std::sync::Arc;

use super::super::ApiError;
use crate::runtime::{Event as TopicEventMsg, TopicEvent, TopicPatch};

/// `{"type":"{topic}Updated","key","version","snapshot"}`: the snapshot is spliced in as already-serialised JSON, so
/// a thousand subscribers cost a thousand string copies, not a thousand serialisations.
pub(super) fn update_frame(key_json: &str, ev: &TopicEvent) -> String {
    format!(
        r#"{{"type":"{}Updated","key":{},"version":{},"snapshot":{}}}"#,
        ev.topic,
        key_json,
        ev.version,
        ev.snapshot.get()
    )
}

/// A client behind by several patches gets them in one frame, up to about this many bytes of operations: fewer
/// frames (and socket writes) for a slow client, as coalesced snapshots were, without resending the snapshot.
pub(super) const MAX_MERGED_OPS: usize = 64 * 1024;

/// `{"type":"{topic}Patched","key","version","base","ops"}`: the operations spliced in as already-serialised JSON.
pub(super) fn patch_frame(key_json: &str, p: &TopicPatch) -> String {
    format!(
        r#"{{"type":"{}Patched","key":{},"version":{},"base":{},"ops":{}}}"#,
        p.topic,
        key_json,
        p.version,
        p.base(),
        p.ops.get()
    )
}

/// One `{topic}Patched` frame for consecutive patches: from the first's base to the last's version, their operations
/// in order.
pub(super) fn merged_patch_frame(key_json: &str, patches: &[Arc<TopicPatch>]) -> String {
    let (Some(first), Some(last)) = (patches.first(), patches.last()) else { return String::new() };
    let mut ops = String::from("[");
    for p in patches {
        // A serialised array of operations: `[` ... `]`.
        let raw = p.ops.get();
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
        if inner.is_empty() {
            continue;
        }
        if ops.len() > 1 {
            ops.push(',');
        }
        ops.push_str(inner);
    }
    ops.push(']');
    format!(
        r#"{{"type":"{}Patched","key":{},"version":{},"base":{},"ops":{}}}"#,
        first.topic,
        key_json,
        last.version,
        first.base(),
        ops
    )
}

/// `{"type":"event","topic","key","event","seq","payload"}`: the payload spliced in as already-serialised JSON.
pub(super) fn event_frame(topic: &str, key_json: &str, seq: u64, ev: &TopicEventMsg) -> String {
    // A name is the kind's own constant; serialising a string cannot fail.
    let name = serde_json::to_string(&ev.name).unwrap_or_default();
    format!(
        r#"{{"type":"event","topic":"{topic}","key":{key_json},"event":{name},"seq":{seq},"payload":{}}}"#,
        ev.payload.get()
    )
}

/// `{"type":"lagged","topic","key","missed"}`.
pub(super) fn lagged_frame(topic: &str, key_json: &str, missed: u64) -> String {
    format!(r#"{{"type":"lagged","topic":"{topic}","key":{key_json},"missed":{missed}}}"#)
}

/// `{"type":"error","code","message"}`, plus `about` (the topic and key of the subscription it concerns).
pub(super) fn error_frame_about(e: &ApiError, about: serde_json::Map<String, serde_json::Value>) -> String {
    let mut frame = serde_json::Map::new();
    frame.insert("type".into(), "error".into());
    frame.insert("code".into(), e.code.into());
    frame.insert("message".into(), e.message.as_str().into());
    frame.extend(about);
    serde_json::Value::Object(frame).to_string()
}

pub(super) fn error_frame(e: &ApiError) -> String {
    error_frame_about(e, serde_json::Map::new())
}

/// `taskUpdated`: the shared task detail with the viewer's overlay spliced in as `overlay` (the same shape as
/// `GET .../tasks/{task}`). The version is the sum of both versions, so it grows when either changes.
pub(super) fn task_frame(key_json: &str, detail: &TopicEvent, overlay: &TopicEvent) -> String {
    let raw = detail.snapshot.get().trim_end();
    let body = raw.strip_suffix('}').unwrap_or(raw);
    let sep = if body.trim_end().ends_with('{') { "" } else { "," };
    format!(
        r#"{{"type":"taskUpdated","key":{},"version":{},"snapshot":{}{}"overlay":{}}}}}"#,
        key_json,
        detail.version + overlay.version,
        body,
        sep,
        overlay.snapshot.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, version: u64, json: &str) -> TopicEvent {
        TopicEvent::new(
            "test",
            "k".into(),
            topic.into(),
            version,
            serde_json::value::RawValue::from_string(json.into()).unwrap().into(),
        )
    }

    #[test]
    fn task_frames_splice_the_overlay_into_the_detail() {
        let frame =
            task_frame(r#"{"org":"a"}"#, &event("task", 3, r#"{"taskId":"t1","title":"x"}"#), &event("o", 2, "null"));
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "taskUpdated");
        assert_eq!(v["version"], 5);
        assert_eq!(v["snapshot"], serde_json::json!({ "taskId": "t1", "title": "x", "overlay": null }));
        let empty = task_frame("{}", &event("task", 1, "{ }"), &event("o", 1, r#"{"a":1}"#));
        let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
        assert_eq!(v["snapshot"], serde_json::json!({ "overlay": { "a": 1 } }));
    }

    #[test]
    fn patch_frames_name_their_base_and_carry_the_raw_ops() {
        let hub = crate::runtime::topic::TopicHub::default();
        let mut sub = hub.subscribe("test", "k", "session");
        hub.publish(event("session", 4, r#"{"partialText":""}"#));
        let ops = [crate::runtime::PatchOp::append("/partialText", "hi")];
        hub.publish_patch("test", "k", "session", 5, &ops).unwrap();
        sub.skip_through(4);
        let Some(crate::runtime::TopicFrame::Full(_)) =
            futures_util::FutureExt::now_or_never(sub.next_frame()).flatten()
        else {
            panic!("a full snapshot first");
        };
        hub.publish_patch("test", "k", "session", 6, &ops).unwrap();
        let Some(crate::runtime::TopicFrame::Patch(p)) =
            futures_util::FutureExt::now_or_never(sub.next_frame()).flatten()
        else {
            panic!("then a patch");
        };
        let v: serde_json::Value = serde_json::from_str(&patch_frame(r#"{"org":"a"}"#, &p)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "type": "sessionPatched", "key": { "org": "a" }, "version": 6, "base": 5,
                "ops": [{ "op": "append", "path": "/partialText", "value": "hi" }] })
        );
    }

    #[test]
    fn a_client_behind_gets_consecutive_patches_in_one_frame() {
        let hub = crate::runtime::topic::TopicHub::default();
        let mut sub = hub.subscribe("test", "k", "session");
        hub.publish(event("session", 1, r#"{"partialText":"","transcript":[]}"#));
        assert!(futures_util::FutureExt::now_or_never(sub.next_frame()).flatten().is_some());
        let add = crate::runtime::PatchOp::add("/transcript/-", serde_json::json!({ "seq": 1 }));
        let append = crate::runtime::PatchOp::append("/partialText", "hi");
        hub.publish_patch("test", "k", "session", 2, std::slice::from_ref(&add)).unwrap();
        hub.publish_patch("test", "k", "session", 3, &[]).unwrap();
        hub.publish_patch("test", "k", "session", 4, std::slice::from_ref(&append)).unwrap();
        let mut patches = Vec::new();
        while let Some(crate::runtime::TopicFrame::Patch(p)) = sub.try_next_frame() {
            patches.push(p);
        }
        let v: serde_json::Value = serde_json::from_str(&merged_patch_frame("{}", &patches)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "type": "sessionPatched", "key": {}, "version": 4, "base": 1,
                "ops": [serde_json::to_value(&add).unwrap(), serde_json::to_value(&append).unwrap()] })
        );
    }

    #[test]
    fn update_frames_carry_the_clients_key_and_the_raw_snapshot() {
        let frame = update_frame(r#"{"org":"acme"}"#, &event("organization", 7, r#"{"repos":[]}"#));
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "type": "organizationUpdated", "key": { "org": "acme" }, "version": 7, "snapshot": { "repos": [] } })
        );
    }
}
