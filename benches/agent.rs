//! Agent session benchmarks (plain program, `harness = false`): many sessions running turns on the built-in agent at
//! the same time, observed through their `session` topics.
//!
//! ```text
//! cargo bench --bench agent -- [name=value ...]
//! ```
//!
//! One scenario per (pace, rounds), each on a fresh runtime with the default `RuntimeConfig::new(dir)` (arbiters =
//! cores) and `Domain::with_agent(rt, Arc::new(BuiltinAgent::new(pace)))`. Setup: one organization, `repos`
//! repositories, `tasks` tasks created with `Domain::create_task` (round robin over the repositories; each runs its
//! initial prompt's turn), `sessions - 1` more sessions per task with `Domain::create_session`. Every session is
//! subscribed to (`domain.sessions.subscribe(&key, "session")`, all subscribers on one extra arbiter, each event
//! stamped on arrival) and the bench waits until every session is settled (no turn running, nothing queued).
//!
//! Measured phase: every session is sent `rounds` prompts at the same time (`Domain::send_message`, concurrently
//! across sessions; within a session the 2nd prompt is sent right after the 1st returned, so it queues as a
//! follow-up). Turn k of a session is complete at the first `session` topic event whose transcript holds k more agent
//! messages containing "Done." than before (for the last turn: and status `idle`, nothing queued). Reported:
//! - turn latency (send_message called -> completion event received), per turn and per session;
//! - wall time (first send -> last session complete) and event rates over it;
//! - `KindStats` deltas over the measured phase for the `session` (and `task`) kinds, to show coalescing.
//!
//! Sizes come from `name=value` arguments or `BENCH_<NAME>` environment variables (argument wins):
//! `tasks` (25), `sessions` per task (4), `repos` (5), `paces` in ms (comma separated, `0,5`), `rounds` (2: runs
//! rounds 1 and 2), `timeout_s` (120).
//! Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`, else the system temp dir) and is deleted.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Arbiter;
use foundry::actors::repository::CreateTask;
use foundry::actors::session::Submitted;
use foundry::actors::task::CreateSession;
use foundry::actors::{Domain, RepoKey, SessionKey};
use foundry::integrations::agent::BuiltinAgent;
use foundry::runtime::{Entity, KindStats, Registry, Runtime, RuntimeConfig};
use futures_util::future::join_all;
use serde::Deserialize;
use tokio::sync::mpsc;

use common::{create_org_with_repos, percentile, table, tmp_base, Opts};

const ORG: &str = "acme";

// ---------------------------------------------------------------------------------------------------------------
// Options, helpers

fn tempdir() -> tempfile::TempDir {
    common::tempdir("foundry-bench-agent-")
}

/// Milliseconds with one digit after the point (this bench's tables are coarser than the others').
fn ms(d: Duration) -> String {
    common::ms_with(d, 1)
}

/// Per-kind counters: messages, transactions, committed mutations.
type Counters = [u64; 3];

fn counters<E: Entity>(reg: &Registry<E>) -> Counters {
    let s: &KindStats = reg.stats();
    [&s.messages, &s.transactions, &s.committed_mutations].map(|c| c.load(Ordering::Relaxed))
}

fn kind_counters(d: &Domain) -> Vec<(&'static str, Counters)> {
    vec![("session", counters(&d.sessions)), ("task", counters(&d.tasks))]
}

// ---------------------------------------------------------------------------------------------------------------
// Observation

/// The part of the `session` topic snapshot the observers look at.
#[derive(Deserialize)]
struct MiniDetail {
    status: String,
    queued: i64,
    transcript: Vec<MiniItem>,
}

#[derive(Deserialize)]
struct MiniItem {
    kind: String,
    role: String,
    text: String,
}

/// One `session` topic event as an observer saw it.
#[derive(Clone, Copy, Debug, Default)]
struct Obs {
    at: Option<Instant>,
    version: u64,
    /// Events this subscriber has received so far (including this one).
    received: u64,
    idle: bool,
    running: bool,
    queued: i64,
    /// Agent messages containing "Done." (one per completed turn).
    done: usize,
    /// Transcript items.
    items: usize,
    /// Words in agent messages (each was one `TextDelta`) and other agent items (tool call, tool result, file
    /// change: one `AgentEvent` each): together the agent events streamed into the session.
    agent_words: usize,
    agent_other: usize,
}

impl Obs {
    fn agent_events(&self) -> usize {
        self.agent_words + self.agent_other
    }
}

fn observe(at: Instant, version: u64, received: u64, json: &str) -> Obs {
    let d: MiniDetail = serde_json::from_str(json).expect("parse session snapshot");
    let mut o = Obs {
        at: Some(at),
        version,
        received,
        idle: d.status == "idle",
        running: d.status == "running",
        queued: d.queued,
        items: d.transcript.len(),
        ..Obs::default()
    };
    for i in d.transcript.iter().filter(|i| i.role == "agent") {
        if i.kind == "message" {
            o.agent_words += i.text.split_whitespace().count();
            if i.text.contains("Done.") {
                o.done += 1;
            }
        } else {
            o.agent_other += 1;
        }
    }
    o
}

/// Per session: the latest observation and the first observation at which each turn target was reached.
struct Watch {
    latest: Obs,
    /// Set when settling ends: the baseline of the measured phase.
    base: Obs,
    /// `reached[k]`: when turn k+1 of the measured phase was first seen complete.
    reached: Vec<Option<Instant>>,
}

// ---------------------------------------------------------------------------------------------------------------
// One scenario

struct Scenario {
    pace_ms: u64,
    rounds: usize,
    sessions: usize,
    setup: Duration,
    settle: Duration,
    /// Per turn k: latency from its send to its completion event.
    turn_lat: Vec<Vec<Duration>>,
    /// First send of a session -> its last turn complete.
    session_lat: Vec<Duration>,
    send_lat: Vec<Duration>,
    unexpected_submits: usize,
    incomplete: usize,
    wall: Duration,
    agent_events: u64,
    items: u64,
    versions: u64,
    received: u64,
    kinds: Vec<(&'static str, Counters)>,
}

async fn run(o: &Opts, pace_ms: u64, rounds: usize) -> Scenario {
    let tasks = o.get("tasks", 25).max(1) as usize;
    let per_task = o.get("sessions", 4).max(1) as usize;
    let repos = o.get("repos", 5).max(1) as usize;
    let timeout = Duration::from_secs(o.get("timeout_s", 120));

    let dir = tempdir();
    let rt = Runtime::start(RuntimeConfig::new(dir.path())).expect("runtime starts");
    let domain = Domain::with_agent(rt.clone(), Arc::new(BuiltinAgent::new(Duration::from_millis(pace_ms))));
    create_org_with_repos(&domain, ORG, repos, None).await;

    // Tasks (each runs its initial prompt's turn) and their extra sessions.
    let t = Instant::now();
    let created = join_all((0..tasks).map(|i| {
        let domain = &domain;
        async move {
            let prompt = CreateTask {
                prompt: format!("Investigate the slow checkout page number {i} in the storefront"),
                title: None,
                branch: None,
                model: None,
                user_id: None,
            };
            let c = domain.create_task(&RepoKey::new(ORG, format!("r{}", i % repos)), prompt).await.expect("task");
            let mut keys = vec![c.task.session(&c.session_id)];
            for _ in 1..per_task {
                let s = CreateSession { name: None, model: None, user_id: None };
                let id = domain.create_session(&c.task, s).await.expect("create session");
                keys.push(c.task.session(&id));
            }
            keys
        }
    }))
    .await;
    let keys: Vec<SessionKey> = created.into_iter().flatten().collect();
    let setup_time = t.elapsed();

    // One subscriber per session, all on one extra arbiter; events are stamped on arrival and parsed there.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Obs)>();
    let arbiter = Arbiter::new();
    for (idx, key) in keys.iter().enumerate() {
        let mut sub = domain.sessions.subscribe(key, "session").await.expect("subscribe");
        let tx = tx.clone();
        arbiter.spawn(async move {
            let mut received = 0;
            while let Some(ev) = sub.next().await {
                let at = Instant::now();
                received += 1;
                if tx.send((idx, observe(at, ev.version, received, ev.snapshot.get()))).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut watches: Vec<Watch> = keys
        .iter()
        .map(|_| Watch { latest: Obs::default(), base: Obs::default(), reached: vec![None; rounds] })
        .collect();

    // Settle: every session has seen its first event, runs no turn and has nothing queued (the first session of each
    // task has answered its initial prompt).
    let t = Instant::now();
    let settled = |w: &Watch| w.latest.at.is_some() && !w.latest.running && w.latest.queued == 0;
    while !watches.iter().all(settled) {
        match tokio::time::timeout(timeout, rx.recv()).await {
            Ok(Some((idx, obs))) => watches[idx].latest = obs,
            _ => panic!("sessions did not settle within {timeout:?}"),
        }
    }
    let settle = t.elapsed();
    for w in &mut watches {
        w.base = w.latest;
    }

    // Measured phase: every session gets `rounds` prompts at once.
    let before = kind_counters(&domain);
    let start = Instant::now();
    let sends: Vec<Vec<(Instant, Duration, Submitted)>> = join_all(keys.iter().enumerate().map(|(idx, key)| {
        let domain = &domain;
        async move {
            let mut out = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let text = format!("Round {r}: add input validation to handler {idx} of the billing service");
                let s = Instant::now();
                let submitted = domain.send_message(key, &text, None).await.expect("send_message");
                out.push((s, s.elapsed(), submitted));
            }
            out
        }
    }))
    .await;

    let complete = |w: &Watch| w.reached.iter().all(Option::is_some);
    let deadline = Instant::now() + timeout;
    while !watches.iter().all(complete) {
        let Ok(Some((idx, obs))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await else { break };
        let w = &mut watches[idx];
        w.latest = obs;
        for k in 0..rounds {
            let last = k + 1 == rounds;
            let done = obs.done > w.base.done + k && (!last || (obs.idle && obs.queued == 0));
            if done && w.reached[k].is_none() {
                w.reached[k] = obs.at;
            }
        }
    }
    let after = kind_counters(&domain);
    let incomplete = watches.iter().filter(|w| !complete(w)).count();

    let mut turn_lat = vec![Vec::new(); rounds];
    let mut session_lat = Vec::new();
    let mut send_lat = Vec::new();
    let mut unexpected_submits = 0;
    let mut end = start;
    for (w, s) in watches.iter().zip(&sends) {
        for (k, (sent, call, submitted)) in s.iter().enumerate() {
            send_lat.push(*call);
            let expected = if k == 0 { Submitted::Started } else { Submitted::Queued };
            if *submitted != expected {
                unexpected_submits += 1;
            }
            if let Some(at) = w.reached[k] {
                turn_lat[k].push(at.saturating_duration_since(*sent));
                end = end.max(at);
            }
        }
        if let (Some(at), Some((first, _, _))) = (w.reached[rounds - 1], s.first()) {
            session_lat.push(at.saturating_duration_since(*first));
        }
    }
    for l in &mut turn_lat {
        l.sort();
    }
    session_lat.sort();
    send_lat.sort();

    let sum = |f: &dyn Fn(&Watch) -> u64| watches.iter().map(f).sum::<u64>();
    let agent_events = sum(&|w| (w.latest.agent_events() - w.base.agent_events()) as u64);
    let items = sum(&|w| (w.latest.items - w.base.items) as u64);
    let versions = sum(&|w| w.latest.version - w.base.version);
    let received = sum(&|w| w.latest.received - w.base.received);

    rt.shutdown().await;
    arbiter.stop();
    drop(dir);

    Scenario {
        pace_ms,
        rounds,
        sessions: keys.len(),
        setup: setup_time,
        settle,
        turn_lat,
        session_lat,
        send_lat,
        unexpected_submits,
        incomplete,
        wall: end - start,
        agent_events,
        items,
        versions,
        received,
        kinds: after
            .into_iter()
            .zip(before)
            .map(|((name, a), (_, b))| (name, [0, 1, 2].map(|i| a[i] - b[i])))
            .collect(),
    }
}

fn label(s: &Scenario) -> String {
    format!("pace {} ms, {} round{}", s.pace_ms, s.rounds, if s.rounds == 1 { "" } else { "s" })
}

fn lat_row(s: &Scenario, what: &str, lat: &[Duration]) -> Vec<String> {
    vec![
        label(s),
        what.to_owned(),
        lat.len().to_string(),
        ms(percentile(lat, 0.5)),
        ms(percentile(lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    ]
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64().max(1e-9))
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let paces = o.list("paces", &[0, 5]);
    let max_rounds = o.get("rounds", 2).max(1) as usize;
    println!(
        "foundry agent bench: tasks={} sessions/task={} repos={} paces={:?} ms rounds=1..={max_rounds} cores={} tmp={}",
        o.get("tasks", 25),
        o.get("sessions", 4),
        o.get("repos", 5),
        paces,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp_base().display()
    );
    let t = Instant::now();
    let mut runs = Vec::new();
    for &pace in &paces {
        for rounds in 1..=max_rounds {
            runs.push(run(&o, pace, rounds).await);
        }
    }

    table(
        "(0) setup (create_task x tasks + create_session, concurrently) and settling (initial turns done)",
        &["run", "sessions", "setup ms", "settle ms"],
        &runs.iter().map(|s| vec![label(s), s.sessions.to_string(), ms(s.setup), ms(s.settle)]).collect::<Vec<_>>(),
    );

    let mut rows = Vec::new();
    for s in &runs {
        rows.push(lat_row(s, "send_message call", &s.send_lat));
        for (k, lat) in s.turn_lat.iter().enumerate() {
            let what = if k == 0 { "turn 1".to_owned() } else { format!("turn {} (follow-up)", k + 1) };
            rows.push(lat_row(s, &what, lat));
        }
        if s.rounds > 1 {
            rows.push(lat_row(s, "session (first send -> last turn)", &s.session_lat));
        }
    }
    table(
        "(1) turn latency: send_message called -> `session` topic event with the turn's \"Done.\" (last turn: + idle)",
        &["run", "measure", "samples", "p50 ms", "p99 ms", "max ms"],
        &rows,
    );

    table(
        "(2) wall time (first send -> last session complete) and rates over it, all sessions together",
        &[
            "run",
            "sessions",
            "incomplete",
            "bad submits",
            "wall ms",
            "agent events",
            "transcript items",
            "topic versions",
            "topic events recv",
            "agent ev/s",
            "items/s",
            "topic recv/s",
            "items+recv/s",
        ],
        &runs
            .iter()
            .map(|s| {
                vec![
                    label(s),
                    s.sessions.to_string(),
                    s.incomplete.to_string(),
                    s.unexpected_submits.to_string(),
                    ms(s.wall),
                    s.agent_events.to_string(),
                    s.items.to_string(),
                    s.versions.to_string(),
                    s.received.to_string(),
                    rate(s.agent_events, s.wall),
                    rate(s.items, s.wall),
                    rate(s.received, s.wall),
                    rate(s.items + s.received, s.wall),
                ]
            })
            .collect::<Vec<_>>(),
    );
    println!(
        "(2) agent events = AgentEvents streamed (TextDelta words + tool call/result + file change, from the final \
         transcripts); transcript items = rows added (user prompts, agent messages, tool/file items); topic versions \
         = `session` topic versions committed; topic events recv = snapshots delivered to the one subscriber per \
         session (watch channel: a slow subscriber skips versions); 'bad submits' = send_message not returning \
         Started (1st prompt) / Queued (follow-up)"
    );

    let mut rows = Vec::new();
    for s in &runs {
        let turns = (s.sessions * s.rounds) as f64;
        for (name, c) in &s.kinds {
            rows.push(vec![
                label(s),
                name.to_string(),
                c[0].to_string(),
                c[1].to_string(),
                c[2].to_string(),
                format!("{:.1}", c[0] as f64 / turns),
                format!("{:.1}", c[1] as f64 / turns),
                format!("{:.2}", c[2] as f64 / c[1].max(1) as f64),
                format!("{:.2}", s.agent_events as f64 / c[1].max(1) as f64),
            ]);
        }
    }
    table(
        "(3) KindStats deltas over the measured phase (send -> all complete)",
        &[
            "run",
            "kind",
            "messages",
            "transactions",
            "committed mutations",
            "msgs/turn",
            "txns/turn",
            "muts/txn",
            "agent events/txn",
        ],
        &rows,
    );
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
}
