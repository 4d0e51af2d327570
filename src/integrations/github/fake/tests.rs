//! Unit tests of the fake GitHub: pagination, auth, faults, pull filters, pull writes without git, CGI heads and ref
//! files.

use super::*;

const TOKEN: &str = "test-token";

fn client() -> reqwest::Client {
    crate::integrations::http_client_builder().build().unwrap()
}

async fn get(gh: &FakeGitHub, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", gh.base_url()))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("request")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn generate_is_deterministic_and_shaped() {
    let a = Fixture::generate("acme", 3, 4, 20);
    assert_eq!(a, Fixture::generate("acme", 3, 4, 20));
    assert_eq!(a.repos[2].name, "repo-002");
    assert_eq!(a.repos[0].branches, vec!["main", "feature-001", "feature-002", "feature-003", "feature-004"]);
    assert_eq!(a.members.len(), 5);
    let pulls = &a.repos[0].pulls;
    assert_eq!(pulls[0].number, 1);
    assert_eq!(pulls[2].head_ref, "feature-003");
    let open = pulls.iter().filter(|p| p.state == "open").count();
    assert_eq!(open, 16);
    assert!(pulls.iter().any(|p| p.merged && p.state == "closed"));
    assert!(pulls.iter().any(|p| !p.merged && p.state == "closed"));
    assert!(pulls.iter().any(|p| p.draft && p.state == "open"));
    assert_eq!(rfc3339(BASE_EPOCH), "2024-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
}

#[actix_rt::test]
async fn paginates_250_repos() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 250, 1, 0), TOKEN).await;
    let base = gh.base_url();
    let mut ids = Vec::new();
    let mut next = Some(format!("{base}/orgs/acme/repos?type=all&per_page=100"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let resp = client().get(&url).header("authorization", format!("token {TOKEN}")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("5000"));
        assert!(header(&resp, "content-type").unwrap().starts_with("application/json"));
        let link = header(&resp, "link");
        pages += 1;
        if pages == 1 {
            assert_eq!(
                link.as_deref(),
                Some(
                    format!(
                        "<{base}/orgs/acme/repos?type=all&page=2&per_page=100>; rel=\"next\", \
                         <{base}/orgs/acme/repos?type=all&page=3&per_page=100>; rel=\"last\""
                    )
                    .as_str()
                )
            );
        }
        next = link.and_then(|l| {
            l.split(", ").find(|p| p.ends_with("rel=\"next\"")).map(|p| p[1..p.find('>').unwrap()].to_string())
        });
        let body: Vec<Value> = resp.json().await.unwrap();
        ids.extend(body.iter().map(|r| r["id"].as_u64().unwrap()));
        if pages == 1 {
            assert_eq!(body[0]["full_name"], "acme/repo-000");
            assert_eq!(body[0]["clone_url"], "https://github.com/acme/repo-000.git");
            assert_eq!(body[0]["owner"]["login"], "acme");
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, (1000..1250).collect::<Vec<u64>>());

    let resp = get(&gh, "/installation/repositories?per_page=100&page=3").await;
    let link = header(&resp, "link").unwrap();
    assert!(link.starts_with(&format!("<{base}/installation/repositories?page=2&per_page=100>; rel=\"prev\"")));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["total_count"], 250);
    assert_eq!(body["repositories"].as_array().unwrap().len(), 50);

    let resp = get(&gh, "/user/repos").await;
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 30);
    assert_eq!(gh.request_count(), 5);
    gh.stop().await;
}

#[actix_rt::test]
async fn auth_and_not_found() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), TOKEN).await;
    let resp = client()
        .get(format!("{}/repos/acme/repo-000", gh.base_url()))
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "x-ratelimit-remaining").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
    let resp = client().get(format!("{}/user/repos", gh.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    let resp = get(&gh, "/repos/acme/repo-000").await;
    assert_eq!(resp.status(), 200);
    let repo: Value = resp.json().await.unwrap();
    assert_eq!(repo["id"], 1000);
    assert_eq!(repo["default_branch"], "main");

    for path in ["/repos/acme/nope", "/repos/other/repo-000", "/orgs/other/repos", "/repos/acme/repo-000/pulls/99"] {
        let resp = get(&gh, path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Not Found");
    }
    assert_eq!(gh.request_count(), 7);
    gh.stop().await;
}

#[actix_rt::test]
async fn faults_then_recover() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), TOKEN).await;
    gh.fail_next("/branches", 502, 2);
    for _ in 0..2 {
        let resp = get(&gh, "/repos/acme/repo-000/branches").await;
        assert_eq!(resp.status(), 502);
        assert!(resp.json::<Value>().await.unwrap()["message"].is_string());
    }
    // Other paths are unaffected by the rule.
    assert_eq!(get(&gh, "/repos/acme/repo-000").await.status(), 200);
    let resp = get(&gh, "/repos/acme/repo-000/branches").await;
    assert_eq!(resp.status(), 200);
    let branches: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[1]["name"], "feature-001");
    assert_eq!(branches[1]["commit"]["sha"].as_str().unwrap().len(), 40);
    assert_eq!(branches[1]["protected"], false);

    gh.rate_limit_next(1, 30);
    let before = now_epoch();
    let resp = get(&gh, "/orgs/acme/members").await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("30"));
    let reset: u64 = header(&resp, "x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= before + 30 && reset <= now_epoch() + 30);
    assert_eq!(resp.json::<Value>().await.unwrap()["message"], "API rate limit exceeded");

    let resp = get(&gh, "/orgs/acme/members").await;
    assert_eq!(resp.status(), 200);
    assert_ne!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    let members: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(members.len(), 5);
    assert_eq!(members[0]["type"], "User");

    gh.set_delay(50);
    let started = std::time::Instant::now();
    assert_eq!(get(&gh, "/repos/acme/repo-001").await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(gh.request_count(), 7);
    gh.stop().await;
}

#[actix_rt::test]
async fn pulls_filters_and_updates() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 1, 20, 20), TOKEN).await;
    let numbers = |v: &[Value]| v.iter().map(|p| p["number"].as_u64().unwrap()).collect::<Vec<_>>();

    let open: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?per_page=100").await.json().await.unwrap();
    assert_eq!(open.len(), 16);
    assert!(open.iter().all(|p| p["state"] == "open" && p["merged_at"].is_null()));
    let closed: Vec<Value> =
        get(&gh, "/repos/acme/repo-000/pulls?state=closed&per_page=100").await.json().await.unwrap();
    let mut closed_numbers = numbers(&closed);
    closed_numbers.sort_unstable();
    assert_eq!(closed_numbers, vec![5, 10, 15, 20]);
    assert!(closed.iter().any(|p| p["merged_at"].is_string()));
    let all: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?state=all&per_page=100").await.json().await.unwrap();
    assert_eq!(all.len(), 20);

    let resp = get(&gh, "/repos/acme/repo-000/pulls?state=all&sort=updated&direction=desc&per_page=5").await;
    let link = header(&resp, "link").unwrap();
    assert!(link.contains("/repos/acme/repo-000/pulls?state=all&sort=updated&direction=desc&page=2&per_page=5>"));
    let page: Vec<Value> = resp.json().await.unwrap();
    let times: Vec<&str> = page.iter().map(|p| p["updated_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    let pull: Value = get(&gh, "/repos/acme/repo-000/pulls/3").await.json().await.unwrap();
    assert_eq!(pull["head"]["ref"], "feature-003");
    assert_eq!(pull["head"]["repo"]["full_name"], "acme/repo-000");
    assert_eq!(pull["base"]["ref"], "main");
    assert_eq!(pull["html_url"], "https://github.com/acme/repo-000/pull/3");
    assert_eq!(pull["draft"], true);
    assert!(pull["user"]["login"].is_string());

    gh.with_fixture(|f| f.repos[0].pulls[0].state = "closed".to_string());
    let open: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?per_page=100").await.json().await.unwrap();
    assert_eq!(open.len(), 15);
    assert!(!numbers(&open).contains(&1));
    assert_eq!(gh.request_count(), 6);
    gh.stop().await;
}

#[test]
fn cgi_heads_parse() {
    let head = git::parse_cgi_head(
        b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nExpires: never",
    );
    assert_eq!(head.status, 404);
    let names: Vec<&str> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Content-Type", "Expires"], "Content-Length is dropped: the body is re-framed");
    assert_eq!(git::parse_cgi_head(b"Content-Type: application/x-git-upload-pack-advertisement").status, 200);
}

#[test]
fn refs_come_from_loose_and_packed_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
    let packed = format!(
        "# pack-refs with: peeled fully-peeled sorted\n{a} refs/heads/main\n{a} refs/tags/v1\n^{b}\n{a} refs/heads/old\n"
    );
    std::fs::write(dir.path().join("packed-refs"), packed).unwrap();
    std::fs::create_dir_all(dir.path().join("refs/heads/team")).unwrap();
    std::fs::write(dir.path().join("refs/heads/main"), format!("{b}\n")).unwrap();
    std::fs::write(dir.path().join("refs/heads/team/topic"), format!("{c}\n")).unwrap();
    std::fs::write(dir.path().join("refs/heads/team/topic.lock"), format!("{a}\n")).unwrap();
    let refs = git::read_refs(dir.path()).unwrap();
    let expected: Vec<(&str, &str)> = vec![("main", &b), ("old", &a), ("team/topic", &c)];
    assert_eq!(refs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), expected);
    assert!(git::read_refs(&dir.path().join("missing")).unwrap().is_empty());
}

async fn send(gh: &FakeGitHub, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .request(method, format!("{}{path}", gh.base_url()))
        .header("authorization", format!("token {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn pull_writes_without_git_are_bookkeeping() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 1, 3, 2), TOKEN).await;
    gh.set_token_login("dev-9");
    let pulls = "/repos/acme/repo-000/pulls";
    let create = |head: &str| json!({"title": "New", "head": head, "base": "main"}).to_string();
    let (status, pull) = send(&gh, reqwest::Method::POST, pulls, &create("feature-003")).await;
    assert_eq!((status, pull["number"].as_u64(), pull["user"]["login"].as_str()), (201, Some(3), Some("dev-9")));
    assert_eq!(pull["state"], "open");
    let (status, refusal) = send(&gh, reqwest::Method::POST, pulls, &create("feature-003")).await;
    assert_eq!(status, 422);
    assert_eq!(refusal["errors"][0]["message"], "A pull request already exists for acme:feature-003.");
    let (status, refusal) = send(&gh, reqwest::Method::POST, pulls, &create("nope")).await;
    assert_eq!((status, refusal["errors"][0]["field"].as_str()), (422, Some("head")));
    let (status, _) = send(&gh, reqwest::Method::POST, pulls, "{not json").await;
    assert_eq!(status, 400);

    let (status, merged) = send(&gh, reqwest::Method::PUT, &format!("{pulls}/1/merge"), "{}").await;
    assert_eq!((status, merged["merged"].as_bool()), (200, Some(true)));
    let (status, refusal) = send(&gh, reqwest::Method::PUT, &format!("{pulls}/1/merge"), "{}").await;
    assert_eq!((status, refusal["message"].as_str()), (405, Some("Pull Request is not mergeable")));
    let pull: Value = get(&gh, &format!("{pulls}/1")).await.json().await.unwrap();
    assert_eq!((pull["merged"].as_bool(), pull["merge_commit_sha"].as_str()), (Some(true), merged["sha"].as_str()));
    assert!(pull["mergeable"].is_null());

    let (status, closed) = send(&gh, reqwest::Method::PATCH, &format!("{pulls}/2"), r#"{"state":"closed"}"#).await;
    assert_eq!((status, closed["state"].as_str()), (200, Some("closed")));
    let (status, _) = send(&gh, reqwest::Method::PATCH, &format!("{pulls}/2"), r#"{"state":"merged"}"#).await;
    assert_eq!(status, 422);
    assert_eq!(gh.request_count(), 9);
    gh.stop().await;
}

/// An OAuth token for `user` with `scope`, through the code exchange.
async fn user_token(gh: &FakeGitHub, user: FakeOAuthUser, scope: &str) -> String {
    gh.configure_oauth_app("c", "s");
    let code = gh.issue_code_with_scope(user, scope);
    let answer: Value = client()
        .post(format!("{}/login/oauth/access_token", gh.base_url()))
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("client_id=c&client_secret=s&code={code}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

async fn get_as(gh: &FakeGitHub, token: &str, path: &str) -> (u16, Value) {
    let resp = client().get(format!("{}{path}", gh.base_url())).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn user_tokens_see_their_memberships_and_installations_by_account_id() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 1, 1, 0), TOKEN).await;
    let owner_id = gh.fixture().owner_id;
    let admin = FakeOAuthUser { id: 5001, ..FakeOAuthUser::named("dev-1") };
    let token = user_token(&gh, admin.clone(), "read:user,read:org").await;
    let (status, m) = get_as(&gh, &token, "/user/memberships/orgs/ACME").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!((m["state"].as_str(), m["role"].as_str()), (Some("active"), Some("admin")));
    assert_eq!((m["organization"]["login"].as_str(), m["organization"]["id"].as_u64()), (Some("acme"), Some(owner_id)));
    let member = user_token(&gh, FakeOAuthUser { id: 5002, ..FakeOAuthUser::named("dev-2") }, "read:org").await;
    assert_eq!(get_as(&gh, &member, "/user/memberships/orgs/acme").await.1["role"], "member");
    assert_eq!(get_as(&gh, &member, "/user/memberships/orgs/other").await.0, 404);
    let stranger = user_token(&gh, FakeOAuthUser::named("stranger"), "read:org").await;
    assert_eq!(get_as(&gh, &stranger, "/user/memberships/orgs/acme").await.0, 404);
    // Without read:org GitHub does not show memberships.
    let narrow = user_token(&gh, admin, "read:user").await;
    assert_eq!(get_as(&gh, &narrow, "/user/memberships/orgs/acme").await.0, 403);
    // OAuth tokens reach the user endpoints only.
    assert_eq!(get_as(&gh, &token, "/orgs/acme/repos").await.0, 401);

    // Installations: the admin sees acme's, a member only the one they installed, anyone their own account's.
    gh.set_installation("acme", 77);
    gh.set_installation("stranger", 78);
    let listed = |v: &Value| -> Vec<i64> {
        v["installations"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(listed(&get_as(&gh, &token, "/user/installations").await.1), [77]);
    assert_eq!(listed(&get_as(&gh, &member, "/user/installations").await.1), Vec::<i64>::new());
    let (_, own) = get_as(&gh, &stranger, "/user/installations").await;
    assert_eq!(
        (listed(&own), own["installations"][0]["account"]["id"].as_u64()),
        (vec![78], Some(account_id("stranger")))
    );
    gh.set_installation_by("acme", 79, "dev-2");
    assert_eq!(listed(&get_as(&gh, &member, "/user/installations").await.1), [79]);

    // A renamed organization keeps its id, its members and its installation.
    gh.with_fixture(|f| f.owner = "acme-corp".into());
    let (_, m) = get_as(&gh, &token, "/user/memberships/orgs/acme-corp").await;
    assert_eq!(
        (m["organization"]["login"].as_str(), m["organization"]["id"].as_u64()),
        (Some("acme-corp"), Some(owner_id))
    );
    assert_eq!(get_as(&gh, &token, "/user/memberships/orgs/acme").await.0, 404);
    let (_, installs) = get_as(&gh, &token, "/user/installations").await;
    assert_eq!(installs["installations"][0]["account"]["login"], "acme-corp");
    let repo: Value = get(&gh, "/repos/acme-corp/repo-000").await.json().await.unwrap();
    assert_eq!((repo["owner"]["login"].as_str(), repo["owner"]["id"].as_u64()), (Some("acme-corp"), Some(owner_id)));
    gh.stop().await;
}
