//! GitHub sync benchmarks (plain program, `harness = false`): a full and an incremental sync of a generated
//! organization against the local GitHub-compatible server (`FakeGitHub`, in-process on the bench's actix system).
//!
//! ```text
//! cargo bench --bench github -- [name=value ...]
//! ```
//!
//! One scenario per server delay (`delays`, ms slept by the fake server before answering each request; default
//! `0,2`), each on a fresh runtime with the default `RuntimeConfig::new(dir)` (arbiters = cores) and a fresh server
//! serving `Fixture::generate("acme", repos, branches, pulls)`. The organization is created, `ConnectGitHub` sent to
//! the `GitHubData` actor, then:
//! - full sync: `StartSync` -> `GetSyncStatus` (polled every 5 ms) shows the generation finished; rows mirrored
//!   (repositories + branches + pull requests + members) and rows/s, HTTP requests (`request_count` delta) and
//!   requests/s;
//! - propagation: the extra time, after the sync reported `synced`, until `GetOrganizationSnapshot` (polled every 5 ms)
//!   shows every repository and one task summary per open pull request (counted in the fixture);
//! - incremental sync: a second `StartSync` with nothing changed on the server, same measurements.
//!
//! Sizes come from `name=value` arguments or `BENCH_<NAME>` environment variables (argument wins):
//! `repos`, `branches`, `pulls`, `delays` (comma separated), `timeout_s` (per wait, default 120).
//! Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`, else the system temp dir) and is deleted.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry::actors::github_data::{ConnectGitHub, GetSyncStatus, GitHubData, GitHubService, StartSync, SyncStatus};
use foundry::actors::organization::{CreateOrganization, GetOrganizationSnapshot, OrgKind};
use foundry::actors::Domain;
use foundry::integrations::github::client::{AccountKind, GitHubClient};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::runtime::{Registry, Runtime, RuntimeConfig};

use common::{ms, table, tmp_base, Opts};

const ORG: &str = "acme";
const TOKEN: &str = "bench-token";
const POLL: Duration = Duration::from_millis(5);

fn tempdir() -> tempfile::TempDir {
    common::tempdir("foundry-bench-github-")
}

/// One sync, from `StartSync` to the status showing its generation finished.
struct SyncRun {
    wall: Duration,
    /// `StartSync` round trip alone.
    start_call: Duration,
    status: String,
    last_error: Option<String>,
    repositories: i64,
    branches: i64,
    pull_requests: i64,
    members: i64,
    requests: u64,
    polls: usize,
}

impl SyncRun {
    fn rows(&self) -> i64 {
        self.repositories + self.branches + self.pull_requests + self.members
    }
}

/// Time, after the sync reported done, until the organization snapshot shows every repository and every PR task.
struct Propagation {
    repos_at: Option<Duration>,
    tasks_at: Option<Duration>,
    repos_seen: usize,
    tasks_seen: usize,
    polls: usize,
}

struct Scenario {
    delay_ms: u64,
    expected_tasks: usize,
    full: SyncRun,
    propagation: Propagation,
    incremental: SyncRun,
    /// Task summaries in the snapshot once the incremental sync is done (should be unchanged).
    tasks_after_incremental: usize,
}

async fn sync(github: &Registry<GitHubData>, gh: &FakeGitHub, timeout: Duration) -> SyncRun {
    let org = ORG.to_owned();
    let requests_before = gh.request_count();
    let start = Instant::now();
    let generation = github.exec(&org, StartSync).await.expect("start sync");
    let start_call = start.elapsed();
    let mut polls = 0usize;
    let status: SyncStatus = loop {
        let s = github.read(&org, GetSyncStatus).await.expect("sync status");
        polls += 1;
        if s.meta.generation == generation && s.meta.status != "syncing" {
            break s;
        }
        if start.elapsed() > timeout {
            break s;
        }
        tokio::time::sleep(POLL).await;
    };
    let wall = start.elapsed();
    SyncRun {
        wall,
        start_call,
        status: if status.meta.status == "syncing" { "timeout".to_owned() } else { status.meta.status.clone() },
        last_error: status.meta.last_error.clone(),
        repositories: status.repositories,
        branches: status.branches,
        pull_requests: status.pull_requests,
        members: status.members,
        requests: gh.request_count() - requests_before,
        polls,
    }
}

async fn propagation(domain: &Domain, repos: usize, expected_tasks: usize, timeout: Duration) -> Propagation {
    let org = ORG.to_owned();
    let start = Instant::now();
    let mut p = Propagation { repos_at: None, tasks_at: None, repos_seen: 0, tasks_seen: 0, polls: 0 };
    while start.elapsed() < timeout {
        let snap = domain.orgs.read(&org, GetOrganizationSnapshot).await.expect("snapshot");
        p.polls += 1;
        p.repos_seen = snap.repos.len();
        p.tasks_seen = snap.task_summaries.len();
        let now = start.elapsed();
        if p.repos_at.is_none() && p.repos_seen >= repos {
            p.repos_at = Some(now);
        }
        if p.tasks_at.is_none() && p.tasks_seen >= expected_tasks {
            p.tasks_at = Some(now);
        }
        if p.repos_at.is_some() && p.tasks_at.is_some() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    p
}

async fn run(o: &Opts, delay_ms: u64) -> Scenario {
    let repos = o.get("repos", 300) as usize;
    let branches = o.get("branches", 20) as usize;
    let pulls = o.get("pulls", 10) as usize;
    let timeout = Duration::from_secs(o.get("timeout_s", 120));

    let fixture = Fixture::generate(ORG, repos, branches, pulls);
    let expected_tasks = fixture.repos.iter().flat_map(|r| &r.pulls).filter(|p| p.state == "open").count();
    let gh = FakeGitHub::start(fixture, TOKEN).await;
    gh.set_delay(delay_ms);

    let dir = tempdir();
    let rt = Runtime::start(RuntimeConfig::new(dir.path())).expect("runtime starts");
    rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&gh.base_url(), TOKEN)))));
    let domain = Domain::without_agent(rt.clone());
    let org = ORG.to_owned();
    let create =
        CreateOrganization { login: ORG.into(), display_name: "Acme".into(), kind: OrgKind::Organization, owner: None };
    domain.orgs.mutate(&org, create).await.expect("create organization");
    let github = rt.registry::<GitHubData>();
    let account_id = gh.fixture().owner_id as i64;
    let connect = ConnectGitHub { login: ORG.into(), kind: AccountKind::Organization, account_id, by: None };
    github.mutate(&org, connect).await.expect("connect GitHub");

    let full = sync(&github, &gh, timeout).await;
    let propagation = propagation(&domain, repos, expected_tasks, timeout).await;
    let incremental = sync(&github, &gh, timeout).await;
    let tasks_after_incremental =
        domain.orgs.read(&org, GetOrganizationSnapshot).await.expect("snapshot").task_summaries.len();

    rt.shutdown().await;
    gh.stop().await;
    drop(dir);
    Scenario { delay_ms, expected_tasks, full, propagation, incremental, tasks_after_incremental }
}

fn per_sec(n: f64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s > 0.0 {
        format!("{:.0}", n / s)
    } else {
        "-".to_owned()
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "timeout".to_owned(), ms)
}

fn sync_row(label: String, r: &SyncRun) -> Vec<String> {
    vec![
        label,
        r.status.clone(),
        ms(r.wall),
        ms(r.start_call),
        format!("{}/{}/{}/{}", r.repositories, r.branches, r.pull_requests, r.members),
        r.rows().to_string(),
        per_sec(r.rows() as f64, r.wall),
        r.requests.to_string(),
        per_sec(r.requests as f64, r.wall),
        r.polls.to_string(),
    ]
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let delays = o.list("delays", &[0, 2]);
    println!(
        "foundry github bench: repos={} branches={} pulls={} delays={:?} ms cores={} tmp={}",
        o.get("repos", 300),
        o.get("branches", 20),
        o.get("pulls", 10),
        delays,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp_base().display()
    );
    let t = Instant::now();
    let mut runs = Vec::new();
    for d in delays {
        runs.push(run(&o, d).await);
    }

    let header = [
        "server delay",
        "status",
        "wall ms",
        "StartSync ms",
        "repos/branches/PRs/members",
        "rows",
        "rows/s",
        "HTTP requests",
        "requests/s",
        "status polls",
    ];
    table(
        "(1) full sync: StartSync -> GetSyncStatus shows the generation finished (polled every 5 ms)",
        &header,
        &runs.iter().map(|r| sync_row(format!("{} ms", r.delay_ms), &r.full)).collect::<Vec<_>>(),
    );
    table(
        "(2) after the full sync reported done: until GetOrganizationSnapshot shows all repositories / all PR tasks \
         (polled every 5 ms)",
        &["server delay", "repos ms", "PR tasks ms", "repos seen", "tasks seen", "tasks expected (open PRs)", "polls"],
        &runs
            .iter()
            .map(|r| {
                let p = &r.propagation;
                vec![
                    format!("{} ms", r.delay_ms),
                    opt_ms(p.repos_at),
                    opt_ms(p.tasks_at),
                    p.repos_seen.to_string(),
                    p.tasks_seen.to_string(),
                    r.expected_tasks.to_string(),
                    p.polls.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    table(
        "(3) incremental sync (second StartSync, nothing changed on the server)",
        &header,
        &runs.iter().map(|r| sync_row(format!("{} ms", r.delay_ms), &r.incremental)).collect::<Vec<_>>(),
    );
    table(
        "(4) full vs incremental",
        &["server delay", "full ms", "incremental ms", "speed-up", "tasks after incremental"],
        &runs
            .iter()
            .map(|r| {
                vec![
                    format!("{} ms", r.delay_ms),
                    ms(r.full.wall),
                    ms(r.incremental.wall),
                    format!("{:.2}x", r.full.wall.as_secs_f64() / r.incremental.wall.as_secs_f64().max(1e-9)),
                    r.tasks_after_incremental.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    for r in &runs {
        for (what, s) in [("full", &r.full), ("incremental", &r.incremental)] {
            if let Some(e) = &s.last_error {
                println!("{} ms {what}: last_error = {e}", r.delay_ms);
            }
        }
    }
    println!("\ntotal {:.1} s", t.elapsed().as_secs_f64());
}
