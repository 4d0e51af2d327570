//! WebSocket topic subscriptions with a real WebSocket client over TCP against the running server: authentication
//! before the upgrade, snapshot first then every change, membership checks, per-user `app` isolation, error frames
//! that leave the connection usable, oversize frames, heartbeats, and sign-out/removal ending access.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::web::{start, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &TestServer, token: Option<&str>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
    if let Some(token) = token {
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next JSON text frame (pings are answered by the client library).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a frame within 20 s");
        match msg.expect("connection open").expect("no protocol error") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Frames until one of `kind`, skipping others.
async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let f = recv(ws).await;
        if f["type"] == kind {
            return f;
        }
    }
}

async fn world(s: &TestServer) -> (String, String) {
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;
    let (st, _) = s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201);
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let (st, _) = s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await;
    assert_eq!(st, 201);
    (alice, bob)
}

#[actix_rt::test]
async fn subscriptions_get_the_snapshot_then_every_change() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;

    match connect(&s, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("an unauthenticated upgrade must be refused, got {:?}", other.map(|_| ())),
    }

    let mut ws = connect(&s, Some(&alice)).await.unwrap();
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } })).await;
    let first = recv(&mut ws).await;
    assert_eq!(first["type"], "organizationUpdated", "{first}");
    assert_eq!(first["key"], json!({ "org": "acme" }));
    assert_eq!(first["snapshot"]["repos"][0]["repoId"], "r1");
    let v0 = first["version"].as_u64().unwrap();

    let (st, _) =
        s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix login" }))).await;
    assert_eq!(st, 201);
    // Coalesced or not, the latest snapshot arrives with a newer version and the task in it.
    let mut latest = first;
    while latest["snapshot"]["taskSummaries"].as_array().is_none_or(|t| t.is_empty()) {
        latest = recv_type(&mut ws, "organizationUpdated").await;
        assert!(latest["version"].as_u64().unwrap() > v0);
    }
    assert_eq!(latest["snapshot"]["taskSummaries"][0]["taskId"], "t1", "{latest}");

    // While subscribed, GET serves the topic's snapshot: the same document, and current right after a change.
    let (st, fetched) = s.call("GET", "/v1/orgs/acme", Some(&alice), None).await;
    assert_eq!(st, 200);
    assert!(s.api.domain.orgs.latest_snapshot(&"acme".to_owned(), "organization").is_some(), "served from the topic");
    let (_, read) = (
        0,
        s.api
            .domain
            .orgs
            .read(&"acme".to_owned(), foundry::actors::organization::GetOrganizationSnapshot)
            .await
            .unwrap(),
    );
    // The agent's turn may still move task summaries between the two calls; the rest must be the same document.
    let read = serde_json::to_value(&read).unwrap();
    for field in ["organizationId", "profile", "members"] {
        assert_eq!(fetched[field], read[field], "the topic's snapshot is the read's: {field}");
    }
    assert_eq!(fetched["repos"][0]["repoId"], read["repos"][0]["repoId"]);
    assert_eq!(fetched["taskSummaries"].as_array().map(Vec::len), Some(1));
    let repo = json!({ "repoId": "r2", "fullName": "acme/r2", "remoteUrl": "https://example.invalid/acme/r2.git" });
    assert_eq!(s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await.0, 201);
    let (_, fetched) = s.call("GET", "/v1/orgs/acme", Some(&alice), None).await;
    assert_eq!(fetched["repos"].as_array().unwrap().len(), 2, "read-your-writes: {fetched}");

    // Task and session topics.
    send(
        &mut ws,
        json!({ "type": "subscribe", "topic": "task", "key": { "org": "acme", "repo": "r1", "task": "t1" } }),
    )
    .await;
    let task = recv_type(&mut ws, "taskUpdated").await;
    assert_eq!(task["snapshot"]["taskId"], "t1");
    let key = json!({ "org": "acme", "repo": "r1", "task": "t1", "session": "s1" });
    send(&mut ws, json!({ "type": "subscribe", "topic": "session", "key": key })).await;
    let session = recv_type(&mut ws, "sessionUpdated").await;
    assert_eq!(session["snapshot"]["sessionId"], "s1");

    // Malformed and refused frames get error frames; the connection stays usable.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv_type(&mut ws, "error").await["code"], "invalid_frame");
    send(&mut ws, json!({ "type": "subscribe", "topic": "weather", "key": { "org": "acme" } })).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "unknown_topic");
    send(
        &mut ws,
        json!({ "type": "subscribe", "topic": "task", "key": { "org": "acme", "repo": "r1", "task": "t404" } }),
    )
    .await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "not_found");
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "nope" } })).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "not_found");
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(recv_type(&mut ws, "pong").await["type"], "pong");
    send(&mut ws, json!({ "type": "subscribe", "topic": "task", "key": { "org": "acme", "task": "t1" } })).await;
    let err = recv_type(&mut ws, "error").await;
    assert_eq!(err["code"], "invalid_frame", "a task key needs its repository: {err}");
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme", "color": "red" } }))
        .await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "invalid_frame", "unknown key fields are refused");
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "../etc" } })).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "invalid_input");
    send(&mut ws, json!({ "type": "unsubscribe", "topic": "session", "key": key })).await;
    assert_eq!(recv_type(&mut ws, "unsubscribed").await["topic"], "session");

    // A non-member is refused the organization's topics, on the same usable connection.
    let mut bobws = connect(&s, Some(&bob)).await.unwrap();
    send(&mut bobws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } })).await;
    assert_eq!(recv(&mut bobws).await["code"], "forbidden");
    send(
        &mut bobws,
        json!({ "type": "subscribe", "topic": "task", "key": { "org": "acme", "repo": "r1", "task": "t1" } }),
    )
    .await;
    assert_eq!(recv(&mut bobws).await["code"], "forbidden");
    send(&mut bobws, json!({ "type": "ping" })).await;
    assert_eq!(recv(&mut bobws).await["type"], "pong");
    s.stop().await;
}

#[actix_rt::test]
async fn the_app_topic_reaches_only_its_own_user() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;
    let alice_id = s.user_id(&alice).await;
    let bob_id = s.user_id(&bob).await;
    let mut a = connect(&s, Some(&alice)).await.unwrap();
    let mut b = connect(&s, Some(&bob)).await.unwrap();
    send(&mut a, json!({ "type": "subscribe", "topic": "app" })).await;
    send(&mut b, json!({ "type": "subscribe", "topic": "app" })).await;
    let fa = recv_type(&mut a, "appUpdated").await;
    let fb = recv_type(&mut b, "appUpdated").await;
    assert_eq!(fa["snapshot"]["user"]["id"], alice_id.as_str());
    assert_eq!(fb["snapshot"]["user"]["id"], bob_id.as_str());
    // Naming another user's app is refused: app always means your own.
    send(&mut b, json!({ "type": "subscribe", "topic": "app", "key": { "org": alice_id } })).await;
    assert_eq!(recv_type(&mut b, "error").await["code"], "invalid_frame");

    // alice changes her app state; her connection sees it, bob's never does.
    let (st, models) = s.call("GET", "/v1/models", Some(&alice), None).await;
    assert_eq!(st, 200);
    let other = models
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .find(|m| *m != fa["snapshot"]["defaultModel"])
        .unwrap()
        .to_owned();
    let (st, _) = s.call("PUT", "/v1/me/default-model", Some(&alice), Some(json!({ "model": other }))).await;
    assert_eq!(st, 200);
    let next = recv_type(&mut a, "appUpdated").await;
    assert_eq!(next["snapshot"]["defaultModel"], other.as_str());
    send(&mut b, json!({ "type": "ping" })).await;
    loop {
        let f = recv(&mut b).await;
        assert!(!f.to_string().contains(&alice_id), "bob received alice's state: {f}");
        if f["type"] == "pong" {
            break;
        }
    }
    s.stop().await;
}

/// A connection holds a bounded number of subscriptions; past it, subscribing is refused and the rest keep working.
#[actix_rt::test]
async fn subscriptions_per_connection_are_bounded() {
    let s = start(|api, _| api.ws.max_subscriptions = 2).await;
    let (alice, _) = world(&s).await;
    let (st, _) =
        s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix login" }))).await;
    assert_eq!(st, 201);
    let mut ws = connect(&s, Some(&alice)).await.unwrap();
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } })).await;
    recv_type(&mut ws, "organizationUpdated").await;
    send(&mut ws, json!({ "type": "subscribe", "topic": "app" })).await;
    recv_type(&mut ws, "appUpdated").await;
    send(
        &mut ws,
        json!({ "type": "subscribe", "topic": "task", "key": { "org": "acme", "repo": "r1", "task": "t1" } }),
    )
    .await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "too_many_subscriptions");
    // Subscribing again to one held is not a new subscription: it resends the current snapshot.
    send(&mut ws, json!({ "type": "subscribe", "topic": "app" })).await;
    recv_type(&mut ws, "appUpdated").await;
    drop(ws);
    s.stop().await;
}

#[actix_rt::test]
async fn oversize_frames_close_and_dead_clients_are_dropped() {
    let s = start(|api, _| {
        api.ws.heartbeat = Duration::from_millis(50);
        api.ws.client_timeout = Duration::from_millis(200);
        api.ws.max_frame = 1024;
    })
    .await;
    let (alice, _) = world(&s).await;

    let mut ws = connect(&s, Some(&alice)).await.unwrap();
    send(&mut ws, json!({ "type": "ping", "pad": "x".repeat(4096) })).await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close reason"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Size);
    assert!(close.reason.contains("1024"), "{}", close.reason);

    // A client that never reads (so never answers pings) is dropped by the heartbeat.
    let before = s.api.stats.ws_dropped.load(std::sync::atomic::Ordering::Relaxed);
    let silent = connect(&s, Some(&alice)).await.unwrap();
    support::eventually("the silent client is dropped", || {
        s.api.stats.ws_dropped.load(std::sync::atomic::Ordering::Relaxed) > before
    })
    .await;
    drop(silent);
    support::eventually("no sessions left open", || {
        s.api.stats.ws_sessions.load(std::sync::atomic::Ordering::Relaxed) == 0
    })
    .await;
    let (_, metrics) = (0, s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap());
    assert!(metrics.contains("foundry_ws_sessions 0"), "{metrics}");
    assert!(metrics.contains("foundry_ws_sessions_total 2"), "{metrics}");
    s.stop().await;
}

#[actix_rt::test]
async fn sign_out_and_removal_end_access_on_open_connections() {
    let s = start(|api, _| {
        api.ws.heartbeat = Duration::from_millis(50);
        api.ws.recheck_every = 1;
    })
    .await;
    let (alice, bob) = world(&s).await;
    let bob_id = s.user_id(&bob).await;
    let (st, _) = s
        .call("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), Some(json!({ "role": "member" })))
        .await;
    assert_eq!(st, 200);

    let mut b = connect(&s, Some(&bob)).await.unwrap();
    send(&mut b, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } })).await;
    assert_eq!(recv(&mut b).await["type"], "organizationUpdated");
    let (st, _) = s.call("DELETE", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), None).await;
    assert_eq!(st, 204);
    let lost = recv_type(&mut b, "error").await;
    assert_eq!(lost["code"], "forbidden", "{lost}");
    send(&mut b, json!({ "type": "ping" })).await;
    recv_type(&mut b, "pong").await;

    let mut a = connect(&s, Some(&alice)).await.unwrap();
    send(&mut a, json!({ "type": "subscribe", "topic": "app" })).await;
    recv_type(&mut a, "appUpdated").await;
    let (st, _) = s.call("POST", "/v1/auth/sign-out", Some(&alice), None).await;
    assert_eq!(st, 204);
    assert_eq!(recv_type(&mut a, "error").await["code"], "unauthenticated");
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(20), a.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close reason"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Policy);
    s.stop().await;
}

/// A sign-out ends that session's open WebSockets at once, not at the next heartbeat re-check; another session of
/// the same user stays connected until "sign out everywhere".
#[actix_rt::test]
async fn sign_out_cuts_open_connections_at_once() {
    let s = start(|api, _| {
        // Re-checks alone would take minutes: whatever ends the connection below is the sign-out itself.
        api.ws.heartbeat = Duration::from_secs(60);
    })
    .await;
    let (alice, _) = world(&s).await;
    let other = s.sign_in("alice").await;
    let mut a = connect(&s, Some(&alice)).await.unwrap();
    let mut o = connect(&s, Some(&other)).await.unwrap();
    for ws in [&mut a, &mut o] {
        send(ws, json!({ "type": "subscribe", "topic": "app" })).await;
        recv_type(ws, "appUpdated").await;
    }
    let (st, _) = s.call("POST", "/v1/auth/sign-out", Some(&alice), None).await;
    assert_eq!(st, 204);
    let cut = tokio::time::timeout(Duration::from_secs(2), recv_type(&mut a, "error")).await;
    assert_eq!(cut.expect("cut within 2 s")["code"], "unauthenticated");
    send(&mut o, json!({ "type": "ping" })).await;
    recv_type(&mut o, "pong").await;
    let (st, _) = s.call("DELETE", "/v1/auth/sessions", Some(&other), None).await;
    assert_eq!(st, 200);
    let cut = tokio::time::timeout(Duration::from_secs(2), recv_type(&mut o, "error")).await;
    assert_eq!(cut.expect("cut within 2 s")["code"], "unauthenticated");
    s.stop().await;
}

/// `taskUpdated` carries the shared detail plus the viewer's own overlay; a draft reaches only its author.
#[actix_rt::test]
async fn task_frames_carry_only_the_viewers_overlay() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;
    let bob_id = s.user_id(&bob).await;
    let (st, _) = s
        .call("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), Some(json!({ "role": "member" })))
        .await;
    assert_eq!(st, 200);
    let (st, _) =
        s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix login" }))).await;
    assert_eq!(st, 201);

    let key = json!({ "org": "acme", "repo": "r1", "task": "t1" });
    let mut a = connect(&s, Some(&alice)).await.unwrap();
    let mut b = connect(&s, Some(&bob)).await.unwrap();
    send(&mut a, json!({ "type": "subscribe", "topic": "task", "key": key })).await;
    send(&mut b, json!({ "type": "subscribe", "topic": "task", "key": key })).await;
    let fa = recv_type(&mut a, "taskUpdated").await;
    let fb = recv_type(&mut b, "taskUpdated").await;
    assert_eq!(fa["snapshot"]["taskId"], "t1");
    assert!(fa["snapshot"]["overlay"].is_object(), "{fa}");
    assert_eq!(fb["snapshot"]["title"], fa["snapshot"]["title"]);

    let draft = json!({ "text": "alice's private draft" });
    let (st, _) = s.call("PUT", "/v1/orgs/acme/repos/r1/tasks/t1/sessions/s1/draft", Some(&alice), Some(draft)).await;
    assert_eq!(st, 200);
    let mut latest = fa.clone();
    while !latest.to_string().contains("alice's private draft") {
        latest = recv_type(&mut a, "taskUpdated").await;
        assert!(latest["version"].as_u64() > fa["version"].as_u64());
    }
    assert_eq!(latest["snapshot"]["overlay"]["sessions"][0]["draft"]["text"], "alice's private draft", "{latest}");
    // bob's connection: a shared change (rename) arrives, alice's draft never does.
    let (st, _) =
        s.call("PATCH", "/v1/orgs/acme/repos/r1/tasks/t1", Some(&alice), Some(json!({ "title": "Renamed" }))).await;
    assert_eq!(st, 200);
    loop {
        let f = recv_type(&mut b, "taskUpdated").await;
        assert!(!f.to_string().contains("alice's private draft"), "bob received alice's draft: {f}");
        if f["snapshot"]["title"] == "Renamed" {
            break;
        }
    }
    s.stop().await;
}

/// A cookie-authenticated upgrade from another site's page is refused (cross-site WebSocket hijacking).
#[actix_rt::test]
async fn cross_origin_upgrades_with_the_cookie_are_refused() {
    let s = start(|_, _| {}).await;
    let token = s.sign_in("alice").await;
    let upgrade = |origin: String| {
        let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
        req.headers_mut().insert("cookie", format!("foundry_session={token}").parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    match upgrade("https://evil.example".into()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = upgrade(format!("http://{}", s.addr)).await.unwrap();
    send(&mut ws, json!({ "type": "ping" })).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    drop(ws);
    s.stop().await;
}

/// A client that stops reading gets coalesced snapshots, not a queue: while it is stalled, hundreds of versions of a
/// growing organization snapshot (tens of MB in all, far beyond what the socket buffers and the bounded send channel
/// hold) are committed; when it reads again it receives far fewer frames than versions, and the last is the latest.
#[actix_rt::test]
async fn a_stalled_client_gets_the_latest_snapshot_not_a_backlog() {
    use foundry::actors::repository::CreateTask;
    use foundry::actors::RepoKey;
    // The stall below is deliberate: it must not count as a dead or too-slow client.
    let s = start(|api, _| api.ws.send_timeout = Duration::from_secs(300)).await;
    let (alice, _) = world(&s).await;
    let mut ws = connect(&s, Some(&alice)).await.unwrap();
    send(&mut ws, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } })).await;
    let first = recv_type(&mut ws, "organizationUpdated").await;
    let v0 = first["version"].as_u64().unwrap();

    // The client now reads nothing while the organization changes many times.
    const TASKS: usize = 250;
    let repo = RepoKey::new("acme", "r1");
    for i in 0..TASKS {
        let prompt = format!("Task {i}: {}", "make the build faster and the tests clearer ".repeat(4));
        let msg = CreateTask { prompt, title: None, branch: None, model: None, user_id: None };
        s.api.domain.create_task(&repo, msg).await.unwrap();
    }
    let last = format!("\"taskId\":\"t{TASKS}\"");
    // Wait until the organization has every task (summaries arrive through outboxes) before reading.
    let org = "acme".to_owned();
    for _ in 0..2000 {
        let snap = s.api.domain.orgs.read(&org, foundry::actors::organization::GetOrganizationSnapshot).await.unwrap();
        if snap.task_summaries.len() == TASKS {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let versions = s.api.domain.orgs.latest_snapshot(&org, "organization").unwrap().version - v0;
    let (mut frames, mut bytes) = (0u64, 0usize);
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap().unwrap().unwrap();
        let Message::Text(text) = msg else { continue };
        frames += 1;
        bytes += text.len();
        if text.contains(&last) && !text.contains("\"taskSummaries\":[]") {
            let f: Value = serde_json::from_str(&text).unwrap();
            if f["snapshot"]["taskSummaries"].as_array().unwrap().len() == TASKS {
                break;
            }
        }
    }
    println!("stalled client: {frames} frames for {versions} versions, {bytes} bytes");
    assert!(versions as usize >= TASKS, "{versions} versions for {TASKS} tasks");
    assert!(frames < versions, "coalesced: {frames} frames for {versions} versions ({bytes} bytes read)");
    drop(ws);
    s.stop().await;
}

/// A task's creator does not miss its first turn: the create reply's `sessionVersion` is the session before the
/// turn started, and a subscription `after` it starts with the first newer snapshot: the turn running (held here),
/// or, subscribing once the turn is over, its end with everything it did in the transcript.
#[actix_rt::test]
async fn a_created_tasks_first_turn_is_never_missed() {
    let (agent, mut gate) = foundry::integrations::agent::BuiltinAgent::with_gate(Duration::from_millis(1));
    let s = start(move |api, _| {
        let agent = foundry::actors::session::SessionAgent(std::sync::Arc::new(agent));
        api.domain.runtime.provide(std::sync::Arc::new(agent));
    })
    .await;
    let (alice, _) = world(&s).await;
    let mut ws = connect(&s, Some(&alice)).await.unwrap();
    let tasks = "/v1/orgs/acme/repos/r1/tasks";

    let (st, created) = s.call("POST", tasks, Some(&alice), Some(json!({ "prompt": "Fix the login page" }))).await;
    assert_eq!(st, 201, "{created}");
    let v0 = created["sessionVersion"].as_u64().expect("the create reply names the session's version");
    let key = json!({ "org": "acme", "repo": "r1", "task": created["taskId"], "session": created["sessionId"] });
    send(&mut ws, json!({ "type": "subscribe", "topic": "session", "key": key, "after": v0 })).await;
    let first = recv_type(&mut ws, "sessionUpdated").await;
    assert!(first["version"].as_u64().unwrap() > v0, "{first}");
    assert_eq!(first["snapshot"]["status"], "running", "the first frame is the turn's start: {first}");
    assert_eq!(first["snapshot"]["transcript"][0]["text"], "Fix the login page", "{first}");

    // `after` the current version: nothing until the next change (the turn's end once released).
    let now = first["version"].as_u64().unwrap();
    send(&mut ws, json!({ "type": "subscribe", "topic": "session", "key": key, "after": now })).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), recv(&mut ws)).await.is_err(), "no repeat of {now}");
    gate.started().await;
    gate.release_all();
    let mut next = recv_type(&mut ws, "sessionUpdated").await;
    assert!(next["version"].as_u64().unwrap() > now, "{next}");
    while next["snapshot"]["status"] == "running" {
        next = recv_type(&mut ws, "sessionUpdated").await;
    }
    assert_eq!(next["snapshot"]["status"], "idle", "{next}");

    // Subscribing late (the turn over) still starts after creation, with the whole turn in the transcript.
    let (st, created) = s.call("POST", tasks, Some(&alice), Some(json!({ "prompt": "Add a test" }))).await;
    assert_eq!(st, 201, "{created}");
    let v0 = created["sessionVersion"].as_u64().unwrap();
    let path = format!("{tasks}/{}/sessions/s1", created["taskId"].as_str().unwrap());
    for _ in 0..500 {
        let (_, detail) = s.call("GET", &path, Some(&alice), None).await;
        if detail["status"] == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = json!({ "org": "acme", "repo": "r1", "task": created["taskId"], "session": "s1" });
    send(&mut ws, json!({ "type": "subscribe", "topic": "session", "key": key, "after": v0 })).await;
    let late = loop {
        let f = recv_type(&mut ws, "sessionUpdated").await;
        if f["key"] == key {
            break f;
        }
    };
    assert!(late["version"].as_u64().unwrap() > v0, "{late}");
    assert_eq!(late["snapshot"]["status"], "idle", "{late}");
    let transcript = late["snapshot"]["transcript"].as_array().unwrap();
    assert!(transcript.iter().any(|i| i["role"] == "agent"), "the turn's output is there: {late}");
    s.stop().await;
}
