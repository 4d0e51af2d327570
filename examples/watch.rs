//! Watches one topic of a running foundry server over its WebSocket (`/v1/ws`) and prints a line per change: a
//! terminal client for the README's walk-through, and a way to wait for a state from a script.
//!
//! ```text
//! cargo run --example watch -- <base-url> <token> <topic> [<key>] [--until <text>] [--timeout <seconds>]
//! ```
//!
//! `<topic>`: `app`, `organization`, `task`, `session` or `sandboxProcesses`; `<key>`: the ids joined by `/`
//! (`acme`, `acme/web/t1`, `acme/web/t1/s1`). It subscribes with `patches`: after the first full snapshot, changes
//! arrive as `{topic}Patched` frames, folded into the snapshot it holds by foundry-client's `TopicState`. With
//! `--until` it exits (0) once the snapshot (as compact JSON) contains the text, and exits 1 if it did not within
//! `--timeout` (default 60 s). Events (`gitOperation` on a task) print a line of their own. An `error` frame from
//! the server, or a patch that does not fit, exits 2.

use std::time::Duration;

use foundry_client::types::{
    AppSnapshot, OrganizationSnapshot, ProcessesSnapshot, ServerFrame, SessionDetail, TaskView, TopicKey, TopicName,
    TopicSnapshot,
};
use foundry_client::{Client, Events, Subscribe, TopicState};
use serde_json::Value;

/// One line about a frame and the snapshot after it: its status and the newest transcript item or title, not the
/// whole document.
fn describe(frame: &ServerFrame, s: &Value) -> String {
    let kind = serde_json::to_value(frame).ok().and_then(|f| f["type"].as_str().map(str::to_owned));
    let mut parts = vec![format!("{} v{}", kind.unwrap_or_default(), frame.version().unwrap_or_default())];
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

/// Folds the topic's frames into its state, printing a line per change; `true` once the state contains `until`.
async fn follow<S: TopicSnapshot>(mut events: Events, until: Option<&str>) -> bool {
    let mut state = TopicState::<S>::new();
    loop {
        let frame = match events.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return false,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        if let ServerFrame::Error { code, message, .. } = &frame {
            eprintln!("error {code}: {message}");
            std::process::exit(2);
        }
        // Events are told once, beside the state (a `lagged` frame before a fresh snapshot says some were lost).
        match &frame {
            ServerFrame::Event { event, seq, payload, .. } => println!("event #{seq} {event} {payload}"),
            ServerFrame::Lagged { missed, .. } => println!("lost {missed} events"),
            _ => {}
        }
        match state.apply(&frame) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                eprintln!("frame to v{} does not apply: {e}", frame.version().unwrap_or_default());
                std::process::exit(2);
            }
        }
        println!("{}", describe(&frame, state.json()));
        if until.is_some_and(|u| state.json().to_string().contains(u)) {
            return true;
        }
    }
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
    let Ok(topic) = serde_json::from_value::<TopicName>(Value::String(topic.clone())) else {
        eprintln!("unknown topic {topic:?}: app, organization, task, session or sandboxProcesses");
        std::process::exit(64);
    };
    let ids: Vec<String> = args.get(3).map(|k| k.split('/').map(str::to_owned).collect()).unwrap_or_default();
    let mut ids = ids.into_iter();
    let key = ids.next().map(|org| TopicKey { org, repo: ids.next(), task: ids.next(), session: ids.next() });
    let sub = Subscribe { topic, key, after: None, patches: true, params: None };

    let client = Client::new(base.as_str()).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(64);
    });
    let events = client.with_token(token.as_str()).subscribe(sub).await.unwrap_or_else(|e| {
        eprintln!("cannot connect to {base}: {e}");
        std::process::exit(1);
    });
    let until = until.as_deref();
    let watch = async {
        match topic {
            TopicName::App => follow::<AppSnapshot>(events, until).await,
            TopicName::Organization => follow::<OrganizationSnapshot>(events, until).await,
            TopicName::Task => follow::<TaskView>(events, until).await,
            TopicName::Session => follow::<SessionDetail>(events, until).await,
            TopicName::SandboxProcesses => follow::<ProcessesSnapshot>(events, until).await,
        }
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
