//! The audit log actor: appends, filtered and paginated listing (one query per page), validation, persistence across
//! restarts, and delivery through another actor's outbox.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use foundry::actors::audit_log::{
    is_audit_kind, AppendAuditEvent, AuditEvent, AuditLog, AuditPage, ListAuditEvents, AUDIT_KINDS,
};
use foundry::actors::keys::{RepoKey, TaskKey};
use foundry::actors::DomainError;
use foundry::runtime::{CallError, Entity, Mutation, Registry, Tx};
use serde_json::json;
use support::{runtime, runtime_at, Tally, TallyError};

fn org() -> String {
    "acme".to_owned()
}

fn event(kind: &str, repo: Option<&str>, task: Option<&str>, at: i64) -> AppendAuditEvent {
    AppendAuditEvent {
        kind: kind.to_owned(),
        repo_id: repo.map(str::to_owned),
        task_id: task.map(str::to_owned),
        session_id: None,
        user_id: Some("u1".to_owned()),
        payload: json!({ "n": at }),
        at,
    }
}

fn list(repo: Option<&str>, task: Option<&str>, before_id: Option<i64>, limit: u32) -> ListAuditEvents {
    ListAuditEvents { repo_id: repo.map(str::to_owned), task_id: task.map(str::to_owned), before_id, limit }
}

/// 12 events: kinds cycle through the catalogue; repos r1/r2 alternate; tasks t1/t2 within each repo, and every
/// fourth event has neither repo nor task. Returns the appended events with their ids.
async fn seed(reg: &Registry<AuditLog>) -> Vec<(i64, AppendAuditEvent)> {
    let mut out = Vec::new();
    for i in 0..12i64 {
        let (repo, task) = match i % 4 {
            0 => (Some("r1"), Some("t1")),
            1 => (Some("r2"), Some("t1")),
            2 => (Some("r1"), Some("t2")),
            _ => (None, None),
        };
        let e = event(AUDIT_KINDS[i as usize % AUDIT_KINDS.len()], repo, task, 1_000 + i);
        let id = reg.mutate(&org(), e.clone()).await.unwrap();
        out.push((id, e));
    }
    out
}

fn assert_matches(got: &AuditEvent, id: i64, sent: &AppendAuditEvent) {
    assert_eq!(got.id, id);
    assert_eq!(got.kind, sent.kind);
    assert_eq!(got.repo_id, sent.repo_id);
    assert_eq!(got.task_id, sent.task_id);
    assert_eq!(got.session_id, sent.session_id);
    assert_eq!(got.user_id, sent.user_id);
    assert_eq!(got.payload, sent.payload);
    assert_eq!(got.at, sent.at);
}

fn ids(page: &AuditPage) -> Vec<i64> {
    page.events.iter().map(|e| e.id).collect()
}

fn is_invalid<T: std::fmt::Debug>(res: Result<T, CallError<DomainError>>, field: &str) -> bool {
    matches!(res, Err(CallError::Handler(DomainError::Invalid { field: f, .. })) if f == field)
}

#[actix_rt::test]
async fn appends_are_listed_newest_first_with_all_fields() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<AuditLog>();
    let seeded = seed(&reg).await;
    let ids_sent: Vec<i64> = seeded.iter().map(|(id, _)| *id).collect();
    assert!(ids_sent.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids_sent:?}");

    let page = reg.read(&org(), list(None, None, None, 500)).await.unwrap();
    assert_eq!(page.events.len(), 12);
    assert_eq!(page.next_before, None);
    for (got, (id, sent)) in page.events.iter().zip(seeded.iter().rev()) {
        assert_matches(got, *id, sent);
    }

    // A session-level event built with the helpers keeps every id.
    let task = TaskKey { org: org(), repo: "r9".into(), task: "t9".into() };
    let e = AppendAuditEvent::new("task.session.renamed", 77)
        .with_session(&task.session("s1"))
        .with_user("u2")
        .with_payload(json!({ "name": "fix" }));
    let id = reg.mutate(&org(), e.clone()).await.unwrap();
    let newest = reg.read(&org(), list(Some("r9"), Some("t9"), None, 1)).await.unwrap();
    assert_eq!(newest.events.len(), 1);
    assert_matches(&newest.events[0], id, &e);
    assert_eq!(newest.events[0].session_id.as_deref(), Some("s1"));
    let repo_only = AppendAuditEvent::new("repository.added", 1).with_repo(&RepoKey::new(org(), "r9"));
    assert_eq!(repo_only.repo_id.as_deref(), Some("r9"));
    assert_eq!(repo_only.task_id, None);
    assert_eq!(repo_only.payload, json!({}));
}

#[actix_rt::test]
async fn filters_by_repository_and_by_repository_and_task() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<AuditLog>();
    let seeded = seed(&reg).await;
    let expect = |f: &dyn Fn(&AppendAuditEvent) -> bool| -> Vec<i64> {
        seeded.iter().rev().filter(|(_, e)| f(e)).map(|(id, _)| *id).collect()
    };

    let r1 = reg.read(&org(), list(Some("r1"), None, None, 100)).await.unwrap();
    assert_eq!(ids(&r1), expect(&|e| e.repo_id.as_deref() == Some("r1")));
    assert_eq!(r1.events.len(), 6);
    assert!(r1.events.iter().all(|e| e.repo_id.as_deref() == Some("r1")));

    let r1t1 = reg.read(&org(), list(Some("r1"), Some("t1"), None, 100)).await.unwrap();
    assert_eq!(ids(&r1t1), expect(&|e| e.repo_id.as_deref() == Some("r1") && e.task_id.as_deref() == Some("t1")));
    assert_eq!(r1t1.events.len(), 3);

    // Same task id in another repository is another task.
    let r2t1 = reg.read(&org(), list(Some("r2"), Some("t1"), None, 100)).await.unwrap();
    assert_eq!(r2t1.events.len(), 3);
    assert!(ids(&r2t1).iter().all(|id| !ids(&r1t1).contains(id)));

    let none = reg.read(&org(), list(Some("nope"), None, None, 100)).await.unwrap();
    assert_eq!(none, AuditPage { events: vec![], next_before: None });

    // Another organization's log is another database.
    let other = reg.read(&"other-org".to_owned(), list(None, None, None, 100)).await.unwrap();
    assert!(other.events.is_empty());
}

async fn all_pages(reg: &Registry<AuditLog>, repo: Option<&str>, task: Option<&str>, limit: u32) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = reg.read(&org(), list(repo, task, before, limit)).await.unwrap();
        assert!(page.events.len() <= limit as usize);
        pages.push(ids(&page));
        match page.next_before {
            Some(next) => {
                assert_eq!(Some(next), page.events.last().map(|e| e.id));
                before = Some(next);
            }
            None => return pages,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
}

#[actix_rt::test]
async fn pagination_is_disjoint_complete_and_ordered() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<AuditLog>();
    let seeded = seed(&reg).await;
    let all: Vec<i64> = seeded.iter().rev().map(|(id, _)| *id).collect();

    for limit in [1u32, 3, 5, 11, 12, 13] {
        let pages = all_pages(&reg, None, None, limit).await;
        let flat: Vec<i64> = pages.concat();
        assert_eq!(flat, all, "limit {limit}: {pages:?}");
        assert_eq!(flat.iter().collect::<HashSet<_>>().len(), flat.len(), "pages are disjoint");
        // Full pages except possibly the last, and no empty trailing page when the total divides evenly.
        let n = pages.len();
        assert!(pages[..n - 1].iter().all(|p| p.len() == limit as usize));
        assert!(!pages[n - 1].is_empty());
        assert_eq!(n, all.len().div_ceil(limit as usize), "limit {limit}");
    }

    // Filtered pagination too.
    let r1: Vec<i64> =
        seeded.iter().rev().filter(|(_, e)| e.repo_id.as_deref() == Some("r1")).map(|(id, _)| *id).collect();
    assert_eq!(all_pages(&reg, Some("r1"), None, 4).await.concat(), r1);
    let r1t2: Vec<i64> = seeded
        .iter()
        .rev()
        .filter(|(_, e)| e.repo_id.as_deref() == Some("r1") && e.task_id.as_deref() == Some("t2"))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(all_pages(&reg, Some("r1"), Some("t2"), 2).await.concat(), r1t2);

    // Events appended while paging land above the cursor: older pages stay stable.
    let first = reg.read(&org(), list(None, None, None, 5)).await.unwrap();
    reg.mutate(&org(), event("task.pushed", Some("r1"), None, 9_999)).await.unwrap();
    let second = reg.read(&org(), list(None, None, first.next_before, 5)).await.unwrap();
    assert_eq!(ids(&second), all[5..10].to_vec());
}

#[actix_rt::test]
async fn invalid_requests_are_refused_and_store_nothing() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<AuditLog>();
    reg.mutate(&org(), event("task.created", Some("r1"), Some("t1"), 1)).await.unwrap();

    for kind in ["task.exploded", "", "TASK.CREATED", "task.created "] {
        assert!(!is_audit_kind(kind));
        assert!(is_invalid(reg.mutate(&org(), event(kind, Some("r1"), Some("t1"), 2)).await, "kind"), "{kind:?}");
    }
    let page = reg.read(&org(), list(None, None, None, 500)).await.unwrap();
    assert_eq!(page.events.len(), 1, "refused appends stored nothing");

    assert!(is_invalid(reg.read(&org(), list(None, None, None, 0)).await, "limit"));
    assert!(is_invalid(reg.read(&org(), list(None, None, None, 501)).await, "limit"));
    assert!(is_invalid(reg.read(&org(), list(None, None, None, u32::MAX)).await, "limit"));
    assert_eq!(reg.read(&org(), list(None, None, None, 1)).await.unwrap().events.len(), 1);
    assert_eq!(reg.read(&org(), list(None, None, None, 500)).await.unwrap().events.len(), 1);

    assert!(is_invalid(reg.read(&org(), list(None, Some("t1"), None, 10)).await, "task_id"));

    // Every catalogue kind is accepted.
    for kind in AUDIT_KINDS {
        assert!(is_audit_kind(kind));
        reg.mutate(&org(), event(kind, None, None, 3)).await.unwrap();
    }
    let page = reg.read(&org(), list(None, None, None, 500)).await.unwrap();
    assert_eq!(page.events.len(), 1 + AUDIT_KINDS.len());
    for k in ["task.created", "task.switch", "task.merged", "task.unread.marked", "organization.created"] {
        assert!(is_audit_kind(k), "{k}");
    }
}

#[actix_rt::test]
async fn identical_appends_are_distinct_events() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<AuditLog>();
    let e = event("task.message.sent", Some("r1"), Some("t1"), 42);
    let a = reg.mutate(&org(), e.clone()).await.unwrap();
    let b = reg.mutate(&org(), e.clone()).await.unwrap();
    assert_ne!(a, b);
    let page = reg.read(&org(), list(Some("r1"), Some("t1"), None, 10)).await.unwrap();
    assert_eq!(ids(&page), vec![b, a]);
    assert_matches(&page.events[0], b, &e);
    assert_matches(&page.events[1], a, &e);
}

#[actix_rt::test]
async fn events_survive_a_runtime_restart() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<AuditLog>();
    let seeded = seed(&reg).await;
    let before = reg.read(&org(), list(None, None, None, 500)).await.unwrap();
    rt.shutdown().await;

    let rt = runtime_at(dir.path(), 2);
    let reg = rt.registry::<AuditLog>();
    let after = reg.read(&org(), list(None, None, None, 500)).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.events.len(), seeded.len());
    // Ids keep growing after the restart (AUTOINCREMENT).
    let id = reg.mutate(&org(), event("task.killed", None, None, 5)).await.unwrap();
    assert!(id > seeded.last().unwrap().0);
    assert!(dir.path().join(AuditLog::KIND).join("acme.sqlite3").exists());
    rt.shutdown().await;
}

/// A mutation of the test kind that appends to the audit log through its outbox, as domain actors do.
struct AuditThroughOutbox {
    org: String,
    event: AppendAuditEvent,
}

impl Mutation for AuditThroughOutbox {
    type Entity = Tally;
    type Output = ();
    type Error = TallyError;
    fn apply(self, _: &Tally, tx: &mut Tx<'_>) -> Result<(), TallyError> {
        tx.send(&self.org, &self.event)?;
        Ok(())
    }
}

#[actix_rt::test]
async fn appends_arrive_through_another_actors_outbox() {
    let (rt, _dir) = runtime(2);
    let sender = rt.registry::<Tally>();
    let reg = rt.registry::<AuditLog>();
    for i in 0..5 {
        let e = event("task.title.changed", Some("r1"), Some("t1"), i);
        sender.mutate(&"sender".to_owned(), AuditThroughOutbox { org: org(), event: e }).await.unwrap();
    }
    let mut page = AuditPage { events: vec![], next_before: None };
    for _ in 0..500 {
        page = reg.read(&org(), list(Some("r1"), Some("t1"), None, 100)).await.unwrap();
        if page.events.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Delivered once each, in the sender's order (newest first here).
    let ats: Vec<i64> = page.events.iter().map(|e| e.at).collect();
    assert_eq!(ats, vec![4, 3, 2, 1, 0]);
    assert!(page.events.iter().all(|e| e.kind == "task.title.changed"));
}

/// Counts the queries a connection runs.
struct QueryCounter(Arc<AtomicUsize>);

impl Instrumentation for QueryCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn one_query_per_page_whatever_its_size() {
    use foundry::runtime::Read;

    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.run_pending_migrations(AuditLog::MIGRATIONS).unwrap();
    for i in 0..300i64 {
        let e = event(AUDIT_KINDS[i as usize % 3], Some(if i % 2 == 0 { "r1" } else { "r2" }), Some("t1"), i);
        diesel::insert_into(foundry::actors::audit_log::schema::events::table)
            .values(&foundry::actors::audit_log::schema::NewEvent {
                kind: &e.kind,
                repo_id: e.repo_id.as_deref(),
                task_id: e.task_id.as_deref(),
                session_id: None,
                user_id: e.user_id.as_deref(),
                payload: e.payload.to_string(),
                at: e.at,
            })
            .execute(&mut conn)
            .unwrap();
    }
    let count = Arc::new(AtomicUsize::new(0));
    conn.set_instrumentation(QueryCounter(count.clone()));
    let entity = AuditLog { org_id: org() };
    for (repo, task, limit) in
        [(None, None, 1), (None, None, 500), (Some("r1"), None, 200), (Some("r2"), Some("t1"), 7)]
    {
        count.store(0, Ordering::SeqCst);
        let page = list(repo, task, Some(250), limit).read(&entity, &mut conn).unwrap();
        assert!(!page.events.is_empty());
        assert_eq!(count.load(Ordering::SeqCst), 1, "repo {repo:?} task {task:?} limit {limit}");
    }
}
