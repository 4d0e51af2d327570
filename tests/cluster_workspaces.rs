//! Cluster mode: a task's workspace lives on the node serving its shard (provisioned there by its task actor, in
//! that node's sandboxes directory), so the git operations asked of any other node run there (`runtime::procedure`).
//! Two nodes on a real PostgreSQL and NATS, each with its own local sandboxes directory, a local GitHub with real
//! git over smart HTTP: the organization lives on node "a"; everything is asked of node "b" — the workspace is
//! provisioned on "a", and the push, the diff and the archive asked of "b" operate on "a"'s checkout.

mod cluster_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster_support::node::{key_of, settled, TestNode};
use cluster_support::{nats::NatsServer, postgres::PgServer};
use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::summary::TaskStatus;
use foundry::actors::task::{GetTaskDetail, GitTokens};
use foundry::actors::user::UpsertUser;
use foundry::actors::{Domain, RepoKey};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::integrations::workspace::{LocalShell, StaticToken, Workspaces};

const TOKEN: &str = "ghs_cluster_workspace_token";

struct Node {
    node: TestNode,
    domain: Domain,
}

impl Node {
    async fn start(pg: &PgServer, nats: &NatsServer, id: &str, dir: &Path, sandboxes: &Path) -> Node {
        let mut domain = None;
        let node = TestNode::start(pg, nats, id, dir, 1, |rt| {
            rt.provide(Arc::new(Workspaces::new(Arc::new(LocalShell::new(sandboxes.to_path_buf())))));
            rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
            domain = Some(Domain::without_agent(rt.clone()));
        })
        .await;
        Node { node, domain: domain.unwrap() }
    }
}

fn git_available() -> bool {
    let ok = std::process::Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is not installed (CI=true: not skipping)");
        println!("skipped: git is not installed");
    }
    ok
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[actix_rt::test]
async fn git_operations_asked_of_any_node_run_where_the_tasks_workspace_lives() {
    if !git_available() {
        return;
    }
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let git_root = tempfile::tempdir().unwrap();
    let fake = FakeGitHub::start_with_git(Fixture::new("acme"), TOKEN, git_root.path().to_path_buf()).await;
    fake.create_repo("web", "main", &[("README.md", b"# Web\n".to_vec())]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sand_a, sand_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(&pg, &nats, "node-a", dir_a.path(), sand_a.path()).await;
    let b = Node::start(&pg, &nats, "node-b", dir_b.path(), sand_b.path()).await;
    // An organization (and so its tasks) that "a" serves.
    let org = key_of(&["node-a", "node-b"], "node-a", "acme");
    settled(&a.node, &b.node, &org).await;

    let d = &b.domain;
    let create = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    d.orgs.mutate(&org, create).await.expect("organization created through b");
    let add = AddRepository {
        repo_id: "web".into(),
        full_name: "acme/web".into(),
        remote_url: format!("{}/acme/web.git", fake.base_url()),
        default_branch: "main".into(),
        user_id: Some("u1".into()),
    };
    d.add_repository(&org, add).await.expect("repository added through b");
    let user = UpsertUser { name: "Ada".into(), email: "ada@example.com".into(), avatar_url: None };
    d.users.mutate(&"u1".to_owned(), user).await.unwrap();
    let prompt = CreateTask {
        prompt: "Write the notes".into(),
        title: None,
        branch: None,
        model: None,
        user_id: Some("u1".into()),
    };
    let created = d.create_task(&RepoKey::new(&org, "web"), prompt).await.expect("task created through b");
    let task = created.task.clone();
    d.provision_workspace(&task, false).await.expect("provisioning starts (on a)");
    let mut cwd = None;
    for _ in 0..600 {
        let detail = d.tasks.read(&task, GetTaskDetail).await.unwrap();
        let ws = detail.workspace.expect("a workspace row");
        assert_ne!(ws.status, "error", "{}", ws.message);
        if ws.status == "ready" {
            cwd = ws.cwd;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cwd = cwd.expect("the workspace became ready");
    assert!(cwd.starts_with(&*sand_a.path().to_string_lossy()), "provisioned on a: {cwd}");
    assert_eq!(files_under(sand_b.path()), 0, "nothing provisioned on b");

    // The agent's work on "a" (as a turn there would leave it), committed there after the turn.
    std::fs::write(Path::new(&cwd).join("NOTES.md"), "notes\n").unwrap();
    a.domain.commit_turn(&task, "Write the notes").await.expect("committed on a");

    // Asked of "b", each operation runs on "a"'s checkout.
    let diff = d.file_diff(&task, "NOTES.md").await.expect("the diff, from a");
    assert!(diff.contains("+notes"), "{diff}");
    let state = d.push_task(&task, Some("u1")).await.expect("pushed from a");
    assert!(state.pushed, "{state:?}");
    let branch = created.branch.clone();
    let git_dir = fake.git_dir("web").expect("the remote's repository");
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&git_dir)
        .args(["show", &format!("{branch}:NOTES.md")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "notes\n", "the branch reached the remote");
    // A refusal crosses as the domain's own.
    let err = d.revert_file(&task, "../outside", None).await.unwrap_err();
    assert!(format!("{err:?}").contains("Invalid"), "{err:?}");
    assert_eq!(d.archive_task(&task, false, Some("u1")).await.unwrap(), TaskStatus::Archived);
    assert_eq!(files_under(sand_b.path()), 0, "b never held a workspace");

    a.node.crash().await;
    b.node.crash().await;
}
