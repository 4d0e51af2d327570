//! Sandbox processes of a task over HTTP and WebSocket, against the real sandbox-agent server's process API: start,
//! live status on `sandboxProcesses` (running, then exited with its code), logs, stop, delete; another task cannot
//! touch them; without a sandbox the routes say so; a start with an `Idempotency-Key` starts one process however often
//! it is retried, and a retry while the first start is still running is told to wait. Skips (saying why) without
//! `SANDBOX_AGENT_BIN`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64_decode::decode;
use foundry::integrations::sandbox::{ProcessService, SandboxProcesses};
use foundry_client::types::{ProcessSignal, ProcessSpec, ProcessesSnapshot, RepoKey, ServerFrame, TopicKey};
use foundry_client::{Events, Subscribe, TopicState};
use serde_json::json;
use support::web::{start, TestServer};

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

/// The next frame, within 20 s.
async fn next(events: &mut Events) -> ServerFrame {
    let frame = tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("a frame within 20 s");
    frame.expect("a documented frame").expect("the connection open")
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
    let token = world(&s).await;
    let alice = s.api_client().with_token(&token);
    let (t1, t2) = (RepoKey::new("acme", "r1").task("t1"), RepoKey::new("acme", "r1").task("t2"));

    let mut events = alice.subscribe(Subscribe::processes(&t1)).await.unwrap();
    let mut live = TopicState::<ProcessesSnapshot>::for_key(TopicKey::task("acme", "r1", "t1"));
    assert!(live.apply(&next(&mut events).await).unwrap(), "the first frame is the topic's snapshot");
    assert_eq!(live.snapshot().unwrap(), Some(&ProcessesSnapshot { processes: vec![] }));

    // A process that prints and exits with 3: running first, then exited with its code, pushed without asking.
    let spec = |command: &str, args: &[&str]| ProcessSpec {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        cwd: None,
        env: Default::default(),
    };
    let started = alice.start_process(&t1, &spec("sh", &["-c", "echo hello; sleep 0.3; exit 3"])).await.unwrap();
    assert_eq!(started.arg_list(), ["-c", "echo hello; sleep 0.3; exit 3"]);
    let id = started.process_id.clone();
    // One shape on every route: the task's record (`createdAt`/`exitedAt`/`updatedAt`), never the host's `*Ms`.
    let (_, raw) = s.call("GET", &format!("/v1/orgs/acme/repos/r1/tasks/t1/processes/{id}"), Some(&token), None).await;
    let mut fields: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort();
    let shape = ["args", "command", "createdAt", "exitCode", "exitedAt", "id", "pid", "status", "updatedAt"];
    assert_eq!(fields, shape, "{raw}");
    assert_eq!(alice.process(&t1, &id).await.unwrap().created_at, started.created_at);
    let exited = loop {
        live.apply(&next(&mut events).await).unwrap();
        let p = live.snapshot().unwrap().unwrap().processes[0].clone();
        if p.status == "exited" {
            break p;
        }
        assert_eq!(p.process_id, id);
    };
    assert_eq!(exited.exit_code, Some(3), "{exited:?}");
    let logs = alice.process_logs(&t1, &id).await.unwrap();
    let out: Vec<u8> = logs.entries.iter().flat_map(|e| decode(&e.data)).collect();
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");

    // A long one, stopped on request.
    let long_id = alice.start_process(&t1, &spec("sleep", &["60"])).await.unwrap().process_id;
    // Another task can neither see nor touch it.
    let refused = alice.signal_process(&t2, &long_id, ProcessSignal::Kill).await.unwrap_err();
    assert_eq!(refused.status(), Some(404));
    assert!(alice.processes(&t2).await.unwrap().processes.is_empty());
    let refused = alice.delete_process(&t1, &long_id).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "a running process is stopped before it is deleted: {refused}");
    let stopped = alice.signal_process(&t1, &long_id, ProcessSignal::Stop).await.unwrap();
    assert_eq!(stopped.process_id, long_id);
    loop {
        live.apply(&next(&mut events).await).unwrap();
        let processes = &live.snapshot().unwrap().unwrap().processes;
        if processes.iter().any(|p| p.process_id == long_id && p.status == "exited") {
            break;
        }
    }
    alice.delete_process(&t1, &long_id).await.unwrap();
    assert_eq!(alice.processes(&t1).await.unwrap().processes.len(), 1);

    // Bad input is refused before the sandbox sees it.
    let refused = alice.start_process(&t1, &spec("  ", &[])).await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(400), Some("invalid_input")));
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
