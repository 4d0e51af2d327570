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
use foundry::runtime::patch;
use foundry::runtime::TopicFrame;
use foundry_client::types::{AddRepoBody, CreateOrgBody, CreateTaskBody, OrganizationSnapshot, SessionDetail};
use foundry_client::{Client, Events, Subscribe, TopicState};
use serde_json::Value;
use support::web::{start, TestServer};

/// A WebSocket client (foundry-client's) holding one topic's state as folded from the frames it received.
struct Follower<S> {
    events: Events,
    state: TopicState<S>,
    /// Frame types in the order received (`sessionUpdated`, `sessionPatched` ...).
    kinds: Vec<String>,
    /// Every patch frame, as JSON text.
    patches: Vec<String>,
}

impl<S: foundry_client::types::TopicSnapshot> Follower<S> {
    async fn subscribe(client: &Client, sub: Subscribe) -> Self {
        let events = client.subscribe(sub.patches()).await.unwrap();
        Follower { events, state: TopicState::new(), kinds: Vec::new(), patches: Vec::new() }
    }

    fn version(&self) -> u64 {
        self.state.version().unwrap_or(0)
    }

    fn doc(&self) -> &Value {
        self.state.json()
    }

    /// Receives and folds one topic frame; `None` if none came within `wait`.
    async fn step(&mut self, wait: Duration) -> Option<()> {
        let next = tokio::time::timeout(wait, self.events.next()).await.ok()?;
        let frame = next.expect("a documented frame").expect("connection open");
        let text = serde_json::to_string(&frame).unwrap();
        let version = frame.version().unwrap_or_else(|| panic!("unexpected frame {text}"));
        assert!(version > self.version() || self.kinds.is_empty(), "versions grow: {text}");
        if let Some((base, _)) = frame.patch() {
            assert_eq!(Some(base), self.state.version(), "contiguous: {text}");
            assert!(!self.kinds.is_empty(), "a full snapshot comes first: {text}");
            self.patches.push(text.clone());
        }
        assert!(self.state.apply(&frame).unwrap_or_else(|e| panic!("{e}: {text}")), "about this topic: {text}");
        let kind: Value = serde_json::from_str(&text).unwrap();
        self.kinds.push(kind["type"].as_str().unwrap().to_owned());
        Some(())
    }

    /// Folds frames until the state satisfies `done`.
    async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) {
        while self.kinds.is_empty() || !done(self.doc()) {
            self.step(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("no frame while waiting for {what}"));
        }
    }

    /// Folds frames until the version held is `version`.
    async fn reach(&mut self, version: u64) {
        while self.version() < version {
            self.step(Duration::from_secs(20)).await.expect("a frame up to the latest version");
        }
        assert_eq!(self.version(), version);
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

async fn world(s: &TestServer) -> Client {
    let alice = s.client_as("alice").await;
    alice
        .create_org(&CreateOrgBody { id: "acme".into(), display_name: "Acme".into(), login: None, kind: None })
        .await
        .unwrap();
    let repo = AddRepoBody {
        repo_id: "r1".into(),
        full_name: "acme/r1".into(),
        remote_url: "https://example.invalid/acme/r1.git".into(),
        default_branch: None,
    };
    alice.add_repo("acme", &repo).await.unwrap();
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
    let repo = RepoKey::new("acme", "r1");
    let body = CreateTaskBody { prompt: "Fix the marmalade login page".into(), ..Default::default() };
    let created = alice.create_task(&repo, &body).await.unwrap();
    let v0 = created.session_version;
    let session = repo.task(&created.task_id).session(&created.session_id);

    // From the create reply's version on: a full snapshot newer than it first, then patches.
    let mut a = Follower::<SessionDetail>::subscribe(&alice, Subscribe::session(&session).after(v0)).await;
    a.step(Duration::from_secs(20)).await.expect("a first frame");
    assert_eq!(a.kinds[0], "sessionUpdated");
    assert!(a.version() > v0, "after {v0}: {}", a.version());
    a.until("the first reply", |d| replies(d) == 1 && d["status"] == "idle").await;
    let after_first = a.patches.len();

    // Follow-ups queue behind each other; a second client joins while the second reply streams.
    const FOLLOW_UPS: usize = 4;
    for k in 1..=FOLLOW_UPS {
        let text = format!("Follow-up number {k}: tidy the module and explain each change in detail");
        alice.send_message(&session, &text).await.unwrap();
    }
    a.until("the second reply streaming", |d| replies(d) == 1 && d["partialText"] != "").await;
    let mut b = Follower::<SessionDetail>::subscribe(&alice, Subscribe::session(&session)).await;
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
    assert_eq!(a.doc(), &state, "the first client's rebuilt session is the read's");
    assert_eq!(b.doc(), &state, "the late joiner's rebuilt session is the read's");
    let read: SessionDetail = serde_json::from_value(state).unwrap();
    assert_eq!(a.state.snapshot().unwrap(), Some(&read), "and reads as the same typed session");
    for c in [&a, &b] {
        assert_eq!(c.fulls(), 1, "one full snapshot, then patches only: {:?}", c.kinds);
        assert!(c.patches.iter().any(|p| p.contains(r#""op":"append","path":"/partialText""#)), "text streams");
    }
    assert!(b.doc()["transcript"].as_array().unwrap().len() > 2, "b joined mid-stream: it started with a transcript");
    // What was said before is never sent again: the first prompt (and the reply quoting it) is in no later frame.
    assert!(a.patches[after_first..].iter().all(|p| !p.contains("marmalade")), "patches carry changes only");
    assert!(b.patches.iter().all(|p| !p.contains("marmalade")));
    s.stop().await;
}

#[actix_rt::test]
async fn patch_subscribers_rebuild_the_organization_while_tasks_are_created() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let mut reader = Follower::<OrganizationSnapshot>::subscribe(&alice, Subscribe::organization("acme")).await;
    reader.step(Duration::from_secs(20)).await.expect("the initial snapshot");
    // This one stops reading after its first frame, until every task exists.
    let mut stalled = Follower::<OrganizationSnapshot>::subscribe(&alice, Subscribe::organization("acme")).await;
    stalled.step(Duration::from_secs(20)).await.expect("the initial snapshot");

    const TASKS: usize = 40;
    let create = async {
        for i in 0..TASKS {
            let body = CreateTaskBody { prompt: format!("Task {i}: make the build faster"), ..Default::default() };
            alice.create_task(&RepoKey::new("acme", "r1"), &body).await.unwrap();
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
    assert_eq!(reader.doc(), &state, "the reader's rebuilt organization is the read's");
    assert_eq!(stalled.doc(), &state, "so is the stalled client's");
    let read: OrganizationSnapshot = serde_json::from_value(state).unwrap();
    assert_eq!(stalled.state.snapshot().unwrap(), Some(&read), "and reads as the same typed organization");
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
