//! The `user` actor kind: profile and default model, per-user task/session state, the `app` topic, persistence.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::connection::{Connection, InstrumentationEvent};
use foundry::actors::models;
use foundry::actors::user::*;
use foundry::actors::{DomainError, RepoKey, SessionKey, TaskKey};
use foundry::runtime::{CallError, Entity, Read, Registry};
use support::{runtime, runtime_at};

fn key(name: &str) -> String {
    format!("user-{name}")
}

fn upsert(name: &str) -> UpsertUser {
    UpsertUser { name: name.into(), email: format!("{}@example.com", name.to_lowercase()), avatar_url: None }
}

fn task(t: &str) -> TaskKey {
    RepoKey::new("acme", "web").task(t)
}

fn attachment(id: &str) -> DraftAttachment {
    DraftAttachment {
        id: id.into(),
        file_path: "src/main.rs".into(),
        line_number: Some(12),
        line_content: "fn main() {}".into(),
    }
}

fn draft(session: &SessionKey, text: &str, attachments: Vec<DraftAttachment>) -> SaveDraft {
    SaveDraft { session: session.clone(), text: text.into(), attachments }
}

/// The refusal's field, panicking on anything but `Invalid`.
fn invalid_field<T: std::fmt::Debug>(r: Result<T, CallError<DomainError>>) -> &'static str {
    match r {
        Err(CallError::Handler(DomainError::Invalid { field, .. })) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn is_user_not_found<T: std::fmt::Debug>(r: Result<T, CallError<DomainError>>) -> bool {
    matches!(r, Err(CallError::Handler(DomainError::NotFound { what: "user", .. })))
}

async fn overlay(reg: &Registry<User>, k: &String, t: &TaskKey) -> TaskOverlay {
    reg.read(k, GetTaskOverlay { task: t.clone() }).await.unwrap()
}

#[actix_rt::test]
async fn upsert_creates_the_user_and_the_app_snapshot_shows_it() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("ada");
    let created = reg
        .mutate(&k, UpsertUser { name: "Ada".into(), email: "ada@example.com".into(), avatar_url: None })
        .await
        .unwrap();
    assert_eq!(created.user.id, k);
    assert_eq!(created.default_model, models::DEFAULT_MODEL);
    assert_eq!(created.profile.role, "member");
    assert_eq!(created.profile.starter_repo_status, StarterRepoStatus::Pending);

    let updated = reg
        .mutate(
            &k,
            UpsertUser {
                name: "Ada L.".into(),
                email: "ada@lovelace.dev".into(),
                avatar_url: Some("https://a.example/ada.png".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.created_at_ms, created.created_at_ms);
    assert_eq!(reg.read(&k, GetUser).await.unwrap(), updated);

    let profile = reg
        .mutate(
            &k,
            UpdateProfile {
                github_login: Some("ada".into()),
                role: Some("admin".into()),
                eligible_org_ids: Some(vec!["acme".into(), "lovelace".into(), "acme".into()]),
            },
        )
        .await
        .unwrap();
    assert_eq!(profile.eligible_org_ids, vec!["acme".to_owned(), "lovelace".to_owned()]);
    reg.mutate(&k, SetStarterRepoStatus { status: StarterRepoStatus::Starred }).await.unwrap();

    let app = reg.read(&k, GetAppSnapshot).await.unwrap();
    assert_eq!(
        app,
        AppSnapshot {
            user: UserInfo {
                id: k.clone(),
                name: "Ada L.".into(),
                email: "ada@lovelace.dev".into(),
                avatar_url: Some("https://a.example/ada.png".into()),
            },
            profile: ProfileInfo {
                github_login: Some("ada".into()),
                role: "admin".into(),
                eligible_org_ids: vec!["acme".into(), "lovelace".into()],
                starter_repo_status: StarterRepoStatus::Starred,
            },
            default_model: models::DEFAULT_MODEL.into(),
            organizations: ["acme", "lovelace"]
                .map(|id| OrganizationEntry { id: id.into(), display_name: id.into(), role: None })
                .to_vec(),
            active_organization_id: Some("acme".into()),
        }
    );
    // camelCase on the wire.
    let json = serde_json::to_value(&app).unwrap();
    assert_eq!(json["user"]["avatarUrl"], "https://a.example/ada.png");
    assert_eq!(json["profile"]["starterRepoStatus"], "starred");
    assert_eq!(json["defaultModel"], models::DEFAULT_MODEL);

    // Invalid input is refused and changes nothing.
    let bad = |name: &str, email: &str| UpsertUser { name: name.into(), email: email.into(), avatar_url: None };
    assert_eq!(invalid_field(reg.mutate(&k, bad("", "x@y")).await), "name");
    assert_eq!(invalid_field(reg.mutate(&k, bad(&"n".repeat(201), "x@y")).await), "name");
    assert_eq!(invalid_field(reg.mutate(&k, bad("Ada", "not-an-email")).await), "email");
    let long_email = format!("{}@example.com", "e".repeat(320));
    assert_eq!(invalid_field(reg.mutate(&k, bad("Ada", &long_email)).await), "email");
    assert_eq!(
        invalid_field(reg.mutate(&k, SetStarterRepoStatus { status: StarterRepoStatus::Pending }).await),
        "status"
    );
    let empty_org = UpdateProfile { eligible_org_ids: Some(vec![String::new()]), ..Default::default() };
    assert_eq!(invalid_field(reg.mutate(&k, empty_org).await), "eligible_org_ids");
    assert_eq!(reg.read(&k, GetAppSnapshot).await.unwrap(), app);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn default_model_is_set_and_an_unknown_model_is_refused() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("model");
    reg.mutate(&k, upsert("Model")).await.unwrap();
    assert_eq!(reg.read(&k, GetAppSnapshot).await.unwrap().default_model, models::DEFAULT_MODEL);
    reg.mutate(&k, SetDefaultModel { model: "claude-opus-4".into() }).await.unwrap();
    assert_eq!(reg.read(&k, GetAppSnapshot).await.unwrap().default_model, "claude-opus-4");
    assert_eq!(invalid_field(reg.mutate(&k, SetDefaultModel { model: "gpt-0".into() }).await), "model");
    assert_eq!(reg.read(&k, GetUser).await.unwrap().default_model, "claude-opus-4");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn drafts_are_saved_per_session_and_oversize_drafts_are_refused() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("drafts");
    reg.mutate(&k, upsert("Drafts")).await.unwrap();
    let t = task("t1");
    let (s1, s2) = (t.session("s1"), t.session("s2"));

    let saved = reg.mutate(&k, draft(&s1, "first", vec![attachment("a1")])).await.unwrap();
    assert!(saved.updated_at_ms.is_some());
    reg.mutate(&k, draft(&s2, "other session", vec![])).await.unwrap();
    let saved = reg.mutate(&k, draft(&s1, "second", vec![attachment("a1"), attachment("a2")])).await.unwrap();

    let o = overlay(&reg, &k, &t).await;
    assert_eq!(o.sessions.len(), 2);
    assert_eq!(o.sessions[0].session_id, "s1");
    assert_eq!(o.sessions[0].draft, saved);
    assert_eq!(o.sessions[0].draft.text, "second");
    assert_eq!(o.sessions[0].draft.attachments.len(), 2);
    assert_eq!(o.sessions[1].draft.text, "other session");

    // Every limit is refused, leaving the previous draft intact.
    let too_long = "x".repeat(MAX_DRAFT_TEXT_BYTES + 1);
    assert_eq!(invalid_field(reg.mutate(&k, draft(&s1, &too_long, vec![])).await), "draft");
    let too_many = (0..=MAX_DRAFT_ATTACHMENTS).map(|i| attachment(&format!("a{i}"))).collect();
    assert_eq!(invalid_field(reg.mutate(&k, draft(&s1, "third", too_many)).await), "attachments");
    let long_path = DraftAttachment { file_path: "p".repeat(MAX_ATTACHMENT_PATH_CHARS + 1), ..attachment("a1") };
    assert_eq!(invalid_field(reg.mutate(&k, draft(&s1, "third", vec![long_path])).await), "attachments");
    let long_line = DraftAttachment { line_content: "l".repeat(MAX_ATTACHMENT_LINE_BYTES + 1), ..attachment("a1") };
    assert_eq!(invalid_field(reg.mutate(&k, draft(&s1, "third", vec![long_line])).await), "attachments");
    // At the limits it is accepted.
    let at_limit = "y".repeat(MAX_DRAFT_TEXT_BYTES);
    let max_attachments = (0..MAX_DRAFT_ATTACHMENTS).map(|i| attachment(&format!("a{i}"))).collect();
    reg.mutate(&k, draft(&s2, &at_limit, max_attachments)).await.unwrap();

    let after = overlay(&reg, &k, &t).await;
    assert_eq!(after.sessions[0], o.sessions[0]);
    assert_eq!(after.sessions[1].draft.text.len(), MAX_DRAFT_TEXT_BYTES);
    assert_eq!(after.sessions[1].draft.attachments.len(), MAX_DRAFT_ATTACHMENTS);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn unread_and_active_session_are_kept_per_task() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("unread");
    reg.mutate(&k, upsert("Unread")).await.unwrap();
    let (t1, t2) = (task("t1"), task("t2"));

    assert_eq!(overlay(&reg, &k, &t1).await, TaskOverlay { active_session_id: None, sessions: vec![] });
    reg.mutate(&k, SetActiveSession { task: t1.clone(), session_id: "s1".into() }).await.unwrap();
    reg.mutate(&k, SetActiveSession { task: t2.clone(), session_id: "s9".into() }).await.unwrap();
    reg.mutate(&k, SetActiveSession { task: t1.clone(), session_id: "s2".into() }).await.unwrap();
    reg.mutate(&k, MarkSessionUnread { session: t1.session("s1"), unread: true }).await.unwrap();
    reg.mutate(&k, MarkSessionUnread { session: t2.session("s1"), unread: true }).await.unwrap();
    reg.mutate(&k, MarkSessionUnread { session: t1.session("s1"), unread: false }).await.unwrap();
    reg.mutate(&k, MarkSessionUnread { session: t1.session("s2"), unread: true }).await.unwrap();

    let o1 = overlay(&reg, &k, &t1).await;
    assert_eq!(o1.active_session_id.as_deref(), Some("s2"));
    let unread: Vec<(&str, bool)> = o1.sessions.iter().map(|s| (s.session_id.as_str(), s.unread)).collect();
    assert_eq!(unread, vec![("s1", false), ("s2", true)]);
    // Marking unread leaves the (empty) draft alone.
    assert_eq!(o1.sessions[1].draft, Draft { text: String::new(), attachments: vec![], updated_at_ms: None });

    let o2 = overlay(&reg, &k, &t2).await;
    assert_eq!(o2.active_session_id.as_deref(), Some("s9"));
    assert_eq!(o2.sessions.len(), 1);
    assert!(o2.sessions[0].unread);

    let empty_session = SetActiveSession { task: t1.clone(), session_id: String::new() };
    assert_eq!(invalid_field(reg.mutate(&k, empty_session).await), "session_id");
    assert_eq!(overlay(&reg, &k, &t1).await, o1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn task_overlay_lists_sessions_sorted_without_leaking_other_tasks_in_two_queries() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("overlay");
    reg.mutate(&k, upsert("Overlay")).await.unwrap();
    let t = task("main");
    // Same task id in another repository and another organization, and a sibling task: none may leak.
    let others = [RepoKey::new("acme", "api").task("main"), RepoKey::new("other", "web").task("main"), task("side")];
    for s in ["s3", "s1", "s2", "s10"] {
        reg.mutate(&k, draft(&t.session(s), &format!("draft {s}"), vec![])).await.unwrap();
    }
    reg.mutate(&k, MarkSessionUnread { session: t.session("s2"), unread: true }).await.unwrap();
    reg.mutate(&k, SetActiveSession { task: t.clone(), session_id: "s3".into() }).await.unwrap();
    for o in &others {
        reg.mutate(&k, draft(&o.session("s1"), "leak", vec![attachment("x")])).await.unwrap();
        reg.mutate(&k, MarkSessionUnread { session: o.session("s4"), unread: true }).await.unwrap();
        reg.mutate(&k, SetActiveSession { task: o.clone(), session_id: "s4".into() }).await.unwrap();
    }

    let o = overlay(&reg, &k, &t).await;
    assert_eq!(o.active_session_id.as_deref(), Some("s3"));
    let ids: Vec<&str> = o.sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, vec!["s1", "s10", "s2", "s3"]);
    assert!(o.sessions.iter().all(|s| s.draft.text == format!("draft {}", s.session_id)));
    assert!(o.sessions.iter().all(|s| s.draft.attachments.is_empty()));
    assert_eq!(o.sessions.iter().filter(|s| s.unread).count(), 1);
    for other in &others {
        let x = overlay(&reg, &k, other).await;
        assert_eq!(x.active_session_id.as_deref(), Some("s4"));
        assert_eq!(x.sessions.len(), 2);
    }
    rt.shutdown().await;

    // Against the file directly: the overlay costs two queries, however many sessions the task has.
    let path = foundry::runtime::db::actor_path(dir.path(), User::KIND, &k).unwrap();
    let mut conn = support::open_file(&path);
    let user = User::load(&k, &mut conn).unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = queries.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let direct = GetTaskOverlay { task: t.clone() }.read(&user, &mut conn).unwrap();
    assert_eq!(direct, o);
    assert_eq!(queries.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn an_unknown_user_is_not_found_everywhere() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("nobody");
    let t = task("t");
    assert!(is_user_not_found(reg.read(&k, GetUser).await));
    assert!(is_user_not_found(reg.read(&k, GetAppSnapshot).await));
    assert!(is_user_not_found(reg.read(&k, GetTaskOverlay { task: t.clone() }).await));
    assert!(is_user_not_found(
        reg.mutate(&k, UpdateProfile { role: Some("admin".into()), ..Default::default() }).await
    ));
    assert!(is_user_not_found(reg.mutate(&k, SetDefaultModel { model: "claude-opus-4".into() }).await));
    assert!(is_user_not_found(reg.mutate(&k, SetStarterRepoStatus { status: StarterRepoStatus::Skipped }).await));
    assert!(is_user_not_found(reg.mutate(&k, SetActiveSession { task: t.clone(), session_id: "s".into() }).await));
    assert!(is_user_not_found(reg.mutate(&k, MarkSessionUnread { session: t.session("s"), unread: true }).await));
    assert!(is_user_not_found(reg.mutate(&k, draft(&t.session("s"), "hi", vec![])).await));
    // Nothing was created by the refusals.
    assert!(is_user_not_found(reg.read(&k, GetTaskOverlay { task: t }).await));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn app_topic_publishes_the_snapshot_then_each_change() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("topic");
    reg.mutate(&k, upsert("Topic")).await.unwrap();
    let mut sub = reg.subscribe(&k, APP_TOPIC).await.unwrap();
    let first = sub.next().await.unwrap();
    assert_eq!(first.event_name(), "appUpdated");
    let current = reg.read(&k, GetAppSnapshot).await.unwrap();
    assert_eq!(first.snapshot_as::<AppSnapshot>().unwrap(), current);
    assert_eq!(first.snapshot_as::<serde_json::Value>().unwrap(), serde_json::to_value(&current).unwrap());

    reg.mutate(&k, SetDefaultModel { model: "claude-sonnet-4".into() }).await.unwrap();
    let second = sub.next().await.unwrap();
    assert_eq!(second.version, first.version + 1);
    assert_eq!(second.snapshot_as::<AppSnapshot>().unwrap().default_model, "claude-sonnet-4");

    // Refused mutations, writes that change nothing and per-task state publish nothing.
    assert!(reg.mutate(&k, SetDefaultModel { model: "unknown".into() }).await.is_err());
    assert!(reg.mutate(&k, upsert("")).await.is_err());
    reg.mutate(&k, SetDefaultModel { model: "claude-sonnet-4".into() }).await.unwrap();
    reg.mutate(&k, draft(&task("t").session("s"), "hi", vec![])).await.unwrap();
    assert!(futures_util::FutureExt::now_or_never(sub.next()).is_none());

    reg.mutate(&k, UpdateProfile { eligible_org_ids: Some(vec!["acme".into()]), ..Default::default() }).await.unwrap();
    let third = sub.next().await.unwrap();
    assert_eq!(third.version, second.version + 1);
    assert_eq!(third.snapshot_as::<AppSnapshot>().unwrap().organizations[0].id, "acme");

    assert!(matches!(reg.subscribe(&k, "task").await, Err(CallError::Handler(_))));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn state_survives_a_runtime_restart() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<User>();
    let k = key("durable");
    let t = task("t");
    reg.mutate(&k, upsert("Durable")).await.unwrap();
    reg.mutate(&k, SetDefaultModel { model: "gpt-5-mini".into() }).await.unwrap();
    reg.mutate(&k, SetActiveSession { task: t.clone(), session_id: "s2".into() }).await.unwrap();
    reg.mutate(&k, MarkSessionUnread { session: t.session("s1"), unread: true }).await.unwrap();
    reg.mutate(&k, draft(&t.session("s2"), "keep me", vec![attachment("a")])).await.unwrap();
    let app = reg.read(&k, GetAppSnapshot).await.unwrap();
    let o = overlay(&reg, &k, &t).await;
    rt.shutdown().await;

    let rt2 = runtime_at(dir.path(), 2);
    let reg2 = rt2.registry::<User>();
    assert_eq!(reg2.read(&k, GetAppSnapshot).await.unwrap(), app);
    assert_eq!(app.default_model, "gpt-5-mini");
    assert_eq!(overlay(&reg2, &k, &t).await, o);
    assert_eq!(o.sessions.len(), 2);
    rt2.shutdown().await;
}
