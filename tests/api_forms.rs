//! Routes behind the web app's forms, over HTTP: adding a member by the login they signed in with, and previewing the
//! title and branch a task would get (the same rules and refusals as creating it; nothing created).

mod support;

use serde_json::{json, Value};
use support::web::{start, TestServer};

async fn call(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    s.call(method, path, Some(token), body).await
}

#[actix_rt::test]
async fn members_are_added_by_their_login() {
    let s = start(|_, _| {}).await;
    let alice = s.sign_in("alice").await;
    let bob_token = s.sign_in("Bob").await;
    let bob = s.user_id(&bob_token).await;
    let carol_token = s.sign_in("carol").await;
    let carol = s.user_id(&carol_token).await;
    let (st, body) = call(&s, "POST", "/v1/orgs", &alice, Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");

    // Nobody signed in with it: 404 with its own code, and the member list is unchanged.
    let (st, body) =
        call(&s, "POST", "/v1/orgs/acme/members", &alice, Some(json!({ "login": "nobody", "role": "member" }))).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("user_not_found")), "{body}");
    // Malformed input changes nothing either.
    for bad in [
        json!({ "login": "", "role": "member" }),
        json!({ "login": "a b", "role": "member" }),
        json!({ "login": "bob", "role": "boss" }),
        json!({ "login": "bob", "role": "member", "extra": 1 }),
    ] {
        let (st, body) = call(&s, "POST", "/v1/orgs/acme/members", &alice, Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad} -> {body}");
    }
    let (_, members) = call(&s, "GET", "/v1/orgs/acme/members", &alice, None).await;
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");

    // Logins match whatever the case; the member is listed under the login as indexed.
    let (st, body) =
        call(&s, "POST", "/v1/orgs/acme/members", &alice, Some(json!({ "login": "BOB", "role": "admin" }))).await;
    assert_eq!(st, 201, "{body}");
    assert_eq!((body["userId"].as_str(), body["login"].as_str()), (Some(bob.as_str()), Some("bob")), "{body}");
    let (st, body) =
        call(&s, "POST", "/v1/orgs/acme/members", &alice, Some(json!({ "login": "bob", "role": "member" }))).await;
    assert_eq!(st, 409, "already a member: {body}");

    // Only admins add members, and only owners make owners.
    let (st, _) =
        call(&s, "POST", "/v1/orgs/acme/members", &carol_token, Some(json!({ "login": "carol", "role": "owner" })))
            .await;
    assert_eq!(st, 403, "a non-member");
    let (st, body) =
        call(&s, "POST", "/v1/orgs/acme/members", &bob_token, Some(json!({ "login": "carol", "role": "owner" }))).await;
    assert_eq!(st, 403, "an admin making an owner: {body}");
    let (st, body) =
        call(&s, "POST", "/v1/orgs/acme/members", &bob_token, Some(json!({ "login": "carol", "role": "member" })))
            .await;
    assert_eq!(st, 201, "{body}");
    let (_, members) = call(&s, "GET", "/v1/orgs/acme/members", &alice, None).await;
    let ids: Vec<&str> = members.as_array().unwrap().iter().map(|m| m["userId"].as_str().unwrap()).collect();
    assert!(ids.contains(&bob.as_str()) && ids.contains(&carol.as_str()), "{members}");
    s.stop().await;
}

#[actix_rt::test]
async fn task_names_preview_what_creation_assigns() {
    let s = start(|_, _| {}).await;
    let alice = s.sign_in("alice").await;
    let (st, body) = call(&s, "POST", "/v1/orgs", &alice, Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");
    let repo = json!({ "repoId": "web", "fullName": "acme/web", "remoteUrl": "https://example.invalid/acme/web.git" });
    let (st, body) = call(&s, "POST", "/v1/orgs/acme/repos", &alice, Some(repo)).await;
    assert_eq!(st, 201, "{body}");
    let preview = "/v1/orgs/acme/repos/web/task-names";
    let prompt = json!({ "prompt": "Fix the login crash\nwith details" });

    let (st, names) = call(&s, "POST", preview, &alice, Some(prompt.clone())).await;
    assert_eq!(st, 200, "{names}");
    assert_eq!(names, json!({ "title": "fix: fix the login crash", "branch": "fix/fix-the-login-crash" }));
    // Nothing was created or reserved: previewing again gives the same names, and creating assigns them.
    let (_, again) = call(&s, "POST", preview, &alice, Some(prompt.clone())).await;
    assert_eq!(again, names);
    let (st, created) = call(&s, "POST", "/v1/orgs/acme/repos/web/tasks", &alice, Some(prompt.clone())).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!((&created["title"], &created["branch"]), (&names["title"], &names["branch"]));
    // Now the branch is taken: the preview moves on, as creation would.
    let (_, next) = call(&s, "POST", preview, &alice, Some(prompt)).await;
    assert_eq!(next["branch"], "fix/fix-the-login-crash-2", "{next}");

    // Given values are kept (title trimmed) and refused exactly as creation refuses them.
    let (st, given) = call(
        &s,
        "POST",
        preview,
        &alice,
        Some(json!({ "prompt": "x", "title": "  My title ", "branch": "team/my-branch" })),
    )
    .await;
    assert_eq!((st, given), (200, json!({ "title": "My title", "branch": "team/my-branch" })));
    let cases = [
        (json!({ "prompt": "x", "branch": "fix/fix-the-login-crash" }), 409),
        (json!({ "prompt": "x", "branch": "bad..branch" }), 400),
        (json!({ "prompt": "x", "title": "two\nlines" }), 400),
        (json!({ "prompt": "   " }), 400),
        (json!({ "prompt": "x", "model": "m" }), 400),
    ];
    for (body, want) in cases {
        let (st, res) = call(&s, "POST", preview, &alice, Some(body.clone())).await;
        assert_eq!(st, want, "{body} -> {res}");
        assert!(res["error"]["message"].is_string(), "{res}");
    }
    let (st, _) = call(&s, "POST", "/v1/orgs/acme/repos/nope/task-names", &alice, Some(json!({ "prompt": "x" }))).await;
    assert_eq!(st, 404);
    let outsider = s.sign_in("mallory").await;
    let (st, _) = call(&s, "POST", preview, &outsider, Some(json!({ "prompt": "x" }))).await;
    assert_eq!(st, 403);
    let (_, tasks) = call(&s, "GET", "/v1/orgs/acme/repos/web/tasks", &alice, None).await;
    assert_eq!(tasks.as_array().unwrap().len(), 1, "previews created nothing: {tasks}");
    s.stop().await;
}
