//! The domain on the runtime: the coordinator hierarchy, task creation, task and session operations, per-user state,
//! the audit log, invalid input, restart, and constant query counts for snapshots.

mod support;

use std::time::Duration;

use diesel::connection::{Connection, InstrumentationEvent};
use foundry::actors::audit_log::ListAuditEvents;
use foundry::actors::organization::{
    AddRepository, CreateOrganization, GetOrganizationSnapshot, OrgKind, Organization, OrganizationSnapshot,
};
use foundry::actors::repository::{CreateTask, ListTaskSummaries};
use foundry::actors::session::{ChangeModel, GetSessionDetail, RenameSession, SendMessage, Session, StopSession};
use foundry::actors::summary::{SessionStatus, TaskStatus};
use foundry::actors::task::{CloseSession, CreateSession, GetTaskDetail, RenameTask, SwitchTask, Task};
use foundry::actors::user::{GetAppSnapshot, SaveDraft, SetActiveSession, UpsertUser};
use foundry::actors::{Domain, DomainError, RepoKey, TaskKey};
use foundry::runtime::{CallError, EntityKey, Read};
use support::{runtime, runtime_at};

const ORG: &str = "acme";

fn repo() -> RepoKey {
    RepoKey::new(ORG, "web")
}

fn prompt(text: &str) -> CreateTask {
    CreateTask { prompt: text.into(), title: None, branch: None, model: None, user_id: Some("u1".into()) }
}

async fn setup(domain: &Domain) {
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme Inc".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&ORG.to_owned(), org).await.unwrap();
    let add = AddRepository {
        repo_id: "web".into(),
        full_name: "acme/web".into(),
        remote_url: "https://github.com/acme/web.git".into(),
        default_branch: "main".into(),
        user_id: Some("u1".into()),
    };
    domain.add_repository(ORG, add).await.unwrap();
    let user = UpsertUser { name: "Ada".into(), email: "ada@example.com".into(), avatar_url: None };
    domain.users.mutate(&"u1".to_owned(), user).await.unwrap();
}

/// Polls `read` until `done` holds (outbox deliveries are asynchronous); bounded.
async fn until<T, F, Fut>(what: &str, mut read: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    for _ in 0..500 {
        let v = read().await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The organization snapshot once it has stopped changing (no delivery in flight).
async fn settled(domain: &Domain) -> OrganizationSnapshot {
    let mut last = org_snapshot(domain).await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let now = org_snapshot(domain).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the organization snapshot never settled");
}

async fn org_snapshot(domain: &Domain) -> OrganizationSnapshot {
    domain.orgs.read(&ORG.to_owned(), GetOrganizationSnapshot).await.unwrap()
}

fn refused(err: CallError<DomainError>) -> DomainError {
    match err {
        CallError::Handler(e) => e,
        other => panic!("expected a domain refusal, got {other:?}"),
    }
}

#[actix_rt::test]
async fn creating_tasks_goes_down_the_hierarchy_and_summaries_come_back_up() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let a = domain.create_task(&repo(), prompt("Add a login page with GitHub OAuth")).await.unwrap();
    let b = domain.create_task(&repo(), prompt("Fix the crash on empty input")).await.unwrap();
    assert_eq!(
        (a.task.task.as_str(), a.title.as_str(), a.branch.as_str()),
        ("t1", "feat: add a login page with GitHub OAuth", "feat/add-a-login-page-with-github-oauth")
    );
    assert_eq!((b.task.task.as_str(), b.branch.as_str()), ("t2", "fix/fix-the-crash-on-empty-input"));
    // The first session exists and holds the prompt: it was never dropped.
    let s1 = domain.sessions.read(&a.task.session(&a.session_id), GetSessionDetail).await.unwrap();
    assert_eq!(s1.transcript.len(), 1);
    assert_eq!(s1.transcript[0].text, "Add a login page with GitHub OAuth");
    assert_eq!(s1.model, "gpt-5.3-codex", "the user's default model");
    // Summaries flow session -> task -> repository -> organization through the outboxes.
    let snap = until(
        "organization to show both tasks idle",
        || org_snapshot(&domain),
        |s| {
            s.task_summaries.len() == 2
                && s.task_summaries.iter().all(|t| t.status == TaskStatus::Idle && t.sessions.len() == 1)
        },
    )
    .await;
    assert_eq!(snap.repos[0].task_count, 2);
    let repo_tasks = domain.repos.read(&repo(), ListTaskSummaries).await.unwrap();
    assert_eq!(repo_tasks.len(), 2);
    let detail = domain.tasks.read(&a.task, GetTaskDetail).await.unwrap();
    assert_eq!(detail.status, TaskStatus::Idle);
    assert_eq!(detail.sessions[0].status, SessionStatus::Ready);
}

#[actix_rt::test]
async fn explicit_title_and_branch_are_kept_and_branches_stay_unique() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let explicit = CreateTask {
        title: Some("  My title ".into()),
        branch: Some("feature/custom".into()),
        ..prompt("do something")
    };
    let t = domain.create_task(&repo(), explicit.clone()).await.unwrap();
    assert_eq!((t.title.as_str(), t.branch.as_str()), ("My title", "feature/custom"));
    let detail = domain.tasks.read(&t.task, GetTaskDetail).await.unwrap();
    assert!(detail.explicit_title && detail.explicit_branch);
    // Same explicit branch again: a conflict, and nothing is created (the next task still gets t2).
    let err = refused(domain.create_task(&repo(), explicit).await.unwrap_err());
    assert!(matches!(err, DomainError::Conflict(_)), "{err}");
    // Derived branches that collide get a suffix.
    let x = domain.create_task(&repo(), prompt("Same words")).await.unwrap();
    let y = domain.create_task(&repo(), prompt("Same words")).await.unwrap();
    assert_eq!((x.task.task.as_str(), x.branch.as_str()), ("t2", "feat/same-words"));
    assert_eq!(y.branch, "feat/same-words-2");
    // Renaming changes the title, never the branch.
    domain.tasks.mutate(&x.task, RenameTask { title: "Renamed".into(), user_id: None }).await.unwrap();
    let d = domain.tasks.read(&x.task, GetTaskDetail).await.unwrap();
    assert_eq!((d.title.as_str(), d.branch.as_str()), ("Renamed", "feat/same-words"));
}

#[actix_rt::test]
async fn invalid_input_is_refused_and_changes_nothing() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let unknown_repo = domain.create_task(&RepoKey::new(ORG, "nope"), prompt("x")).await.unwrap_err();
    assert!(matches!(refused(unknown_repo), DomainError::NotFound { what: "repository", .. }));
    let unknown_org = domain.create_task(&RepoKey::new("ghost", "web"), prompt("x")).await.unwrap_err();
    assert!(matches!(refused(unknown_org), DomainError::NotFound { what: "organization", .. }));
    let cases = [
        (CreateTask { prompt: "   ".into(), ..prompt("") }, "prompt"),
        (CreateTask { title: Some(" ".into()), ..prompt("x") }, "title"),
        (CreateTask { branch: Some("bad branch".into()), ..prompt("x") }, "branch"),
        (CreateTask { branch: Some("a..b".into()), ..prompt("x") }, "branch"),
        (CreateTask { model: Some("gpt-0".into()), ..prompt("x") }, "model"),
    ];
    for (msg, field) in cases {
        match refused(domain.create_task(&repo(), msg).await.unwrap_err()) {
            DomainError::Invalid { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other}"),
        }
    }
    assert!(domain.repos.read(&repo(), ListTaskSummaries).await.unwrap().is_empty());
    // A duplicate repository or organization is a conflict.
    let dup = CreateOrganization {
        login: "acme".into(),
        display_name: "Again".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    assert!(matches!(refused(domain.orgs.mutate(&ORG.to_owned(), dup).await.unwrap_err()), DomainError::Conflict(_)));
    let t = domain.create_task(&repo(), prompt("ok")).await.unwrap();
    assert_eq!(t.task.task, "t1", "refused creations consumed no task id");
    let s = t.task.session("s1");
    let bad_model = ChangeModel { model: "nope".into(), mode: None, thought_level: None, user_id: None };
    assert!(matches!(refused(domain.sessions.mutate(&s, bad_model).await.unwrap_err()), DomainError::Invalid { .. }));
    let oversize = SaveDraft { session: s.clone(), text: "x".repeat(70_000), attachments: vec![] };
    let err = refused(domain.users.mutate(&"u1".to_owned(), oversize).await.unwrap_err());
    assert!(matches!(err, DomainError::Invalid { .. }));
    let detail = domain.sessions.read(&s, GetSessionDetail).await.unwrap();
    assert_eq!(detail.model, "gpt-5.3-codex");
}

#[actix_rt::test]
async fn sessions_are_created_renamed_changed_stopped_and_closed() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let t = domain.create_task(&repo(), prompt("Build it")).await.unwrap();
    let s2 = domain
        .create_session(
            &t.task,
            CreateSession { name: Some("Review".into()), model: Some("claude-opus-4".into()), user_id: None },
        )
        .await
        .unwrap();
    assert_eq!(s2, "s2");
    let k2 = t.task.session(&s2);
    domain.sessions.mutate(&k2, RenameSession { name: "Deep review".into(), user_id: None }).await.unwrap();
    let change = ChangeModel {
        model: "claude-sonnet-4".into(),
        mode: Some("plan".into()),
        thought_level: Some("high".into()),
        user_id: None,
    };
    domain.sessions.mutate(&k2, change).await.unwrap();
    domain
        .sessions
        .mutate(&k2, SendMessage { text: "Look at auth.rs".into(), user_id: Some("u1".into()) })
        .await
        .unwrap();
    let d = domain.sessions.read(&k2, GetSessionDetail).await.unwrap();
    assert_eq!(
        (d.name.as_str(), d.model.as_str(), d.mode.as_str(), d.thought_level.as_str()),
        ("Deep review", "claude-sonnet-4", "plan", "high")
    );
    assert_eq!(d.transcript.last().unwrap().text, "Look at auth.rs");
    // The task's index follows the sessions.
    let detail = until(
        "task index to follow",
        || domain.tasks.read(&t.task, GetTaskDetail),
        |d| d.as_ref().unwrap().sessions.iter().any(|s| s.name == "Deep review" && s.model == "claude-sonnet-4"),
    )
    .await
    .unwrap();
    assert_eq!(detail.sessions.len(), 2);
    domain.sessions.exec(&k2, StopSession { user_id: None }).await.unwrap();
    // Close s2; s1 is then the last open session and cannot be closed.
    domain.tasks.mutate(&t.task, CloseSession { session_id: s2.clone(), user_id: None }).await.unwrap();
    let err = refused(
        domain.tasks.mutate(&t.task, CloseSession { session_id: "s1".into(), user_id: None }).await.unwrap_err(),
    );
    assert!(matches!(err, DomainError::Conflict(_)));
    let closed = until(
        "session closed",
        || domain.sessions.read(&k2, GetSessionDetail),
        |d| d.as_ref().unwrap().status == SessionStatus::Closed,
    )
    .await
    .unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    let err = refused(domain.sessions.mutate(&k2, SendMessage { text: "hi".into(), user_id: None }).await.unwrap_err());
    assert!(matches!(err, DomainError::Unprocessable(_)));
}

#[actix_rt::test]
async fn per_user_state_overlays_the_task_view() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let t = domain.create_task(&repo(), prompt("Overlay")).await.unwrap();
    let users = &domain.users;
    users.mutate(&"u1".to_owned(), SetActiveSession { task: t.task.clone(), session_id: "s1".into() }).await.unwrap();
    users
        .mutate(
            &"u1".to_owned(),
            SaveDraft { session: t.task.session("s1"), text: "half a thought".into(), attachments: vec![] },
        )
        .await
        .unwrap();
    domain.mark_task_unread(&t.task, "u1").await.unwrap();
    let view = domain.task_view(&t.task, Some("u1")).await.unwrap();
    let overlay = view.overlay.unwrap();
    assert_eq!(overlay.active_session_id.as_deref(), Some("s1"));
    assert!(overlay.sessions[0].unread);
    assert_eq!(overlay.sessions[0].draft.text, "half a thought");
    // Another viewer sees the same task without u1's state.
    users
        .mutate(&"u2".to_owned(), UpsertUser { name: "Bob".into(), email: "bob@example.com".into(), avatar_url: None })
        .await
        .unwrap();
    let other = domain.task_view(&t.task, Some("u2")).await.unwrap().overlay.unwrap();
    assert!(other.active_session_id.is_none() && other.sessions.is_empty());
    // The overlay is per viewer; the shared detail is the task's own (summaries may still be arriving, so compare
    // identity rather than timestamps).
    let shared = domain.tasks.read(&t.task, GetTaskDetail).await.unwrap();
    assert_eq!(
        (&view.detail.task_id, &view.detail.branch, &view.detail.title),
        (&shared.task_id, &shared.branch, &shared.title)
    );
    let app = users.read(&"u1".to_owned(), GetAppSnapshot).await.unwrap();
    assert_eq!(app.default_model, "gpt-5.3-codex");
}

#[actix_rt::test]
async fn archive_kill_walk_their_steps_and_git_needs_a_workspace() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let a = domain.create_task(&repo(), prompt("Ship the feature")).await.unwrap();
    let b = domain.create_task(&repo(), prompt("Abandon this")).await.unwrap();
    // No workspaces and no GitHub here: git operations say so and change nothing (tests/workspace.rs has them real).
    let err = refused(domain.publish_pull_request(&a.task, None).await.unwrap_err());
    assert!(matches!(err, DomainError::Git { unreachable: false, .. }), "{err:?}");
    let err = refused(domain.push_task(&a.task, None).await.unwrap_err());
    assert!(matches!(err, DomainError::WorkspaceUnavailable(_)), "{err:?}");
    assert!(matches!(refused(domain.merge_task(&a.task, None).await.unwrap_err()), DomainError::Conflict(_)));
    let err = refused(domain.revert_file(&a.task, "src/main.rs", None).await.unwrap_err());
    assert!(matches!(err, DomainError::WorkspaceUnavailable(_)), "{err:?}");
    domain.tasks.mutate(&a.task, SwitchTask { target: "release/1.0".into(), user_id: None }).await.unwrap();
    let bad = SwitchTask { target: "no spaces allowed".into(), user_id: None };
    assert!(matches!(refused(domain.tasks.mutate(&a.task, bad).await.unwrap_err()), DomainError::Invalid { .. }));
    let runtime = domain.tasks.read(&a.task, GetTaskDetail).await.unwrap().runtime.unwrap();
    assert_eq!(runtime.switch_target.as_deref(), Some("release/1.0"));
    assert!(domain.revert_file(&a.task, "../etc/passwd", None).await.is_err());
    assert_eq!(domain.archive_task(&a.task, false, Some("u1")).await.unwrap(), TaskStatus::Archived);
    assert_eq!(domain.kill_task(&b.task, Some("u1")).await.unwrap(), TaskStatus::Killed);
    // Finished tasks refuse further work, and steps cannot be skipped or replayed.
    let err = refused(domain.tasks.mutate(&a.task, RenameTask { title: "x".into(), user_id: None }).await.unwrap_err());
    assert!(matches!(err, DomainError::Unprocessable(_)));
    assert!(domain.archive_task(&a.task, false, None).await.is_err());
    let snap = until(
        "summaries of archived and killed tasks",
        || org_snapshot(&domain),
        |s| {
            s.task_summaries.iter().any(|t| t.status == TaskStatus::Archived)
                && s.task_summaries.iter().any(|t| t.status == TaskStatus::Killed)
        },
    )
    .await;
    assert_eq!(snap.task_summaries.len(), 2);
    // Every operation appended exactly one audit event, newest first, filterable by task.
    let all = |task: Option<&TaskKey>| ListAuditEvents {
        repo_id: task.map(|t| t.repo.clone()),
        task_id: task.map(|t| t.task.clone()),
        before_id: None,
        limit: 500,
    };
    let page = until(
        "audit events",
        || domain.audit_events(ORG, all(Some(&a.task))),
        |p| p.as_ref().unwrap().events.iter().any(|e| e.kind == "task.archived"),
    )
    .await
    .unwrap();
    // Events from different actors' outboxes may interleave, so compare the set; the page itself is newest first.
    let mut kinds: Vec<&str> = page.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(page.events.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    kinds.sort_unstable();
    kinds.dedup();
    for kind in ["task.archived", "task.created", "task.message.sent", "task.session.created", "task.switch"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for refused_kind in ["task.pushed", "task.merged", "task.pr.published", "task.file.reverted"] {
        assert!(!kinds.contains(&refused_kind), "{refused_kind} in {kinds:?}");
    }
    let everything = domain.audit_events(ORG, all(None)).await.unwrap();
    assert!(everything.events.iter().any(|e| e.kind == "task.killed"));
    assert!(everything.events.iter().any(|e| e.kind == "repository.added"));
    assert!(everything.events.iter().any(|e| e.kind == "organization.created"));
}

#[actix_rt::test]
async fn snapshots_are_identical_after_a_restart_and_the_projection_can_be_rebuilt() {
    let (rt, dir) = runtime(2);
    let domain = Domain::without_agent(rt.clone());
    setup(&domain).await;
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(domain.create_task(&repo(), prompt(&format!("Task number {i}"))).await.unwrap().task);
    }
    domain.create_session(&keys[0], CreateSession { name: None, model: None, user_id: None }).await.unwrap();
    until(
        "projection complete",
        || org_snapshot(&domain),
        |s| {
            s.task_summaries.len() == 4
                && s.task_summaries.iter().all(|t| t.status == TaskStatus::Idle)
                && s.task_summaries.iter().any(|t| t.sessions.len() == 2)
        },
    )
    .await;
    // Summaries travel through outboxes: compare only once nothing is in flight any more (the snapshot stopped
    // changing), since a stop leaves undelivered rows for recovery rather than delivering them.
    let before = settled(&domain).await;
    let task_before = domain.tasks.read(&keys[0], GetTaskDetail).await.unwrap();
    let session_before = domain.sessions.read(&keys[0].session("s1"), GetSessionDetail).await.unwrap();
    let audit_before = domain
        .audit_events(ORG, ListAuditEvents { repo_id: None, task_id: None, before_id: None, limit: 500 })
        .await
        .unwrap();
    rt.shutdown().await;

    let domain = Domain::without_agent(runtime_at(dir.path(), 2));
    assert_eq!(org_snapshot(&domain).await, before);
    assert_eq!(domain.tasks.read(&keys[0], GetTaskDetail).await.unwrap(), task_before);
    assert_eq!(domain.sessions.read(&keys[0].session("s1"), GetSessionDetail).await.unwrap(), session_before);
    let audit_after = domain
        .audit_events(ORG, ListAuditEvents { repo_id: None, task_id: None, before_id: None, limit: 500 })
        .await
        .unwrap();
    assert_eq!(audit_after, audit_before);
    // Rebuilding the organization's projection from the repositories gives the same task summaries.
    assert_eq!(domain.admin_rebuild_organization(ORG, None).await.unwrap(), 4);
    let rebuilt = org_snapshot(&domain).await;
    let ids = |s: &OrganizationSnapshot| {
        let mut v: Vec<(String, String)> =
            s.task_summaries.iter().map(|t| (t.task_id.clone(), t.title.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&rebuilt), ids(&before));
    assert_eq!(rebuilt.repos[0].task_count, 4);
}

/// Runs a read directly against an actor's database file and counts the SQL statements it issued.
fn count_queries<R: Read>(path: &std::path::Path, entity: &R::Entity, read: R) -> usize
where
    R::Error: std::fmt::Debug,
{
    let mut conn = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = counter.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    read.read(entity, &mut conn).unwrap();
    counter.load(std::sync::atomic::Ordering::SeqCst)
}

#[actix_rt::test]
async fn snapshots_cost_a_constant_number_of_queries() {
    let mut counts = Vec::new();
    for n in [1usize, 100] {
        let (rt, dir) = runtime(2);
        let domain = Domain::without_agent(rt.clone());
        setup(&domain).await;
        let mut last = None;
        for i in 0..n {
            last = Some(domain.create_task(&repo(), prompt(&format!("Task {i}"))).await.unwrap().task);
        }
        let task = last.unwrap();
        for _ in 1..n.min(20) {
            domain.create_session(&task, CreateSession { name: None, model: None, user_id: None }).await.unwrap();
        }
        let session = task.session("s1");
        for i in 0..n {
            domain
                .sessions
                .mutate(&session, SendMessage { text: format!("message {i}"), user_id: None })
                .await
                .unwrap();
        }
        until("projection settled", || org_snapshot(&domain), |s| s.task_summaries.len() == n).await;
        rt.shutdown().await;
        let path = |kind: &str, key: &str| {
            dir.path().join(kind).join(format!("{}.sqlite3", foundry::runtime::key::file_stem(key).unwrap()))
        };
        let org = Organization { id: ORG.into() };
        let org_q = count_queries(&path("organization", ORG), &org, GetOrganizationSnapshot);
        let task_q = count_queries(&path("task", &task.encode()), &Task::new(task.clone()), GetTaskDetail);
        let session_q =
            count_queries(&path("session", &session.encode()), &Session::new(session.clone()), GetSessionDetail);
        let repo_q = count_queries(
            &path("repository", &repo().encode()),
            &foundry::actors::repository::Repository { key: repo() },
            ListTaskSummaries,
        );
        counts.push((n, org_q, task_q, session_q, repo_q));
    }
    let (_, o1, t1, s1, r1) = counts[0];
    let (_, o100, t100, s100, r100) = counts[1];
    assert_eq!((o1, t1, s1, r1), (o100, t100, s100, r100), "query counts for 1 vs 100 rows: {counts:?}");
    assert!(o1 <= 4 && t1 <= 4 && s1 <= 3 && r1 <= 2, "{counts:?}");
}

#[actix_rt::test]
async fn topics_publish_full_snapshots_after_each_change() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let mut org_sub = domain.orgs.subscribe(&ORG.to_owned(), "organization").await.unwrap();
    let first = org_sub.next().await.unwrap();
    assert_eq!(first.event_name(), "organizationUpdated");
    let t = domain.create_task(&repo(), prompt("Watch me")).await.unwrap();
    // The organization snapshot arrives with the task once the summaries have travelled up; versions only grow.
    let mut last = first.version;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), org_sub.next()).await.unwrap().unwrap();
        assert!(ev.version > last);
        last = ev.version;
        let snap: serde_json::Value = ev.snapshot_as().unwrap();
        if snap["taskSummaries"].as_array().is_some_and(|a| a.len() == 1 && a[0]["status"] == "idle") {
            break;
        }
    }
    let mut task_sub = domain.tasks.subscribe(&t.task, "task").await.unwrap();
    assert_eq!(task_sub.next().await.unwrap().event_name(), "taskUpdated");
    domain.tasks.mutate(&t.task, RenameTask { title: "Watched".into(), user_id: None }).await.unwrap();
    let ev = task_sub.next().await.unwrap();
    assert_eq!(ev.snapshot_as::<serde_json::Value>().unwrap()["title"], "Watched");
    let mut session_sub = domain.sessions.subscribe(&t.task.session("s1"), "session").await.unwrap();
    assert_eq!(session_sub.next().await.unwrap().event_name(), "sessionUpdated");
    domain.sessions.mutate(&t.task.session("s1"), SendMessage { text: "ping".into(), user_id: None }).await.unwrap();
    let ev = session_sub.next().await.unwrap();
    assert_eq!(ev.snapshot_as::<serde_json::Value>().unwrap()["transcript"].as_array().unwrap().len(), 2);
    let mut app_sub = domain.users.subscribe(&"u1".to_owned(), "app").await.unwrap();
    assert_eq!(app_sub.next().await.unwrap().event_name(), "appUpdated");
}

#[actix_rt::test]
async fn a_stop_between_coordinator_steps_loses_nothing() {
    let (rt, dir) = runtime(2);
    let domain = Domain::without_agent(rt.clone());
    setup(&domain).await;
    // Only the repository step runs here; the rest of the chain is left to the outboxes, then the runtime stops at
    // once (whatever was not yet delivered stays in the outboxes).
    let (created, _init) = domain.repos.mutate(&repo(), prompt("Survive a stop")).await.unwrap();
    rt.shutdown().await;

    let domain = Domain::without_agent(runtime_at(dir.path(), 2));
    let report = domain.runtime.recover().await;
    assert!(report.failed.is_empty() && report.unknown_kinds.is_empty(), "{report:?}");
    let session = created.task.session("s1");
    let detail =
        until("the first session to exist", || domain.sessions.read(&session, GetSessionDetail), |d| d.is_ok())
            .await
            .unwrap();
    assert_eq!(detail.transcript.len(), 1, "the prompt arrived exactly once");
    assert_eq!(detail.transcript[0].text, "Survive a stop");
    let snap = until(
        "organization projection",
        || org_snapshot(&domain),
        |s| s.task_summaries.len() == 1 && s.task_summaries[0].status == TaskStatus::Idle,
    )
    .await;
    assert_eq!(snap.task_summaries[0].task_id, created.task.task);
    let events = domain
        .audit_events(
            ORG,
            ListAuditEvents { repo_id: Some("web".into()), task_id: Some("t1".into()), before_id: None, limit: 50 },
        )
        .await
        .unwrap();
    let created_events = events.events.iter().filter(|e| e.kind == "task.created").count();
    assert_eq!(created_events, 1);
}

/// The creating request normally starts the first turn once the chain is done; when it dies halfway (its process
/// killed after the repository step, or after the session was initialised), the session answers the first prompt
/// anyway: after a restart once the outboxes finish the chain, and in a live process once nobody started it.
#[actix_rt::test]
async fn a_creation_cut_short_still_answers_the_first_prompt() {
    let answered = |d: &Result<foundry::actors::session::SessionDetail, _>| {
        d.as_ref().is_ok_and(|d| d.status == SessionStatus::Idle && d.transcript.iter().any(|i| i.role == "agent"))
    };
    // Cut after the repository step, then a restart: the outboxes initialise task and session after recovery.
    let (rt, dir) = runtime(2);
    let domain = Domain::new(rt.clone());
    setup(&domain).await;
    let (created, _init) = domain.repos.mutate(&repo(), prompt("Survive a stop")).await.unwrap();
    rt.shutdown().await;
    let domain = Domain::new(runtime_at(dir.path(), 2));
    domain.runtime.recover().await;
    let session = created.task.session("s1");
    let d = until("the first prompt answered", || domain.sessions.read(&session, GetSessionDetail), answered).await;
    assert_eq!(d.unwrap().transcript.iter().filter(|i| i.role == "user").count(), 1);

    // Cut after the session was initialised, in a live process: the session starts its first turn itself.
    let (created, init) = domain.repos.mutate(&repo(), prompt("Nobody started me")).await.unwrap();
    let session_init = domain.tasks.mutate(&created.task, init).await.unwrap().expect("a first session");
    let session = created.task.session(&created.session_id);
    domain.sessions.mutate(&session, session_init).await.unwrap();
    let d = until("the first prompt answered", || domain.sessions.read(&session, GetSessionDetail), answered).await;
    assert_eq!(d.unwrap().transcript[0].text, "Nobody started me");
}

/// The first turn's start is a durable schedule of the session (`StartOwedTurn`, set by `InitializeSession`): a
/// session that nobody started and that passivated during the grace is woken by the runtime's due index and answers
/// its first prompt, without anyone calling it (an in-memory timer died with the passivation).
#[actix_rt::test]
async fn a_session_passivated_before_its_first_turn_is_woken_to_run_it() {
    use foundry::runtime::ListSchedules;
    let (rt, _dir) = runtime(2);
    let domain = Domain::new(rt.clone());
    setup(&domain).await;
    let (created, init) = domain.repos.mutate(&repo(), prompt("Wake me")).await.unwrap();
    let session_init = domain.tasks.mutate(&created.task, init).await.unwrap().expect("a first session");
    let session = created.task.session(&created.session_id);
    domain.sessions.mutate(&session, session_init).await.unwrap();
    let schedules = domain.sessions.read(&session, ListSchedules::new()).await.unwrap();
    assert_eq!(schedules.iter().map(|s| s.message.as_str()).collect::<Vec<_>>(), vec!["session.start_owed_turn"]);
    // Passivate it as soon as its outbox (summary, audit) is delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !domain.sessions.passivate(&session).await {
        assert!(std::time::Instant::now() < deadline, "the session never passivated");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while domain.sessions.is_live(&session) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Nobody calls the session: only its schedule can bring it back.
    until("the session woken by its schedule", || async { domain.sessions.is_live(&session) }, |live| *live).await;
    let answered = |d: &Result<foundry::actors::session::SessionDetail, _>| {
        d.as_ref().is_ok_and(|d| d.status == SessionStatus::Idle && d.transcript.iter().any(|i| i.role == "agent"))
    };
    let d = until("the first prompt answered", || domain.sessions.read(&session, GetSessionDetail), answered).await;
    assert_eq!(d.unwrap().transcript[0].text, "Wake me");
    assert!(domain.sessions.read(&session, ListSchedules::new()).await.unwrap().is_empty(), "fired once, then gone");
}

/// The fallback start of the first turn is only owed until a turn starts: `create_task` starts it at once, which
/// cancels the schedule (no wake-up a second later); without an agent backend no turn can run, so none is set.
#[actix_rt::test]
async fn starting_the_first_turn_cancels_its_fallback_schedule() {
    use foundry::runtime::ListSchedules;
    let (rt, _dir) = runtime(2);
    let domain = Domain::new(rt.clone());
    setup(&domain).await;
    let created = domain.create_task(&repo(), prompt("Started at once")).await.unwrap();
    let session = created.task.session(&created.session_id);
    assert!(domain.sessions.read(&session, ListSchedules::new()).await.unwrap().is_empty());

    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    let created = domain.create_task(&repo(), prompt("Nobody to run it")).await.unwrap();
    let session = created.task.session(&created.session_id);
    assert!(domain.sessions.read(&session, ListSchedules::new()).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn the_model_catalog_service_decides_which_models_sessions_may_use() {
    use foundry::actors::models::{CatalogModel, ModelCatalog};
    let (rt, _dir) = runtime(2);
    let only = |id: &str| CatalogModel { id: id.into(), label: id.into(), agent: "codex".into() };
    rt.provide(std::sync::Arc::new(ModelCatalog::from_models(vec![only("codex-a"), only("codex-b")], "test")));
    let domain = Domain::without_agent(rt);
    setup(&domain).await;
    assert_eq!(domain.models().len(), 2);
    // Without a model (and with a user whose default is not in the catalog) a task gets the catalog's first model.
    let created = domain.create_task(&repo(), CreateTask { user_id: None, ..prompt("Catalog") }).await.unwrap();
    let s1 = created.task.session("s1");
    assert_eq!(domain.sessions.read(&s1, GetSessionDetail).await.unwrap().model, "codex-a");
    let to = |m: &str| ChangeModel { model: m.into(), mode: None, thought_level: None, user_id: None };
    domain.sessions.mutate(&s1, to("codex-b")).await.unwrap();
    let err = refused(domain.sessions.mutate(&s1, to("claude-opus-4")).await.unwrap_err());
    assert!(matches!(err, DomainError::Invalid { field: "model", .. }), "{err}");
    let bad = CreateTask { model: Some("gpt-5.3-codex".into()), ..prompt("x") };
    assert!(matches!(refused(domain.create_task(&repo(), bad).await.unwrap_err()), DomainError::Invalid { .. }));
}
