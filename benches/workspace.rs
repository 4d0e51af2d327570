//! Task workspaces (issue 10): time to a ready workspace for the first and the following tasks of one large
//! repository (the first clones the mirror; later ones fetch it and clone it locally), the publish-PR round trip
//! (push + create) against the local GitHub server, and the agent-turn overhead the workspace adds (waiting for it,
//! then commit + git state) against the same built-in agent with no workspace.
//!
//! `cargo bench --bench workspace -- [all|provision|publish|turn] [mb=50] [tasks=10] [turns=20]`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ms, percentile, table, tempdir, Opts};
use foundry::actors::github_data::GitHubService;
use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::GetSessionDetail;
use foundry::actors::summary::SessionStatus;
use foundry::actors::task::{GetTaskDetail, GitTokens};
use foundry::actors::{Domain, RepoKey, TaskKey};
use foundry::integrations::agent::BuiltinAgent;
use foundry::integrations::github::client::GitHubClient;
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::integrations::workspace::{LocalShell, StaticToken, Workspaces};
use foundry::runtime::{Runtime, RuntimeConfig};

const TOKEN: &str = "ghs_bench";

/// Deterministic incompressible bytes (xorshift), so the repository really weighs what it says.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Setup {
    fake: FakeGitHub,
    domain: Domain,
    repo: RepoKey,
    _dirs: Vec<tempfile::TempDir>,
}

/// The local GitHub with one repository of `mb` MB (`files` files of random bytes, plus a README), and a domain
/// with local workspaces and `agent` (none: no turns run).
async fn setup(mb: u64, agent: Option<BuiltinAgent>, workspaces: bool) -> Setup {
    let git_root = tempdir("ws-git");
    let fake = FakeGitHub::start_with_git(Fixture::new("acme"), TOKEN, git_root.path().to_path_buf()).await;
    let files = (mb as usize).max(1) * 4;
    let mut content: Vec<(String, Vec<u8>)> = (0..files)
        .map(|i| (format!("assets/blob-{i:04}.bin"), noise(i as u64 + 1, (mb as usize * 1024 * 1024) / files)))
        .collect();
    content.push(("README.md".into(), b"# Big\n".to_vec()));
    let refs: Vec<(&str, Vec<u8>)> = content.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let t = Instant::now();
    fake.create_repo("big", "main", &refs);
    println!("generated a {mb} MB repository in {}", ms(t.elapsed()));

    let data = tempdir("ws-data");
    let sandboxes = tempdir("ws-sandboxes");
    let rt = Runtime::start(RuntimeConfig::new(data.path())).unwrap();
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&fake.base_url(), TOKEN)))));
    rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
    if workspaces {
        rt.provide(Arc::new(Workspaces::new(Arc::new(LocalShell::new(sandboxes.path())))));
    }
    let domain = match agent {
        Some(agent) => Domain::with_agent(rt, Arc::new(agent)),
        None => Domain::without_agent(rt),
    };
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();
    let add = AddRepository {
        repo_id: "big".into(),
        full_name: "acme/big".into(),
        remote_url: format!("{}/acme/big.git", fake.base_url()),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
    Setup { fake, domain, repo: RepoKey::new("acme", "big"), _dirs: vec![git_root, data, sandboxes] }
}

fn prompt(text: &str) -> CreateTask {
    CreateTask { prompt: text.into(), title: None, branch: None, model: None, user_id: None }
}

async fn until_ready(domain: &Domain, task: &TaskKey) {
    loop {
        let d = domain.tasks.read(task, GetTaskDetail).await.unwrap();
        match d.workspace.as_ref().map(|w| w.status.as_str()) {
            Some("ready") => return,
            Some("error") => panic!("provisioning failed: {}", d.workspace.unwrap().message),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

async fn provision(o: &Opts) {
    let mb = o.get("mb", 50);
    let tasks = o.get("tasks", 10);
    let s = setup(mb, None, true).await;
    let mut rows = Vec::new();
    for i in 1..=tasks {
        let t = Instant::now();
        let created = s.domain.create_task(&s.repo, prompt(&format!("Task {i}"))).await.unwrap();
        until_ready(&s.domain, &created.task).await;
        rows.push(vec![format!("task {i}"), ms(t.elapsed())]);
    }
    table(&format!("time to a ready workspace ({mb} MB repository, create_task -> ready)"), &["task", "ms"], &rows);
    s.fake.stop().await;
}

async fn publish(o: &Opts) {
    let n = o.get("tasks", 10);
    let s = setup(1, None, true).await;
    let (mut push, mut create) = (Vec::new(), Vec::new());
    for i in 1..=n {
        let created = s.domain.create_task(&s.repo, prompt(&format!("Publish {i}"))).await.unwrap();
        until_ready(&s.domain, &created.task).await;
        let detail = s.domain.tasks.read(&created.task, GetTaskDetail).await.unwrap();
        let cwd = detail.workspace.unwrap().cwd.unwrap();
        std::fs::write(std::path::Path::new(&cwd).join(format!("change-{i}.txt")), "a change\n").unwrap();
        s.domain.commit_turn(&created.task, "A change").await.unwrap();
        let t = Instant::now();
        s.domain.push_task(&created.task, None).await.unwrap();
        push.push(t.elapsed());
        let t = Instant::now();
        s.domain.publish_pull_request(&created.task, None).await.unwrap();
        create.push(t.elapsed());
    }
    push.sort();
    create.sort();
    let row = |name: &str, v: &[Duration]| {
        vec![name.to_owned(), ms(percentile(v, 0.5)), ms(percentile(v, 0.9)), ms(*v.last().unwrap())]
    };
    table(
        &format!("publish round trip against the local GitHub server ({n} tasks)"),
        &["step", "p50 ms", "p90 ms", "max ms"],
        &[
            row("push (commit + git push + state)", &push),
            row("publish PR (push, nothing new + REST create + record)", &create),
        ],
    );
    s.fake.stop().await;
}

/// Sends `turns` prompts to one session (each edits a file) and times send -> idle.
async fn turns(domain: &Domain, repo: &RepoKey, turns: u64) -> Vec<Duration> {
    let created = domain.create_task(repo, prompt("Edit README.md once")).await.unwrap();
    let session = created.task.session(&created.session_id);
    let idle = |d: &foundry::actors::session::SessionDetail, n: usize| {
        d.status == SessionStatus::Idle && d.transcript.iter().filter(|i| i.role == "user").count() >= n
    };
    loop {
        let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
        if idle(&d, 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    for i in 0..turns as usize {
        let t = Instant::now();
        domain.send_message(&session, &format!("edit README.md, change {i}"), None).await.unwrap();
        loop {
            let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
            if idle(&d, i + 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        out.push(t.elapsed());
    }
    out.sort();
    out
}

async fn turn(o: &Opts) {
    let n = o.get("turns", 20);
    let mut rows = Vec::new();
    for (label, ws) in [("no workspace (before)", false), ("local workspace", true)] {
        let s = setup(1, Some(BuiltinAgent::new(Duration::ZERO)), ws).await;
        let v = turns(&s.domain, &s.repo, n).await;
        rows.push(vec![label.to_owned(), ms(percentile(&v, 0.5)), ms(percentile(&v, 0.9)), ms(*v.last().unwrap())]);
        s.fake.stop().await;
    }
    table(
        &format!("agent turn, send -> idle, built-in agent at zero pace ({n} turns, one session)"),
        &["workspace", "p50 ms", "p90 ms", "max ms"],
        &rows,
    );
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    println!(
        "foundry workspace bench: cores={} tmp={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::tmp_base().display()
    );
    if o.runs("provision") {
        provision(&o).await;
    }
    if o.runs("publish") {
        publish(&o).await;
    }
    if o.runs("turn") {
        turn(&o).await;
    }
}
