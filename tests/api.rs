//! The HTTP API over real HTTP: sign-in and session tokens, the authorization matrix (member, non-member,
//! signed-out) for each route family, JSON errors with stable codes and statuses, and that bad input changes nothing.

mod support;

use std::future::Future;
use std::pin::Pin;

use foundry_client::types::{
    AddRepoBody, AdminOp, AuditQuery, CreateOrgBody, CreateSessionBody, CreateTaskBody, DevSignIn, DraftBody,
    MemberBody, MemberRole, ProfileBody, RepoKey, SessionStatus, TaskAction, TaskKey, TaskNamesBody, TaskStatus,
    UpdateSessionBody,
};
use foundry_client::{Client, ClientError};
use serde_json::{json, Value};
use support::web::{start, TestServer};

/// The status and code of a refusal (panics on success or on a failure that is not the server's refusal).
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api(e)) => (e.status, e.code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// alice owns organization acme with repository r1 and one task; bob is signed in but not a member.
async fn world(s: &TestServer) -> (Client, Client, TaskKey) {
    let alice = s.client_as("alice").await;
    let bob = s.client_as("bob").await;
    let org = CreateOrgBody { id: "acme".into(), display_name: "Acme".into(), login: None, kind: None };
    let snapshot = alice.create_org(&org).await.unwrap();
    assert_eq!(snapshot.organization_id, "acme");
    let repo = AddRepoBody {
        repo_id: "r1".into(),
        full_name: "acme/r1".into(),
        remote_url: "https://example.invalid/acme/r1.git".into(),
        default_branch: None,
    };
    let row = alice.add_repo("acme", &repo).await.unwrap();
    assert_eq!(row.repo_id, "r1");
    let body = CreateTaskBody { prompt: "Fix the login page".into(), ..Default::default() };
    let created = alice.create_task(&RepoKey::new("acme", "r1"), &body).await.unwrap();
    assert_eq!((created.task_id.as_str(), created.session_id.as_str()), ("t1", "s1"));
    (alice, bob, RepoKey::new("acme", "r1").task("t1"))
}

#[actix_rt::test]
async fn tokens_are_random_hashed_expiring_and_revocable() {
    let s = start(|_, _| {}).await;
    let anonymous = s.api_client();
    let sign_in = |login: &str| {
        let body = DevSignIn { login: login.into(), name: None, email: None };
        let anonymous = anonymous.clone();
        async move { anonymous.dev_sign_in(&body).await }
    };
    let signed = sign_in("alice").await.unwrap();
    let token = signed.token.clone();
    assert!(token.starts_with("fdy_") && token.len() == 4 + 64, "256-bit token: {token}");
    let again = sign_in("alice").await.unwrap();
    assert_ne!(token, again.token, "every sign-in gets a fresh token");
    assert_eq!(signed.user_id, again.user_id, "the same login is the same user");
    let alice = anonymous.clone().with_token(&token);
    assert_eq!(alice.whoami().await.unwrap().user_id, signed.user_id);

    // The cookie works like the header.
    let res = s
        .client
        .get(format!("{}/v1/auth/whoami", s.base))
        .header("cookie", format!("other=1; foundry_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Missing, malformed and unknown tokens: 401 with a JSON error.
    assert_eq!(refused(anonymous.me().await), (401, "unauthenticated".into()));
    assert_eq!(refused(anonymous.clone().with_token("not-a-token").me().await).0, 401);
    let forged = format!("fdy_{}", "0".repeat(64));
    assert_eq!(refused(anonymous.clone().with_token(forged).me().await).0, 401);

    // Only hashes are stored: the token appears in no database file.
    s.rt.shutdown().await;
    for entry in walk(s.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!contains(&bytes, token.as_bytes()), "token stored in clear in {}", entry.display());
    }
    s.stop().await;

    // Sign-out revokes at once; the sessions list shows it; another session can be revoked by id.
    let s = start(|_, _| {}).await;
    let a = s.client_as("alice").await;
    let b = s.client_as("alice").await;
    let sessions = a.auth_sessions().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let listed = serde_json::to_string(&sessions).unwrap();
    assert!(!listed.contains(&a.token().unwrap()[4..]), "no token material in the list");
    a.sign_out().await.unwrap();
    assert_eq!(refused(a.me().await).0, 401, "signed-out token no longer works");
    let who = b.whoami().await.unwrap();
    let c = s.client_as("alice").await;
    c.revoke_auth_session(&who.session_id).await.unwrap();
    assert_eq!(refused(b.me().await).0, 401, "revoked from another session");
    assert_eq!(refused(c.revoke_auth_session(&who.session_id).await).0, 404, "revoking twice");
    // bob cannot revoke alice's session.
    let bob = s.client_as("bob").await;
    let who = c.whoami().await.unwrap();
    assert_eq!(refused(bob.revoke_auth_session(&who.session_id).await).0, 404);
    c.me().await.unwrap();

    // Sign out everywhere: every session of the caller ends; other users keep theirs.
    let d = s.client_as("alice").await;
    let e = s.client_as("alice").await;
    // Used first, so that this node has them cached: the cache must not outlive the sign-out.
    for client in [&d, &e, &c] {
        client.me().await.unwrap();
    }
    let revoked = d.revoke_all_auth_sessions().await.unwrap();
    assert!(revoked.revoked >= 2, "{revoked:?}");
    for client in [&d, &e, &c] {
        assert_eq!(refused(client.me().await).0, 401);
    }
    bob.me().await.unwrap();
    // The profile: name and avatar change; a blank name is refused and changes nothing.
    let me = bob.update_me(&ProfileBody { name: Some("Bob B.".into()), avatar_url: None }).await.unwrap();
    assert_eq!(me.user.name, "Bob B.");
    assert_eq!(refused(bob.update_me(&ProfileBody { name: Some(" ".into()), avatar_url: None }).await).0, 400);
    assert_eq!(bob.me().await.unwrap().user.name, "Bob B.");
    s.stop().await;

    // Expiry: a zero-length lifetime is expired as soon as it is issued.
    let s = start(|api, _| api.auth.session_ttl = std::time::Duration::ZERO).await;
    let t = s.client_as("alice").await;
    assert_eq!(refused(t.me().await).0, 401, "expired token");
    s.stop().await;

    // Dev sign-in is refused when disabled.
    let s = start(|api, _| api.auth.dev_sign_in = false).await;
    let r = s.api_client().dev_sign_in(&DevSignIn { login: "alice".into(), name: None, email: None }).await;
    assert_eq!(refused(r).0, 404);
    s.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), ClientError>> + 'a>>;

/// One call of each route family, made by `c`, its answer dropped.
fn route_families<'a>(c: &'a Client, t: &'a TaskKey) -> Vec<(&'static str, Call<'a>)> {
    macro_rules! call {
        ($e:expr) => {
            Box::pin(async move { $e.await.map(drop) }) as Call<'a>
        };
    }
    let repo = || t.repo_key();
    let s1 = || t.session("s1");
    let audit = AuditQuery { limit: Some(5), ..Default::default() };
    let names = TaskNamesBody { prompt: "Name me".into(), title: None, branch: None };
    vec![
        ("GET org", call!(c.org("acme"))),
        ("GET members", call!(c.members("acme"))),
        ("GET repos", call!(c.repos("acme"))),
        ("GET repo", call!(c.repo(&repo()))),
        ("GET task summaries", call!(c.task_summaries(&repo()))),
        ("GET audit", call!(c.audit("acme", &audit))),
        ("GET github", call!(c.github("acme"))),
        (
            "POST tasks",
            call!(c.create_task(&repo(), &CreateTaskBody { prompt: "Another".into(), ..Default::default() })),
        ),
        ("POST task-names", call!(c.task_names(&repo(), &names))),
        ("GET task", call!(c.task(t))),
        ("PATCH task", call!(c.rename_task(t, "Renamed"))),
        ("POST unread", call!(c.task_action_view(t, TaskAction::Unread))),
        ("PUT active-session", call!(c.set_active_session(t, "s1"))),
        (
            "POST sessions",
            call!(c.create_session(t, &CreateSessionBody { name: Some("Second".into()), ..Default::default() })),
        ),
        ("GET session", call!(c.session(&s1()))),
        (
            "PATCH session",
            call!(c.update_session(&s1(), &UpdateSessionBody { name: Some("Main".into()), ..Default::default() })),
        ),
        ("POST messages", call!(c.send_message(&s1(), "and the signup page"))),
        // Steering an idle session is a refusal of the domain (422), not of authorization.
        (
            "POST steer",
            call!(async {
                match c.steer(&s1(), "keep it small").await {
                    Err(e) if e.status() == Some(422) => Ok(None),
                    other => other.map(Some),
                }
            }),
        ),
        ("POST interrupt", call!(c.interrupt(&s1(), false))),
        ("PUT draft", call!(c.save_draft(&s1(), &DraftBody { text: "half a thought".into(), attachments: vec![] }))),
        ("PUT unread", call!(c.set_unread(&s1(), false))),
        ("POST admin/rebuild", call!(c.admin("acme", AdminOp::Rebuild))),
    ]
}

/// Each route family: signed-out 401, non-member 403, member 2xx.
#[actix_rt::test]
async fn authorization_matrix_for_every_route_family() {
    let s = start(|_, _| {}).await;
    let (alice, bob, t) = world(&s).await;
    let anonymous = s.api_client();
    for (what, call) in route_families(&anonymous, &t) {
        assert_eq!(refused(call.await), (401, "unauthenticated".into()), "signed out: {what}");
    }
    for (what, call) in route_families(&bob, &t) {
        assert_eq!(refused(call.await), (403, "forbidden".into()), "non-member: {what}");
    }
    for (what, call) in route_families(&alice, &t) {
        call.await.unwrap_or_else(|e| panic!("member: {what}: {e}"));
    }
    // An unknown organization is 404, not 403.
    assert_eq!(refused(alice.org("nope").await).0, 404);

    // Members: bob, once added, sees the organization and it appears in his app snapshot; admin routes stay closed.
    let bob_id = bob.whoami().await.unwrap().user_id;
    let member = MemberBody { role: MemberRole::Member, login: None };
    assert_eq!(alice.put_member("acme", &bob_id, &member).await.unwrap().role(), MemberRole::Member);
    bob.task(&t).await.unwrap();
    assert_eq!(refused(bob.admin("acme", AdminOp::Rebuild).await).0, 403, "members are not admins");
    let owner = MemberBody { role: MemberRole::Owner, login: None };
    assert_eq!(refused(bob.put_member("acme", &bob_id, &owner).await).0, 403, "members do not promote themselves");
    for _ in 0..200 {
        if bob.me().await.unwrap().organizations.first().and_then(|o| o.role.as_deref()) == Some("member") {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let me = bob.me().await.unwrap();
    assert_eq!(me.organizations.len(), 1, "{me:?}");
    assert_eq!((me.organizations[0].id.as_str(), me.organizations[0].role.as_deref()), ("acme", Some("member")));
    assert_eq!(me.active_organization_id.as_deref(), Some("acme"));
    let orgs = bob.orgs().await.unwrap();
    assert_eq!(orgs.organizations, me.organizations);
    assert_eq!(orgs.active_organization_id.as_deref(), Some("acme"));

    // Overlays are per user: bob's draft is not in alice's view.
    let draft = DraftBody { text: "bob's secret draft".into(), attachments: vec![] };
    bob.save_draft(&t.session("s1"), &draft).await.unwrap();
    let view = alice.task(&t).await.unwrap();
    assert!(!serde_json::to_string(&view).unwrap().contains("bob's secret draft"), "{view:?}");
    let view = bob.task(&t).await.unwrap();
    assert!(serde_json::to_string(&view).unwrap().contains("bob's secret draft"), "{view:?}");

    // Removed, bob loses access at once.
    alice.remove_member("acme", &bob_id).await.unwrap();
    assert_eq!(refused(bob.task(&t).await).0, 403);
    // The last owner cannot leave.
    let alice_id = alice.whoami().await.unwrap().user_id;
    assert_eq!(refused(alice.remove_member("acme", &alice_id).await), (409, "conflict".into()));
    s.stop().await;
}

#[actix_rt::test]
async fn errors_are_json_with_stable_codes_and_change_nothing() {
    let s = start(|_, _| {}).await;
    let (alice, _, task) = world(&s).await;
    let t = "/v1/orgs/acme/repos/r1/tasks/t1";
    let before = alice.task(&task).await.unwrap();

    // Malformed requests: written by hand, since the typed client cannot produce them.
    let token = alice.token().unwrap().to_owned();
    let raw = |body: &'static str, ctype: &'static str| {
        s.client.patch(format!("{}{t}", s.base)).bearer_auth(&token).header("content-type", ctype).body(body).send()
    };
    let res = raw("{\"title\": ", "application/json").await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_json", "{body}");
    let res = raw("{\"title\": 5}", "application/json").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_field");
    let res = raw("{\"title\": \"x\", \"color\": \"red\"}", "application/json").await.unwrap();
    assert_eq!(res.status(), 400, "unknown fields are refused");
    let res = raw("title=x", "application/x-www-form-urlencoded").await.unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "unsupported_media_type");
    let (st, body) = s.call("GET", "/v1/no/such/route", Some(&token), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("route_not_found")), "{body}");

    // Well-formed requests the server refuses: through the client, as any caller would meet them.
    assert_eq!(refused(alice.rename_task(&task, &"x".repeat(300 * 1024)).await), (413, "payload_too_large".into()));
    assert_eq!(refused(alice.rename_task(&task, &"x".repeat(10_000)).await), (400, "invalid_input".into()));
    assert_eq!(refused(alice.rename_task(&task, "   ").await).0, 400);
    let update =
        UpdateSessionBody { name: Some("ok".into()), model: Some("no-such-model".into()), ..Default::default() };
    let (st, code) = refused(alice.update_session(&task.session("s1"), &update).await);
    assert!(st == 400 || st == 422, "unknown model: {st} {code}");
    let session = alice.session(&task.session("s1")).await.unwrap();
    assert_ne!(session.name, "ok", "a refused update changes nothing, not even the part that was valid");

    let again = CreateOrgBody { id: "acme".into(), display_name: "Again".into(), login: None, kind: None };
    assert_eq!(refused(alice.create_org(&again).await), (409, "conflict".into()));
    let bad = CreateOrgBody { id: "bad id!".into(), display_name: "X".into(), login: None, kind: None };
    assert_eq!(refused(alice.create_org(&bad).await), (400, "invalid_input".into()));
    let t999 = RepoKey::new("acme", "r1").task("t999");
    assert_eq!(refused(alice.task(&t999).await), (404, "not_found".into()));
    assert_eq!(refused(alice.session(&RepoKey::new("acme", "nope").task("t1").session("s1")).await).0, 404);
    let zero = AuditQuery { limit: Some(0), ..Default::default() };
    assert_eq!(refused(alice.audit("acme", &zero).await), (400, "invalid_query".into()));
    // No GitHub connection on this server: publishing says so (tests/workspace.rs publishes for real).
    assert_eq!(refused(alice.open_pull_request(&task).await), (422, "git_failed".into()));
    assert_eq!(refused(alice.push_task(&task).await), (409, "workspace_unavailable".into()));

    // No nonexistent key left a database behind.
    assert!(!s.dir.path().join("task").join("acme%2Fr1%2Ft999.sqlite3").exists());
    let after = alice.task(&task).await.unwrap();
    assert_eq!(before.detail.title, after.detail.title, "refused renames left the title as it was");
    s.stop().await;
}

#[actix_rt::test]
async fn sessions_steer_and_interrupt_target_one_session_over_http() {
    let s = start(|_, _| {}).await;
    let (alice, _, t) = world(&s).await;
    let body = CreateSessionBody { name: Some("Second".into()), prompt: Some("hello".into()), model: None };
    let second = alice.create_session(&t, &body).await.unwrap();
    assert_eq!(second.name, "Second");
    let id = t.session(&second.session_id);
    let outcome = alice.interrupt(&id, true).await.unwrap();
    assert_eq!(outcome.state.session_id, second.session_id);
    assert!(outcome.dropped_prompts.is_some(), "{outcome:?}");
    assert!(matches!(outcome.state.status, SessionStatus::Idle | SessionStatus::Ready), "{outcome:?}");
    assert_eq!(alice.task(&t).await.unwrap().detail.sessions.len(), 2);
    alice.close_session(&id).await.unwrap();
    assert_eq!(refused(alice.close_session(&t.session("s1")).await).0, 409, "a task keeps one open session");
    assert_eq!(alice.archive_task(&t, false).await.unwrap(), TaskStatus::Archived);
    // Audit events travel through outboxes: wait for the last one.
    let mut kinds = Vec::new();
    for _ in 0..500 {
        let page = alice.audit("acme", &AuditQuery { limit: Some(100), ..Default::default() }).await.unwrap();
        kinds = page.events.iter().map(|e| e.kind.clone()).collect();
        if kinds.iter().any(|k| k == "task.archived") {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(kinds.iter().any(|k| k == "organization.created"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "task.archived"), "{kinds:?}");
    assert!(!alice.models().await.unwrap().is_empty());
    s.stop().await;
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

/// Sign in with GitHub against the local GitHub-compatible server: start -> authorize -> callback -> session.
#[actix_rt::test]
async fn github_oauth_sign_in_end_to_end() {
    use foundry::integrations::github::fake::{FakeGitHub, FakeOAuthUser, Fixture};
    use foundry::integrations::github::oauth::{GitHubOAuth, OAuthConfig};

    let gh = FakeGitHub::start(Fixture::generate("acme", 1, 1, 0), "app-token").await;
    gh.configure_oauth_app("client-1", "secret-1");
    let octocat = FakeOAuthUser {
        id: 583231,
        login: "octocat".into(),
        name: Some("The Octocat".into()),
        public_email: None,
        emails: vec![("octocat@example.com".into(), true, true)],
    };
    gh.set_browser_user(octocat.clone());
    let gh_base = gh.base_url();
    let s = start(|api, base| {
        api.auth.dev_sign_in = false;
        api.auth.github = Some(std::sync::Arc::new(GitHubOAuth::new(OAuthConfig {
            client_id: "client-1".into(),
            client_secret: "secret-1".into(),
            web_base: gh_base.clone(),
            api_base: gh_base.clone(),
            redirect_uri: Some(format!("{base}/v1/auth/github/callback")),
            scopes: "read:user user:email read:org".into(),
        })));
    })
    .await;

    // Open redirects are refused.
    let res = s.client.get(format!("{}/v1/auth/github/start?redirect=//evil.example", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 400);

    let sign_in = || async {
        let res = s.client.get(format!("{}/v1/auth/github/start?redirect=/tasks", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 302);
        let authorize = header(&res, "location");
        assert!(authorize.starts_with(&format!("{gh_base}/login/oauth/authorize?")), "{authorize}");
        let res = s.client.get(&authorize).send().await.unwrap();
        assert_eq!(res.status(), 302, "the fake GitHub approves");
        let callback = header(&res, "location");
        assert!(callback.starts_with(&format!("{}/v1/auth/github/callback?", s.base)), "{callback}");
        (callback.clone(), s.client.get(&callback).send().await.unwrap())
    };
    let (callback, res) = sign_in().await;
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    assert_eq!(header(&res, "location"), "/tasks");
    let cookie = header(&res, "set-cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let token = cookie.split(';').next().unwrap().strip_prefix("foundry_session=").unwrap().to_owned();

    let (st, me) = s.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["user"]["email"], "octocat@example.com");
    assert_eq!(me["user"]["name"], "The Octocat");
    assert_eq!(me["profile"]["githubLogin"], "octocat");
    let first_user = me["user"]["id"].as_str().unwrap().to_owned();

    // A state is single-use: replaying the callback is refused and signs nobody in.
    let res = s.client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_state");
    // A forged state too.
    let code = query_param(&callback, "code").unwrap();
    let res =
        s.client.get(format!("{}/v1/auth/github/callback?code={code}&state=forged", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // Signing in again finds the same user through the account index.
    let (_, res) = sign_in().await;
    let cookie = header(&res, "set-cookie");
    let token2 = cookie.split(';').next().unwrap().strip_prefix("foundry_session=").unwrap().to_owned();
    assert_eq!(s.user_id(&token2).await, first_user);

    // A code GitHub no longer honours: 400 invalid_code, nobody signed in.
    let res = s.client.get(format!("{}/v1/auth/github/start", s.base)).send().await.unwrap();
    let state = query_param(&header(&res, "location"), "state").unwrap();
    let res = s.client.get(format!("{}/v1/auth/github/callback?code=0000&state={state}", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_code");
    s.stop().await;
    gh.stop().await;
}

/// The webhook route: 404 without a secret, 401 and no effect for a bad signature, applied once per delivery.
#[actix_rt::test]
async fn webhooks_are_verified_then_applied_once() {
    use foundry::actors::github_data::webhook::sign;
    let s = start(|api, _| api.webhook_secret = Some(b"hook-secret".to_vec())).await;
    let (alice, _, _) = world(&s).await;
    let connect = foundry::actors::github_data::ConnectGitHub {
        login: "acme".into(),
        kind: foundry::integrations::github::client::AccountKind::Organization,
        account_id: 1,
        by: None,
    };
    s.api.domain.connect_github("acme", connect).await.unwrap();
    let payload = json!({
        "action": "created",
        "repository": {
            "id": 77, "name": "r2", "full_name": "acme/r2", "private": false, "default_branch": "main",
            "clone_url": "https://example.invalid/acme/r2.git", "html_url": "https://example.invalid/acme/r2",
            "owner": { "login": "acme", "id": 1 }, "updated_at": "2026-11-26T10:00:00Z",
        },
        "organization": { "login": "acme", "id": 1 },
    });
    let body = payload.to_string();
    let post = |sig: Option<String>, delivery: &'static str| {
        let mut req = s
            .client
            .post(format!("{}/v1/webhooks/github", s.base))
            .header("content-type", "application/json")
            .header("x-github-event", "repository")
            .header("x-github-delivery", delivery)
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send()
    };
    let res = post(None, "d1").await.unwrap();
    assert_eq!(res.status(), 401);
    let res = post(Some(sign(b"wrong-secret", body.as_bytes())), "d1").await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], "invalid_signature");
    let repos = alice.repos("acme").await.unwrap();
    assert_eq!(repos.len(), 1, "a refused delivery changed nothing: {repos:?}");

    let res = post(Some(sign(b"hook-secret", body.as_bytes())), "d1").await.unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "applied");
    let res = post(Some(sign(b"hook-secret", body.as_bytes())), "d1").await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "duplicate");
    // Deliveries are routed by the account's id: the login's spelling does not matter.
    let upper = body.replace("\"login\":\"acme\"", "\"login\":\"Acme\"");
    let res = s
        .client
        .post(format!("{}/v1/webhooks/github", s.base))
        .header("x-github-event", "repository")
        .header("x-github-delivery", "d2")
        .header("x-hub-signature-256", sign(b"hook-secret", upper.as_bytes()))
        .body(upper.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{upper}");
    for _ in 0..200 {
        if alice.repos("acme").await.unwrap().len() == 2 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let repos = alice.repos("acme").await.unwrap();
    assert!(repos.iter().any(|r| r.full_name == "acme/r2"), "{repos:?}");
    s.stop().await;

    let s = start(|_, _| {}).await;
    let res = s.client.post(format!("{}/v1/webhooks/github", s.base)).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 404, "no secret configured: no webhooks");
    s.stop().await;
}

/// The GitHub mirror's members become organization members when they sign in with GitHub (and the other way round),
/// and leave when GitHub reports they left; manual memberships are never touched.
#[actix_rt::test]
async fn github_organization_members_are_linked_to_signed_in_users() {
    use foundry::actors::github_data::webhook::sign;
    use foundry::actors::github_data::GitHubService;
    use foundry::integrations::github::client::GitHubClient;
    use foundry::integrations::github::fake::{FakeGitHub, FakeMember, FakeOAuthUser, Fixture};
    use foundry::integrations::github::oauth::{GitHubOAuth, OAuthConfig};

    let mut fixture = Fixture::generate("acme", 1, 1, 0);
    fixture.members.push(FakeMember { id: 583231, login: "octocat".into(), admin: false });
    let gh = FakeGitHub::start(fixture, "app-token").await;
    gh.configure_oauth_app("client-1", "secret-1");
    let gh_base = gh.base_url();
    let s = start(|api, base| {
        api.webhook_secret = Some(b"hook".to_vec());
        api.auth.github = Some(std::sync::Arc::new(GitHubOAuth::new(OAuthConfig {
            client_id: "client-1".into(),
            client_secret: "secret-1".into(),
            web_base: gh_base.clone(),
            api_base: gh_base.clone(),
            redirect_uri: Some(format!("{base}/v1/auth/github/callback")),
            scopes: "read:user user:email read:org".into(),
        })));
        let client = GitHubClient::new(&gh_base, "app-token");
        api.domain.runtime.provide(std::sync::Arc::new(GitHubService(std::sync::Arc::new(client))));
    })
    .await;
    // The organization's creator signs in with GitHub as dev-1, an admin of `acme` there, and connects it.
    let alice = github_sign_in(&s, &gh, FakeOAuthUser { id: 5001, ..FakeOAuthUser::named("dev-1") }).await;
    let (st, _) = s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201);
    let (st, body) = s
        .call(
            "POST",
            "/v1/orgs/acme/github/connect",
            Some(&alice),
            Some(json!({ "login": "acme", "kind": "organization" })),
        )
        .await;
    assert_eq!(st, 202, "{body}");
    for _ in 0..500 {
        let (_, body) = s.call("GET", "/v1/orgs/acme/github", Some(&alice), None).await;
        if body["status"]["meta"]["status"] == "synced" {
            assert_eq!(body["status"]["members"], 6, "{body}");
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // octocat is a member on GitHub: signing in with GitHub makes them a member here.
    let octocat = FakeOAuthUser {
        id: 583231,
        login: "octocat".into(),
        name: None,
        public_email: Some("octocat@example.com".into()),
        emails: vec![],
    };
    let octo = github_sign_in(&s, &gh, octocat).await;
    wait_status(&s, &octo, 200).await;
    let (_, members) = s.call("GET", "/v1/orgs/acme/members", Some(&alice), None).await;
    assert!(members.to_string().contains("\"source\":\"github\""), "{members}");

    // hubot signs in first (not a member on GitHub yet: 403), then GitHub reports them added.
    let hubot = FakeOAuthUser {
        id: 9919,
        login: "hubot".into(),
        name: None,
        public_email: Some("hubot@example.com".into()),
        emails: vec![],
    };
    let bot = github_sign_in(&s, &gh, hubot).await;
    let (st, _) = s.call("GET", "/v1/orgs/acme", Some(&bot), None).await;
    assert_eq!(st, 403);
    let acme_id = gh.fixture().owner_id;
    let webhook = |action: &str, id: i64, login: &str, delivery: &str| {
        let body = json!({
            "action": action,
            "membership": { "user": { "id": id, "login": login } },
            "organization": { "login": "acme", "id": acme_id },
        })
        .to_string();
        s.client
            .post(format!("{}/v1/webhooks/github", s.base))
            .header("content-type", "application/json")
            .header("x-github-event", "organization")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(b"hook", body.as_bytes()))
            .body(body)
            .send()
    };
    assert_eq!(webhook("member_added", 9919, "hubot", "w1").await.unwrap().status(), 202);
    wait_status(&s, &bot, 200).await;

    // GitHub reports octocat left: their GitHub-sourced membership ends. alice (manual owner) is untouched.
    assert_eq!(webhook("member_removed", 583231, "octocat", "w2").await.unwrap().status(), 202);
    wait_status(&s, &octo, 403).await;
    let (st, _) = s.call("GET", "/v1/orgs/acme", Some(&alice), None).await;
    assert_eq!(st, 200);
    // An admin's explicit change makes hubot's membership manual: GitHub removing them no longer does.
    let (_, who) = s.call("GET", "/v1/auth/whoami", Some(&bot), None).await;
    let path = format!("/v1/orgs/acme/members/{}", who["userId"].as_str().unwrap());
    let (st, _) = s.call("PUT", &path, Some(&alice), Some(json!({ "role": "admin" }))).await;
    assert_eq!(st, 200);
    assert_eq!(webhook("member_removed", 9919, "hubot", "w3").await.unwrap().status(), 202);
    let (st, _) = s.call("GET", "/v1/orgs/acme/github", Some(&bot), None).await;
    assert_eq!(st, 200, "the admin-managed membership stays");
    s.stop().await;
    gh.stop().await;
}

async fn wait_status(s: &TestServer, token: &str, want: u16) {
    for _ in 0..500 {
        let (st, _) = s.call("GET", "/v1/orgs/acme", Some(token), None).await;
        if st == want {
            return;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("GET /v1/orgs/acme never answered {want}");
}

async fn github_sign_in(
    s: &TestServer,
    gh: &foundry::integrations::github::fake::FakeGitHub,
    user: foundry::integrations::github::fake::FakeOAuthUser,
) -> String {
    gh.set_browser_user(user);
    let res = s.client.get(format!("{}/v1/auth/github/start", s.base)).send().await.unwrap();
    let res = s.client.get(header(&res, "location")).send().await.unwrap();
    let res = s.client.get(header(&res, "location")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// Cookie-authenticated requests that act must come from this server's own origin (CSRF and cross-site WebSocket
/// hijacking); bearer tokens are not sent by browsers on their own, so they are not restricted.
#[actix_rt::test]
async fn cookie_sessions_refuse_cross_origin_actions() {
    let s = start(|_, _| {}).await;
    let token = s.sign_in("alice").await;
    let cookie = format!("foundry_session={token}");
    let create = |origin: Option<String>| {
        let mut req = s
            .client
            .post(format!("{}/v1/orgs", s.base))
            .header("cookie", &cookie)
            .json(&json!({ "id": "acme", "displayName": "Acme" }));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    let res = create(Some("https://evil.example".into())).await.unwrap();
    assert_eq!(res.status(), 403);
    let res = s
        .client
        .get(format!("{}/v1/me", s.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "reads are not actions");
    let res = s
        .client
        .post(format!("{}/v1/orgs", s.base))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .json(&json!({ "id": "acme", "displayName": "Acme" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "bearer tokens are not ambient credentials");
    let res = create(Some(format!("http://{}", s.addr))).await.unwrap();
    assert_eq!(res.status(), 409, "same origin passes (and the organization exists already)");
    s.stop().await;
}
