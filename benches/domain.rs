//! Domain benchmarks (plain program, `harness = false`): task creation through the `Domain` facade and the
//! organization projection it feeds.
//!
//! ```text
//! cargo bench --bench domain -- [name=value ...]
//! ```
//!
//! One scenario per concurrency (sequential, then `conc` concurrent callers), each on a fresh runtime with the default
//! `RuntimeConfig::new(dir)` (arbiters = cores): one organization, `repos` repositories added with
//! `Domain::add_repository`, one user upserted, then `tasks` tasks created with `Domain::create_task` from prompts
//! (round robin over the repositories). Reported:
//! - creation: tasks/s, p50/p99/max create latency;
//! - propagation: time until `GetOrganizationSnapshot` shows all task summaries (they travel up asynchronously through
//!   the outboxes: task -> repository -> organization), and until every summary is settled (idle, one session);
//! - organization snapshot at that size: p50/p99 over `snap_reads` sequential reads, serialized size in bytes;
//! - the `organization` topic: one subscriber (on its own arbiter), `topic_tasks` more creations one at a time
//!   (`gap_ms` apart), time from `create_task` returning to the subscriber receiving a snapshot containing the task.
//!
//! Sizes come from `name=value` arguments or `BENCH_<NAME>` environment variables (argument wins):
//! `tasks`, `repos`, `conc`, `snap_reads`, `topic_tasks`, `gap_ms`; `seq=0` skips the sequential run; `agent=none`
//! creates the domain without an agent (prompts stay queued), `agent=builtin` (default) runs each first turn on the
//! built-in agent meanwhile; `guard=1` turns the read guard on. Scenario directories are deleted at the end (see
//! `common::defer_removal`), and the disk's file-creation cost is printed at the start and the end.
//! Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`, else the system temp dir) and is deleted.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Arbiter;
use foundry::actors::organization::GetOrganizationSnapshot;
use foundry::actors::repository::CreateTask;
use foundry::actors::summary::TaskStatus;
use foundry::actors::user::UpsertUser;
use foundry::actors::{Domain, RepoKey};
use foundry::runtime::{Entity, KindStats, Registry, Runtime, RuntimeConfig, TopicEvent};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use common::{create_org_with_repos, ms, percentile, table, tmp_base, Opts};

const ORG: &str = "acme";
const USER: &str = "u1";

// ---------------------------------------------------------------------------------------------------------------
// Options, helpers

fn tempdir() -> tempfile::TempDir {
    common::tempdir("foundry-bench-domain-")
}

fn repo_key(i: usize) -> RepoKey {
    RepoKey::new(ORG, format!("r{i}"))
}

/// A prompt unique per task (so derived branches never collide and need no suffix search).
fn prompt(i: usize) -> CreateTask {
    CreateTask {
        prompt: format!("Fix the flaky integration test number {i} in the billing service"),
        title: None,
        branch: None,
        model: None,
        user_id: Some(USER.into()),
    }
}

async fn setup(domain: &Domain, repos: usize) {
    create_org_with_repos(domain, ORG, repos, Some(USER)).await;
    let user = UpsertUser { name: "Ada".into(), email: "ada@example.com".into(), avatar_url: None };
    domain.users.mutate(&USER.to_owned(), user).await.expect("upsert user");
}

/// The part of the `organization` topic snapshot the topic probe looks at.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MiniSnapshot {
    task_summaries: Vec<MiniSummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MiniSummary {
    repo_id: String,
    task_id: String,
}

/// Per-kind counters: activations, messages, transactions, committed mutations.
type Counters = [u64; 4];

fn counters<E: Entity>(reg: &Registry<E>) -> Counters {
    let s: &KindStats = reg.stats();
    [&s.activations, &s.messages, &s.transactions, &s.committed_mutations].map(|c| c.load(Ordering::Relaxed))
}

fn all_counters(d: &Domain) -> Vec<(&'static str, Counters)> {
    vec![
        ("organization", counters(&d.orgs)),
        ("repository", counters(&d.repos)),
        ("task", counters(&d.tasks)),
        ("session", counters(&d.sessions)),
        ("user", counters(&d.users)),
        ("audit_log", counters(&d.audit)),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// One scenario

struct Scenario {
    conc: usize,
    tasks: usize,
    create_secs: f64,
    create_lat: Vec<Duration>,
    failures: usize,
    /// From the first creation sent / from the last creation returned, to the snapshot showing every summary.
    all_visible_from_start: Option<Duration>,
    all_visible_from_last: Option<Duration>,
    settled_from_start: Option<Duration>,
    settled_from_last: Option<Duration>,
    polls: usize,
    snap_lat: Vec<Duration>,
    snap_bytes: usize,
    snap_summaries: usize,
    serialize: Duration,
    topic_lat: Vec<Duration>,
    topic_create_lat: Vec<Duration>,
    topic_before_return: usize,
    topic_lost: usize,
    topic_events: usize,
    topic_event_bytes: usize,
    /// Counter deltas over creation + propagation (until settled).
    kinds: Vec<(&'static str, Counters)>,
}

async fn run(o: &Opts, conc: usize) -> Scenario {
    let tasks = o.get("tasks", 1_000) as usize;
    let repos = o.get("repos", 10).max(1) as usize;
    let snap_reads = o.get("snap_reads", 200) as usize;
    let topic_tasks = o.get("topic_tasks", 50) as usize;
    let gap = Duration::from_millis(o.get("gap_ms", 20));

    let dir = tempdir();
    let mut config = RuntimeConfig::new(dir.path());
    // `guard=1`: the read guard of debug builds (`query_only` switched around each write batch), for comparison.
    config.guard_reads = o.get("guard", 0) == 1;
    let rt = Runtime::start(config).expect("runtime starts");
    // `agent=builtin` (default): each task's first turn runs on the built-in agent while tasks are created, as in
    // `serve`; `agent=none`: prompts stay queued, so only creation itself is measured.
    let with_agent = o.raw("agent").as_deref() != Some("none");
    let domain = if with_agent { Domain::new(rt.clone()) } else { Domain::without_agent(rt.clone()) };
    setup(&domain, repos).await;
    let org = ORG.to_owned();

    // Creation.
    let before = all_counters(&domain);
    let start = Instant::now();
    let results: Vec<Option<Duration>> = stream::iter(0..tasks)
        .map(|i| {
            let domain = &domain;
            async move {
                let s = Instant::now();
                let ok = domain.create_task(&repo_key(i % repos), prompt(i)).await.is_ok();
                ok.then(|| s.elapsed())
            }
        })
        .buffer_unordered(conc.max(1))
        .collect()
        .await;
    let last_returned = Instant::now();
    let create_secs = start.elapsed().as_secs_f64();
    let failures = results.iter().filter(|r| r.is_none()).count();
    let mut create_lat: Vec<Duration> = results.into_iter().flatten().collect();
    create_lat.sort();
    let created = create_lat.len();

    // Propagation: poll the snapshot until every summary is there, then until every one is settled.
    let (mut visible_at, mut settled_at, mut polls) = (None, None, 0usize);
    let deadline = last_returned + Duration::from_secs(60);
    while Instant::now() < deadline {
        let snap = domain.orgs.read(&org, GetOrganizationSnapshot).await.expect("snapshot");
        polls += 1;
        let now = Instant::now();
        if visible_at.is_none() && snap.task_summaries.len() >= created {
            visible_at = Some(now);
        }
        // Without an agent the first prompt stays queued: settled is then every summary with its session.
        if snap.task_summaries.len() >= created
            && snap
                .task_summaries
                .iter()
                .all(|t| (t.status == TaskStatus::Idle || !with_agent) && t.sessions.len() == 1)
        {
            settled_at = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let kinds: Vec<(&'static str, Counters)> = all_counters(&domain)
        .into_iter()
        .zip(before)
        .map(|((name, a), (_, b))| (name, [0, 1, 2, 3].map(|i| a[i] - b[i])))
        .collect();

    // Snapshot latency at that size.
    let mut snap_lat = Vec::with_capacity(snap_reads);
    let mut last = None;
    for _ in 0..snap_reads {
        let s = Instant::now();
        let snap = domain.orgs.read(&org, GetOrganizationSnapshot).await.expect("snapshot");
        snap_lat.push(s.elapsed());
        last = Some(snap);
    }
    snap_lat.sort();
    let snap = match last {
        Some(s) => s,
        None => domain.orgs.read(&org, GetOrganizationSnapshot).await.expect("snapshot"),
    };
    let s = Instant::now();
    let snap_bytes = serde_json::to_vec(&snap).expect("serialize").len();
    let serialize = s.elapsed();
    let snap_summaries = snap.task_summaries.len();

    // Topic: one subscriber on its own arbiter stamps each event as it arrives; this task matches them up.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Arc<TopicEvent>)>();
    let mut sub = domain.orgs.subscribe(&org, "organization").await.expect("subscribe");
    let arbiter = Arbiter::new();
    arbiter.spawn(async move {
        while let Some(ev) = sub.next().await {
            if tx.send((Instant::now(), ev)).is_err() {
                break;
            }
        }
    });
    let initial = rx.recv().await.expect("initial snapshot");
    let mut topic_events = 1usize;
    let mut topic_event_bytes = initial.1.snapshot.get().len();
    let (mut topic_lat, mut topic_create_lat) = (Vec::new(), Vec::new());
    let (mut topic_before_return, mut topic_lost) = (0usize, 0usize);
    for j in 0..topic_tasks {
        tokio::time::sleep(gap).await;
        while let Ok((_, ev)) = rx.try_recv() {
            topic_events += 1;
            topic_event_bytes = ev.snapshot.get().len();
        }
        let s = Instant::now();
        let created = domain.create_task(&repo_key(j % repos), prompt(tasks + j)).await.expect("create task");
        let returned = Instant::now();
        topic_create_lat.push(returned - s);
        let wait_until = returned + Duration::from_secs(10);
        let mut found = false;
        while let Ok(Some((at, ev))) = tokio::time::timeout_at(wait_until.into(), rx.recv()).await {
            topic_events += 1;
            topic_event_bytes = ev.snapshot.get().len();
            let mini: MiniSnapshot = serde_json::from_str(ev.snapshot.get()).expect("parse snapshot");
            if mini.task_summaries.iter().any(|t| t.repo_id == created.task.repo && t.task_id == created.task.task) {
                if at < returned {
                    topic_before_return += 1;
                }
                topic_lat.push(at.saturating_duration_since(returned));
                found = true;
                break;
            }
        }
        if !found {
            topic_lost += 1;
        }
    }
    topic_lat.sort();
    topic_create_lat.sort();

    rt.shutdown().await;
    arbiter.stop();
    common::defer_removal(dir);

    let since = |at: Option<Instant>, from: Instant| at.map(|t| t.saturating_duration_since(from));
    Scenario {
        conc,
        tasks,
        create_secs,
        create_lat,
        failures,
        all_visible_from_start: since(visible_at, start),
        all_visible_from_last: since(visible_at, last_returned),
        settled_from_start: since(settled_at, start),
        settled_from_last: since(settled_at, last_returned),
        polls,
        snap_lat,
        snap_bytes,
        snap_summaries,
        serialize,
        topic_lat,
        topic_create_lat,
        topic_before_return,
        topic_lost,
        topic_events,
        topic_event_bytes,
        kinds,
    }
}

fn label(conc: usize) -> String {
    if conc <= 1 {
        "sequential".to_owned()
    } else {
        format!("concurrency {conc}")
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "timeout".to_owned(), ms)
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let conc = o.get("conc", 16).max(1) as usize;
    println!(
        "foundry domain bench: tasks={} repos={} conc=1,{conc} agent={} cores={} tmp={}",
        o.get("tasks", 1_000),
        o.get("repos", 10),
        o.raw("agent").unwrap_or_else(|| "builtin".to_owned()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp_base().display()
    );
    let probe_start = common::disk_probe();
    let t = Instant::now();
    let mut runs = Vec::new();
    // `seq=0` skips the sequential run.
    let levels = if o.get("seq", 1) == 0 { vec![conc] } else { vec![1, conc] };
    for c in levels {
        if runs.iter().any(|r: &Scenario| r.conc == c) {
            continue;
        }
        runs.push(run(&o, c).await);
    }

    table(
        "(1) task creation (Domain::create_task: org read, user read, repo -> task -> session mutations)",
        &["run", "tasks", "failures", "total s", "tasks/s", "p50 ms", "p99 ms", "max ms"],
        &runs
            .iter()
            .map(|r| {
                vec![
                    label(r.conc),
                    r.tasks.to_string(),
                    r.failures.to_string(),
                    format!("{:.2}", r.create_secs),
                    format!("{:.0}", r.create_lat.len() as f64 / r.create_secs),
                    ms(percentile(&r.create_lat, 0.5)),
                    ms(percentile(&r.create_lat, 0.99)),
                    ms(r.create_lat.last().copied().unwrap_or_default()),
                ]
            })
            .collect::<Vec<_>>(),
    );
    table(
        "(2) propagation to the organization snapshot (polled every ~2 ms)",
        &[
            "run",
            "all visible, from first create ms",
            "all visible, after last return ms",
            "all settled, from first create ms",
            "all settled, after last return ms",
            "polls",
        ],
        &runs
            .iter()
            .map(|r| {
                vec![
                    label(r.conc),
                    opt_ms(r.all_visible_from_start),
                    opt_ms(r.all_visible_from_last),
                    opt_ms(r.settled_from_start),
                    opt_ms(r.settled_from_last),
                    r.polls.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    table(
        "(3) organization snapshot at that size (sequential domain.orgs.read(&org, GetOrganizationSnapshot))",
        &["run", "summaries", "reads", "p50 ms", "p99 ms", "max ms", "serde_json::to_vec bytes", "to_vec ms"],
        &runs
            .iter()
            .map(|r| {
                vec![
                    label(r.conc),
                    r.snap_summaries.to_string(),
                    r.snap_lat.len().to_string(),
                    ms(percentile(&r.snap_lat, 0.5)),
                    ms(percentile(&r.snap_lat, 0.99)),
                    ms(r.snap_lat.last().copied().unwrap_or_default()),
                    r.snap_bytes.to_string(),
                    ms(r.serialize),
                ]
            })
            .collect::<Vec<_>>(),
    );
    table(
        "(4) `organization` topic: create_task return -> subscriber receives a snapshot containing the task",
        &[
            "run",
            "samples",
            "lost",
            "before return",
            "p50 ms",
            "p99 ms",
            "max ms",
            "create p50 ms",
            "create p99 ms",
            "events",
            "event bytes",
        ],
        &runs
            .iter()
            .map(|r| {
                vec![
                    label(r.conc),
                    r.topic_lat.len().to_string(),
                    r.topic_lost.to_string(),
                    r.topic_before_return.to_string(),
                    ms(percentile(&r.topic_lat, 0.5)),
                    ms(percentile(&r.topic_lat, 0.99)),
                    ms(r.topic_lat.last().copied().unwrap_or_default()),
                    ms(percentile(&r.topic_create_lat, 0.5)),
                    ms(percentile(&r.topic_create_lat, 0.99)),
                    r.topic_events.to_string(),
                    r.topic_event_bytes.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    println!(
        "(4) creations one at a time, {} ms apart, after the {} above; 'before return' = the snapshot arrived before \
         create_task returned (latency 0)",
        o.get("gap_ms", 20),
        o.get("tasks", 1_000)
    );
    let mut rows = Vec::new();
    for r in &runs {
        for (name, c) in &r.kinds {
            let per_task = |v: u64| format!("{:.2}", v as f64 / r.tasks.max(1) as f64);
            rows.push(vec![
                label(r.conc),
                name.to_string(),
                c[0].to_string(),
                c[1].to_string(),
                c[2].to_string(),
                c[3].to_string(),
                per_task(c[1]),
                per_task(c[2]),
                format!("{:.2}", c[3] as f64 / c[2].max(1) as f64),
            ]);
        }
    }
    table(
        "(5) work per kind during creation + propagation (KindStats deltas until all summaries settled)",
        &[
            "run",
            "kind",
            "activations",
            "messages",
            "transactions",
            "committed mutations",
            "msgs/task",
            "txns/task",
            "muts/txn",
        ],
        &rows,
    );
    println!("\ndisk: {probe_start:.0} us per file creation at the start, {:.0} at the end", common::disk_probe());
    println!("total bench time {:.1} s", t.elapsed().as_secs_f64());
    common::remove_deferred();
}
