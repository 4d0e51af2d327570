//! The GitHub sync against the local GitHub-compatible server: exact counts for 300 repositories x 20 branches x 10
//! pull requests, progress visible in the organization snapshot, pull requests becoming tasks lazily (no task actors),
//! a failure midway keeping every row, a retry completing, and a closed pull request updating its task.

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundry::actors::github_data::{
    ConnectGitHub, GetSyncStatus, GitHubData, GitHubService, RetrySync, StartSync, SyncRetry, SyncStatus,
};
use foundry::actors::organization::{CreateOrganization, GetOrganizationSnapshot, OrgKind, OrganizationSnapshot};
use foundry::actors::repository::ListTaskSummaries;
use foundry::actors::{Domain, DomainError, RepoKey};
use foundry::integrations::github::client::{AccountKind, GitHubClient, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::runtime::{CallError, ListSchedules, Registry};

const ORG: &str = "acme";
const TOKEN: &str = "sync-token";

async fn setup(fixture: Fixture) -> (Domain, Registry<GitHubData>, FakeGitHub, tempfile::TempDir) {
    let gh = FakeGitHub::start(fixture, TOKEN).await;
    let (rt, dir) = support::runtime(2);
    let policy = RetryPolicy { backoff: Duration::from_millis(1), ..Default::default() };
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::with_policy(&gh.base_url(), TOKEN, policy)))));
    let domain = Domain::without_agent(rt.clone());
    let org =
        CreateOrganization { login: ORG.into(), display_name: "Acme".into(), kind: OrgKind::Organization, owner: None };
    domain.orgs.mutate(&ORG.to_owned(), org).await.unwrap();
    let github = rt.registry::<GitHubData>();
    github
        .mutate(
            &ORG.to_owned(),
            ConnectGitHub {
                login: ORG.into(),
                kind: AccountKind::Organization,
                account_id: gh.fixture().owner_id as i64,
                by: None,
            },
        )
        .await
        .unwrap();
    (domain, github, gh, dir)
}

async fn wait_for_sync(github: &Registry<GitHubData>, generation: i32) -> SyncStatus {
    for _ in 0..3000 {
        let s = github.read(&ORG.to_owned(), GetSyncStatus).await.unwrap();
        if s.meta.generation == generation && s.meta.status != "syncing" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("sync {generation} did not finish");
}

async fn org_until(domain: &Domain, what: &str, done: impl Fn(&OrganizationSnapshot) -> bool) -> OrganizationSnapshot {
    for _ in 0..3000 {
        let s = domain.orgs.read(&ORG.to_owned(), GetOrganizationSnapshot).await.unwrap();
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_rt::test]
async fn a_full_sync_mirrors_exact_counts_and_creates_tasks_lazily() {
    let (domain, github, gh, dir) = setup(Fixture::generate(ORG, 300, 20, 10)).await;
    let mut sub = domain.orgs.subscribe(&ORG.to_owned(), "organization").await.unwrap();
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    // Only one sync at a time.
    let again = github.exec(&ORG.to_owned(), StartSync).await.unwrap_err();
    assert!(matches!(again, CallError::Handler(DomainError::Conflict(_))), "{again:?}");
    // Progress is visible in the organization snapshot while the sync runs, and never goes backwards within a phase.
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), sub.next()).await.unwrap().unwrap();
        let snap: serde_json::Value = ev.snapshot_as().unwrap();
        let p = &snap["profile"];
        let status = p["syncStatus"].as_str().unwrap_or("").to_owned();
        seen.push((
            status.clone(),
            p["syncPhase"].as_str().unwrap_or("").to_owned(),
            p["syncSynced"].as_i64().unwrap_or(0),
        ));
        if status == "synced" {
            break;
        }
    }
    // Progress was visible while the sync ran (a slow subscriber may skip versions, never go back).
    assert!(seen.iter().any(|(status, phase, _)| status == "syncing" && !phase.is_empty()), "{seen:?}");
    let details: Vec<i64> =
        seen.iter().filter(|(_, phase, _)| phase == "syncing_branches_and_pull_requests").map(|(_, _, n)| *n).collect();
    assert!(details.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let status = wait_for_sync(&github, generation).await;
    assert_eq!(status.meta.status, "synced");
    assert_eq!(
        (status.repositories, status.branches, status.pull_requests, status.members),
        (300, 300 * 21, 300 * 10, 5)
    );
    // Every repository was imported into the organization; open pull requests on unclaimed branches became tasks
    // (8 open of 10 per repository), as index rows only.
    let snap =
        org_until(&domain, "repositories and PR tasks", |s| s.repos.len() == 300 && s.task_summaries.len() == 2400)
            .await;
    assert!(snap.task_summaries.iter().all(|t| t.pull_request.as_ref().is_some_and(|p| p.state == "open")));
    let task_dir = dir.path().join("task");
    let task_files = std::fs::read_dir(&task_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(task_files, 0, "no task actor was created during the sync");
    gh.stop().await;
}

#[actix_rt::test]
async fn a_failed_sync_keeps_its_rows_and_a_retry_completes() {
    let (domain, github, gh, _dir) = setup(Fixture::generate(ORG, 150, 2, 3)).await;
    // The second page of repositories fails on every one of the client's attempts (4 by default).
    gh.fail_next("page=2", 502, RetryPolicy::default().max_attempts);
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    let failed = wait_for_sync(&github, generation).await;
    assert_eq!(failed.meta.status, "error");
    assert!(failed.meta.last_error.as_deref().is_some_and(|e| e.contains("502")), "{:?}", failed.meta.last_error);
    assert_eq!(failed.repositories, 100, "the first page was stored and kept");
    let snap = org_until(&domain, "error shown", |s| s.profile.sync_status == "error").await;
    assert!(snap.profile.sync_error.is_some());
    // Retry (the fault is used up): clean completion with exact counts.
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    let done = wait_for_sync(&github, generation).await;
    assert_eq!(done.meta.status, "synced");
    assert_eq!((done.repositories, done.branches, done.pull_requests), (150, 150 * 3, 150 * 3));
    gh.stop().await;
}

/// The retry schedules of `github`'s actor, decoded.
async fn retries(github: &Registry<GitHubData>) -> Vec<RetrySync> {
    let list = github.read(&ORG.to_owned(), ListSchedules::new()).await.unwrap();
    list.iter().map(|s| s.decode::<RetrySync>().expect("only retry schedules")).collect()
}

/// A failed sync schedules its own retry (a durable schedule of the github-data actor), which runs without anyone
/// asking and completes; nothing is left scheduled after the success.
#[actix_rt::test]
async fn a_failed_sync_is_retried_on_its_own() {
    let (domain, github, gh, _dir) = setup(Fixture::generate(ORG, 150, 2, 3)).await;
    domain.runtime.provide(Arc::new(SyncRetry { first: Duration::from_millis(200), max_attempts: 3 }));
    gh.fail_next("page=2", 502, RetryPolicy::default().max_attempts);
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    let failed = wait_for_sync(&github, generation).await;
    assert_eq!(failed.meta.status, "error");
    assert_eq!(retries(&github).await, vec![RetrySync { generation, attempt: 1 }], "scheduled with the failure");
    // Nobody syncs: the retry does, as the next generation.
    let done = wait_for_sync(&github, generation + 1).await;
    assert_eq!(done.meta.status, "synced");
    assert_eq!((done.repositories, done.branches, done.pull_requests), (150, 150 * 3, 150 * 3));
    assert!(retries(&github).await.is_empty());
    gh.stop().await;
}

/// Retries are bounded: each failed retry schedules the next, until the attempts are used up; then the status
/// stays `error` with nothing scheduled. A sync started by someone cancels a pending retry.
#[actix_rt::test]
async fn sync_retries_stop_after_the_last_attempt() {
    let (domain, github, gh, _dir) = setup(Fixture::generate(ORG, 150, 2, 3)).await;
    domain.runtime.provide(Arc::new(SyncRetry { first: Duration::from_millis(100), max_attempts: 2 }));
    // Enough failures for the first sync and both retries.
    gh.fail_next("page=2", 502, 3 * RetryPolicy::default().max_attempts);
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    wait_for_sync(&github, generation).await;
    let second = wait_for_sync(&github, generation + 1).await;
    assert_eq!(second.meta.status, "error");
    let third = wait_for_sync(&github, generation + 2).await;
    assert_eq!(third.meta.status, "error");
    assert!(retries(&github).await.is_empty(), "no retry after the last attempt");
    // A new failure starts a new series, and a sync started by someone replaces the pending retry.
    gh.fail_next("page=2", 502, RetryPolicy::default().max_attempts);
    domain.runtime.provide(Arc::new(SyncRetry { first: Duration::from_secs(3600), max_attempts: 2 }));
    let manual = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    assert_eq!(manual, generation + 3);
    wait_for_sync(&github, manual).await;
    assert_eq!(retries(&github).await, vec![RetrySync { generation: manual, attempt: 1 }]);
    let again = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    assert!(retries(&github).await.is_empty(), "the manual sync cancelled the pending retry");
    assert_eq!(wait_for_sync(&github, again).await.meta.status, "synced");
    gh.stop().await;
}

/// A sync cut by a restart is marked failed when the actor starts again, and its retry is scheduled in that same
/// transaction: it runs after the restart without anyone asking.
#[actix_rt::test]
async fn a_sync_cut_by_a_restart_is_retried_after_it() {
    let (domain, github, gh, dir) = setup(Fixture::generate(ORG, 150, 2, 3)).await;
    gh.set_delay(200);
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    domain.runtime.shutdown().await;
    gh.set_delay(0);
    let rt = support::runtime_at(dir.path(), 2);
    let policy = RetryPolicy { backoff: Duration::from_millis(1), ..Default::default() };
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::with_policy(&gh.base_url(), TOKEN, policy)))));
    rt.provide(Arc::new(SyncRetry { first: Duration::from_millis(200), max_attempts: 3 }));
    let _domain = Domain::without_agent(rt.clone());
    let github = rt.registry::<GitHubData>();
    let cut = github.read(&ORG.to_owned(), GetSyncStatus).await.unwrap();
    assert_eq!((cut.meta.generation, cut.meta.status.as_str()), (generation, "error"));
    assert_eq!(cut.meta.last_error.as_deref(), Some("interrupted by a restart"));
    let done = wait_for_sync(&github, generation + 1).await;
    assert_eq!(done.meta.status, "synced");
    assert_eq!(done.repositories, 150);
    rt.shutdown().await;
    gh.stop().await;
}

#[actix_rt::test]
async fn a_closed_pull_request_updates_its_task() {
    let (domain, github, gh, _dir) = setup(Fixture::generate(ORG, 2, 3, 3)).await;
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    wait_for_sync(&github, generation).await;
    let repo = RepoKey::new(ORG, "repo-000");
    let tasks = org_until(&domain, "PR tasks", |s| s.task_summaries.len() == 6).await;
    assert!(tasks.task_summaries.iter().any(|t| t.branch == "feature-001"));
    // Pull request #1 of repo-000 gets merged on GitHub; the next sync carries it to its task.
    gh.with_fixture(|f| {
        let pr = f.repos[0].pulls.iter_mut().find(|p| p.number == 1).unwrap();
        pr.state = "closed".into();
        pr.merged = true;
        pr.updated_at = "2030-01-01T00:00:00Z".into();
    });
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    wait_for_sync(&github, generation).await;
    for _ in 0..1000 {
        let list = domain.repos.read(&repo, ListTaskSummaries).await.unwrap();
        let task = list.iter().find(|t| t.branch == "feature-001").unwrap();
        if task.pull_request.as_ref().is_some_and(|p| p.state == "merged") {
            gh.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the merged pull request never reached its task");
}

fn pr_payload(action: &str, number: u64, branch: &str, state: &str, merged: bool) -> serde_json::Value {
    serde_json::json!({
        "action": action,
        "repository": { "name": "repo-000", "full_name": "acme/repo-000" },
        "pull_request": {
            "id": 9_000_000 + number, "number": number, "title": format!("PR {number}"), "body": null,
            "state": state, "draft": false,
            "merged_at": if merged { serde_json::json!("2030-01-02T00:00:00Z") } else { serde_json::Value::Null },
            "updated_at": "2030-01-01T00:00:00Z",
            "html_url": format!("https://github.com/acme/repo-000/pull/{number}"),
            "head": { "ref": branch, "sha": "abc" }, "base": { "ref": "main" }, "user": { "login": "dev-1" }
        }
    })
}

#[actix_rt::test]
async fn webhook_deliveries_apply_once_and_update_the_mirror() {
    use foundry::actors::github_data::{HandleWebhook, WebhookOutcome};
    let (domain, github, gh, _dir) = setup(Fixture::generate(ORG, 2, 2, 2)).await;
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    let before = wait_for_sync(&github, generation).await;
    let org = ORG.to_owned();
    let deliver = |id: &str, event: &str, payload: serde_json::Value| {
        github.exec(&org, HandleWebhook { delivery_id: id.into(), event: event.into(), payload })
    };
    let repo = RepoKey::new(ORG, "repo-000");
    // The sync's repositories and pull requests reach the repository coordinator through outboxes: wait until it
    // exists and holds every open pull request of the fixture before counting.
    let open_prs = gh.fixture().repos[0].pulls.iter().filter(|p| p.state == "open").count();
    let mut tasks_before = None;
    for _ in 0..3000 {
        if let Ok(list) = domain.repos.read(&repo, ListTaskSummaries).await {
            if list.len() >= open_prs {
                tasks_before = Some(list.len());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tasks_before = tasks_before.expect("the synced pull requests reached the repository");
    // A pull request opened on a new branch becomes a task; the same delivery again changes nothing.
    let opened = pr_payload("opened", 77, "feature-hook", "open", false);
    assert_eq!(deliver("d-1", "pull_request", opened.clone()).await.unwrap(), WebhookOutcome::Applied);
    assert_eq!(deliver("d-1", "pull_request", opened).await.unwrap(), WebhookOutcome::Duplicate);
    let mut found = None;
    for _ in 0..500 {
        let list = domain.repos.read(&repo, ListTaskSummaries).await.unwrap();
        if let Some(t) = list.iter().find(|t| t.branch == "feature-hook") {
            found = Some((list.len(), t.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (count, task) = found.expect("the webhook's pull request became a task");
    assert_eq!(count, tasks_before + 1);
    assert_eq!(task.pull_request.as_ref().unwrap().number, 77);
    // Merged: the task's pull request state follows.
    let merged = pr_payload("closed", 77, "feature-hook", "closed", true);
    assert_eq!(deliver("d-2", "pull_request", merged).await.unwrap(), WebhookOutcome::Applied);
    let mut state = String::new();
    for _ in 0..500 {
        let list = domain.repos.read(&repo, ListTaskSummaries).await.unwrap();
        state = list.iter().find(|t| t.branch == "feature-hook").unwrap().pull_request.clone().unwrap().state;
        if state == "merged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, "merged");
    // Branches and members follow push/create/delete and member events.
    let repo_json = serde_json::json!({ "name": "repo-000" });
    let push = serde_json::json!({ "ref": "refs/heads/hotfix", "after": "f00", "repository": repo_json });
    assert_eq!(deliver("d-3", "push", push).await.unwrap(), WebhookOutcome::Applied);
    let s = github.read(&org, GetSyncStatus).await.unwrap();
    assert_eq!(s.branches, before.branches + 1);
    let del = serde_json::json!({ "ref": "hotfix", "ref_type": "branch", "repository": repo_json });
    deliver("d-4", "delete", del).await.unwrap();
    let member = serde_json::json!({ "action": "added", "member": { "id": 99, "login": "newbie" } });
    deliver("d-5", "member", member).await.unwrap();
    let s = github.read(&org, GetSyncStatus).await.unwrap();
    assert_eq!((s.branches, s.members), (before.branches, before.members + 1));
    assert_eq!(deliver("d-6", "star", serde_json::json!({})).await.unwrap(), WebhookOutcome::Ignored);
    // Uninstalling clears the mirror; reinstalling syncs it again.
    let uninstall = serde_json::json!({ "action": "deleted" });
    assert_eq!(deliver("d-7", "installation", uninstall).await.unwrap(), WebhookOutcome::Cleared);
    assert_eq!(github.read(&org, GetSyncStatus).await.unwrap().repositories, 0);
    let install = serde_json::json!({ "action": "created" });
    assert_eq!(deliver("d-8", "installation", install).await.unwrap(), WebhookOutcome::SyncStarted);
    let after = github.read(&org, GetSyncStatus).await.unwrap();
    let resynced = wait_for_sync(&github, after.meta.generation).await;
    assert_eq!((resynced.meta.status.as_str(), resynced.repositories), ("synced", 2));
    gh.stop().await;
}

#[actix_rt::test]
async fn a_task_created_from_a_pull_request_gets_its_actor_on_first_use() {
    use foundry::actors::task::CreateSession;
    let (domain, github, gh, dir) = setup(Fixture::generate(ORG, 1, 2, 2)).await;
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    wait_for_sync(&github, generation).await;
    let snap = org_until(&domain, "PR tasks", |s| s.task_summaries.len() == 2).await;
    assert!(!dir.path().join("task").exists() || std::fs::read_dir(dir.path().join("task")).unwrap().count() == 0);
    let lazy = &snap.task_summaries[0];
    let key = RepoKey::new(ORG, &lazy.repo_id).task(&lazy.task_id);
    // First use: the task actor is created from the index row, with its pull request and no session.
    let view = domain.task_view(&key, None).await.unwrap();
    assert_eq!(view.detail.branch, lazy.branch);
    assert_eq!(view.detail.pull_request, lazy.pull_request);
    assert!(view.detail.sessions.is_empty(), "no session until a user opens one");
    let databases = std::fs::read_dir(dir.path().join("task"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".sqlite3"))
        .count();
    assert_eq!(databases, 1, "exactly this task got a database");
    // Using it again does not re-initialise it; opening a session works.
    domain.task_view(&key, None).await.unwrap();
    let s = domain.create_session(&key, CreateSession { name: None, model: None, user_id: None }).await.unwrap();
    assert_eq!(s, "s1");
    // An unknown task is refused without creating anything.
    let ghost = RepoKey::new(ORG, &lazy.repo_id).task("t999");
    let err = domain.task_view(&ghost, None).await.unwrap_err();
    assert!(matches!(err, CallError::Handler(DomainError::NotFound { what: "task", .. })), "{err:?}");
    gh.stop().await;
}
