//! Connections over the real WebSocket, read through the typed client: presence on a task (the task actor's
//! connection hooks list who has it open: a second viewer appears for the first, a user with two connections is one
//! viewer counted twice, a closed socket and an unsubscribe remove them), the task's `gitOperation` event (after the
//! frame of its change, to every viewer, nothing from a refused operation), and the organization's `before_connect`
//! refusing a non-member with an error frame and no connection recorded.

mod support;

use std::time::Duration;

use foundry::actors::task::RecordGitOperation;
use foundry_client::types::{
    AddRepoBody, AnyKey, CreateOrgBody, CreateTaskBody, GitOperationEvent, MemberBody, MemberRole, RepoKey,
    ServerFrame, TaskKey, TaskViewer, TopicKey, TopicName,
};
use foundry_client::{Client, Events, Subscribe};
use serde_json::json;
use support::web::{start, TestServer};

struct World {
    alice: Client,
    alice_id: String,
    bob: Client,
    bob_id: String,
    task: TaskKey,
}

async fn world(s: &TestServer) -> World {
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
    let bob = s.client_as("bob").await;
    let bob_id = bob.whoami().await.unwrap().user_id;
    alice.put_member("acme", &bob_id, &MemberBody { role: MemberRole::Member, login: None }).await.unwrap();
    let repo = RepoKey::new("acme", "r1");
    let body = CreateTaskBody { prompt: "Fix the login page".into(), ..Default::default() };
    let created = alice.create_task(&repo, &body).await.unwrap();
    let alice_id = alice.whoami().await.unwrap().user_id;
    World { alice, alice_id, bob, bob_id, task: repo.task(&created.task_id) }
}

/// The next frame, within 20 s.
async fn next(events: &mut Events) -> ServerFrame {
    let frame = tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("a frame within 20 s");
    frame.expect("a documented frame").expect("the connection open")
}

fn viewers(list: &[(&str, u32)]) -> Vec<TaskViewer> {
    let mut v: Vec<TaskViewer> =
        list.iter().map(|(user, n)| TaskViewer { user_id: (*user).to_owned(), connections: *n }).collect();
    v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    v
}

/// Task frames until one lists exactly `want` as viewers (the first turn keeps changing the task meanwhile).
async fn until_viewers(events: &mut Events, want: &[TaskViewer]) {
    let mut seen = Vec::new();
    for _ in 0..200 {
        if let ServerFrame::TaskUpdated { snapshot, .. } = next(events).await {
            if snapshot.detail.viewers == want {
                return;
            }
            seen.push(snapshot.detail.viewers.clone());
        }
    }
    panic!("never saw viewers {want:?}; saw {seen:?}");
}

#[actix_rt::test]
async fn a_tasks_viewers_come_and_go_with_their_connections() {
    let s = start(|_, _| {}).await;
    let w = world(&s).await;
    let (alice, bob) = (w.alice_id.as_str(), w.bob_id.as_str());

    let mut a = w.alice.subscribe(Subscribe::task(&w.task)).await.unwrap();
    until_viewers(&mut a, &viewers(&[(alice, 1)])).await;
    let mut b = w.bob.subscribe(Subscribe::task(&w.task)).await.unwrap();
    until_viewers(&mut b, &viewers(&[(alice, 1), (bob, 1)])).await;
    until_viewers(&mut a, &viewers(&[(alice, 1), (bob, 1)])).await;
    // A second tab is the same viewer, counted twice.
    let b2 = w.bob.subscribe(Subscribe::task(&w.task)).await.unwrap();
    until_viewers(&mut a, &viewers(&[(alice, 1), (bob, 2)])).await;
    let callers: Vec<_> = s.api.domain.tasks.connections(&w.task).into_iter().filter_map(|c| c.caller).collect();
    assert_eq!(callers.iter().filter(|c| *c == bob).count(), 2, "{callers:?}");
    // A closed socket, a dropped one (no close frame, as a browser leaving the page), and an unsubscribe take them
    // away.
    b2.close().await.unwrap();
    until_viewers(&mut a, &viewers(&[(alice, 1), (bob, 1)])).await;
    let b3 = w.bob.subscribe(Subscribe::task(&w.task)).await.unwrap();
    until_viewers(&mut a, &viewers(&[(alice, 1), (bob, 2)])).await;
    drop(b3);
    until_viewers(&mut a, &viewers(&[(alice, 1), (bob, 1)])).await;
    b.unsubscribe(TopicName::Task, Some(TopicKey::task("acme", "r1", &w.task.task))).await.unwrap();
    until_viewers(&mut a, &viewers(&[(alice, 1)])).await;
    // GET answers the same list.
    let view = w.alice.task(&w.task).await.unwrap();
    assert_eq!(view.detail.viewers, viewers(&[(alice, 1)]));
}

#[actix_rt::test]
async fn a_git_operation_reaches_the_tasks_viewers_as_an_event_after_its_change() {
    let s = start(|_, _| {}).await;
    let w = world(&s).await;
    let mut a = w.alice.subscribe(Subscribe::task(&w.task)).await.unwrap();
    let mut b = w.bob.subscribe(Subscribe::task(&w.task)).await.unwrap();
    for events in [&mut a, &mut b] {
        assert!(matches!(next(events).await, ServerFrame::TaskUpdated { .. }), "the snapshot first");
    }
    let tasks = &s.api.domain.tasks;
    let refused = RecordGitOperation { kind: "task.bogus", payload: json!({}), user_id: None };
    assert!(tasks.mutate(&w.task, refused).await.is_err());
    let payload = json!({ "branch": "fix-the-login-page", "commits": 2 });
    let pushed =
        RecordGitOperation { kind: "task.pushed", payload: payload.clone(), user_id: Some(w.alice_id.clone()) };
    tasks.mutate(&w.task, pushed).await.unwrap();
    let done = tasks.read(&w.task, foundry::actors::task::GetTaskDetail).await.unwrap().updated_at;

    for events in [&mut a, &mut b] {
        // Whatever else the first turn changes meanwhile, the event follows a frame showing its change.
        let mut shown = false;
        let (event, seq, got) = loop {
            match next(events).await {
                ServerFrame::TaskUpdated { snapshot, .. } => shown |= snapshot.detail.updated_at >= done,
                ServerFrame::Event { topic, key, event, seq, payload } => {
                    assert_eq!(
                        (topic, key),
                        (TopicName::Task, AnyKey::Topic(TopicKey::task("acme", "r1", &w.task.task)))
                    );
                    break (event, seq, payload);
                }
                _ => {}
            }
        };
        assert!(shown, "the change came first");
        assert_eq!((event.as_str(), seq), ("gitOperation", 1), "the refused operation emitted nothing");
        let got: GitOperationEvent = serde_json::from_value(got).unwrap();
        assert_eq!(
            got,
            GitOperationEvent {
                kind: "task.pushed".into(),
                user_id: Some(w.alice_id.clone()),
                payload: payload.clone()
            }
        );
    }
}

#[actix_rt::test]
async fn the_organization_refuses_a_non_member_in_its_connect_hook() {
    let s = start(|_, _| {}).await;
    let w = world(&s).await;
    let carol = s.client_as("carol").await;
    let mut c = carol.subscribe(Subscribe::organization("acme")).await.unwrap();
    match next(&mut c).await {
        ServerFrame::Error { code, message, topic, key } => {
            assert_eq!((code.as_str(), topic.as_deref()), ("forbidden", Some("organization")));
            assert_eq!(message, "not a member of organization \"acme\"");
            assert_eq!(key, Some(TopicKey::org("acme")));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let org = "acme".to_owned();
    assert!(s.api.domain.orgs.connections(&org).is_empty(), "nothing recorded");
    // The socket stays usable, and a member's connection keeps their role.
    c.subscribe(&Subscribe::app()).await.unwrap();
    assert!(matches!(next(&mut c).await, ServerFrame::AppUpdated { .. }));
    let mut a = w.alice.subscribe(Subscribe::organization("acme")).await.unwrap();
    assert!(matches!(next(&mut a).await, ServerFrame::OrganizationUpdated { .. }));
    let conns = s.api.domain.orgs.connections(&org);
    assert_eq!(conns.len(), 1);
    assert_eq!((conns[0].caller.as_deref(), &conns[0].state), (Some(w.alice_id.as_str()), &json!({ "role": "owner" })));
}
