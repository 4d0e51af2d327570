//! Issue 12, hardening: bad input changes nothing and creates nothing. Reads and refused requests for keys that name
//! nothing create no database; malformed ids and names are refused before anything exists; every JSON body is parsed
//! the same strict way on every route.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::web::{start, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// alice owns acme (repository r1, task t1 with session s1); bob is signed in, not a member.
async fn world(s: &TestServer) -> (String, String) {
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let (st, body) = s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await;
    assert_eq!(st, 201, "{body}");
    let (st, body) =
        s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix it" }))).await;
    assert_eq!(st, 201, "{body}");
    (alice, bob)
}

/// Every actor database under the data directory, as `kind/file`.
fn databases(s: &TestServer) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kind in std::fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        for f in std::fs::read_dir(&kind).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()) {
            if f.ends_with(".sqlite3") {
                out.insert(format!("{}/{f}", kind.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    out
}

/// The database list once the setup's outbox deliveries have landed (it stops changing).
async fn settled(s: &TestServer) -> BTreeSet<String> {
    support::until_stable("the data directory", || databases(s)).await
}

async fn raw(s: &TestServer, method: &str, path: &str, token: &str, ctype: Option<&str>, body: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(token).body(body.to_owned());
    if let Some(ctype) = ctype {
        req = req.header("content-type", ctype);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null))
}

/// A request written byte for byte: HTTP clients normalise `%2E%2E` segments away (the URL standard treats them as
/// `..`), and the server must refuse them as ids when a client does not.
async fn verbatim(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    );
    let addr = s.addr;
    let response = actix_rt::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let status = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(s: &TestServer, token: &str) -> Ws {
    let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn ws_error(ws: &mut Ws, frame: Value) -> Value {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a frame within 20 s");
        if let Message::Text(t) = msg.unwrap().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "error" {
                return v;
            }
        }
    }
}

#[actix_rt::test]
async fn reads_and_refused_requests_for_unknown_keys_create_nothing() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;
    let bob_id = s.user_id(&bob).await;
    let before = settled(&s).await;
    assert!(before.contains("organization/acme.sqlite3"), "{before:?}");
    assert!(!before.iter().any(|f| f.starts_with("github_data/")), "{before:?}");

    let t = "/v1/orgs/acme/repos/r1/tasks";
    let cases: &[(&str, &str, &str, Option<Value>, u16)] = &[
        ("bob", "GET", "/v1/orgs/nope", None, 404),
        ("alice", "GET", "/v1/orgs/nope", None, 404),
        ("alice", "GET", "/v1/orgs/nope/members", None, 404),
        ("alice", "GET", "/v1/orgs/nope/repos", None, 404),
        ("alice", "GET", "/v1/orgs/nope/audit", None, 404),
        ("alice", "GET", "/v1/orgs/nope/github", None, 404),
        ("alice", "POST", "/v1/orgs/nope/repos/r1/tasks", Some(json!({ "prompt": "x" })), 404),
        ("alice", "PUT", "/v1/orgs/nope/members/u_nobody", Some(json!({ "role": "member" })), 404),
        // acme exists but GitHub was never connected: answered without creating its mirror.
        ("alice", "GET", "/v1/orgs/acme/github", None, 200),
        ("alice", "POST", "/v1/orgs/acme/admin/clear-github", None, 204),
        // Only users who signed up can be added; the unknown id gets no database.
        ("alice", "PUT", "/v1/orgs/acme/members/u_nobody", Some(json!({ "role": "member" })), 404),
        ("alice", "DELETE", "/v1/orgs/acme/members/u_nobody", None, 404),
        ("alice", "GET", "/v1/orgs/acme/repos/nope", None, 404),
        ("alice", "GET", "/v1/orgs/acme/repos/nope/tasks", None, 404),
        ("alice", "POST", "/v1/orgs/acme/repos/nope/tasks", Some(json!({ "prompt": "x" })), 404),
        ("alice", "GET", &format!("{t}/t99"), None, 404),
        ("alice", "PATCH", &format!("{t}/t99"), Some(json!({ "title": "x" })), 404),
        ("alice", "POST", &format!("{t}/t99/sessions"), None, 404),
        ("alice", "GET", &format!("{t}/t1/sessions/s99"), None, 404),
        ("alice", "POST", &format!("{t}/t1/sessions/s99/messages"), Some(json!({ "text": "x" })), 404),
        ("alice", "POST", &format!("{t}/t1/sessions/s99/interrupt"), None, 404),
        ("alice", "PUT", &format!("{t}/t1/sessions/s99/unread"), Some(json!({ "unread": true })), 404),
    ];
    for (who, method, path, body, want) in cases {
        let token = if *who == "alice" { &alice } else { &bob };
        let (st, res) = s.call(method, path, Some(token), body.clone()).await;
        assert_eq!(st, *want, "{who} {method} {path}: {res}");
        if *want == 404 {
            assert_eq!(code(&res), "not_found", "{method} {path}: {res}");
            assert!(!res["error"]["message"].as_str().unwrap_or("").is_empty());
        }
    }
    let (_, gh) = s.call("GET", "/v1/orgs/acme/github", Some(&alice), None).await;
    assert_eq!(gh["connected"], false, "{gh}");
    // bob exists: adding him works (and is the only thing that changed).
    let (st, res) = s
        .call("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), Some(json!({ "role": "member" })))
        .await;
    assert_eq!(st, 200, "{res}");

    // WebSocket subscriptions to keys that name nothing.
    let mut w = ws(&s, &alice).await;
    let e = ws_error(&mut w, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "nope" } })).await;
    assert_eq!(e["code"], "not_found", "{e}");
    let key = json!({ "org": "acme", "repo": "r1", "task": "t99" });
    let e = ws_error(&mut w, json!({ "type": "subscribe", "topic": "task", "key": key })).await;
    assert_eq!(e["code"], "not_found", "{e}");
    let key = json!({ "org": "acme", "repo": "nope", "task": "t1", "session": "s1" });
    let e = ws_error(&mut w, json!({ "type": "subscribe", "topic": "session", "key": key })).await;
    assert_eq!(e["code"], "not_found", "{e}");
    let e = ws_error(&mut w, json!({ "type": "subscribe", "topic": "organization", "key": { "org": ".." } })).await;
    assert_eq!(e["code"], "invalid_input", "{e}");
    let mut b = ws(&s, &bob).await;
    let e = ws_error(&mut b, json!({ "type": "subscribe", "topic": "organization", "key": { "org": "nope" } })).await;
    assert_eq!(e["code"], "not_found", "{e}");

    let after = settled(&s).await;
    assert_eq!(after, before, "no database was created");
    s.stop().await;
}

#[actix_rt::test]
async fn malformed_ids_and_names_are_refused_before_anything_exists() {
    let s = start(|_, _| {}).await;
    let (alice, _) = world(&s).await;
    let (_, me_before) = s.call("GET", "/v1/me", Some(&alice), None).await;
    let before = settled(&s).await;

    let long = "x".repeat(101);
    for id in [".", "..", "", "a\u{1}b", "a\nb", "a b", "a/b", long.as_str()] {
        let (st, res) =
            s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": id, "displayName": "Dots" }))).await;
        assert_eq!((st, code(&res)), (400, "invalid_input"), "id {id:?}: {res}");
    }
    for name in ["", "   ", "two\nlines", "bell\u{7}", "tab\there", &"n".repeat(201)] {
        let (st, res) =
            s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "fresh", "displayName": name }))).await;
        assert_eq!((st, code(&res)), (400, "invalid_input"), "displayName {name:?}: {res}");
    }
    // Ids in paths: `%2E%2E` reaches the router as `..`; over-long ids are refused too. A path that decodes to a
    // control character is refused before any route, as a path (tests/protocol.rs has the rest of those).
    let t = "/v1/orgs/acme/repos/r1/tasks";
    let paths = [
        ("/v1/orgs/%2E".to_owned(), "invalid_input"),
        ("/v1/orgs/%2E%2E".to_owned(), "invalid_input"),
        ("/v1/orgs/a%01b".to_owned(), "invalid_path"),
        (format!("/v1/orgs/{long}"), "invalid_input"),
        ("/v1/orgs/acme/repos/%2E%2E".to_owned(), "invalid_input"),
        ("/v1/orgs/acme/repos/%2E%2E/tasks".to_owned(), "invalid_input"),
        (format!("{t}/%2E%2E"), "invalid_input"),
        (format!("{t}/t%0A1"), "invalid_path"),
        (format!("{t}/t1/sessions/%2E"), "invalid_input"),
        (format!("{t}/t1/sessions/{long}"), "invalid_input"),
    ];
    for (path, expected) in &paths {
        let (st, res) = verbatim(&s, "GET", path, &alice, None).await;
        assert_eq!((st, code(&res)), (400, *expected), "{path}: {res}");
    }
    let member = Some(json!({ "role": "member" }));
    let (st, res) = verbatim(&s, "PUT", "/v1/orgs/acme/members/%2E%2E", &alice, member).await;
    assert_eq!((st, code(&res)), (400, "invalid_input"), "{res}");

    // The profile name: trimmed, single line, no control characters.
    for name in ["bell\u{7}", "two\nlines", "esc\u{1b}[31m", "  ", &"n".repeat(201)] {
        let (st, res) = s.call("PATCH", "/v1/me", Some(&alice), Some(json!({ "name": name }))).await;
        assert_eq!((st, code(&res)), (400, "invalid_input"), "name {name:?}: {res}");
    }
    let (_, me_after) = s.call("GET", "/v1/me", Some(&alice), None).await;
    assert_eq!(me_after, me_before, "refused requests changed the user (organizations, eligible ids, name)");
    assert_eq!(settled(&s).await, before, "no database was created");

    // Valid names are stored trimmed.
    let (st, res) = s.call("PATCH", "/v1/me", Some(&alice), Some(json!({ "name": "  Alice A.  " }))).await;
    assert_eq!((st, res["user"]["name"].as_str()), (200, Some("Alice A.")), "{res}");
    s.stop().await;
}

/// One JSON-body route: a valid body, and the same body with one field of the wrong type.
struct Route {
    method: &'static str,
    path: String,
    valid: Value,
    wrong_type: Value,
}

#[actix_rt::test]
async fn every_json_body_is_strict_on_every_route() {
    let s = start(|_, _| {}).await;
    let (alice, _) = world(&s).await;
    let t = "/v1/orgs/acme/repos/r1/tasks/t1";
    let r = |method, path: &str, valid, wrong_type| Route { method, path: path.to_owned(), valid, wrong_type };
    let routes = [
        r("POST", "/v1/auth/dev/sign-in", json!({ "login": "carol" }), json!({ "login": 5 })),
        r("PATCH", "/v1/me", json!({ "name": "A" }), json!({ "name": 5 })),
        r("PUT", "/v1/me/default-model", json!({ "model": "m" }), json!({ "model": [] })),
        r("PUT", "/v1/me/starter-repo", json!({ "status": "starred" }), json!({ "status": 1 })),
        r("POST", "/v1/orgs", json!({ "id": "o2", "displayName": "O" }), json!({ "id": 2, "displayName": "O" })),
        r("PUT", "/v1/orgs/acme/members/u_x", json!({ "role": "member" }), json!({ "role": 1 })),
        r(
            "POST",
            "/v1/orgs/acme/repos",
            json!({ "repoId": "r2", "fullName": "acme/r2", "remoteUrl": "https://x.invalid/r2.git" }),
            json!({ "repoId": 2, "fullName": "acme/r2", "remoteUrl": "https://x.invalid/r2.git" }),
        ),
        r(
            "POST",
            "/v1/orgs/acme/github/connect",
            json!({ "login": "acme", "kind": "organization" }),
            json!({ "login": "acme", "kind": 7 }),
        ),
        r("POST", "/v1/orgs/acme/repos/r1/tasks", json!({ "prompt": "p" }), json!({ "prompt": ["p"] })),
        r("PATCH", t, json!({ "title": "T" }), json!({ "title": 1 })),
        r("PUT", &format!("{t}/active-session"), json!({ "sessionId": "s1" }), json!({ "sessionId": 1 })),
        r("POST", &format!("{t}/sessions"), json!({ "name": "n" }), json!({ "name": 1 })),
        r("POST", &format!("{t}/archive"), json!({ "force": false }), json!({ "force": "yes" })),
        r("POST", &format!("{t}/unread"), json!({}), json!({ "force": "yes" })),
        r("POST", &format!("{t}/processes"), json!({ "command": "ls" }), json!({ "command": 1 })),
        r("PATCH", &format!("{t}/sessions/s1"), json!({ "name": "n" }), json!({ "name": 1 })),
        r("POST", &format!("{t}/sessions/s1/messages"), json!({ "text": "x" }), json!({ "text": 1 })),
        r("POST", &format!("{t}/sessions/s1/steer"), json!({ "guidance": "g" }), json!({ "guidance": 1 })),
        r("POST", &format!("{t}/sessions/s1/interrupt"), json!({ "dropQueued": true }), json!({ "dropQueued": "x" })),
        r("PUT", &format!("{t}/sessions/s1/draft"), json!({ "text": "d" }), json!({ "text": 1 })),
        r("PUT", &format!("{t}/sessions/s1/unread"), json!({ "unread": true }), json!({ "unread": "yes" })),
        // Routes that take no body: nothing but an empty body or `{}`.
        r("POST", &format!("{t}/sessions/s1/stop"), json!({}), json!([])),
        r("DELETE", &format!("{t}/sessions/s1"), json!({}), json!([])),
        r("POST", "/v1/orgs/acme/github/sync", json!({}), json!([])),
        r("POST", "/v1/orgs/acme/admin/rebuild", json!({}), json!(1)),
        r("DELETE", "/v1/orgs/acme/members/u_x", json!({}), json!("x")),
        r("POST", "/v1/auth/sign-out", json!({}), json!([])),
        r("DELETE", "/v1/auth/sessions", json!({}), json!([])),
    ];
    let (_, me_before) = s.call("GET", "/v1/me", Some(&alice), None).await;
    let (_, task_before) = s.call("GET", t, Some(&alice), None).await;
    let before = settled(&s).await;
    for route in &routes {
        let (m, p) = (route.method, route.path.as_str());
        let valid = route.valid.to_string();
        let mut unknown = route.valid.clone();
        unknown["bogus"] = json!(1);
        let checks: [(Option<&str>, String, u16, &str, &str); 6] = [
            (Some("text/plain"), valid.clone(), 415, "unsupported_media_type", "text/plain"),
            (None, valid.clone(), 415, "unsupported_media_type", "no content type"),
            (Some("text/json"), valid.clone(), 415, "unsupported_media_type", "text/json"),
            (Some("application/json"), "{,}".into(), 400, "malformed_json", "invalid JSON"),
            (Some("application/json"), unknown.to_string(), 400, "invalid_field", "unknown field"),
            (Some("application/json"), route.wrong_type.to_string(), 400, "invalid_field", "wrong type"),
        ];
        for (ctype, body, want, want_code, what) in checks {
            let (st, res) = raw(&s, m, p, &alice, ctype, &body).await;
            assert_eq!((st, code(&res)), (want, want_code), "{m} {p} with {what}: {res}");
            assert!(!res["error"]["message"].as_str().unwrap_or("").is_empty(), "{m} {p} {what}: {res}");
        }
    }
    let (_, me_after) = s.call("GET", "/v1/me", Some(&alice), None).await;
    assert_eq!(me_after, me_before, "the user is unchanged (and still signed in)");
    let (st, task_after) = s.call("GET", t, Some(&alice), None).await;
    assert_eq!(st, 200);
    assert_eq!(task_after["title"], task_before["title"]);
    assert!(!["archived", "killed"].contains(&task_after["status"].as_str().unwrap_or("")), "{task_after}");
    let open = |v: &Value| v["sessions"].as_array().map(|a| a.len());
    assert_eq!(open(&task_after), open(&task_before), "no session created or closed");
    assert_eq!(settled(&s).await, before, "no database was created");

    // Optional bodies: absent is the default, `application/json` with a valid body works. (Interrupt answers 422
    // when no turn runs: the body was accepted all the same.)
    let accepted = |st: u16, res: &Value| st == 202 || (st == 422 && code(res) == "unprocessable");
    let interrupt = format!("{t}/sessions/s1/interrupt");
    let (st, res) = raw(&s, "POST", &interrupt, &alice, None, "").await;
    assert!(accepted(st, &res), "{st} {res}");
    let ctype = Some("application/json; charset=utf-8");
    let (st, res) = raw(&s, "POST", &interrupt, &alice, ctype, "{}").await;
    assert!(accepted(st, &res), "{st} {res}");
    let (st, res) = raw(&s, "POST", &format!("{t}/sessions/s1/stop"), &alice, ctype, "{}").await;
    assert_eq!(st, 202, "{res}");
    s.stop().await;
}
