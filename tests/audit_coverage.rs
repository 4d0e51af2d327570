//! The audit log is comprehensive: every mutating route registered in src/http/ is listed here, and each one either
//! leaves its audit event, with who did it, when called successfully (checked over HTTP against a running server
//! with a fake GitHub and a held agent turn), or is on the explicit list of routes that leave none, with the reason.
//! A new mutating route fails this test until it is listed.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use foundry::actors::audit_log::AUDIT_KINDS;
use foundry::actors::github_data::GitHubService;
use foundry::actors::session::SessionAgent;
use foundry::integrations::agent::BuiltinAgent;
use foundry::integrations::github::client::{GitHubClient, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, FakeMember, Fixture};
use foundry::integrations::sandbox::{ProcessService, SandboxProcesses};
use serde_json::{json, Value};
use support::web::{start, TestServer};

/// What a mutating route leaves in the audit log.
enum Audit {
    /// This event, by the caller; exercised below.
    Event(&'static str),
    /// This event, exercised by another test (named) that has what the route needs.
    Elsewhere(&'static str, &'static str),
    /// Nothing, for this reason.
    None(&'static str),
}

use Audit::{Elsewhere, Event, None as NotAudited};

const PER_USER: &str = "the caller's own UI state or preferences: no organization's shared state changes";

/// Every mutating route (method, path as registered) and what it leaves.
const ROUTES: &[(&str, &str, Audit)] = &[
    ("POST", "/auth/dev/sign-in", Event("auth.signed_in")),
    ("POST", "/auth/sign-out", Event("auth.signed_out")),
    ("DELETE", "/auth/sessions", Event("auth.signed_out")),
    ("DELETE", "/auth/sessions/{session}", Event("auth.signed_out")),
    ("PATCH", "/me", NotAudited(PER_USER)),
    ("PUT", "/me/default-model", NotAudited(PER_USER)),
    ("PUT", "/me/starter-repo", NotAudited(PER_USER)),
    ("PUT", "/me/active-organization", NotAudited(PER_USER)),
    ("POST", "/orgs", Event("organization.created")),
    ("POST", "/orgs/{org}/members", Event("member.added")),
    ("PUT", "/orgs/{org}/members/{user}", Event("member.role_changed")),
    ("DELETE", "/orgs/{org}/members/{user}", Event("member.removed")),
    ("POST", "/orgs/{org}/repos", Event("repository.added")),
    ("POST", "/orgs/{org}/github/connect", Event("github.connected")),
    ("POST", "/orgs/{org}/github/sync", Event("github.sync.started")),
    ("POST", "/orgs/{org}/admin/{op}", Event("admin.full_sync")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks", Event("task.created")),
    ("POST", "/orgs/{org}/repos/{repo}/task-names", NotAudited("a preview: creates and reserves nothing")),
    ("PATCH", "/orgs/{org}/repos/{repo}/tasks/{task}", Event("task.title.changed")),
    ("PUT", "/orgs/{org}/repos/{repo}/tasks/{task}/active-session", NotAudited(PER_USER)),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions", Event("task.session.created")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/{action}", Event("task.archived")),
    ("PATCH", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}", Event("task.session.renamed")),
    ("DELETE", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}", Event("task.session.closed")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/messages", Event("task.message.sent")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/steer", Event("task.session.steered")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/interrupt", Event("task.session.stopped")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/stop", Event("task.session.stopped")),
    ("PUT", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/draft", NotAudited(PER_USER)),
    ("PUT", "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/unread", NotAudited(PER_USER)),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/processes", Event("sandbox.process.started")),
    ("POST", "/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}/{op}", Event("sandbox.process.stopped")),
    ("DELETE", "/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}", Event("sandbox.process.deleted")),
    (
        "POST",
        "/webhooks/github",
        NotAudited("GitHub's deliveries: the syncs and membership changes they cause are audited where applied"),
    ),
    (
        "POST",
        "/admin/kinds/{kind}/actors/{key}/query",
        NotAudited(
            "a read (POST only to carry the SQL): it runs read-only on a copy of one actor's database and changes \
             nothing; server-wide, so it belongs to no organization's log (the server log records who ran what)",
        ),
    ),
];

/// The task actions (`POST T/{action}`), each with what it leaves.
const TASK_ACTIONS: &[(&str, Audit)] = &[
    ("archive", Event("task.archived")),
    ("unarchive", Event("task.unarchived")),
    ("kill", Event("task.killed")),
    ("switch", Event("task.switch")),
    ("provision", Elsewhere("task.workspace.provisioned", "needs workspaces: tests/workspace.rs (failed clone)")),
    ("push", Elsewhere("task.pushed", "needs a git remote: tests/workspace.rs (failed clone)")),
    ("pull-request", Elsewhere("task.pr.published", "needs a git remote: tests/workspace.rs")),
    ("merge", Elsewhere("task.merged", "needs a git remote: tests/workspace.rs")),
    ("revert", Elsewhere("task.file.reverted", "needs a workspace: tests/workspace.rs (failed clone)")),
    ("unread", NotAudited(PER_USER)),
];

/// The mutating routes src/http/ registers (`support::routes`), as paths under `/v1`.
fn registered_routes() -> BTreeSet<(String, String)> {
    support::routes::registered()
        .into_iter()
        .filter(|(method, _)| ["POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()))
        .filter_map(|(method, path)| Some((method, path.strip_prefix("/v1")?.to_owned())))
        .collect()
}

/// The kind a route appends; a route without one (or tested elsewhere) must say why.
fn kind_of(audit: &Audit) -> Option<&'static str> {
    match audit {
        Event(k) => Some(k),
        Elsewhere(k, why) => {
            assert!(!why.is_empty(), "{k}: say which test covers it");
            Some(k)
        }
        NotAudited(why) => {
            assert!(!why.is_empty(), "a route left out of the audit log says why");
            None
        }
    }
}

#[test]
fn every_mutating_route_is_listed_and_every_listed_kind_is_appended_somewhere() {
    let registered = registered_routes();
    assert!(registered.len() > 25, "the scan finds the routes: {registered:?}");
    let listed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    let unlisted: Vec<_> = registered.difference(&listed).collect();
    assert!(unlisted.is_empty(), "mutating routes without an audit entry here: {unlisted:?}");
    let gone: Vec<_> = listed.difference(&registered).collect();
    assert!(gone.is_empty(), "listed routes no longer registered: {gone:?}");

    // Every kind named here is accepted by the log, and some source file appends it.
    let mut source = String::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("audit_log/mod.rs") {
                // The list of kinds itself is no evidence that anything appends them.
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let audits = ROUTES.iter().map(|(_, _, a)| a).chain(TASK_ACTIONS.iter().map(|(_, a)| a));
    for kind in audits.filter_map(kind_of) {
        assert!(AUDIT_KINDS.contains(&kind), "{kind} is not an accepted audit kind");
        assert!(source.contains(&format!("\"{kind}\"")), "nothing in src/ appends {kind}");
    }
}

struct World {
    s: TestServer,
    alice: String,
    alice_id: String,
    _gh: FakeGitHub,
    gate: foundry::integrations::agent::TurnGate,
    sandbox: Option<support::sandbox::Server>,
}

const T: &str = "/v1/orgs/acme/repos/r1/tasks/t1";

async fn world() -> World {
    let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), "sync-token").await;
    let (agent, gate) = BuiltinAgent::with_gate(Duration::from_millis(1));
    let sandbox = support::sandbox::start(false).await;
    let url = sandbox.as_ref().map(|s| s.url.clone());
    // Everyone signs in through the fake GitHub; alice administers `acme` there, so she may connect it.
    gh.add_member(FakeMember::new("alice", true));
    let gh_url = gh.base_url();
    let github = gh.clone();
    let s = start(move |api, _| {
        support::web::sign_in_through(api, &github, false);
        let rt = &api.domain.runtime;
        rt.provide(Arc::new(SessionAgent(Arc::new(agent))));
        let policy = RetryPolicy { backoff: Duration::from_millis(1), ..Default::default() };
        rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::with_policy(&gh_url, "sync-token", policy)))));
        if let Some(url) = url {
            rt.provide(Arc::new(ProcessService(Arc::new(SandboxProcesses::new(&url)))));
        }
    })
    .await;
    let alice = s.sign_in("alice").await;
    let alice_id = s.user_id(&alice).await;
    World { s, alice, alice_id, _gh: gh, gate, sandbox }
}

impl World {
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.as_user(&self.alice.clone(), method, path, body).await
    }

    async fn as_user(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (st, res) = self.s.call(method, path, Some(token), body).await;
        assert!((200..300).contains(&st), "{method} {path}: {st} {res}");
        res
    }

    /// Waits (outboxes deliver asynchronously) for an event of `kind` in acme's log made by `user`.
    async fn expect(&self, what: &str, kind: &str, user: &str) {
        for _ in 0..500 {
            let (_, page) = self.s.call("GET", "/v1/orgs/acme/audit?limit=500", Some(&self.alice), None).await;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.iter().any(|e| e["kind"] == kind && e["userId"] == user && e["at"].as_i64().unwrap_or(0) > 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, page) = self.s.call("GET", "/v1/orgs/acme/audit?limit=500", Some(&self.alice), None).await;
        panic!("{what}: no {kind} by {user} in {page}");
    }
}

#[actix_rt::test]
async fn every_audited_route_leaves_its_event_with_who_and_when() {
    let mut w = world().await;
    let me = w.alice_id.clone();

    w.ok("POST", "/v1/orgs", Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    w.expect("POST /orgs", "organization.created", &me).await;
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    w.ok("POST", "/v1/orgs/acme/repos", Some(repo)).await;
    w.expect("POST repos", "repository.added", &me).await;

    // Membership: invite, change the role, remove. Bob's sign-in and sign-out are then in acme's log too.
    let bob = w.s.sign_in("bob").await;
    let bob_id = w.s.user_id(&bob).await;
    w.ok("POST", "/v1/orgs/acme/members", Some(json!({ "login": "bob", "role": "member" }))).await;
    w.expect("POST members", "member.added", &me).await;
    w.ok("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(json!({ "role": "admin" }))).await;
    w.expect("PUT member", "member.role_changed", &me).await;
    // Bob's membership reaches his own actor through the outbox: wait for it before signing in again.
    for _ in 0..500 {
        let (_, orgs) = w.s.call("GET", "/v1/orgs", Some(&bob), None).await;
        if orgs["organizations"][0]["role"] == "admin" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bob2 = w.s.sign_in("bob").await;
    w.expect("dev sign-in", "auth.signed_in", &bob_id).await;
    w.as_user(&bob2, "POST", "/v1/auth/sign-out", None).await;
    w.expect("sign-out", "auth.signed_out", &bob_id).await;
    let sessions = w.as_user(&bob, "GET", "/v1/auth/sessions", None).await;
    let active: Vec<String> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["revokedAtMs"].is_null())
        .filter_map(|s| s["sessionId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(active.len(), 1, "bob's first session: {sessions}");
    let bob3 = w.s.sign_in("bob").await;
    w.as_user(&bob3, "DELETE", &format!("/v1/auth/sessions/{}", active[0]), None).await;
    w.as_user(&bob3, "DELETE", "/v1/auth/sessions", None).await;
    w.expect("sign out everywhere", "auth.signed_out", &bob_id).await;
    w.ok("DELETE", &format!("/v1/orgs/acme/members/{bob_id}"), None).await;
    w.expect("DELETE member", "member.removed", &me).await;

    // GitHub: connect (starts a sync), sync again once it ended, an admin full sync, a clear.
    w.ok("POST", "/v1/orgs/acme/github/connect", Some(json!({ "login": "acme", "kind": "organization" }))).await;
    w.expect("connect", "github.connected", &me).await;
    w.expect("connect", "github.sync.started", &me).await;
    let idle = || async {
        for _ in 0..1000 {
            let (_, st) = w.s.call("GET", "/v1/orgs/acme/github", Some(&w.alice), None).await;
            if st["status"]["meta"]["status"] != "syncing" {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sync did not end");
    };
    idle().await;
    w.ok("POST", "/v1/orgs/acme/github/sync", None).await;
    idle().await;
    w.ok("POST", "/v1/orgs/acme/admin/full-sync", None).await;
    w.expect("full-sync", "admin.full_sync", &me).await;
    idle().await;
    let (_, page) = w.s.call("GET", "/v1/orgs/acme/audit?limit=500", Some(&w.alice), None).await;
    let finished = page["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "github.sync.finished").count();
    assert!(finished >= 1, "each sync's end is audited: {page}");
    w.ok("POST", "/v1/orgs/acme/admin/clear-github", None).await;
    w.expect("clear-github", "admin.clear_github", &me).await;
    w.ok("POST", "/v1/orgs/acme/admin/rebuild", None).await;
    w.expect("rebuild", "admin.rebuild", &me).await;

    // A task and its sessions; the first turn is held, so steer and interrupt have a turn to act on.
    w.ok("POST", "/v1/orgs/acme/repos/r1/tasks", Some(json!({ "prompt": "Fix the login page" }))).await;
    w.expect("POST tasks", "task.created", &me).await;
    w.gate.started().await;
    let s1 = format!("{T}/sessions/s1");
    w.ok("POST", &format!("{s1}/steer"), Some(json!({ "guidance": "smaller" }))).await;
    w.expect("steer", "task.session.steered", &me).await;
    w.ok("POST", &format!("{s1}/interrupt"), Some(json!({}))).await;
    w.expect("interrupt", "task.session.stopped", &me).await;
    w.gate.release_all();
    w.ok("POST", &format!("{s1}/messages"), Some(json!({ "text": "again" }))).await;
    w.expect("messages", "task.message.sent", &me).await;
    w.ok("POST", &format!("{s1}/stop"), None).await;
    w.ok("PATCH", T, Some(json!({ "title": "Login page" }))).await;
    w.expect("PATCH task", "task.title.changed", &me).await;
    w.ok("POST", &format!("{T}/sessions"), Some(json!({ "name": "Second" }))).await;
    w.expect("POST sessions", "task.session.created", &me).await;
    w.ok("PATCH", &format!("{T}/sessions/s2"), Some(json!({ "name": "Second one" }))).await;
    w.expect("PATCH session", "task.session.renamed", &me).await;
    w.ok("DELETE", &format!("{T}/sessions/s2"), None).await;
    w.expect("DELETE session", "task.session.closed", &me).await;

    // Sandbox processes, when a sandbox-agent server is available.
    if w.sandbox.is_some() {
        let p = w.ok("POST", &format!("{T}/processes"), Some(json!({ "command": "sleep", "args": ["30"] }))).await;
        let id = p["id"].as_str().unwrap().to_owned();
        w.expect("start process", "sandbox.process.started", &me).await;
        w.ok("POST", &format!("{T}/processes/{id}/kill"), None).await;
        w.expect("kill process", "sandbox.process.killed", &me).await;
        w.ok("DELETE", &format!("{T}/processes/{id}"), None).await;
        w.expect("delete process", "sandbox.process.deleted", &me).await;
    } else {
        eprintln!("SANDBOX_AGENT_BIN is not set: the process routes' events are not exercised");
    }

    // Task actions that need no workspace.
    w.ok("POST", &format!("{T}/switch"), Some(json!({ "target": "main" }))).await;
    w.expect("switch", "task.switch", &me).await;
    w.ok("POST", &format!("{T}/archive"), None).await;
    w.expect("archive", "task.archived", &me).await;
    w.ok("POST", &format!("{T}/unarchive"), None).await;
    w.expect("unarchive", "task.unarchived", &me).await;
    w.ok("POST", &format!("{T}/kill"), None).await;
    w.expect("kill", "task.killed", &me).await;

    // The audit page is camelCase like every other answer.
    let (_, page) = w.s.call("GET", "/v1/orgs/acme/audit?limit=1", Some(&w.alice), None).await;
    assert!(page.get("nextBefore").is_some() && page.get("next_before").is_none(), "{page}");
    assert!(page["events"][0].get("userId").is_some(), "{page}");
    w.s.stop().await;
}
