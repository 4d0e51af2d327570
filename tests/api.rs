//! The HTTP API over real HTTP: sign-in and session tokens, the authorization matrix (member, non-member,
//! signed-out) for each route family, JSON errors with stable codes and statuses, and that bad input changes nothing.

mod support;

use serde_json::{json, Value};
use support::web::{start, TestServer};

/// alice owns organization acme with repository r1 and one task; bob is signed in but not a member.
async fn world(s: &TestServer) -> (String, String, String) {
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let (st, body) = s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = s
        .call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix the login page" })))
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["taskId"], "t1");
    assert_eq!(body["sessionId"], "s1");
    (alice, bob, "t1".to_owned())
}

#[actix_rt::test]
async fn tokens_are_random_hashed_expiring_and_revocable() {
    let s = start(|_, _| {}).await;
    let token = s.sign_in("alice").await;
    assert!(token.starts_with("fdy_") && token.len() == 4 + 64, "256-bit token: {token}");
    let again = s.sign_in("alice").await;
    assert_ne!(token, again, "every sign-in gets a fresh token");
    let user = s.user_id(&token).await;
    assert_eq!(user, s.user_id(&again).await, "the same login is the same user");

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
    let (st, body) = s.call("GET", "/v1/me", None, None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let (st, _) = s.call("GET", "/v1/me", Some("not-a-token"), None).await;
    assert_eq!(st, 401);
    let forged = format!("fdy_{}", "0".repeat(64));
    let (st, _) = s.call("GET", "/v1/me", Some(&forged), None).await;
    assert_eq!(st, 401);

    // Only hashes are stored: the token appears in no database file.
    s.rt.shutdown().await;
    for entry in walk(s.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!contains(&bytes, token.as_bytes()), "token stored in clear in {}", entry.display());
    }
    s.stop().await;

    // Sign-out revokes at once; the sessions list shows it; another session can be revoked by id.
    let s = start(|_, _| {}).await;
    let a = s.sign_in("alice").await;
    let b = s.sign_in("alice").await;
    let (st, sessions) = s.call("GET", "/v1/auth/sessions", Some(&a), None).await;
    assert_eq!(st, 200);
    assert_eq!(sessions.as_array().unwrap().len(), 2);
    assert!(!sessions.to_string().contains(&a[4..]), "no token material in the list");
    let (st, _) = s.call("POST", "/v1/auth/sign-out", Some(&a), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", "/v1/me", Some(&a), None).await;
    assert_eq!(st, 401, "signed-out token no longer works");
    let (_, who) = s.call("GET", "/v1/auth/whoami", Some(&b), None).await;
    let c = s.sign_in("alice").await;
    let path = format!("/v1/auth/sessions/{}", who["sessionId"].as_str().unwrap());
    let (st, _) = s.call("DELETE", &path, Some(&c), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", "/v1/me", Some(&b), None).await;
    assert_eq!(st, 401, "revoked from another session");
    let (st, _) = s.call("DELETE", &path, Some(&c), None).await;
    assert_eq!(st, 404, "revoking twice");
    // bob cannot revoke alice's session.
    let bob = s.sign_in("bob").await;
    let (_, who) = s.call("GET", "/v1/auth/whoami", Some(&c), None).await;
    let (st, _) =
        s.call("DELETE", &format!("/v1/auth/sessions/{}", who["sessionId"].as_str().unwrap()), Some(&bob), None).await;
    assert_eq!(st, 404);
    let (st, _) = s.call("GET", "/v1/me", Some(&c), None).await;
    assert_eq!(st, 200);

    // Sign out everywhere: every session of the caller ends; other users keep theirs.
    let d = s.sign_in("alice").await;
    let e = s.sign_in("alice").await;
    // Used first, so that this node has them cached: the cache must not outlive the sign-out.
    for t in [&d, &e, &c] {
        assert_eq!(s.call("GET", "/v1/me", Some(t), None).await.0, 200);
    }
    let (st, body) = s.call("DELETE", "/v1/auth/sessions", Some(&d), None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body["revoked"].as_u64().unwrap() >= 2, "{body}");
    for t in [&d, &e, &c] {
        assert_eq!(s.call("GET", "/v1/me", Some(t), None).await.0, 401);
    }
    assert_eq!(s.call("GET", "/v1/me", Some(&bob), None).await.0, 200);
    // The profile: name and avatar change; a blank name is refused and changes nothing.
    let (st, me) = s.call("PATCH", "/v1/me", Some(&bob), Some(json!({ "name": "Bob B." }))).await;
    assert_eq!((st, me["user"]["name"].as_str()), (200, Some("Bob B.")), "{me}");
    let (st, _) = s.call("PATCH", "/v1/me", Some(&bob), Some(json!({ "name": " " }))).await;
    assert_eq!(st, 400);
    let (_, me) = s.call("GET", "/v1/me", Some(&bob), None).await;
    assert_eq!(me["user"]["name"], "Bob B.");
    s.stop().await;

    // Expiry: a zero-length lifetime is expired as soon as it is issued.
    let s = start(|api, _| api.auth.session_ttl = std::time::Duration::ZERO).await;
    let t = s.sign_in("alice").await;
    let (st, _) = s.call("GET", "/v1/me", Some(&t), None).await;
    assert_eq!(st, 401, "expired token");
    s.stop().await;

    // Dev sign-in is refused when disabled.
    let s = start(|api, _| api.auth.dev_sign_in = false).await;
    let (st, body) = s.call("POST", "/v1/auth/dev/sign-in", None, Some(json!({ "login": "alice" }))).await;
    assert_eq!(st, 404, "{body}");
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

/// Each route family: signed-out 401, non-member 403, member 2xx.
#[actix_rt::test]
async fn authorization_matrix_for_every_route_family() {
    let s = start(|_, _| {}).await;
    let (alice, bob, _) = world(&s).await;
    let t = "/v1/orgs/acme/repos/r1/tasks/t1";
    let ses = "/v1/orgs/acme/repos/r1/tasks/t1/sessions/s1";
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/orgs/acme".into(), None),
        ("GET", "/v1/orgs/acme/members".into(), None),
        ("GET", "/v1/orgs/acme/repos".into(), None),
        ("GET", "/v1/orgs/acme/repos/r1".into(), None),
        ("GET", "/v1/orgs/acme/repos/r1/tasks".into(), None),
        ("GET", "/v1/orgs/acme/audit?limit=5".into(), None),
        ("GET", "/v1/orgs/acme/github".into(), None),
        ("POST", "/v1/orgs/acme/repos/r1/tasks".into(), Some(json!({ "prompt": "Another task" }))),
        ("GET", t.into(), None),
        ("PATCH", t.into(), Some(json!({ "title": "Renamed" }))),
        ("POST", format!("{t}/unread"), None),
        ("PUT", format!("{t}/active-session"), Some(json!({ "sessionId": "s1" }))),
        ("POST", format!("{t}/sessions"), Some(json!({ "name": "Second" }))),
        ("GET", ses.into(), None),
        ("PATCH", ses.into(), Some(json!({ "name": "Main" }))),
        ("POST", format!("{ses}/messages"), Some(json!({ "text": "and the signup page" }))),
        ("POST", format!("{ses}/steer"), Some(json!({ "guidance": "keep it small" }))),
        ("POST", format!("{ses}/interrupt"), Some(json!({}))),
        ("PUT", format!("{ses}/draft"), Some(json!({ "text": "half a thought" }))),
        ("PUT", format!("{ses}/unread"), Some(json!({ "unread": false }))),
        ("POST", "/v1/orgs/acme/admin/rebuild".into(), None),
    ];
    for (method, path, body) in &routes {
        let (st, err) = s.call(method, path, None, body.clone()).await;
        assert_eq!(st, 401, "signed out: {method} {path}: {err}");
        assert_eq!(err["error"]["code"], "unauthenticated");
        let (st, err) = s.call(method, path, Some(&bob), body.clone()).await;
        assert_eq!(st, 403, "non-member: {method} {path}: {err}");
        assert_eq!(err["error"]["code"], "forbidden");
    }
    for (method, path, body) in &routes {
        let (st, res) = s.call(method, path, Some(&alice), body.clone()).await;
        // Steering an idle session is a refusal of the domain, not of authorization.
        let allowed =
            if path.ends_with("/steer") { (200..300).contains(&st) || st == 422 } else { (200..300).contains(&st) };
        assert!(allowed, "member: {method} {path}: {st} {res}");
    }
    // An unknown organization is 404, not 403.
    let (st, _) = s.call("GET", "/v1/orgs/nope", Some(&alice), None).await;
    assert_eq!(st, 404);

    // Members: bob, once added, sees the organization and it appears in his app snapshot; admin routes stay closed.
    let bob_id = s.user_id(&bob).await;
    let (st, body) = s
        .call("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), Some(json!({ "role": "member" })))
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = s.call("GET", t, Some(&bob), None).await;
    assert_eq!(st, 200);
    let (st, _) = s.call("POST", "/v1/orgs/acme/admin/rebuild", Some(&bob), None).await;
    assert_eq!(st, 403, "members are not admins");
    let (st, _) =
        s.call("PUT", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&bob), Some(json!({ "role": "owner" }))).await;
    assert_eq!(st, 403, "members do not promote themselves");
    for _ in 0..200 {
        let (_, me) = s.call("GET", "/v1/me", Some(&bob), None).await;
        if me["organizations"][0]["role"] == "member" {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, me) = s.call("GET", "/v1/me", Some(&bob), None).await;
    let acme = json!({ "id": "acme", "displayName": me["organizations"][0]["displayName"], "role": "member" });
    assert_eq!(me["organizations"], json!([acme]), "{me}");
    assert_eq!(me["activeOrganizationId"], "acme", "{me}");
    let (st, orgs) = s.call("GET", "/v1/orgs", Some(&bob), None).await;
    assert_eq!(st, 200, "{orgs}");
    assert_eq!(orgs, json!({ "organizations": [acme], "activeOrganizationId": "acme" }));

    // Overlays are per user: bob's draft is not in alice's view.
    let (st, _) =
        s.call("PUT", &format!("{ses}/draft"), Some(&bob), Some(json!({ "text": "bob's secret draft" }))).await;
    assert_eq!(st, 200);
    let (_, view) = s.call("GET", t, Some(&alice), None).await;
    assert!(!view.to_string().contains("bob's secret draft"), "{view}");
    let (_, view) = s.call("GET", t, Some(&bob), None).await;
    assert!(view.to_string().contains("bob's secret draft"), "{view}");

    // Removed, bob loses access at once.
    let (st, _) = s.call("DELETE", &format!("/v1/orgs/acme/members/{bob_id}"), Some(&alice), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.call("GET", t, Some(&bob), None).await;
    assert_eq!(st, 403);
    // The last owner cannot leave.
    let alice_id = s.user_id(&alice).await;
    let (st, body) = s.call("DELETE", &format!("/v1/orgs/acme/members/{alice_id}"), Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    s.stop().await;
}

#[actix_rt::test]
async fn errors_are_json_with_stable_codes_and_change_nothing() {
    let s = start(|_, _| {}).await;
    let (alice, _, _) = world(&s).await;
    let t = "/v1/orgs/acme/repos/r1/tasks/t1";
    let (_, before) = s.call("GET", t, Some(&alice), None).await;

    let raw = |body: &'static str, ctype: &'static str| {
        s.client.patch(format!("{}{t}", s.base)).bearer_auth(&alice).header("content-type", ctype).body(body).send()
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
    let huge = json!({ "title": "x".repeat(300 * 1024) });
    let (st, body) = s.call("PATCH", t, Some(&alice), Some(huge)).await;
    assert_eq!((st, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    let (st, body) = s.call("PATCH", t, Some(&alice), Some(json!({ "title": "x".repeat(10_000) }))).await;
    assert_eq!((st, body["error"]["code"].as_str()), (400, Some("invalid_input")), "{body}");
    let (st, body) = s.call("PATCH", t, Some(&alice), Some(json!({ "title": "   " }))).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = s
        .call(
            "PATCH",
            &format!("{t}/sessions/s1"),
            Some(&alice),
            Some(json!({ "name": "ok", "model": "no-such-model" })),
        )
        .await;
    assert!(st == 400 || st == 422, "unknown model: {st} {body}");
    let (_, session) = s.call("GET", &format!("{t}/sessions/s1"), Some(&alice), None).await;
    assert_ne!(session["name"], "ok", "a refused update changes nothing, not even the part that was valid");

    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Again" }))).await;
    assert_eq!((st, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "bad id!", "displayName": "X" }))).await;
    assert_eq!((st, body["error"]["code"].as_str()), (400, Some("invalid_input")), "{body}");
    let (st, body) = s.call("GET", "/v1/orgs/acme/repos/r1/tasks/t999", Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (st, body) = s.call("GET", "/v1/orgs/acme/repos/nope/tasks/t1/sessions/s1", Some(&alice), None).await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = s.call("GET", "/v1/no/such/route", Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("route_not_found")), "{body}");
    let (st, body) = s.call("GET", "/v1/orgs/acme/audit?limit=0", Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{body}");
    // No GitHub connection on this server: publishing says so (tests/workspace.rs publishes for real).
    let (st, body) = s.call("POST", &format!("{t}/pull-request"), Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (422, Some("git_failed")), "{body}");
    let (st, body) = s.call("POST", &format!("{t}/push"), Some(&alice), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (409, Some("workspace_unavailable")), "{body}");

    // No nonexistent key left a database behind.
    assert!(!s.dir.path().join("task").join("acme%2Fr1%2Ft999.sqlite3").exists());
    let (_, after) = s.call("GET", t, Some(&alice), None).await;
    assert_eq!(before["title"], after["title"], "refused renames left the title as it was");
    s.stop().await;
}

#[actix_rt::test]
async fn sessions_steer_and_interrupt_target_one_session_over_http() {
    let s = start(|_, _| {}).await;
    let (alice, _, _) = world(&s).await;
    let t = "/v1/orgs/acme/repos/r1/tasks/t1";
    let (st, second) = s
        .call("POST", &format!("{t}/sessions"), Some(&alice), Some(json!({ "name": "Second", "prompt": "hello" })))
        .await;
    assert_eq!(st, 201, "{second}");
    let id = second["sessionId"].as_str().unwrap_or("s2").to_owned();
    let (st, body) = s
        .call("POST", &format!("{t}/sessions/{id}/interrupt"), Some(&alice), Some(json!({ "dropQueued": true })))
        .await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["sessionId"], json!(id), "{body}");
    assert!(body["droppedPrompts"].is_u64() && body["version"].is_u64() && body["status"].is_string(), "{body}");
    let (_, view) = s.call("GET", t, Some(&alice), None).await;
    assert_eq!(view["sessions"].as_array().unwrap().len(), 2, "{view}");
    let (st, _) = s.call("DELETE", &format!("{t}/sessions/{id}"), Some(&alice), None).await;
    assert_eq!(st, 204);
    let (st, body) = s.call("DELETE", &format!("{t}/sessions/s1"), Some(&alice), None).await;
    assert_eq!(st, 409, "a task keeps one open session: {body}");
    let (st, body) = s.call("POST", &format!("{t}/archive"), Some(&alice), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "archived", "{body}");
    // Audit events travel through outboxes: wait for the last one.
    let mut events = Value::Null;
    for _ in 0..500 {
        let (st, page) = s.call("GET", "/v1/orgs/acme/audit?limit=100", Some(&alice), None).await;
        assert_eq!(st, 200);
        events = page;
        if events.to_string().contains("task.archived") {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(events.to_string().contains("organization.created"), "{events}");
    assert!(events.to_string().contains("task.archived"), "{events}");
    let (st, models) = s.call("GET", "/v1/models", Some(&alice), None).await;
    assert_eq!(st, 200);
    assert!(!models.as_array().unwrap().is_empty());
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
    let (_, repos) = s.call("GET", "/v1/orgs/acme/repos", Some(&alice), None).await;
    assert_eq!(repos.as_array().unwrap().len(), 1, "a refused delivery changed nothing: {repos}");

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
        let (_, repos) = s.call("GET", "/v1/orgs/acme/repos", Some(&alice), None).await;
        if repos.as_array().unwrap().len() == 2 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_, repos) = s.call("GET", "/v1/orgs/acme/repos", Some(&alice), None).await;
    assert!(repos.to_string().contains("acme/r2"), "{repos}");
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
