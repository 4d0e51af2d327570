//! Sandbox processes of a task over HTTP and WebSocket, against the real sandbox-agent server's process API: start,
//! live status on `sandboxProcesses` (running, then exited with its code), logs, stop, delete; another task cannot
//! touch them; without a sandbox the routes say so; a start with an `Idempotency-Key` starts one process however often
//! it is retried, and a retry while the first start is still running is told to wait. Skips (saying why) without
//! `SANDBOX_AGENT_BIN`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64_decode::decode;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::web::{start, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use foundry::integrations::sandbox::{ProcessService, SandboxProcesses};

async fn world(s: &TestServer) -> String {
    let alice = s.sign_in("alice").await;
    let (st, _) = s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201);
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    assert_eq!(s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await.0, 201);
    for prompt in ["one", "two"] {
        let (st, _) =
            s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": prompt }))).await;
        assert_eq!(st, 201);
    }
    alice
}

mod base64_decode {
    /// Standard base64 (the host's log encoding), enough for test output.
    pub fn decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }
}

#[actix_rt::test]
async fn processes_run_in_the_sandbox_with_live_status() {
    let Some(sandbox) = support::sandbox::start(false).await else { return };
    let url = sandbox.url.clone();
    let s = start(move |api, _| {
        api.domain.runtime.provide(Arc::new(ProcessService(Arc::new(SandboxProcesses::new(&url)))));
    })
    .await;
    let alice = world(&s).await;
    let t1 = "/v1/orgs/acme/repos/r1/tasks/t1";

    let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let key = json!({ "org": "acme", "repo": "r1", "task": "t1" });
    ws.send(Message::Text(json!({ "type": "subscribe", "topic": "sandboxProcesses", "key": key }).to_string().into()))
        .await
        .unwrap();
    let first = recv(&mut ws).await;
    assert_eq!(first["type"], "sandboxProcessesUpdated", "{first}");
    assert_eq!(first["snapshot"], json!({ "processes": [] }));

    // A process that prints and exits with 3: running first, then exited with its code, pushed without asking.
    let spec = json!({ "command": "sh", "args": ["-c", "echo hello; sleep 0.3; exit 3"] });
    let (st, started) = s.call("POST", &format!("{t1}/processes"), Some(&alice), Some(spec)).await;
    assert_eq!(st, 201, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    // One shape on every route: the task's record (`createdAt`/`exitedAt`/`updatedAt`), never the host's `*Ms`.
    let mut fields: Vec<&str> = started.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    let shape = ["args", "command", "createdAt", "exitCode", "exitedAt", "id", "pid", "status", "updatedAt"];
    assert_eq!(fields, shape, "{started}");
    let (_, one) = s.call("GET", &format!("{t1}/processes/{id}"), Some(&alice), None).await;
    assert_eq!(one["createdAt"], started["createdAt"], "{one}");
    let exited = loop {
        let f = recv(&mut ws).await;
        let p = &f["snapshot"]["processes"][0];
        if p["status"] == "exited" {
            break p.clone();
        }
        assert_eq!(p["id"], id.as_str(), "{f}");
    };
    assert_eq!(exited["exitCode"], 3, "{exited}");
    let (st, logs) = s.call("GET", &format!("{t1}/processes/{id}/logs"), Some(&alice), None).await;
    assert_eq!(st, 200, "{logs}");
    let out: Vec<u8> =
        logs["entries"].as_array().unwrap().iter().flat_map(|e| decode(e["data"].as_str().unwrap())).collect();
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");

    // A long one, stopped on request.
    let (st, long) = s
        .call("POST", &format!("{t1}/processes"), Some(&alice), Some(json!({ "command": "sleep", "args": ["60"] })))
        .await;
    assert_eq!(st, 201);
    let long_id = long["id"].as_str().unwrap().to_owned();
    // Another task can neither see nor touch it.
    let t2 = "/v1/orgs/acme/repos/r1/tasks/t2";
    let (st, _) = s.call("POST", &format!("{t2}/processes/{long_id}/kill"), Some(&alice), None).await;
    assert_eq!(st, 404);
    let (_, other) = s.call("GET", &format!("{t2}/processes"), Some(&alice), None).await;
    assert_eq!(other, json!({ "processes": [] }));
    let (st, body) = s.call("DELETE", &format!("{t1}/processes/{long_id}"), Some(&alice), None).await;
    assert_eq!(st, 409, "a running process is stopped before it is deleted: {body}");
    let (st, stopped) = s.call("POST", &format!("{t1}/processes/{long_id}/stop"), Some(&alice), None).await;
    assert_eq!(st, 200, "{stopped}");
    assert!(stopped.get("createdAt").is_some() && stopped.get("createdAtMs").is_none(), "{stopped}");
    loop {
        let f = recv(&mut ws).await;
        let procs = f["snapshot"]["processes"].as_array().unwrap().clone();
        if procs.iter().any(|p| p["id"] == long_id.as_str() && p["status"] == "exited") {
            break;
        }
    }
    let (st, _) = s.call("DELETE", &format!("{t1}/processes/{long_id}"), Some(&alice), None).await;
    assert_eq!(st, 204);
    let (_, listed) = s.call("GET", &format!("{t1}/processes"), Some(&alice), None).await;
    assert_eq!(listed["processes"].as_array().unwrap().len(), 1, "{listed}");

    // Bad input is refused before the sandbox sees it.
    let (st, _) = s.call("POST", &format!("{t1}/processes"), Some(&alice), Some(json!({ "command": "  " }))).await;
    assert_eq!(st, 400);
    s.stop().await;
}

#[actix_rt::test]
async fn a_keyed_start_starts_one_process_however_often_it_is_retried() {
    use foundry::runtime::idempotency::{ReleaseIdempotency, ReserveIdempotency};
    let Some(sandbox) = support::sandbox::start(false).await else { return };
    let url = sandbox.url.clone();
    let s = start(move |api, _| {
        api.domain.runtime.provide(Arc::new(ProcessService(Arc::new(SandboxProcesses::new(&url)))));
    })
    .await;
    let alice = world(&s).await;
    let path = "/v1/orgs/acme/repos/r1/tasks/t1/processes";
    let spec = json!({ "command": "sleep", "args": ["30"] });
    let key = [("idempotency-key", "start-1")];
    let (st, headers, first) = s.call_with("POST", path, Some(&alice), Some(spec.clone()), &key).await;
    assert_eq!(st, 201, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (st, headers, again) = s.call_with("POST", path, Some(&alice), Some(spec.clone()), &key).await;
    assert_eq!(st, 201, "{again}");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again["id"], first["id"], "the same process: {again}");
    let (_, listed) = s.call("GET", path, Some(&alice), None).await;
    assert_eq!(listed["processes"].as_array().unwrap().len(), 1, "{listed}");
    let other = json!({ "command": "sleep", "args": ["31"] });
    let (st, _, body) = s.call_with("POST", path, Some(&alice), Some(other), &key).await;
    assert_eq!((st, body["error"]["code"].as_str()), (422, Some("idempotency_key_reused")), "{body}");

    // While a first start with a key is on its way to the sandbox (its reservation is taken exactly as the route
    // takes it), a retry is told to come back: 409 with Retry-After, and nothing started.
    let user = s.user_id(&alice).await;
    let spec_text = serde_json::to_string(
        &serde_json::from_value::<foundry::integrations::sandbox::ProcessSpec>(spec.clone()).unwrap(),
    )
    .unwrap();
    let held = foundry::runtime::IdempotencyKey {
        scope: format!("{user} POST {path}"),
        key: "start-2".into(),
        fingerprint: foundry::http::auth::hash_secret(&spec_text),
    };
    let task = foundry::actors::RepoKey::new("acme", "r1").task("t1");
    let tasks = &s.api.domain.tasks;
    tasks.mutate(&task, ReserveIdempotency::pending(held.clone())).await.unwrap();
    let key2 = [("idempotency-key", "start-2")];
    let (st, headers, body) = s.call_with("POST", path, Some(&alice), Some(spec.clone()), &key2).await;
    assert_eq!((st, body["error"]["code"].as_str()), (409, Some("idempotency_in_progress")), "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let (_, listed) = s.call("GET", path, Some(&alice), None).await;
    assert_eq!(listed["processes"].as_array().unwrap().len(), 1, "{listed}");
    // That first start failed (its reservation released): the retry starts the process.
    tasks.mutate(&task, ReleaseIdempotency::new(held)).await.unwrap();
    let (st, _, body) = s.call_with("POST", path, Some(&alice), Some(spec), &key2).await;
    assert_eq!(st, 201, "{body}");
    let (_, listed) = s.call("GET", path, Some(&alice), None).await;
    assert_eq!(listed["processes"].as_array().unwrap().len(), 2, "{listed}");
    for p in listed["processes"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        let (st, _) = s.call("POST", &format!("{path}/{id}/kill"), Some(&alice), None).await;
        assert_eq!(st, 200);
    }
    s.stop().await;
}

async fn recv<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a frame within 20 s");
        if let Message::Text(t) = msg.expect("open").expect("no protocol error") {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[actix_rt::test]
async fn without_a_sandbox_the_routes_say_so() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let (st, body) = s
        .call("POST", "/v1/orgs/acme/repos/r1/tasks/t1/processes", Some(&alice), Some(json!({ "command": "ls" })))
        .await;
    assert_eq!((st, body["error"]["code"].as_str()), (422, Some("sandbox_unavailable")), "{body}");
    let (st, body) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks/t1/processes", Some(&alice), None).await;
    assert_eq!((st, &body), (200, &json!({ "processes": [] })));
    let bob = s.sign_in("bob").await;
    let (st, _) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks/t1/processes", Some(&bob), None).await;
    assert_eq!(st, 403);
    s.stop().await;
}
