//! Patch subscriptions (`"patches": true`): a client that applies every frame it receives rebuilds exactly the state
//! the actor's own read returns — for a session streaming its replies on the built-in agent, and for an organization
//! while tasks are created — whether it reads from the start, joins mid-stream (a full snapshot first, then patches),
//! subscribes `after` a version, or stops reading for a while. A runtime subscriber that falls behind the topic's
//! patch ring gets a full snapshot instead of the patches it missed, never a gap.

mod support;

use std::time::Duration;

use foundry::actors::organization::{AddRepository, CreateOrganization, GetOrganizationSnapshot, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::GetSessionDetail;
use foundry::actors::{Domain, RepoKey};
use foundry::integrations::agent::BuiltinAgent;
use foundry::runtime::patch::{self, PatchOp};
use foundry::runtime::TopicFrame;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::web::{start, TestServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client holding one topic's state as rebuilt from the frames it received.
struct Client {
    ws: Ws,
    version: u64,
    doc: Value,
    /// Frame types in the order received (`sessionUpdated`, `sessionPatched` ...).
    kinds: Vec<String>,
    /// The raw text of every patch frame.
    patches: Vec<String>,
}

impl Client {
    async fn subscribe(s: &TestServer, token: &str, topic: &str, key: Value, after: Option<u64>) -> Client {
        let mut req = format!("ws://{}/v1/ws", s.addr).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let mut frame = json!({ "type": "subscribe", "topic": topic, "key": key, "patches": true });
        if let Some(after) = after {
            frame["after"] = after.into();
        }
        ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        Client { ws, version: 0, doc: Value::Null, kinds: Vec::new(), patches: Vec::new() }
    }

    /// Receives and applies one topic frame; `None` if none came within `wait` (pings do not count).
    async fn step(&mut self, wait: Duration) -> Option<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            let text = match msg.expect("connection open").expect("no protocol error") {
                Message::Text(t) => t.to_string(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            };
            let mut f: Value = serde_json::from_str(&text).unwrap();
            let kind = f["type"].as_str().unwrap().to_owned();
            let version = f["version"].as_u64().unwrap();
            assert!(version > self.version || self.kinds.is_empty(), "versions grow: {text}");
            if kind.ends_with("Updated") {
                self.doc = f["snapshot"].take();
            } else if kind.ends_with("Patched") {
                assert_eq!(f["base"].as_u64(), Some(self.version), "contiguous: {text}");
                assert!(!self.kinds.is_empty(), "a full snapshot comes first: {text}");
                let ops: Vec<PatchOp> = serde_json::from_value(f["ops"].take()).unwrap();
                patch::apply(&mut self.doc, &ops).unwrap_or_else(|e| panic!("{e}: {text}"));
                self.patches.push(text);
            } else {
                panic!("unexpected frame {text}");
            }

            self.version = version;
            self.kinds.push(kind);
            return Some(());
        }
    }

    /// Applies frames until the rebuilt state satisfies `done`.
    async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) {
        while self.kinds.is_empty() || !done(&self.doc) {
            self.step(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("no frame while waiting for {what}"));
        }
    }

    /// Applies frames until the rebuilt version is `version`.
    async fn reach(&mut self, version: u64) {
        while self.version < version {
            self.step(Duration::from_secs(20)).await.expect("a frame up to the latest version");
        }
        assert_eq!(self.version, version);
    }

    fn fulls(&self) -> usize {
        self.kinds.iter().filter(|k| k.ends_with("Updated")).count()
    }
}

/// Once the topic stops changing: its version, and the state the actor's own read builds (from its database, not
/// from the topic) at that version.
async fn settled<F, Fut>(latest: impl Fn() -> u64, read: F) -> (u64, Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    for _ in 0..2000 {
        let before = latest();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The actor publishes a change before it handles the next message: the same version before and after the
        // read means the read saw exactly that version.
        let state = read().await;
        if latest() == before {
            return (before, state);
        }
    }
    panic!("the topic never settled");
}

async fn world(s: &TestServer) -> String {
    let alice = s.sign_in("alice").await;
    let (st, _) = s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201);
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    assert_eq!(s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await.0, 201);
    alice
}

/// Replies the built-in agent finished (each ends with "Done.").
fn replies(doc: &Value) -> usize {
    let done = |i: &&Value| i["role"] == "agent" && i["text"].as_str().is_some_and(|t| t.ends_with("Done."));
    doc["transcript"].as_array().map_or(0, |t| t.iter().filter(done).count())
}

#[actix_rt::test]
async fn patch_subscribers_rebuild_a_streaming_session_exactly() {
    let s = start(|api, _| {
        let agent = BuiltinAgent::new(Duration::from_millis(3));
        api.domain
            .runtime
            .provide(std::sync::Arc::new(foundry::actors::session::SessionAgent(std::sync::Arc::new(agent))));
    })
    .await;
    let alice = world(&s).await;
    let tasks = "/v1/orgs/acme/repos/r1/tasks";
    let (st, created) =
        s.call("POST", tasks, Some(&alice), Some(json!({ "prompt": "Fix the marmalade login page" }))).await;
    assert_eq!(st, 201, "{created}");
    let v0 = created["sessionVersion"].as_u64().unwrap();
    let key = json!({ "org": "acme", "repo": "r1", "task": created["taskId"], "session": created["sessionId"] });
    let session = RepoKey::new("acme", "r1").task(created["taskId"].as_str().unwrap()).session("s1");

    // From the create reply's version on: a full snapshot newer than it first, then patches.
    let mut a = Client::subscribe(&s, &alice, "session", key.clone(), Some(v0)).await;
    a.step(Duration::from_secs(20)).await.expect("a first frame");
    assert_eq!(a.kinds[0], "sessionUpdated");
    assert!(a.version > v0, "after {v0}: {}", a.version);
    a.until("the first reply", |d| replies(d) == 1 && d["status"] == "idle").await;
    let after_first = a.patches.len();

    // Follow-ups queue behind each other; a second client joins while the second reply streams.
    const FOLLOW_UPS: usize = 4;
    let path = format!("{tasks}/{}/sessions/s1/messages", created["taskId"].as_str().unwrap());
    for k in 1..=FOLLOW_UPS {
        let text = format!("Follow-up number {k}: tidy the module and explain each change in detail");
        assert_eq!(s.call("POST", &path, Some(&alice), Some(json!({ "text": text }))).await.0, 202);
    }
    a.until("the second reply streaming", |d| replies(d) == 1 && d["partialText"] != "").await;
    let mut b = Client::subscribe(&s, &alice, "session", key.clone(), None).await;
    a.until("every reply", |d| replies(d) == 1 + FOLLOW_UPS && d["status"] == "idle" && d["queued"] == 0).await;

    let (version, state) = settled(
        || s.api.domain.sessions.latest_snapshot(&session, "session").unwrap().version,
        || async {
            serde_json::to_value(s.api.domain.sessions.read(&session, GetSessionDetail).await.unwrap()).unwrap()
        },
    )
    .await;
    a.reach(version).await;
    b.reach(version).await;
    assert_eq!(a.doc, state, "the first client's rebuilt session is the read's");
    assert_eq!(b.doc, state, "the late joiner's rebuilt session is the read's");
    for c in [&a, &b] {
        assert_eq!(c.fulls(), 1, "one full snapshot, then patches only: {:?}", c.kinds);
        assert!(c.patches.iter().any(|p| p.contains(r#""op":"append","path":"/partialText""#)), "text streams");
    }
    assert!(b.doc["transcript"].as_array().unwrap().len() > 2, "b joined mid-stream: it started with a transcript");
    // What was said before is never sent again: the first prompt (and the reply quoting it) is in no later frame.
    assert!(a.patches[after_first..].iter().all(|p| !p.contains("marmalade")), "patches carry changes only");
    assert!(b.patches.iter().all(|p| !p.contains("marmalade")));
    s.stop().await;
}

#[actix_rt::test]
async fn patch_subscribers_rebuild_the_organization_while_tasks_are_created() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let key = json!({ "org": "acme" });
    let mut reader = Client::subscribe(&s, &alice, "organization", key.clone(), None).await;
    reader.step(Duration::from_secs(20)).await.expect("the initial snapshot");
    // This one stops reading after its first frame, until every task exists.
    let mut stalled = Client::subscribe(&s, &alice, "organization", key.clone(), None).await;
    stalled.step(Duration::from_secs(20)).await.expect("the initial snapshot");

    const TASKS: usize = 40;
    let create = async {
        for i in 0..TASKS {
            let prompt = format!("Task {i}: make the build faster");
            let (st, body) =
                s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": prompt }))).await;
            assert_eq!(st, 201, "{body}");
        }
    };
    let read = async {
        reader.until("every task", |d| d["taskSummaries"].as_array().is_some_and(|t| t.len() == TASKS)).await;
    };
    futures_util::join!(create, read);
    let org = "acme".to_owned();
    let (version, state) = settled(
        || s.api.domain.orgs.latest_snapshot(&org, "organization").unwrap().version,
        || async {
            serde_json::to_value(s.api.domain.orgs.read(&org, GetOrganizationSnapshot).await.unwrap()).unwrap()
        },
    )
    .await;
    reader.reach(version).await;
    stalled.reach(version).await;
    assert_eq!(reader.doc, state, "the reader's rebuilt organization is the read's");
    assert_eq!(stalled.doc, state, "so is the stalled client's");
    assert_eq!(reader.fulls(), 1, "one full snapshot, then patches only");
    assert!(reader.patches.iter().all(|p| !p.contains("\"displayName\":\"Acme\"")), "the profile is not resent");
    s.stop().await;
}

/// A runtime subscriber that reads nothing while the organization changes far more than the topic's patch ring
/// holds gets a full snapshot of the latest version when it reads again (not the patches it missed, which are gone),
/// then patches again; it ends with exactly the read's state.
#[actix_rt::test]
async fn a_subscriber_behind_the_patch_ring_gets_a_full_snapshot_then_patches() {
    let (rt, _dir) = support::runtime(2);
    let domain = Domain::without_agent(rt.clone());
    let org = "acme".to_owned();
    let create = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&org, create).await.unwrap();
    let add = AddRepository {
        repo_id: "r1".into(),
        full_name: "acme/r1".into(),
        remote_url: "https://example.invalid/acme/r1.git".into(),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
    let mut sub = domain.orgs.subscribe(&org, "organization").await.unwrap();
    let TopicFrame::Full(first) = sub.next_frame().await.unwrap() else { panic!("a full snapshot first") };
    let mut doc: Value = first.snapshot_as().unwrap();
    let mut version = first.version;

    let repo = RepoKey::new("acme", "r1");
    let long = "make the build faster and the tests clearer ".repeat(6);
    for i in 0..300 {
        let msg =
            CreateTask { prompt: format!("Task {i}: {long}"), title: None, branch: None, model: None, user_id: None };
        domain.create_task(&repo, msg).await.unwrap();
    }
    let read =
        || async { serde_json::to_value(domain.orgs.read(&org, GetOrganizationSnapshot).await.unwrap()).unwrap() };
    let (latest, state) = settled(|| domain.orgs.latest_snapshot(&org, "organization").unwrap().version, read).await;
    let mut kinds = Vec::new();
    while version < latest {
        let frame = sub.next_frame().await.unwrap();
        match &frame {
            TopicFrame::Full(ev) => doc = ev.snapshot_as().unwrap(),
            TopicFrame::Patch(p) => {
                assert_eq!(p.base(), version, "contiguous");
                patch::apply(&mut doc, &p.ops().unwrap()).unwrap();
            }
        }
        version = frame.version();
        kinds.push(matches!(frame, TopicFrame::Full(_)));
    }
    assert!(kinds[0], "the missed patches are gone: a full snapshot comes first");
    assert_eq!(doc, state, "the rebuilt organization is the read's");

    // Reading along again, it gets patches.
    let msg = CreateTask { prompt: "One more".into(), title: None, branch: None, model: None, user_id: None };
    domain.create_task(&repo, msg).await.unwrap();
    assert!(matches!(sub.next_frame().await, Some(TopicFrame::Patch(p)) if p.base() == version));
    rt.shutdown().await;
}
