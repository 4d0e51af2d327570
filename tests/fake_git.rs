//! The fake GitHub serving real git: clones and pushes with the real `git` binary over smart HTTP (token in an extra
//! header, never in the URL), GitHub's auth answers, branches and pull shas from the real refs, pull requests opened,
//! refused, merged (merge, squash, rebase) and closed through `GitHubClient`, and signed webhooks received by a
//! small server here.
//!
//! Skipped when `git` is missing, unless `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use foundry::actors::github_data::verify_signature;
use foundry::integrations::github::client::{GitHubApi, GitHubClient, GitHubError, MergeMethod, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use serde_json::Value;

const TOKEN: &str = "git-token";
const SECRET: &str = "hook-secret";

fn git_available() -> bool {
    if Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "tests/fake_git.rs needs `git` on the PATH in CI");
    eprintln!("skipped: no `git` on the PATH");
    false
}

fn client(gh: &FakeGitHub) -> GitHubClient {
    let policy = RetryPolicy { backoff: Duration::from_millis(5), ..Default::default() };
    GitHubClient::with_policy(&gh.base_url(), TOKEN, policy)
}

fn base64(bytes: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { B64[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// How a git command authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    /// `http.extraHeader: Authorization: Basic base64(x-access-token:<token>)` through `GIT_CONFIG_*`.
    Header(&'a str),
    /// `http.extraHeader: Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// A credential helper answering `x-access-token` / the token, as a user's configured helper would.
    Helper(&'a str),
}

/// `git` in `dir` with a clean configuration and no prompts.
fn git(dir: &Path, auth: Auth<'_>, args: &[&str]) -> Output {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(["-c", "user.name=Tester", "-c", "user.email=tester@example.com", "-c", "init.defaultBranch=main"]);
    let header = match auth {
        Auth::Header(t) => Some(format!("Authorization: Basic {}", base64(format!("x-access-token:{t}").as_bytes()))),
        Auth::Bearer(t) => Some(format!("Authorization: Bearer {t}")),
        Auth::None | Auth::Helper(_) => None,
    };
    if let Some(header) = header {
        c.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", "http.extraHeader").env("GIT_CONFIG_VALUE_0", header);
    }
    if let Auth::Helper(t) = auth {
        let helper = format!("!f() {{ echo username=x-access-token; echo password={t}; }}; f");
        c.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", "credential.helper").env("GIT_CONFIG_VALUE_0", helper);
    }
    c.args(args).output().expect("run git")
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(out.status.success(), "git failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[track_caller]
fn fails(out: Output) -> String {
    assert!(!out.status.success(), "git should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `git --git-dir <bare>` for inspecting the fake's repositories.
fn bare(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["--git-dir", dir.to_str().expect("utf-8 path")];
    all.extend(args);
    ok(git(Path::new("/"), Auth::None, &all))
}

/// Commits `files` on a new branch `branch` (from `from`) in the clone and pushes it; the new head sha.
fn commit_and_push(work: &Path, from: &str, branch: &str, files: &[(&str, &str)], message: &str) -> String {
    ok(git(work, Auth::None, &["checkout", "-q", "-B", branch, from]));
    for (path, text) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }
    ok(git(work, Auth::None, &["add", "-A"]));
    ok(git(work, Auth::None, &["commit", "-q", "-m", message]));
    ok(git(work, Auth::Header(TOKEN), &["push", "-q", "origin", branch]));
    ok(git(work, Auth::None, &["rev-parse", "HEAD"]))
}

type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver that keeps (event, payload) of correctly signed deliveries and answers 401 to others.
async fn receiver() -> (String, Received, ServerHandle) {
    async fn receive(req: HttpRequest, body: web::Bytes, got: web::Data<Received>) -> HttpResponse {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !verify_signature(SECRET.as_bytes(), &body, Some(header("x-hub-signature-256")))
            || !header("user-agent").starts_with("GitHub-Hookshot/")
            || header("x-github-delivery").is_empty()
            || header("content-type") != "application/json"
        {
            return HttpResponse::Unauthorized().finish();
        }
        let payload: Value = serde_json::from_slice(&body).expect("JSON payload");
        got.lock().unwrap().push((header("x-github-event").to_string(), payload));
        HttpResponse::Ok().finish()
    }
    let got: Received = Arc::default();
    let data = web::Data::new(got.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(receive)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
    let url = format!("http://{}/hook", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (url, got, handle)
}

/// Waits (up to 5 s) for a received event matching `pick`.
async fn event(got: &Received, what: &str, pick: impl Fn(&str, &Value) -> bool) -> Value {
    for _ in 0..500 {
        if let Some((_, payload)) = got.lock().unwrap().iter().find(|(e, p)| pick(e, p)) {
            return payload.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {what} webhook; got {:?}", got.lock().unwrap().iter().map(|(e, _)| e).collect::<Vec<_>>());
}

async fn start(fixture: Fixture) -> (FakeGitHub, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gh = FakeGitHub::start_with_git(fixture, TOKEN, tmp.path().join("repos")).await;
    (gh, tmp)
}

fn clone(gh: &FakeGitHub, tmp: &Path, repo: &str, auth: Auth<'_>) -> PathBuf {
    let url = format!("{}/acme/{repo}.git", gh.base_url());
    ok(git(tmp, auth, &["clone", "-q", &url, repo]));
    tmp.join(repo)
}

#[actix_rt::test]
async fn clone_push_open_and_merge_a_pull_request() {
    if !git_available() {
        return;
    }
    let (gh, tmp) = start(Fixture::generate("acme", 1, 2, 0)).await;
    let (hook_url, got, hook) = receiver().await;
    gh.set_webhook(&hook_url, SECRET);
    gh.set_installation("acme", 77);
    let api = client(&gh);

    let repo = api.get_repo("acme/repo-000").await.unwrap();
    assert_eq!(repo.clone_url, format!("{}/acme/repo-000.git", gh.base_url()));
    let work = clone(&gh, tmp.path(), "repo-000", Auth::Header(TOKEN));
    assert!(std::fs::read_to_string(work.join("README.md")).unwrap().starts_with("# repo-000"));
    assert!(work.join("src/lib.rs").exists());
    let main = ok(git(&work, Auth::None, &["rev-parse", "origin/main"]));
    assert_eq!(ok(git(&work, Auth::None, &["rev-list", "--count", "origin/main"])), "3");
    let branches = api.list_branches("acme/repo-000").await.unwrap();
    let sha_of = |name: &str| branches.iter().find(|b| b.name == name).map(|b| b.commit.sha.clone());
    assert_eq!(sha_of("main"), Some(main.clone()));
    assert_eq!(sha_of("feature-002"), Some(ok(git(&work, Auth::None, &["rev-parse", "origin/feature-002"]))));

    // A new branch, pushed: the REST API, the fixture and a push webhook follow the real ref.
    let feature = commit_and_push(&work, "origin/main", "feature-x", &[("src/feature.rs", "pub fn x() {}\n")], "Add x");
    let branches = api.list_branches("acme/repo-000").await.unwrap();
    assert!(branches.iter().any(|b| b.name == "feature-x" && b.commit.sha == feature), "{branches:?}");
    assert!(gh.fixture().repos[0].branches.contains(&"feature-x".to_string()));
    let push = event(&got, "push feature-x", |e, p| e == "push" && p["ref"] == "refs/heads/feature-x").await;
    assert_eq!((push["after"].as_str(), push["created"].as_bool()), (Some(feature.as_str()), Some(true)));
    assert_eq!(push["commits"][0]["message"], "Add x");
    assert_eq!((push["sender"]["login"].as_str(), push["installation"]["id"].as_i64()), (Some("acme"), Some(77)));
    assert_eq!(push["repository"]["full_name"], "acme/repo-000");

    // GitHub's three refusals, with its messages.
    let refusal = |r: Result<_, GitHubError>| match r {
        Err(GitHubError::Unprocessable(message)) => message,
        other => panic!("expected a 422, got {other:?}"),
    };
    let missing = api.create_pull("acme/repo-000", "not-pushed", "main", "T", None, false).await;
    assert_eq!(refusal(missing), "Validation Failed: head invalid");
    ok(git(&work, Auth::Header(TOKEN), &["push", "-q", "-f", "origin", "origin/main:refs/heads/same"]));
    let empty = api.create_pull("acme/repo-000", "same", "main", "T", None, false).await;
    assert_eq!(refusal(empty), "No commits between main and same");
    let pull = api.create_pull("acme/repo-000", "feature-x", "main", "Add x", Some("Adds x."), false).await.unwrap();
    assert_eq!((pull.number, pull.state.as_str(), pull.user.login.as_str()), (1, "open", "acme"));
    assert_eq!(pull.head.sha.as_deref(), Some(feature.as_str()));
    assert_eq!(pull.base.sha.as_deref(), Some(main.as_str()));
    let again = api.create_pull("acme/repo-000", "acme:feature-x", "main", "Again", None, false).await;
    assert_eq!(refusal(again), "A pull request already exists for acme:feature-x.");
    let opened = event(&got, "opened", |e, p| e == "pull_request" && p["action"] == "opened").await;
    assert_eq!((opened["number"].as_u64(), opened["pull_request"]["head"]["sha"].as_str()), (Some(1), Some(&*feature)));
    assert_eq!(api.get_pull("acme/repo-000", 1).await.unwrap().mergeable, Some(true));

    // The merge happens in the bare repository.
    let stale = api.merge_pull("acme/repo-000", 1, MergeMethod::Merge, Some(&main)).await;
    assert_eq!(stale, Err(GitHubError::Conflict("Head branch was modified. Review and try the merge again.".into())));
    let merged = api.merge_pull("acme/repo-000", 1, MergeMethod::Merge, Some(&feature)).await.unwrap();
    assert!(merged.merged, "{merged:?}");
    assert_eq!(merged.message, "Pull Request successfully merged");
    let dir = gh.git_dir("repo-000").expect("git dir");
    assert_eq!(bare(&dir, &["rev-parse", "main"]), merged.sha);
    assert_eq!(bare(&dir, &["log", "-1", "--format=%P", "main"]), format!("{main} {feature}"));
    assert_eq!(bare(&dir, &["log", "-1", "--format=%s", "main"]), "Merge pull request #1 from acme/feature-x");
    assert_eq!(bare(&dir, &["show", "main:src/feature.rs"]), "pub fn x() {}");
    let after = api.get_pull("acme/repo-000", 1).await.unwrap();
    assert!(after.merged && after.state == "closed" && after.merged_at.is_some(), "{after:?}");
    assert_eq!(after.merge_commit_sha.as_deref(), Some(merged.sha.as_str()));
    assert_eq!(after.head.sha.as_deref(), Some(feature.as_str()));
    assert_eq!(
        api.merge_pull("acme/repo-000", 1, MergeMethod::Merge, None).await,
        Err(GitHubError::NotMergeable("Pull Request is not mergeable".into()))
    );
    // Pinned to the head it was merged at, asking again finds the merge (a retry after a lost answer does this).
    let repeat = api.merge_pull("acme/repo-000", 1, MergeMethod::Merge, Some(&feature)).await.unwrap();
    assert_eq!((repeat.sha.as_str(), repeat.merged), (merged.sha.as_str(), true));

    let closed = event(&got, "closed", |e, p| e == "pull_request" && p["action"] == "closed").await;
    assert_eq!(closed["pull_request"]["merged"], true);
    let main_push = event(&got, "push main", |e, p| e == "push" && p["ref"] == "refs/heads/main").await;
    assert_eq!((main_push["before"].as_str(), main_push["after"].as_str()), (Some(&*main), Some(&*merged.sha)));
    ok(git(&work, Auth::Header(TOKEN), &["fetch", "-q", "origin"]));
    assert_eq!(ok(git(&work, Auth::None, &["rev-parse", "origin/main"])), merged.sha);

    // Every delivery was signed correctly (the receiver answers 401 otherwise), in event order.
    let deliveries = gh.deliveries();
    assert!(deliveries.iter().all(|(_, _, status)| *status == 200), "{deliveries:?}");
    let order: Vec<&str> = deliveries.iter().map(|(_, label, _)| label.as_str()).collect();
    let at = |label: &str| order.iter().position(|l| *l == label).unwrap_or_else(|| panic!("{label}: {order:?}"));
    assert!(at("refs/heads/feature-x") < at("opened") && at("opened") < at("closed"), "{order:?}");
    hook.stop(true).await;
    gh.stop().await;
}

#[actix_rt::test]
async fn credentials_are_checked_like_github() {
    if !git_available() {
        return;
    }
    // repo-000 is private, repo-001 public.
    let (gh, tmp) = start(Fixture::generate("acme", 2, 0, 0)).await;
    let base = gh.base_url();
    let url = |repo: &str| format!("{base}/acme/{repo}.git");
    let t = tmp.path();

    let err = fails(git(t, Auth::Header("wrong"), &["clone", "-q", &url("repo-000"), "a"]));
    // The 401 makes git ask for credentials, which it may not do here.
    assert!(err.contains("terminal prompts disabled"), "{err}");
    let err = fails(git(t, Auth::Helper("wrong"), &["clone", "-q", &url("repo-000"), "b"]));
    assert!(err.contains("Authentication failed"), "{err}");
    fails(git(t, Auth::None, &["clone", "-q", &url("repo-000"), "c"]));
    ok(git(t, Auth::Helper(TOKEN), &["clone", "-q", &url("repo-000"), "d"]));
    ok(git(t, Auth::Bearer(TOKEN), &["clone", "-q", &url("repo-000"), "e"]));
    let err = fails(git(t, Auth::Header(TOKEN), &["clone", "-q", &format!("{base}/acme/nope.git"), "f"]));
    assert!(err.contains("not found"), "{err}");

    // A public repository can be fetched anonymously, never pushed to.
    let public = clone(&gh, t, "repo-001", Auth::None);
    ok(git(&public, Auth::None, &["commit", "-q", "--allow-empty", "-m", "anonymous"]));
    fails(git(&public, Auth::None, &["push", "-q", "origin", "HEAD:refs/heads/anon"]));
    ok(git(&public, Auth::Header(TOKEN), &["push", "-q", "origin", "HEAD:refs/heads/signed"]));

    // Faults reach the git routes; REST rate limits do not.
    gh.fail_next("/acme/repo-001.git/info/refs", 500, 1);
    let err = fails(git(t, Auth::Header(TOKEN), &["clone", "-q", &url("repo-001"), "g"]));
    assert!(err.contains("500"), "{err}");
    gh.rate_limit_next(1, 60);
    ok(git(t, Auth::Header(TOKEN), &["clone", "-q", &url("repo-001"), "h"]));
    let policy = RetryPolicy { max_rate_limit_wait: Duration::ZERO, ..Default::default() };
    let limited = GitHubClient::with_policy(&base, TOKEN, policy).get_repo("acme/repo-001").await;
    assert!(matches!(limited, Err(GitHubError::RateLimited { .. })), "the REST limit was still pending: {limited:?}");
    gh.stop().await;
}

#[actix_rt::test]
async fn conflicts_squash_rebase_and_close() {
    if !git_available() {
        return;
    }
    let (gh, tmp) = start(Fixture::generate("acme", 1, 0, 0)).await;
    let (hook_url, got, hook) = receiver().await;
    gh.set_webhook(&hook_url, SECRET);
    let api = client(&gh);
    let repo = "acme/repo-000";
    let work = clone(&gh, tmp.path(), "repo-000", Auth::Header(TOKEN));
    commit_and_push(&work, "origin/main", "ours", &[("README.md", "ours\n")], "Ours");
    commit_and_push(&work, "origin/main", "theirs", &[("README.md", "theirs\n")], "Theirs");
    commit_and_push(&work, "origin/main", "squashed", &[("a.txt", "a1\n")], "A one");
    commit_and_push(&work, "squashed", "squashed", &[("a.txt", "a2\n")], "A two");
    commit_and_push(&work, "origin/main", "rebased", &[("b.txt", "b1\n")], "B one");
    let rebased_head = commit_and_push(&work, "rebased", "rebased", &[("c.txt", "c1\n")], "B two");
    for (branch, title) in [("ours", "Ours"), ("theirs", "Theirs"), ("squashed", "Squash me"), ("rebased", "Rebase me")]
    {
        api.create_pull(repo, branch, "main", title, None, false).await.unwrap();
    }
    // A push to an open pull's head is a `synchronize`.
    let moved = commit_and_push(&work, "rebased", "rebased", &[("d.txt", "d1\n")], "B three");
    let sync = event(&got, "synchronize", |e, p| e == "pull_request" && p["action"] == "synchronize").await;
    assert_eq!((sync["number"].as_u64(), sync["after"].as_str()), (Some(4), Some(moved.as_str())));
    assert_eq!(sync["pull_request"]["head"]["sha"], moved.as_str());

    api.merge_pull(repo, 1, MergeMethod::Merge, None).await.unwrap();
    assert_eq!(api.get_pull(repo, 2).await.unwrap().mergeable, Some(false));
    let conflict = api.merge_pull(repo, 2, MergeMethod::Merge, None).await;
    assert_eq!(conflict, Err(GitHubError::NotMergeable("Pull Request is not mergeable".into())));

    let dir = gh.git_dir("repo-000").unwrap();
    let squash = api.merge_pull(repo, 3, MergeMethod::Squash, None).await.unwrap();
    assert_eq!(bare(&dir, &["log", "-1", "--format=%P", &squash.sha]).split(' ').count(), 1);
    assert_eq!(bare(&dir, &["log", "-1", "--format=%B", &squash.sha]), "Squash me (#3)\n\n* A one\n* A two");
    assert_eq!(bare(&dir, &["log", "-1", "--format=%an", &squash.sha]), "acme");
    assert_eq!(bare(&dir, &["show", "main:a.txt"]), "a2");

    let stale = api.merge_pull(repo, 4, MergeMethod::Rebase, Some(&rebased_head)).await;
    assert!(matches!(stale, Err(GitHubError::Conflict(_))), "{stale:?}");
    let rebase = api.merge_pull(repo, 4, MergeMethod::Rebase, Some(&moved)).await.unwrap();
    assert_eq!(bare(&dir, &["rev-parse", "main"]), rebase.sha);
    let replayed = bare(&dir, &["log", "-3", "--format=%s|%an|%P", "main"]);
    assert!(replayed.lines().all(|l| l.split('|').nth(2).is_some_and(|p| !p.contains(' '))), "{replayed}");
    assert_eq!(bare(&dir, &["log", "-1", "--format=%s|%an", "main~2"]), "B one|Tester");
    assert_eq!(bare(&dir, &["rev-parse", "main~3"]), squash.sha, "linear on top of the squash");
    assert_eq!(bare(&dir, &["show", "main:c.txt"]), "c1");

    let closed = api.update_pull_state(repo, 2, false).await.unwrap();
    assert_eq!((closed.state.as_str(), closed.merged), ("closed", false));
    let reopened = api.update_pull_state(repo, 2, true).await.unwrap();
    assert_eq!(reopened.state, "open");
    event(&got, "reopened", |e, p| e == "pull_request" && p["action"] == "reopened" && p["number"] == 2).await;
    let reopen_merged = api.update_pull_state(repo, 1, true).await;
    assert!(matches!(reopen_merged, Err(GitHubError::Unprocessable(_))), "{reopen_merged:?}");
    hook.stop(true).await;
    gh.stop().await;
}

/// Deterministic bytes that do not compress (so the pack really is this large).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[actix_rt::test]
async fn created_repositories_large_pushes_and_stable_histories() {
    if !git_available() {
        return;
    }
    let (gh, tmp) = start(Fixture::generate("acme", 1, 1, 0)).await;
    let blob = noise(3 << 20, 7);
    let dir = gh.create_repo("big", "trunk", &[("README.md", b"big\n".to_vec()), ("data/blob.bin", blob.clone())]);
    assert_eq!(gh.git_dir("big"), Some(dir.clone()));
    assert_eq!(bare(&dir, &["ls-tree", "-r", "--name-only", "trunk"]), "README.md\ndata/blob.bin");
    let api = client(&gh);
    let repo = api.get_repo("acme/big").await.unwrap();
    assert_eq!((repo.default_branch.as_str(), repo.private), ("trunk", false));

    let work = clone(&gh, tmp.path(), "big", Auth::Header(TOKEN));
    assert_eq!(std::fs::read(work.join("data/blob.bin")).unwrap(), blob);
    // Over git's 1 MiB post buffer, so the push is sent chunked.
    std::fs::write(work.join("data/more.bin"), noise(2 << 20, 11)).unwrap();
    ok(git(&work, Auth::None, &["add", "-A"]));
    ok(git(&work, Auth::None, &["commit", "-q", "-m", "More data"]));
    ok(git(&work, Auth::Header(TOKEN), &["push", "-q", "origin", "trunk"]));
    let head = ok(git(&work, Auth::None, &["rev-parse", "HEAD"]));
    assert_eq!(api.list_branches("acme/big").await.unwrap()[0].commit.sha, head);

    // A fetch from a clone with many commits of its own negotiates with over 1 KiB of "have" lines, which git
    // sends gzipped.
    let other_clone = tmp.path().join("other");
    ok(git(tmp.path(), Auth::Header(TOKEN), &["clone", "-q", &repo.clone_url, "other"]));
    for i in 0..40 {
        ok(git(&other_clone, Auth::None, &["commit", "-q", "--allow-empty", "-m", &format!("local {i}")]));
    }
    std::fs::write(work.join("later.txt"), "later\n").unwrap();
    ok(git(&work, Auth::None, &["add", "-A"]));
    ok(git(&work, Auth::None, &["commit", "-q", "-m", "Later"]));
    ok(git(&work, Auth::Header(TOKEN), &["push", "-q", "origin", "trunk"]));
    ok(git(&other_clone, Auth::Header(TOKEN), &["fetch", "-q", "origin"]));
    let later = ok(git(&other_clone, Auth::None, &["show", "origin/trunk:later.txt"]));
    assert_eq!(later, "later");

    // The same fixture makes the same shas, whatever the directory or the day.
    let other = tempfile::tempdir().unwrap();
    let twin = FakeGitHub::start_with_git(Fixture::generate("acme", 1, 1, 0), TOKEN, other.path().join("r")).await;
    let (a, b) = (gh.git_dir("repo-000").unwrap(), twin.git_dir("repo-000").unwrap());
    assert_ne!(a, b);
    for branch in ["main", "feature-001"] {
        assert_eq!(bare(&a, &["rev-parse", branch]), bare(&b, &["rev-parse", branch]));
    }
    twin.stop().await;
    gh.stop().await;
}

#[actix_rt::test]
async fn a_create_that_failed_is_retried_without_a_duplicate() {
    if !git_available() {
        return;
    }
    let (gh, tmp) = start(Fixture::generate("acme", 1, 0, 0)).await;
    let work = clone(&gh, tmp.path(), "repo-000", Auth::Header(TOKEN));
    commit_and_push(&work, "origin/main", "topic", &[("t.txt", "t\n")], "Topic");
    gh.fail_next("/repos/acme/repo-000/pulls", 502, 1);
    let api = client(&gh);
    let pull = api.create_pull("acme/repo-000", "topic", "main", "Topic", None, true).await.unwrap();
    assert!(pull.draft);
    assert_eq!(gh.fixture().repos[0].pulls.len(), 1);
    let draft = api.merge_pull("acme/repo-000", pull.number, MergeMethod::Merge, None).await;
    assert_eq!(draft, Err(GitHubError::NotMergeable("Pull Request is still a draft".into())));
    gh.stop().await;
}
