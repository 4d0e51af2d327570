//! The `sandbox-agent` workspace provider against the real sandbox-agent server: git runs through its
//! `POST /v1/processes/run`, the agent session opens in the task's workspace, and the branch reaches the local GitHub
//! server with a pull request. The binary comes from `SANDBOX_AGENT_BIN` (`.ci/run` installs it; under CI a missing
//! binary fails).

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundry::actors::github_data::GitHubService;
use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::{GetAgentState, GetSessionDetail};
use foundry::actors::summary::SessionStatus;
use foundry::actors::task::workspace::workspace_id;
use foundry::actors::task::{GetTaskDetail, GitTokens};
use foundry::actors::{Domain, RepoKey};
use foundry::integrations::agent::SandboxAgent;
use foundry::integrations::github::client::GitHubClient;
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::integrations::workspace::{SandboxServers, SandboxShell, StaticToken, Workspaces};

const TOKEN: &str = "ghs_sandbox_workspace";

/// Organization `acme` with repository `api` on the local GitHub server.
async fn add_repository(domain: &Domain, fake: &FakeGitHub) {
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();
    let add = AddRepository {
        repo_id: "api".into(),
        full_name: "acme/api".into(),
        remote_url: format!("{}/acme/api.git", fake.base_url()),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
}

#[actix_rt::test]
async fn git_runs_through_the_process_api_and_the_agent_works_in_the_workspace() {
    let Some(server) = support::sandbox::start(true).await else { return };
    let git_root = tempfile::tempdir().unwrap();
    let fixture = Fixture::new("acme");
    let fake = FakeGitHub::start_with_git(fixture, TOKEN, git_root.path().to_path_buf()).await;
    fake.create_repo("api", "main", &[("README.md", b"# API\n".to_vec())]);
    // The sandbox's root is a directory on the agent server's machine (this one, in the test).
    let sandbox_root = tempfile::tempdir().unwrap();

    let (rt, _dir) = support::runtime(2);
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&fake.base_url(), TOKEN)))));
    let shell = SandboxShell::new(&server.url, &sandbox_root.path().to_string_lossy());
    rt.provide(Arc::new(Workspaces::new(Arc::new(shell))));
    rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
    let domain = Domain::with_agent(rt, Arc::new(SandboxAgent::new(&server.url, "mock")));
    domain.refresh_models(&SandboxAgent::new(&server.url, "mock"), "mock").await.unwrap();
    add_repository(&domain, &fake).await;
    let prompt = CreateTask { prompt: "Say hello".into(), title: None, branch: None, model: None, user_id: None };
    let created = domain.create_task(&RepoKey::new("acme", "api"), prompt).await.unwrap();
    let session = created.task.session(&created.session_id);

    let mut done = None;
    for _ in 0..600 {
        let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
        if matches!(d.status, SessionStatus::Idle | SessionStatus::Error) {
            done = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let d = done.expect("the turn finished");
    assert_eq!(d.status, SessionStatus::Idle, "{:?}", d.transcript);
    assert!(d.transcript.iter().any(|i| i.role == "agent" && i.text == "echo: Say hello"), "{:?}", d.transcript);

    // The workspace was provisioned by git through the server's process API, on the task's branch.
    let detail = domain.tasks.read(&created.task, GetTaskDetail).await.unwrap();
    let ws = detail.workspace.expect("a workspace");
    assert_eq!((ws.provider.as_str(), ws.status.as_str()), ("sandbox-agent", "ready"), "{}", ws.message);
    let cwd = ws.cwd.unwrap();
    assert!(cwd.starts_with(&*sandbox_root.path().to_string_lossy()), "{cwd}");
    let branch = std::process::Command::new("git").args(["-C", &cwd, "branch", "--show-current"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&branch.stdout).trim(), detail.branch);
    // The agent session was opened in it.
    let state = domain.sessions.read(&session, GetAgentState).await.unwrap().expect("agent state");
    assert_eq!(state["cwd"], cwd, "{state}");

    // What the agent wrote there is committed, pushed and published through the same process API.
    std::fs::write(std::path::Path::new(&cwd).join("hello.txt"), "hello\n").unwrap();
    domain.commit_turn(&created.task, "Add hello.txt").await.unwrap();
    let number = domain.publish_pull_request(&created.task, None).await.unwrap();
    let bare = fake.git_dir("api").unwrap();
    let show = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["show", &format!("{}:hello.txt", detail.branch)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&show.stdout), "hello\n");
    let detail = domain.tasks.read(&created.task, GetTaskDetail).await.unwrap();
    assert_eq!(detail.pull_request.unwrap().number, number);
    let git = detail.workspace.unwrap().git.unwrap();
    assert!(git.pushed && git.unpushed == 0 && git.files.len() == 1, "{git:?}");
}

/// `serve --sandbox-agent-bin`: every task gets its own sandbox-agent server (own HOME, free port) that runs its git
/// and its agent; archiving the task stops it.
#[actix_rt::test]
async fn each_task_can_have_its_own_sandbox_agent_server() {
    // Makes sure the binary is there and its mock agent installed (fails under CI without it).
    let Some(probe) = support::sandbox::start(true).await else { return };
    drop(probe);
    let bin = std::env::var("SANDBOX_AGENT_BIN").unwrap();
    let git_root = tempfile::tempdir().unwrap();
    let fixture = Fixture::new("acme");
    let fake = FakeGitHub::start_with_git(fixture, TOKEN, git_root.path().to_path_buf()).await;
    fake.create_repo("api", "main", &[("README.md", b"# API\n".to_vec())]);
    let sandboxes = tempfile::tempdir().unwrap();
    let servers = Arc::new(SandboxServers::new(&bin, sandboxes.path()));
    let shared = servers.url_for("_shared").await.unwrap();

    let (rt, _dir) = support::runtime(2);
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&fake.base_url(), TOKEN)))));
    rt.provide(Arc::new(Workspaces::per_task(servers.clone())));
    rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
    let domain = Domain::with_agent(rt, Arc::new(SandboxAgent::new(&shared, "mock")));
    domain.refresh_models(&SandboxAgent::new(&shared, "mock"), "mock").await.unwrap();
    // From here on only the tasks' own servers can answer.
    servers.stop("_shared").await;
    add_repository(&domain, &fake).await;
    let mut tasks = Vec::new();
    for text in ["First task", "Second task"] {
        let prompt = CreateTask { prompt: text.into(), title: None, branch: None, model: None, user_id: None };
        let created = domain.create_task(&RepoKey::new("acme", "api"), prompt).await.unwrap();
        tasks.push((created.task.clone(), created.task.session(&created.session_id), text));
    }
    for (_, session, text) in &tasks {
        let mut reply = None;
        for _ in 0..600 {
            let d = domain.sessions.read(session, GetSessionDetail).await.unwrap();
            if matches!(d.status, SessionStatus::Idle | SessionStatus::Error) {
                reply = Some(d);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let d = reply.expect("the turn finished");
        assert!(d.transcript.iter().any(|i| i.text == format!("echo: {text}")), "{:?}", d.transcript);
    }
    let ids: Vec<String> = tasks.iter().map(|(t, _, _)| workspace_id(t)).collect();
    let urls = [servers.url_for(&ids[0]).await.unwrap(), servers.url_for(&ids[1]).await.unwrap()];
    assert_ne!(urls[0], urls[1]);
    assert_eq!(servers.running().await, 2);
    assert!(sandboxes.path().join("homes").join(&ids[0]).is_dir());
    let ws = domain.tasks.read(&tasks[0].0, GetTaskDetail).await.unwrap().workspace.unwrap();
    assert_eq!((ws.provider.as_str(), ws.status.as_str()), ("sandbox-agent", "ready"), "{}", ws.message);

    // Archiving releases the workspace and stops the task's server; the other task keeps its own.
    domain.archive_task(&tasks[0].0, false, None).await.unwrap();
    assert_eq!(servers.running().await, 1);
    assert!(!std::path::Path::new(&ws.cwd.unwrap()).exists());
    // The servers are this process's children: stop them rather than leave them to outlive the test.
    servers.stop_all().await;
    assert_eq!(servers.running().await, 0);
}
