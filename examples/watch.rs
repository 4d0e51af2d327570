//! Watches one topic of a running foundry server over its WebSocket (`/v1/ws`) and prints a line per change: a
//! terminal client for the README's walk-through, and a way to wait for a state from a script.
//!
//! ```text
//! cargo run --example watch -- <base-url> <token> <topic> [<key>] [--until <text>] [--timeout <seconds>]
//! ```
//!
//! `<topic>`: `app`, `organization`, `task`, `session` or `sandboxProcesses`; `<key>`: the ids joined by `/`
//! (`acme`, `acme/web/t1`, `acme/web/t1/s1`). It subscribes with `patches`: after the first full snapshot, changes
//! arrive as `{topic}Patched` frames, applied here to the snapshot it holds (`foundry::runtime::patch`). With
//! `--until` it exits (0) once the snapshot (as compact JSON) contains the text, and exits 1 if it did not within
//! `--timeout` (default 60 s). An `error` frame from the server, or a patch that does not fit, exits 2.

use std::time::Duration;

use foundry::runtime::patch::{self, PatchOp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// One line about a frame and the snapshot after it: its status and the newest transcript item or title, not the
/// whole document.
fn describe(frame: &Value, s: &Value) -> String {
    let mut parts = vec![format!("{} v{}", frame["type"].as_str().unwrap_or("?"), frame["version"])];
    if let Some(status) = s["status"].as_str() {
        parts.push(format!("status={status}"));
    }
    if let Some(title) = s["title"].as_str() {
        parts.push(format!("title={title:?}"));
    }
    if let Some(item) = s["transcript"].as_array().and_then(|t| t.last()) {
        let who = item["role"].as_str().unwrap_or(item["kind"].as_str().unwrap_or("?"));
        parts.push(format!("last {who}: {:?}", item["text"].as_str().unwrap_or("")));
    }
    if let Some(partial) = s["partialText"].as_str().filter(|p| !p.is_empty()) {
        parts.push(format!("typing: {partial:?}"));
    }
    if let Some(tasks) = s["taskSummaries"].as_array() {
        parts.push(format!("{} repositories, {} tasks", s["repos"].as_array().map_or(0, Vec::len), tasks.len()));
    }
    parts.join("  ")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        let value = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        value
    };
    let until = flag("--until");
    let timeout = flag("--timeout").and_then(|t| t.parse().ok()).unwrap_or(60);
    let (Some(base), Some(token), Some(topic)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: watch <base-url> <token> <topic> [<key>] [--until <text>] [--timeout <seconds>]");
        std::process::exit(64);
    };
    let ids: Vec<&str> = args.get(3).map(|k| k.split('/').collect()).unwrap_or_default();
    let key: serde_json::Map<String, Value> =
        ["org", "repo", "task", "session"].iter().zip(&ids).map(|(k, v)| (k.to_string(), json!(v))).collect();

    let url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().expect("a ws:// or wss:// URL");
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("a header-safe token"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap_or_else(|e| {
        eprintln!("cannot connect to {base}: {e}");
        std::process::exit(1);
    });
    let sub = if key.is_empty() {
        json!({ "type": "subscribe", "topic": topic, "patches": true })
    } else {
        json!({ "type": "subscribe", "topic": topic, "key": key, "patches": true })
    };
    ws.send(Message::Text(sub.to_string().into())).await.expect("subscribe");

    let watch = async {
        // The snapshot as of the last frame, and its version.
        let mut state: Option<(u64, Value)> = None;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let mut frame: Value = serde_json::from_str(&text).unwrap_or_default();
            let kind = frame["type"].as_str().unwrap_or_default().to_owned();
            let version = frame["version"].as_u64().unwrap_or(0);
            if kind == "error" {
                eprintln!("error {}: {}", frame["code"], frame["message"]);
                std::process::exit(2);
            } else if kind.ends_with("Updated") {
                state = Some((version, frame["snapshot"].take()));
            } else if kind.ends_with("Patched") {
                let ops: Vec<PatchOp> = serde_json::from_value(frame["ops"].take()).unwrap_or_default();
                let applied = match &mut state {
                    Some((have, doc)) if Some(*have) == frame["base"].as_u64() => patch::apply(doc, &ops),
                    _ => Err(patch::PatchError::Missing(format!("version {}", frame["base"]))),
                };
                if let Err(e) = applied {
                    eprintln!("patch to v{version} does not apply: {e}");
                    std::process::exit(2);
                }
                if let Some((have, _)) = &mut state {
                    *have = version;
                }
            } else {
                continue;
            }
            let Some((_, doc)) = &state else { continue };
            println!("{}", describe(&frame, doc));
            if until.as_deref().is_some_and(|u| doc.to_string().contains(u)) {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(Duration::from_secs(timeout), watch).await {
        Ok(true) => {}
        Ok(false) if until.is_none() => {}
        _ => {
            eprintln!("no frame containing {:?} within {timeout} s", until.unwrap_or_default());
            std::process::exit(1);
        }
    }
}
