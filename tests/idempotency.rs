//! Issue 12, idempotent creation: every creating route takes an `Idempotency-Key`. A retry with the same key gets the
//! first answer (same status, same created ids, marked `Idempotent-Replayed`) and creates nothing more; concurrent
//! requests with one key create once; the same key with another body is refused (422) and changes nothing; a refused
//! creation records nothing; a malformed key is refused before anything happens; keys are the caller's own; without a
//! key every request creates anew, as before. And the issue's case itself, against `foundry serve`: a creation whose
//! reply the client never got (it gave up and dropped the connection while the first turn ran) is found, not
//! doubled, by the retry the client then sends.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::web::{start, TestServer};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// alice owns acme with repository r1; bob has signed in and is not a member.
async fn world(s: &TestServer) -> (String, String) {
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let (st, body) = s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await;
    assert_eq!(st, 201, "{body}");
    (alice, bob)
}

/// Sends `body` twice with `key`: the first answer is `first_status`, the second is the same answer, replayed.
async fn twice(s: &TestServer, path: &str, token: &str, key: &str, body: Value, first_status: u16) -> Value {
    let (st, headers, first) = s.call_with("POST", path, Some(token), Some(body.clone()), &[(KEY, key)]).await;
    assert_eq!(st, first_status, "{path}: {first}");
    assert!(headers.get(REPLAYED).is_none(), "{path}: the first answer is not a replay");
    let (st, headers, again) = s.call_with("POST", path, Some(token), Some(body), &[(KEY, key)]).await;
    assert_eq!(st, first_status, "{path}: {again}");
    assert_eq!(headers.get(REPLAYED).map(|v| v.to_str().unwrap()), Some("true"), "{path}");
    assert_eq!(again, first, "{path}: the retry gets the first answer");
    first
}

async fn task_ids(s: &TestServer, token: &str) -> Vec<String> {
    let (st, body) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks", Some(token), None).await;
    assert_eq!(st, 200, "{body}");
    let mut ids: Vec<String> =
        body.as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

async fn audit_kinds(s: &TestServer, token: &str) -> Vec<String> {
    let (st, body) = s.call("GET", "/v1/orgs/acme/audit?limit=500", Some(token), None).await;
    assert_eq!(st, 200, "{body}");
    body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

async fn user_messages(s: &TestServer, token: &str, session: &str) -> Vec<String> {
    let (st, body) = s.call("GET", session, Some(token), None).await;
    assert_eq!(st, 200, "{body}");
    body["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["role"] == "user")
        .map(|i| i["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const S1: &str = "/v1/orgs/acme/repos/r1/tasks/t1/sessions/s1";

#[actix_rt::test]
async fn every_creating_route_answers_a_retried_key_with_its_first_answer() {
    let s = start(|_, _| {}).await;
    let alice = s.sign_in("alice").await;
    let _bob = s.sign_in("bob").await;

    let org = twice(&s, "/v1/orgs", &alice, "org-1", json!({ "id": "acme", "displayName": "Acme" }), 201).await;
    assert_eq!(org["organizationId"], "acme", "{org}");
    let (_, orgs) = s.call("GET", "/v1/orgs", Some(&alice), None).await;
    assert_eq!(orgs["organizations"].as_array().unwrap().len(), 1, "{orgs}");

    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let row = twice(&s, "/v1/orgs/acme/repos", &alice, "repo-1", repo, 201).await;
    assert_eq!(row["repoId"], "r1");
    let (_, repos) = s.call("GET", "/v1/orgs/acme/repos", Some(&alice), None).await;
    assert_eq!(repos.as_array().unwrap().len(), 1, "{repos}");

    // An invitation's retry is its first answer, not "already a member" (which a new request still gets).
    let invite = json!({ "login": "bob", "role": "member" });
    let member = twice(&s, "/v1/orgs/acme/members", &alice, "invite-1", invite.clone(), 201).await;
    assert_eq!(member["role"], "member");
    let (st, body) = s.call("POST", "/v1/orgs/acme/members", Some(&alice), Some(invite)).await;
    assert_eq!((st, code(&body)), (409, "conflict"), "{body}");

    let task = json!({ "prompt": "Fix the login page" });
    let created = twice(&s, "/v1/orgs/acme/repos/r1/tasks", &alice, "task-1", task, 201).await;
    assert_eq!((created["taskId"].as_str(), created["sessionId"].as_str()), (Some("t1"), Some("s1")), "{created}");
    assert_eq!(task_ids(&s, &alice).await, ["t1"]);
    assert_eq!(user_messages(&s, &alice, S1).await, ["Fix the login page"]);

    let session = json!({ "name": "Second look", "prompt": "Check the tests" });
    let path = "/v1/orgs/acme/repos/r1/tasks/t1/sessions";
    let opened = twice(&s, path, &alice, "session-1", session, 201).await;
    assert_eq!(opened["sessionId"], "s2", "{opened}");
    let (_, view) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks/t1", Some(&alice), None).await;
    assert_eq!(view["sessions"].as_array().unwrap().len(), 2, "{view}");
    let s2 = "/v1/orgs/acme/repos/r1/tasks/t1/sessions/s2";
    assert_eq!(user_messages(&s, &alice, s2).await, ["Check the tests"], "the first prompt was sent once");

    let sent =
        twice(&s, &format!("{S1}/messages"), &alice, "message-1", json!({ "text": "And the footer" }), 202).await;
    assert!(sent["submitted"].is_string(), "{sent}");
    assert_eq!(user_messages(&s, &alice, S1).await, ["Fix the login page", "And the footer"]);

    // The audit log holds each creation once.
    let kinds = audit_kinds(&s, &alice).await;
    for kind in ["organization.created", "repository.added", "member.added", "task.created"] {
        assert_eq!(count(&kinds, kind), 1, "{kind} in {kinds:?}");
    }
    // Sessions s1 (with the task) and s2; prompts: the task's, s2's first, and the message.
    assert_eq!(count(&kinds, "task.session.created"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "task.message.sent"), 3, "{kinds:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_key_reused_with_another_request_is_refused_and_changes_nothing() {
    let s = start(|_, _| {}).await;
    let (alice, _) = world(&s).await;
    let reused = |st: u16, body: &Value| assert_eq!((st, code(body)), (422, "idempotency_key_reused"), "{body}");

    // Organizations: the id comes from the body, so another id under the same key must not create a second one.
    let (st, _, _) = s
        .call_with("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "one", "displayName": "One" })), &[(KEY, "o")])
        .await;
    assert_eq!(st, 201);
    let other = json!({ "id": "other", "displayName": "Other" });
    let (st, _, body) = s.call_with("POST", "/v1/orgs", Some(&alice), Some(other), &[(KEY, "o")]).await;
    reused(st, &body);
    let org_files: Vec<String> = std::fs::read_dir(s.dir.path().join("organization"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!org_files.iter().any(|f| f.starts_with("other")), "no database for the refused one: {org_files:?}");
    let (st, _) = s.call("GET", "/v1/orgs/other", Some(&alice), None).await;
    assert_eq!(st, 404);

    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let (st, _, _) = s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "A" })), &[(KEY, "t")]).await;
    assert_eq!(st, 201);
    let (st, _, body) = s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "B" })), &[(KEY, "t")]).await;
    reused(st, &body);
    assert_eq!(task_ids(&s, &alice).await, ["t1"]);

    let repo = |id: &str| json!({ "repoId": id, "fullName": format!("acme/{id}"), "remoteUrl": "https://example.invalid/x.git" });
    let (st, _, _) = s.call_with("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo("r2")), &[(KEY, "r")]).await;
    assert_eq!(st, 201);
    let (st, _, body) = s.call_with("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo("r3")), &[(KEY, "r")]).await;
    reused(st, &body);
    let (st, _) = s.call("GET", "/v1/orgs/acme/repos/r3", Some(&alice), None).await;
    assert_eq!(st, 404);

    let path = "/v1/orgs/acme/repos/r1/tasks/t1/sessions";
    let (st, _, _) = s.call_with("POST", path, Some(&alice), Some(json!({ "name": "x" })), &[(KEY, "s")]).await;
    assert_eq!(st, 201);
    let (st, _, body) = s.call_with("POST", path, Some(&alice), Some(json!({ "name": "y" })), &[(KEY, "s")]).await;
    reused(st, &body);
    let (_, view) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks/t1", Some(&alice), None).await;
    assert_eq!(view["sessions"].as_array().unwrap().len(), 2, "{view}");

    let messages = format!("{S1}/messages");
    let (st, _, _) = s.call_with("POST", &messages, Some(&alice), Some(json!({ "text": "x" })), &[(KEY, "m")]).await;
    assert_eq!(st, 202);
    let (st, _, body) = s.call_with("POST", &messages, Some(&alice), Some(json!({ "text": "y" })), &[(KEY, "m")]).await;
    reused(st, &body);
    assert_eq!(user_messages(&s, &alice, S1).await, ["A", "x"]);

    // The same key on another route (another path) is another key.
    let (st, _, body) = s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "C" })), &[(KEY, "m")]).await;
    assert_eq!(st, 201, "{body}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_refused_creation_records_nothing_so_its_key_stays_free() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;
    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let bad = json!({ "prompt": "Fix it", "model": "no-such-model" });
    let (st, _, body) = s.call_with("POST", tasks, Some(&alice), Some(bad), &[(KEY, "k1")]).await;
    assert_eq!((st, code(&body)), (400, "invalid_input"), "{body}");
    assert!(task_ids(&s, &alice).await.is_empty());
    // The fixed request under the same key, and under a new one: each creates.
    let (st, headers, body) =
        s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "Fix it" })), &[(KEY, "k1")]).await;
    assert_eq!(st, 201, "{body}");
    assert!(headers.get(REPLAYED).is_none());
    let (st, _, _) = s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "Again" })), &[(KEY, "k2")]).await;
    assert_eq!(st, 201);
    assert_eq!(task_ids(&s, &alice).await, ["t1", "t2"]);

    // An organization refused because its id is taken releases the caller's claim of the key.
    let (st, _, body) = s
        .call_with("POST", "/v1/orgs", Some(&bob), Some(json!({ "id": "acme", "displayName": "Mine" })), &[(KEY, "b")])
        .await;
    assert_eq!((st, code(&body)), (409, "conflict"), "{body}");
    let (st, _, body) = s
        .call_with("POST", "/v1/orgs", Some(&bob), Some(json!({ "id": "bobs", "displayName": "Bob's" })), &[(KEY, "b")])
        .await;
    assert_eq!(st, 201, "{body}");
    s.stop().await;
}

#[actix_rt::test]
async fn malformed_keys_are_refused_before_anything_happens() {
    let s = start(|_, _| {}).await;
    let (alice, _) = world(&s).await;
    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let long = "k".repeat(201);
    for bad in ["", long.as_str(), "tab\there", "caf\u{e9}"] {
        let mut req = s.client.post(format!("{}{tasks}", s.base)).bearer_auth(&alice).json(&json!({ "prompt": "x" }));
        req = req.header(KEY, reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap());
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!((status, code(&body)), (400, "invalid_idempotency_key"), "{bad:?}: {body}");
    }
    let res = s
        .client
        .post(format!("{}{tasks}", s.base))
        .bearer_auth(&alice)
        .header(KEY, "one")
        .header(KEY, "two")
        .json(&json!({ "prompt": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400, "two keys");
    assert!(task_ids(&s, &alice).await.is_empty(), "nothing was created");
    // 200 printable characters (spaces included) are a key.
    let widest = format!("{} ~", "k".repeat(198));
    let (st, _, body) =
        s.call_with("POST", tasks, Some(&alice), Some(json!({ "prompt": "x" })), &[(KEY, &widest)]).await;
    assert_eq!(st, 201, "{body}");
    s.stop().await;
}

#[actix_rt::test]
async fn concurrent_requests_with_one_key_create_once() {
    let s = start(|_, _| {}).await;
    let (alice, _) = world(&s).await;
    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let body = json!({ "prompt": "Only once" });
    let answers = futures_util::future::join_all(
        (0..8).map(|_| s.call_with("POST", tasks, Some(&alice), Some(body.clone()), &[(KEY, "burst")])),
    )
    .await;
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|(st, _, b)| {
            assert_eq!(*st, 201, "{b}");
            b["taskId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["t1"]);
    let replays = answers.iter().filter(|(_, h, _)| h.get(REPLAYED).is_some()).count();
    assert_eq!(replays, 7, "one request created, the others replayed");
    assert_eq!(task_ids(&s, &alice).await, ["t1"]);
    assert_eq!(user_messages(&s, &alice, S1).await, ["Only once"]);

    // Organizations, whose key is claimed on the caller's actor first.
    let org = json!({ "id": "solo", "displayName": "Solo" });
    let answers = futures_util::future::join_all(
        (0..6).map(|_| s.call_with("POST", "/v1/orgs", Some(&alice), Some(org.clone()), &[(KEY, "org-burst")])),
    )
    .await;
    assert!(answers.iter().all(|(st, _, _)| *st == 201), "{answers:?}");
    let (_, orgs) = s.call("GET", "/v1/orgs", Some(&alice), None).await;
    assert_eq!(orgs["organizations"].as_array().unwrap().len(), 2, "{orgs}");
    s.stop().await;
}

#[actix_rt::test]
async fn keys_are_the_callers_own_and_without_one_every_request_creates() {
    let s = start(|_, _| {}).await;
    let (alice, bob) = world(&s).await;
    let (st, _) =
        s.call("POST", "/v1/orgs/acme/members", Some(&alice), Some(json!({ "login": "bob", "role": "member" }))).await;
    assert_eq!(st, 201);
    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let body = json!({ "prompt": "Same words" });
    for token in [&alice, &bob] {
        let (st, headers, _) = s.call_with("POST", tasks, Some(token), Some(body.clone()), &[(KEY, "shared")]).await;
        assert_eq!(st, 201);
        assert!(headers.get(REPLAYED).is_none(), "another caller's key is another key");
    }
    assert_eq!(task_ids(&s, &alice).await, ["t1", "t2"]);
    // No key: the same request twice is two tasks and two messages, as it always was.
    for _ in 0..2 {
        let (st, headers, _) = s.call_with("POST", tasks, Some(&alice), Some(body.clone()), &[]).await;
        assert_eq!(st, 201);
        assert!(headers.get(REPLAYED).is_none());
    }
    assert_eq!(task_ids(&s, &alice).await, ["t1", "t2", "t3", "t4"]);
    for _ in 0..2 {
        let (st, _) = s.call("POST", &format!("{S1}/messages"), Some(&alice), Some(json!({ "text": "hi" }))).await;
        assert_eq!(st, 202);
    }
    assert_eq!(user_messages(&s, &alice, S1).await, ["Same words", "hi", "hi"]);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// The issue's case against the real binary: the reply is lost after the creation committed.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url).bearer_auth(token);
    if let Some(key) = key {
        req = req.header(KEY, key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn a_task_whose_reply_was_lost_is_found_by_the_retry_not_created_again() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // A slow agent: the first turn is still running when the client gives up and when it retries.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn", "--builtin-agent-pace-ms", "40"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("FOUNDRY_NO_DEV_SIGN_IN")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    let client = foundry::integrations::http_client_builder().build().unwrap();
    support::eventually_some("the server to be ready", || async {
        client.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let res =
        client.post(format!("{base}/v1/auth/dev/sign-in")).json(&json!({ "login": "alice" })).send().await.unwrap();
    let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let (st, _, _) = call(
        &client,
        "POST",
        format!("{base}/v1/orgs"),
        &token,
        Some(json!({ "id": "acme", "displayName": "Acme" })),
        None,
    )
    .await;
    assert_eq!(st, 201);
    // `serve` gives every task a workspace: a real repository to clone.
    let remote = bare_repository(dir.path());
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": remote });
    let (st, _, _) = call(&client, "POST", format!("{base}/v1/orgs/acme/repos"), &token, Some(repo), None).await;
    assert_eq!(st, 201);

    // The client sends the creation and gives up on it once it exists (a timeout): it never reads the reply, and
    // resets the connection.
    let body = json!({ "prompt": "Tidy the settings page up" }).to_string();
    let request = format!(
        "POST /v1/orgs/acme/repos/r1/tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: lost-reply\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    (&conn).write_all(request.as_bytes()).unwrap();
    let tasks = format!("{base}/v1/orgs/acme/repos/r1/tasks");
    support::eventually_some("the task to exist", || async {
        let (_, _, list) = call(&client, "GET", tasks.clone(), &token, None, None).await;
        list.as_array().filter(|l| !l.is_empty()).cloned()
    })
    .await;
    let raw = socket2_reset(conn);
    drop(raw);

    // The retry, as the client was told: the same task, replayed, and still only one.
    let (st, headers, created) = call(
        &client,
        "POST",
        tasks.clone(),
        &token,
        Some(json!({ "prompt": "Tidy the settings page up" })),
        Some("lost-reply"),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(headers.get(REPLAYED).map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!((created["taskId"].as_str(), created["sessionId"].as_str()), (Some("t1"), Some("s1")), "{created}");
    let (_, _, list) = call(&client, "GET", tasks.clone(), &token, None, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // The first turn ran once, on the one prompt.
    let session = format!("{base}/v1/orgs/acme/repos/r1/tasks/t1/sessions/s1");
    let detail = support::eventually_some("the first turn to finish", || async {
        let (_, _, d) = call(&client, "GET", session.clone(), &token, None, None).await;
        (d["status"] == "idle" && d["transcript"].as_array().is_some_and(|t| t.iter().any(|i| i["role"] == "agent")))
            .then_some(d)
    })
    .await;
    let roles: Vec<&str> = detail["transcript"].as_array().unwrap().iter().filter_map(|i| i["role"].as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "user").count(), 1, "the prompt was recorded once: {roles:?}");
    let (_, _, audit) = call(&client, "GET", format!("{base}/v1/orgs/acme/audit"), &token, None, None).await;
    let created_events = audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "task.created").count();
    assert_eq!(created_events, 1, "{audit}");
}

/// A bare repository with one commit on `main`, as a local remote.
fn bare_repository(dir: &std::path::Path) -> String {
    let git = |args: &[&str], cwd: &std::path::Path| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("git is installed");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let bare = dir.join("remote.git");
    let work = dir.join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()], dir);
    git(&["init", "-q", "-b", "main"], &work);
    std::fs::write(work.join("README.md"), "# r1\n").unwrap();
    git(&["add", "README.md"], &work);
    git(&["commit", "-qm", "init"], &work);
    git(&["push", "-q", bare.to_str().unwrap(), "main"], &work);
    bare.to_str().unwrap().to_owned()
}

/// Closes `conn` with a reset (SO_LINGER 0) instead of an orderly shutdown: the client vanished.
fn socket2_reset(conn: std::net::TcpStream) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket this function owns, with a correctly sized `linger`.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    conn
}
