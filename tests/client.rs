//! The typed client (`client/`, foundry-client) against the running server: every kind of WebSocket frame the server
//! sends parses as the typed `ServerFrame` (snapshots of each topic, errors about a subscription, pong, unsubscribed),
//! a refused upgrade is the same `ApiError` as a refused route, `TopicState` takes only its own topic and key and
//! refuses a patch for a version it does not hold, and creating calls carry an `Idempotency-Key` whose retry is
//! answered from the first request (`replayed`).

mod support;

use std::time::Duration;

use foundry::runtime::PatchOp;
use foundry_client::types::{
    AddRepoBody, AnyKey, CreateOrgBody, CreateTaskBody, OrganizationSnapshot, RepoKey, ServerFrame, SessionDetail,
    TaskView, TopicKey, TopicName,
};
use foundry_client::{Client, ClientError, Events, FoldError, Subscribe, TopicState};
use support::web::{start, TestServer};

async fn world(s: &TestServer) -> Client {
    let alice = s.client_as("alice").await;
    let org = CreateOrgBody { id: "acme".into(), display_name: "Acme".into(), login: None, kind: None };
    alice.create_org(&org).await.unwrap();
    let repo = AddRepoBody {
        repo_id: "r1".into(),
        full_name: "acme/r1".into(),
        remote_url: "https://example.invalid/acme/r1.git".into(),
        default_branch: None,
    };
    alice.add_repo("acme", &repo).await.unwrap();
    alice
}

/// The next frame, within 20 s.
async fn next(events: &mut Events) -> ServerFrame {
    let frame = tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("a frame within 20 s");
    frame.expect("a documented frame").expect("the connection open")
}

/// The next frame about `topic` (`None`: the next of the connection's own frames), skipping the other topics' (the
/// task's first turn keeps changing it meanwhile).
async fn next_about(events: &mut Events, topic: Option<TopicName>) -> ServerFrame {
    loop {
        let frame = next(events).await;
        if frame.topic() == topic {
            return frame;
        }
    }
}

#[actix_rt::test]
async fn every_frame_the_server_sends_reads_as_a_typed_frame() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let repo = RepoKey::new("acme", "r1");
    let created = alice
        .create_task(&repo, &CreateTaskBody { prompt: "Fix the login page".into(), ..Default::default() })
        .await
        .unwrap();
    let task = repo.task(&created.task_id);
    let session = task.session(&created.session_id);
    let me = alice.whoami().await.unwrap();

    let mut events = alice.events().await.unwrap();
    events.subscribe(&Subscribe::app()).await.unwrap();
    let ServerFrame::AppUpdated { key, snapshot, .. } = next_about(&mut events, Some(TopicName::App)).await else {
        panic!("appUpdated")
    };
    assert_eq!((key.user.as_str(), snapshot.user.id.as_str()), (me.user_id.as_str(), me.user_id.as_str()));

    events.subscribe(&Subscribe::organization("acme")).await.unwrap();
    let ServerFrame::OrganizationUpdated { key, snapshot, .. } =
        next_about(&mut events, Some(TopicName::Organization)).await
    else {
        panic!("org")
    };
    assert_eq!((key, snapshot.repos[0].repo_id.as_str()), (TopicKey::org("acme"), "r1"));

    events.subscribe(&Subscribe::task(&task)).await.unwrap();
    let ServerFrame::TaskUpdated { key, snapshot, .. } = next_about(&mut events, Some(TopicName::Task)).await else {
        panic!("taskUpdated")
    };
    assert_eq!(key, TopicKey::task("acme", "r1", "t1"));
    assert_eq!(snapshot.detail.task_id, "t1");
    assert!(snapshot.overlay.is_some(), "a task frame carries the viewer's overlay");

    events.subscribe(&Subscribe::processes(&task)).await.unwrap();
    let ServerFrame::SandboxProcessesUpdated { snapshot, .. } =
        next_about(&mut events, Some(TopicName::SandboxProcesses)).await
    else {
        panic!("processes")
    };
    assert!(snapshot.processes.is_empty());

    events.subscribe(&Subscribe::session(&session)).await.unwrap();
    let ServerFrame::SessionUpdated { snapshot, .. } = next_about(&mut events, Some(TopicName::Session)).await else {
        panic!("sessionUpdated")
    };
    assert_eq!(snapshot.session_id, "s1");

    // Errors name the subscription they are about; the connection stays usable.
    events.subscribe(&Subscribe::organization("nope")).await.unwrap();
    let ServerFrame::Error { code, topic, key, .. } = next_about(&mut events, None).await else {
        panic!("an error frame")
    };
    assert_eq!(code, "not_found");
    assert_eq!((topic.as_deref(), key), (Some("organization"), Some(TopicKey::org("nope"))));
    events.ping().await.unwrap();
    assert_eq!(next_about(&mut events, None).await, ServerFrame::Pong);
    events.unsubscribe(TopicName::Session, Some(TopicKey::session("acme", "r1", "t1", "s1"))).await.unwrap();
    let frame = next_about(&mut events, None).await;
    let ServerFrame::Unsubscribed { topic, key } = frame else { panic!("unsubscribed, got {frame:?}") };
    assert_eq!((topic, key), (TopicName::Session, AnyKey::Topic(TopicKey::session("acme", "r1", "t1", "s1"))));
    events.unsubscribe(TopicName::App, None).await.unwrap();
    let ServerFrame::Unsubscribed { key, .. } = next_about(&mut events, None).await else { panic!("unsubscribed") };
    assert_eq!(key, AnyKey::App(foundry_client::types::AppKey { user: me.user_id.clone() }));
    events.close().await.unwrap();

    // A refused upgrade is the same typed refusal as any route's.
    match s.api_client().events().await {
        Err(ClientError::Api(e)) => assert_eq!((e.status, e.code.as_str()), (401, "unauthenticated")),
        other => panic!("an unauthenticated upgrade is refused, got {:?}", other.map(|_| ())),
    }
    s.stop().await;
}

#[actix_rt::test]
async fn topic_state_follows_its_own_topic_and_refuses_a_gap() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let mut events = alice.subscribe(Subscribe::organization("acme").patches()).await.unwrap();
    events.subscribe(&Subscribe::app()).await.unwrap();
    let mut org = TopicState::<OrganizationSnapshot>::for_key(TopicKey::org("acme"));
    let mut other = TopicState::<OrganizationSnapshot>::for_key(TopicKey::org("elsewhere"));
    let mut sessions = TopicState::<SessionDetail>::new();
    let mut taken = Vec::new();
    while org.version().is_none() {
        let frame = next(&mut events).await;
        assert!(!other.apply(&frame).unwrap(), "another key's state takes nothing");
        assert!(!sessions.apply(&frame).unwrap(), "another topic's state takes nothing");
        if org.apply(&frame).unwrap() {
            taken.push(frame);
        }
    }
    assert_eq!(org.snapshot().unwrap().unwrap().task_summaries.len(), 0);
    let held = org.version().unwrap();

    // A task appears as a patch of the organization; folded in, the state is what GET answers.
    let repo = RepoKey::new("acme", "r1");
    alice.create_task(&repo, &CreateTaskBody { prompt: "Make it faster".into(), ..Default::default() }).await.unwrap();
    let mut patched = false;
    while org.snapshot().unwrap().unwrap().task_summaries.is_empty() {
        let frame = next(&mut events).await;
        patched |= frame.patch().is_some() && frame.topic() == Some(TopicName::Organization);
        org.apply(&frame).unwrap();
    }
    assert!(patched, "the change came as a patch");
    assert!(org.version().unwrap() > held);
    let mut attempts = 0;
    let settled = loop {
        attempts += 1;
        assert!(attempts < 100, "the folded state never matched GET");
        let fetched = alice.org("acme").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(Ok(Some(frame))) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
            org.apply(&frame).unwrap();
        }
        if org.snapshot().unwrap() == Some(&fetched) {
            break fetched;
        }
    };
    assert_eq!(settled.task_summaries[0].task_id, "t1");

    // A patch from a version the state does not hold is refused, and changes nothing.
    let before = org.json().clone();
    let gap = ServerFrame::OrganizationPatched {
        key: TopicKey::org("acme"),
        version: org.version().unwrap() + 5,
        base: org.version().unwrap() + 4,
        ops: vec![PatchOp::remove("/repos/0")],
    };
    assert!(matches!(org.apply(&gap), Err(FoldError::LostTrack { .. })));
    // One that does not fit the document (nothing at the path) is refused too, leaving the state as it was.
    let misfit = ServerFrame::OrganizationPatched {
        key: TopicKey::org("acme"),
        version: org.version().unwrap() + 1,
        base: org.version().unwrap(),
        ops: vec![PatchOp::remove("/repos/7")],
    };
    assert!(matches!(org.apply(&misfit), Err(FoldError::Patch(_))));
    assert_eq!(org.json(), &before);
    s.stop().await;
}

#[actix_rt::test]
async fn creating_calls_carry_idempotency_keys() {
    let s = start(|_, _| {}).await;
    let alice = world(&s).await;
    let repo = RepoKey::new("acme", "r1");
    let body = CreateTaskBody { prompt: "Write the changelog".into(), ..Default::default() };
    let first = alice.create_task(&repo, &body).idempotency_key("changelog-1").send().await.unwrap();
    assert_eq!((first.status, first.replayed), (201, false));
    let retry = alice.create_task(&repo, &body).idempotency_key("changelog-1").send().await.unwrap();
    assert!(retry.replayed, "the retry is answered from the first request");
    assert_eq!((retry.value.task_id.as_str(), retry.value.session_version), ("t1", first.value.session_version));
    assert_eq!(alice.task_summaries(&repo).await.unwrap().len(), 1, "created once");

    // Another body under the same key is refused; a malformed key before anything happens.
    let other = CreateTaskBody { prompt: "Something else".into(), ..Default::default() };
    let refused = alice.create_task(&repo, &other).idempotency_key("changelog-1").await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(422), Some("idempotency_key_reused")));
    let refused = alice.create_task(&repo, &other).idempotency_key("x".repeat(201)).await.unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(400), Some("invalid_idempotency_key")));
    assert_eq!(alice.task_summaries(&repo).await.unwrap().len(), 1, "refusals created nothing");

    // Without a key, every request creates.
    let task = alice.create_task(&repo, &other).await.unwrap();
    assert_eq!(task.task_id, "t2");
    let view: TaskView = alice.task(&repo.task("t2")).await.unwrap();
    assert_eq!(view.detail.prompt, "Something else");
    s.stop().await;
}
