//! Task workspaces end to end, over HTTP, with real git: a repository on the local GitHub-compatible server is
//! synced, a task's workspace is cloned onto its branch, the built-in agent edits real files, the diff shows in the
//! task view, the pull request is published and merged on that server, and its webhook reaches the task.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use foundry::actors::github_data::GitHubService;
use foundry::actors::session::SessionAgent;
use foundry::actors::task::GitTokens;
use foundry::integrations::agent::BuiltinAgent;
use foundry::integrations::github::client::{GitHubApi, GitHubClient, MergeMethod};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::integrations::workspace::{LocalShell, StaticToken, Workspaces};
use serde_json::{json, Value};
use support::eventually_some;
use support::web::TestServer;

const TOKEN: &str = "ghs_workspace_test_token";
const SECRET: &str = "webhook-secret";

/// `git` must be installed; under CI a missing binary fails the test instead of skipping it.
fn git_available() -> bool {
    let ok = std::process::Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is not installed (CI=true: not skipping)");
        println!("skipped: git is not installed");
    }
    ok
}

struct Env {
    fake: FakeGitHub,
    server: TestServer,
    token: String,
    repo: String,
    sandboxes: tempfile::TempDir,
    _git_root: tempfile::TempDir,
}

/// The local GitHub with repository `acme/web`, and foundry with local workspaces, connected to it (sync and
/// webhooks), signed in (through the local GitHub) as alice, an admin of `acme` there, with organization `acme` synced.
async fn start(agent: Option<BuiltinAgent>) -> Option<Env> {
    if !git_available() {
        return None;
    }
    let git_root = tempfile::tempdir().unwrap();
    let fixture = Fixture::new("acme");
    let fake = FakeGitHub::start_with_git(fixture, TOKEN, git_root.path().to_path_buf()).await;
    fake.create_repo(
        "web",
        "main",
        &[
            ("README.md", b"# Web\n\nThe web app.\n".to_vec()),
            ("src/app.js", b"export function greet(name) {\n  return `Hello ${name}`;\n}\n".to_vec()),
        ],
    );
    let sandboxes = tempfile::tempdir().unwrap();
    let gh = fake.base_url();
    let root = sandboxes.path().to_path_buf();
    let github = fake.clone();
    let server = support::web::start(move |api, _| {
        support::web::sign_in_through(api, &github, true);
        let rt = &api.domain.runtime;
        rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&gh, TOKEN)))));
        rt.provide(Arc::new(Workspaces::new(Arc::new(LocalShell::new(root)))));
        rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
        if let Some(agent) = agent {
            rt.provide(Arc::new(SessionAgent(Arc::new(agent))));
        }
        api.webhook_secret = Some(SECRET.as_bytes().to_vec());
    })
    .await;
    fake.set_webhook(&format!("{}/v1/webhooks/github", server.base), SECRET);
    let token = server.sign_in("alice").await;
    let (status, body) =
        server.call("POST", "/v1/orgs", Some(&token), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(status, 201, "{body}");
    let connect = json!({ "login": "acme", "kind": "organization" });
    let (status, body) = server.call("POST", "/v1/orgs/acme/github/connect", Some(&token), Some(connect)).await;
    assert_eq!(status, 202, "{body}");
    let repos = eventually_some("the synced repository", || async {
        let (_, repos) = server.call("GET", "/v1/orgs/acme/repos", Some(&token), None).await;
        repos.as_array().filter(|r| r.iter().any(|r| r["fullName"] == "acme/web")).cloned()
    })
    .await;
    let repo = repos.iter().find(|r| r["fullName"] == "acme/web").unwrap()["repoId"].as_str().unwrap().to_owned();
    Some(Env { fake, server, token, repo, sandboxes, _git_root: git_root })
}

impl Env {
    fn task_path(&self, task: &str) -> String {
        format!("/v1/orgs/acme/repos/{}/tasks/{task}", self.repo)
    }

    async fn create_task(&self, prompt: &str) -> (String, String) {
        let path = format!("/v1/orgs/acme/repos/{}/tasks", self.repo);
        let (status, body) =
            self.server.call("POST", &path, Some(&self.token), Some(json!({ "prompt": prompt }))).await;
        assert_eq!(status, 201, "{body}");
        (body["taskId"].as_str().unwrap().to_owned(), body["sessionId"].as_str().unwrap().to_owned())
    }

    async fn task(&self, task: &str) -> Value {
        let (status, body) = self.server.call("GET", &self.task_path(task), Some(&self.token), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn session(&self, task: &str, session: &str) -> Value {
        let path = format!("{}/sessions/{session}", self.task_path(task));
        let (status, body) = self.server.call("GET", &path, Some(&self.token), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the session's turns are done and the workspace recorded the result.
    async fn settled(&self, task: &str, session: &str, agent_items: usize) -> (Value, Value) {
        eventually_some("the turn and its commit", || async {
            let s = self.session(task, session).await;
            let replies = s["transcript"].as_array().unwrap().iter().filter(|i| i["role"] == "agent").count();
            let t = self.task(task).await;
            let idle = s["status"] == "idle" && replies >= agent_items;
            let committed = t["workspace"]["git"]["dirty"] == false;
            (idle && committed).then_some((t, s))
        })
        .await
    }

    /// Waits until the organization's audit log holds an event of each kind for `task`, made by the signed-in user.
    async fn audited(&self, task: &str, kinds: &[&str]) {
        let (_, me) = self.server.call("GET", "/v1/auth/whoami", Some(&self.token), None).await;
        let path = format!("/v1/orgs/acme/audit?repo={}&task={task}&limit=200", self.repo);
        let events = eventually_some("the audit events", || async {
            let (_, page) = self.server.call("GET", &path, Some(&self.token), None).await;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            let by_me = |k: &&str| events.iter().any(|e| e["kind"] == *k && e["userId"] == me["userId"]);
            kinds.iter().all(by_me).then_some(events)
        })
        .await;
        assert!(!events.is_empty());
    }

    async fn action(&self, task: &str, action: &str, body: Option<Value>) -> (u16, Value) {
        let path = format!("{}/{action}", self.task_path(task));
        self.server.call("POST", &path, Some(&self.token), body).await
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").arg("--git-dir").arg(dir).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[actix_rt::test]
async fn prompt_to_merged_pull_request_over_http() {
    let Some(env) = start(None).await else { return };
    let (task, session) = env.create_task("Add a greeting to README.md").await;
    let (view, s) = env.settled(&task, &session, 1).await;

    // The workspace is a real checkout of the task's branch, under the sandboxes directory.
    let ws = &view["workspace"];
    assert_eq!(ws["status"], "ready", "{view}");
    assert_eq!(ws["provider"], "local");
    let cwd = ws["cwd"].as_str().unwrap();
    assert!(cwd.starts_with(&env.sandboxes.path().to_string_lossy().into_owned()), "{cwd}");
    let branch = view["branch"].as_str().unwrap();
    let head = std::process::Command::new("git").args(["-C", cwd, "branch", "--show-current"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), branch);

    // The agent's file changes are exactly the diff against the base, committed after the turn.
    let git_state = &ws["git"];
    let changes: Vec<&Value> =
        s["transcript"].as_array().unwrap().iter().filter(|i| i["kind"] == "file_change").collect();
    assert_eq!(changes.len(), 1, "{s}");
    let change: Value = serde_json::from_str(changes[0]["payload"].as_str().unwrap()).unwrap();
    let files = git_state["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{git_state}");
    assert_eq!(files[0]["path"], "README.md");
    assert_eq!(files[0]["path"], change["path"]);
    assert_eq!(files[0]["added"], change["added"]);
    assert_eq!(files[0]["removed"], change["removed"]);
    assert_eq!((git_state["ahead"].as_u64(), git_state["behind"].as_u64()), (Some(1), Some(0)));
    assert_eq!(git_state["lastCommit"]["message"], "Add a greeting to README.md");
    assert_eq!(git_state["pushed"], false);
    let (status, diff) = {
        let path = format!("{}/diff?path=README.md", env.task_path(&task));
        let res = env.server.client.get(format!("{}{path}", env.server.base)).bearer_auth(&env.token).send().await;
        let res = res.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(diff.contains("+foundry: Add a greeting to README.md"), "{diff}");
    let (status, body) =
        env.server.call("GET", &format!("{}/diff?path=../x", env.task_path(&task)), Some(&env.token), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_input")), "{body}");

    // Publish: the branch is pushed and the pull request exists on the server with the commit. Sent with an
    // Idempotency-Key, its retry is the same answer (not "one is open").
    let publish = format!("{}/pull-request", env.task_path(&task));
    let key = [("idempotency-key", "publish-1")];
    let (status, _, body) = env.server.call_with("POST", &publish, Some(&env.token), None, &key).await;
    assert_eq!(status, 201, "{body}");
    let number = body["number"].as_i64().unwrap();
    let (status, headers, again) = env.server.call_with("POST", &publish, Some(&env.token), None, &key).await;
    assert_eq!((status, &again), (201, &body), "the retry gets the first answer");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    let bare = env.fake.git_dir("web").unwrap();
    let log = git(&bare, &["log", "--format=%s", &format!("main..{branch}")]);
    assert_eq!(log.trim(), "Add a greeting to README.md");
    let view = env.task(&task).await;
    assert_eq!(view["pullRequest"]["number"], number);
    assert_eq!(view["pullRequest"]["state"], "open");
    assert_eq!(view["workspace"]["git"]["pushed"], true);
    assert_eq!(view["workspace"]["git"]["unpushed"], 0);
    let (status, body) = env.action(&task, "pull-request", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");

    // Merge: really merged into main on the server; the task shows it.
    let (status, body) = env.action(&task, "merge", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pullRequest"]["state"], "merged", "{body}");
    let readme = git(&bare, &["show", "main:README.md"]);
    assert!(readme.contains("foundry: Add a greeting to README.md"), "{readme}");
    // The server's webhooks reached foundry, signed and accepted.
    for _ in 0..400 {
        let deliveries = env.fake.deliveries();
        if deliveries
            .iter()
            .any(|(event, action, status)| event == "pull_request" && action == "closed" && *status < 300)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deliveries = env.fake.deliveries();
    assert!(
        deliveries.iter().any(|(event, action, status)| event == "pull_request" && action == "closed" && *status < 300),
        "{deliveries:?}"
    );
    let (_, audit) = env.server.call("GET", "/v1/orgs/acme/audit", Some(&env.token), None).await;
    let kinds: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["task.pushed", "task.pr.published", "task.merged"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

#[actix_rt::test]
async fn a_merge_on_github_reaches_the_task_through_its_webhook_and_tasks_never_share_files() {
    let Some(env) = start(None).await else { return };
    let (a, sa) = env.create_task("Edit README.md with a note").await;
    let (b, sb) = env.create_task("Fix src/app.js greeting").await;
    let (va, _) = env.settled(&a, &sa, 1).await;
    let (vb, _) = env.settled(&b, &sb, 1).await;
    let (cwd_a, cwd_b) = (va["workspace"]["cwd"].as_str().unwrap(), vb["workspace"]["cwd"].as_str().unwrap());
    assert_ne!(cwd_a, cwd_b);
    // Each task sees only its own change.
    let readme_b = std::fs::read_to_string(Path::new(cwd_b).join("README.md")).unwrap();
    assert!(!readme_b.contains("foundry:"), "{readme_b}");
    let app_a = std::fs::read_to_string(Path::new(cwd_a).join("src/app.js")).unwrap();
    assert!(!app_a.contains("foundry:"), "{app_a}");
    assert_eq!(vb["workspace"]["git"]["files"][0]["path"], "src/app.js");

    let (status, body) = env.action(&b, "pull-request", None).await;
    assert_eq!(status, 201, "{body}");
    let number = body["number"].as_u64().unwrap();
    // Someone merges it on GitHub itself: the webhook brings the merge to the task.
    let client = GitHubClient::new(&env.fake.base_url(), TOKEN);
    client.merge_pull("acme/web", number, MergeMethod::Merge, None).await.unwrap();
    eventually_some("the merged pull request on the task", || async {
        (env.task(&b).await["pullRequest"]["state"] == "merged").then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_failed_clone_is_a_visible_error_and_a_retry_succeeds() {
    let Some(env) = start(None).await else { return };
    // The git server refuses the next fetches of the repository.
    env.fake.fail_next("/acme/web.git", 500, 1);
    let (task, session) = env.create_task("Add a note to README.md").await;
    let view = eventually_some("the failed provisioning", || async {
        let v = env.task(&task).await;
        (v["workspace"]["status"] == "error").then_some(v)
    })
    .await;
    assert_eq!(view["status"], "error", "{view}");
    assert!(!view["workspace"]["message"].as_str().unwrap().is_empty(), "{view}");
    // The turn waiting for it failed visibly.
    let s = eventually_some("the failed turn", || async {
        let s = env.session(&task, &session).await;
        (s["status"] == "error").then_some(s)
    })
    .await;
    let text = s["transcript"].to_string();
    assert!(text.contains("the workspace is not ready"), "{text}");
    // Git operations say why they cannot run.
    let (status, body) = env.action(&task, "push", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("workspace_unavailable")), "{body}");

    // The server recovers; a retry provisions the workspace and the next prompt works.
    let (status, body) = env.action(&task, "provision", None).await;
    assert_eq!(status, 200, "{body}");
    let v = eventually_some("provisioning to end", || async {
        let v = env.task(&task).await;
        (v["workspace"]["status"] != "provisioning").then_some(v)
    })
    .await;
    assert_eq!(v["workspace"]["status"], "ready", "{v}");
    assert_eq!(v["workspace"]["attempts"], 2, "{v}");
    let path = format!("{}/sessions/{session}/messages", env.task_path(&task));
    let (status, body) =
        env.server.call("POST", &path, Some(&env.token), Some(json!({ "text": "edit README.md again" }))).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    let (view, _) = env.settled(&task, &session, 1).await;
    assert_eq!(view["workspace"]["git"]["files"][0]["path"], "README.md", "{view}");

    // Push, then put README.md back as it is on main (committed): the branch no longer changes any file.
    let (status, body) = env.action(&task, "push", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env.action(&task, "revert", Some(json!({ "path": "README.md" }))).await;
    assert_eq!(status, 200, "{body}");
    let v = env.task(&task).await;
    assert_eq!(v["workspace"]["git"]["files"].as_array().map(Vec::len), Some(0), "{v}");
    // The workspace operations are in the audit log, by alice (tests/audit_coverage.rs points here for them).
    env.audited(&task, &["task.workspace.provisioned", "task.pushed", "task.file.reverted"]).await;
}

/// A process killed while it set up a repository's mirror (initialised, not yet told what to fetch) must not leave the
/// repository unusable: the next provisioning repairs the mirror's configuration and its workspace is ready.
#[actix_rt::test]
async fn a_mirror_left_half_configured_by_a_kill_is_repaired() {
    let Some(env) = start(Some(BuiltinAgent::new(Duration::from_millis(0)))).await else { return };
    let (first, _) = env.create_task("Look at README.md").await;
    eventually_some("the first workspace", || async {
        let v = env.task(&first).await;
        (v["workspace"]["status"] == "ready").then_some(v)
    })
    .await;
    let mirrors: Vec<_> =
        std::fs::read_dir(env.sandboxes.path().join("mirrors")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    // What `git init --bare` + the URL, without the fetch refspec and the fetch, looks like.
    let mirror = &mirrors[0];
    git(mirror, &["config", "--unset", "remote.origin.fetch"]);
    git(mirror, &["update-ref", "-d", "refs/heads/main"]);

    let (second, _) = env.create_task("Look at README.md again").await;
    let v = eventually_some("the second workspace", || async {
        let v = env.task(&second).await;
        (v["workspace"]["status"] == "ready" || v["workspace"]["status"] == "error").then_some(v)
    })
    .await;
    assert_eq!(v["workspace"]["status"], "ready", "{v}");
    assert!(git(mirror, &["config", "remote.origin.fetch"]).contains("refs/heads/*"));
}

#[actix_rt::test]
async fn archive_pushes_and_releases_kill_destroys_and_unarchive_provisions_again() {
    // A slow agent, so that a turn is still running when the task is archived.
    let Some(env) = start(Some(BuiltinAgent::new(Duration::from_millis(40)))).await else { return };
    let (task, session) = env.create_task("Create a changelog entry").await;
    let (view, _) = env.settled(&task, &session, 1).await;
    let cwd = view["workspace"]["cwd"].as_str().unwrap().to_owned();
    let branch = view["branch"].as_str().unwrap().to_owned();
    assert_eq!(view["workspace"]["git"]["unpushed"], 1);

    // A second prompt is running when the task is archived.
    let path = format!("{}/sessions/{session}/messages", env.task_path(&task));
    let (status, body) =
        env.server.call("POST", &path, Some(&env.token), Some(json!({ "text": "write more docs please" }))).await;
    assert!(status < 300, "{status} {body}");
    eventually_some("the running turn", || async {
        (env.session(&task, &session).await["status"] == "running").then_some(())
    })
    .await;
    let (status, body) = env.action(&task, "archive", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "archived");
    // Nothing was lost: the committed work is on the remote branch; the workspace is gone.
    let bare = env.fake.git_dir("web").unwrap();
    let log = git(&bare, &["log", "--format=%s", &format!("main..{branch}")]);
    assert!(log.contains("Create a changelog entry"), "{log}");
    assert!(!Path::new(&cwd).exists());
    let view = env.task(&task).await;
    assert_eq!(view["workspace"]["status"], "released", "{view}");
    let s = env.session(&task, &session).await;
    assert_ne!(s["status"], "running", "{s}");
    // An archived task's sessions take no prompts.
    let (status, body) = env.server.call("POST", &path, Some(&env.token), Some(json!({ "text": "more" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("task_archived")), "{body}");

    // Unarchive: provisioned again from the pushed branch, prompts accepted again.
    let (status, body) = env.action(&task, "unarchive", None).await;
    assert_eq!(status, 200, "{body}");
    let view = eventually_some("the workspace again", || async {
        let v = env.task(&task).await;
        (v["workspace"]["status"] == "ready").then_some(v)
    })
    .await;
    let cwd = view["workspace"]["cwd"].as_str().unwrap();
    assert!(Path::new(cwd).join("notes/create-a-changelog-entry.md").exists(), "{view}");
    let (status, body) = env.server.call("POST", &path, Some(&env.token), Some(json!({ "text": "again" }))).await;
    assert!(status < 300, "{status} {body}");

    // Kill: destroyed at once.
    let (status, body) = env.action(&task, "kill", None).await;
    assert_eq!(status, 200, "{body}");
    let view = env.task(&task).await;
    assert_eq!(view["workspace"]["status"], "destroyed", "{view}");
    assert!(!Path::new(cwd).exists());
    let (status, body) = env.action(&task, "unarchive", None).await;
    assert_eq!(status, 409, "{body}");
}
