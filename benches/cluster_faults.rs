//! Cluster mode under faults, as processes (issue 15, slice 6 and its "Goals, measured by that harness"): a private
//! PostgreSQL (fsync on) and NATS, three `foundry serve --cluster` processes (`n1..n3`, 10 s leases, own data
//! directories, one token key), each reaching PostgreSQL and NATS through its own fault proxy; a paced, bounded load
//! of repository creations round-robin over the nodes (`tests/cluster_support/chaos.rs`), and per scenario a fresh
//! cluster, its faults, then the checker and one table. Plain program (`harness = false`).
//!
//! ```text
//! cargo bench --bench cluster_faults -- [all|cost|cost-small|kill|stop|term|blackhole ...] [secs=N] [rate=N] [quiet=N]
//! ```
//!
//! `FOUNDRY_BIN=<path>` runs the nodes from another build of `foundry` (to compare two builds side by side).
//!
//! - cost: no faults; 200 creations/s for `secs` (30) unkeyed (every node forwards to the organization's node),
//!   then the same keyed (`Idempotency-Key`): latency p50/p99, PostgreSQL transactions/s, bytes logged.
//! - cost-small: no faults; one repository per organization, then 200 small mutations/s for `secs` (30), round-robin
//!   over the nodes: `PUT /v1/me/default-model` by one of 12 users in turn, flipping between two models (one profile
//!   row of an existing user actor; no audit entry, no outbox, no new actor: `chaos::OpKind::SetDefaultModel` says
//!   why it is the cheapest real mutation). The same cost rows as `cost`.
//! - kill: kill -9 of a random node every 20 s (first at 20 s), back 5 s later with its data directory wiped.
//! - stop: at 10 s, a node's PostgreSQL proxy holds its bytes, 0.3 s later SIGSTOP for 15 s (> the 10 s lease); the
//!   proxy lets the held commits through (they must be refused), SIGCONT a second later.
//! - term: rolling SIGTERM and restart of each node, one every 15 s from 10 s.
//! - blackhole: at 10 s one node's PostgreSQL and NATS proxies hold everything for 15 s.
//!
//! Every fault scenario sends keyed creations (each op's id as `Idempotency-Key`; every 20th answer thrown away and
//! the op retried elsewhere), so that retries are exactly-once; see `LoadConfig::keyed` for what that costs today.
//! During a fault scenario's load a WebSocket watcher on every node follows four organizations' topics
//! (`tests/cluster_support/topics.rs`; not in the cost scenarios, whose figures it would disturb). Every scenario's
//! checker also counts each repository's `repository.added` audit entry (through the node once outbox delivery
//! settled, polled up to 30 s, and from the audit logs rebuilt from PostgreSQL), compares the organizations' summaries
//! with every repository, and reports topic version regressions: any nonzero figure there misses a safety goal.

#[path = "../tests/cluster_support/mod.rs"]
mod cluster_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::chaos::{self, Journal, LoadConfig, Observed, OpKind, Target, Verdict};
use cluster_support::procs::{metric, ProcCluster};
use cluster_support::topics::TopicWatch;
use cluster_support::{effects, rebuild};

const FOUNDRY: &str = env!("CARGO_BIN_EXE_foundry");
const TTL_SECS: u64 = 10;
const ORGS: usize = 12;
/// Organizations the topic watchers follow (on every node).
const WATCHED: usize = 4;
const SCENARIOS: [&str; 6] = ["cost", "cost-small", "kill", "stop", "term", "blackhole"];

#[derive(Clone, Copy)]
struct Args {
    secs: Option<u64>,
    rate: f64,
    quiet: u64,
}

fn main() {
    let mut scenarios = Vec::new();
    let mut args = Args { secs: None, rate: 200.0, quiet: 10 };
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        match arg.split_once('=') {
            Some(("secs", v)) => args.secs = Some(v.parse().expect("secs=N")),
            Some(("rate", v)) => args.rate = v.parse().expect("rate=N"),
            Some(("quiet", v)) => args.quiet = v.parse().expect("quiet=N"),
            Some(_) => panic!("unknown argument {arg}"),
            None if arg == "all" => scenarios.extend(SCENARIOS.map(String::from)),
            None if SCENARIOS.contains(&arg.as_str()) => scenarios.push(arg),
            None => panic!("unknown scenario {arg}: one of {SCENARIOS:?} or all"),
        }
    }
    if scenarios.is_empty() {
        scenarios.extend(SCENARIOS.map(String::from));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for s in scenarios {
            let started = Instant::now();
            let ok = run(&s, args).await;
            println!("({s}: {:.0} s wall)\n", started.elapsed().as_secs_f64());
            if !ok {
                eprintln!("scenario {s} missed a safety goal (see its table)");
            }
        }
    });
}

/// A running cluster with the load's organizations made.
struct Setup {
    cluster: ProcCluster,
    client: reqwest::Client,
    target: Arc<Target>,
    pg: tokio_postgres::Client,
    /// Topic watchers, stopped by the checker once it has read through the node.
    watch: Option<TopicWatch>,
}

async fn setup(prefix: &str) -> Option<Setup> {
    // `FOUNDRY_BIN=<path>` runs another build (an older one, side by side with this one).
    let binary = std::env::var_os("FOUNDRY_BIN").map_or_else(|| std::path::PathBuf::from(FOUNDRY), Into::into);
    let cluster = ProcCluster::start(&binary, 3, TTL_SECS, true).await?;
    let client = foundry::integrations::http_client_builder().build().unwrap();
    assert!(cluster.all_ready(&client, Duration::from_secs(60)).await, "{}", cluster.log_tail(0, 20));
    let bases = cluster.bases();
    let token = chaos::sign_in(&client, &bases, "bench", Duration::from_secs(30)).await;
    let orgs: Vec<String> = (0..ORGS).map(|i| format!("org-{i}")).collect();
    chaos::create_orgs(&client, &bases, &token, &orgs, Duration::from_secs(30)).await;
    let pg = chaos::pg_client(&cluster.pg.url()).await;
    let target = Arc::new(Target::new(bases, token, orgs, prefix));
    Some(Setup { cluster, client, target, pg, watch: None })
}

fn fault_load(secs: u64) -> LoadConfig {
    LoadConfig {
        rate: 200.0,
        max_in_flight: 32,
        duration: Duration::from_secs(secs),
        retry_for: Duration::from_secs(30),
        attempt_timeout: Duration::from_secs(5),
        lose_answer_every: 20,
        keyed: true,
        op: OpKind::CreateRepo,
    }
}

/// One fault and the organization shards its node held when it struck.
struct Fault {
    what: String,
    at: Instant,
    shards: BTreeSet<u16>,
}

fn node_of(cluster: &ProcCluster, owner: &Option<String>) -> Option<usize> {
    let id = owner.as_deref()?.split('/').next()?;
    cluster.slots.iter().position(|s| s.id == id)
}

async fn held_by(s: &Setup, node: usize) -> BTreeSet<u16> {
    let shards: Vec<_> = s.target.orgs.iter().map(|o| foundry::runtime::shard_of(o)).collect();
    let owners = chaos::owners(&s.pg, &shards).await;
    owners.iter().filter(|(_, o)| node_of(&s.cluster, o) == Some(node)).map(|(sh, _)| *sh).collect()
}

/// Sum over the running nodes of a `/metrics` counter.
async fn total(s: &Setup, name: &str) -> u64 {
    let mut sum = 0;
    for i in 0..s.cluster.slots.len() {
        if let Some(text) = s.cluster.metrics(&s.client, i).await {
            sum += metric(&text, name).unwrap_or(0);
        }
    }
    sum
}

struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.push((k.into(), v.into()));
    }

    fn print(&self, title: &str) {
        println!("\n### {title}\n\n| measure | value |\n|---|---|");
        for (k, v) in &self.0 {
            println!("| {k} | {v} |");
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn in_s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn load_rows(t: &mut Table, j: &Journal) {
    let mut lat: Vec<Duration> = j.acked().map(|(o, a)| a.at - o.sent).collect();
    lat.sort();
    let span = (j.ended.unwrap() - j.started.unwrap()).as_secs_f64();
    let bounces: u32 = j.ops.iter().map(|o| o.not_owner).sum();
    t.row(
        "ops sent / acknowledged / given up",
        format!("{} / {} / {}", j.ops.len(), lat.len(), j.ops.len() - lat.len()),
    );
    t.row("acknowledged per second", format!("{:.0}", lat.len() as f64 / span));
    t.row(
        "ops started > 50 ms late / never started (in-flight bound of 32)",
        format!("{} / {}", j.late_starts, j.not_sent),
    );
    t.row(
        "latency p50 / p99 / max (sent → ack, retries included)",
        format!(
            "{} / {} / {}",
            ms(chaos::percentile(&lat, 50.0)),
            ms(chaos::percentile(&lat, 99.0)),
            ms(*lat.last().unwrap_or(&Duration::ZERO))
        ),
    );
    t.row("503 not_owner answers (op moved on to the next node)", bounces.to_string());
}

fn fault_rows(t: &mut Table, j: &Journal, faults: &[Fault], goal: Duration) -> bool {
    let mut ok = true;
    for f in faults {
        let per_shard = chaos::failover(j, f.at, &f.shards);
        let mut times: Vec<Duration> = per_shard.values().flatten().copied().collect();
        times.sort();
        let never = per_shard.values().filter(|d| d.is_none()).count();
        let max = times.last().copied().unwrap_or_default();
        let verdict = if never == 0 && max <= goal { "within" } else { "MISSED" };
        ok &= never == 0;
        t.row(
            format!("{} ({} shards of the load): failover max / p50", f.what, f.shards.len()),
            format!(
                "{} / {}{} — {verdict} the {} s goal",
                in_s(max),
                in_s(chaos::percentile(&times, 50.0)),
                if never > 0 { format!(", {never} shards never acknowledged again") } else { String::new() },
                goal.as_secs()
            ),
        );
    }
    let gaps = chaos::max_ack_gap(j);
    if let Some((shard, (gap, from))) = gaps.iter().max_by_key(|(_, (g, _))| *g) {
        let into = |at: Instant| at.saturating_duration_since(j.started.unwrap()).as_secs_f64();
        t.row(
            "longest stretch without an ack on one shard",
            format!("{} (shard {shard}, {:.2}–{:.2} s into the load)", in_s(*gap), into(*from), into(*from + *gap)),
        );
    }
    ok
}

/// Quiet, then the checks: through a random node, every node stopped, the organizations rebuilt from PostgreSQL,
/// the log audited. Adds the rows; false when a safety goal was missed.
async fn check(s: &mut Setup, t: &mut Table, journal: &Journal, quiet: u64) -> bool {
    let ready = s.cluster.all_ready(&s.client, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let reader = (journal.ops.len() * 7919) % s.cluster.slots.len();
    let via_node = chaos::read_through(
        &s.client,
        &s.target.bases[reader],
        &s.target.token,
        &s.target.orgs,
        Duration::from_secs(60),
    )
    .await;
    let base = &s.target.bases[reader];
    let effects = effects::through_node(&s.client, base, &s.target.token, &via_node, Duration::from_secs(30)).await;
    let topics = match s.watch.take() {
        Some(watch) => Some(watch.stop().await),
        None => None,
    };
    s.cluster.term_all(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let rebuilt = rebuild::rebuild(&s.cluster.pg.url(), &s.target.orgs, dir.path()).await;
    let audit = chaos::audit_log(&s.pg).await;
    let v: Verdict =
        chaos::check(journal, Observed { via_node: &via_node, effects: &effects, rebuilt: &rebuilt, topics });
    let list =
        |v: &[String]| if v.is_empty() { "0".to_owned() } else { format!("{} {:?}", v.len(), &v[..v.len().min(5)]) };
    t.row("cluster ready again after the load", ready.to_string());
    t.row(format!("acknowledged ops lost, read through n{}", reader + 1), list(&v.lost_via_node));
    t.row("acknowledged ops lost, rebuilt from PostgreSQL", list(&v.lost_via_log));
    t.row("ops applied twice (listed twice, or a retry answered 409 conflict)", list(&v.applied_twice));
    t.row("node state = PostgreSQL rebuild (organizations differing)", list(&v.node_vs_log));
    t.row("unacknowledged ops applied (allowed, once)", v.unacked_applied.to_string());
    let (missing, twice) = (v.audit_missing.len(), v.audit_duplicated.len());
    t.row(
        format!(
            "outbox effects: audit entries missing / duplicated (`repository.added`, through n{} and rebuilt)",
            reader + 1
        ),
        format!(
            "{missing} / {twice}{}",
            if missing + twice > 0 {
                format!(" {:?}", v.audit_missing.iter().chain(&v.audit_duplicated).take(5).collect::<Vec<_>>())
            } else {
                String::new()
            }
        ),
    );
    t.row("outbox effects: audit entries naming no repository of their organization", list(&v.audit_orphans));
    t.row(
        "outbox effects settled (audit entries matching through the node, polled every 1 s up to 30 s)",
        v.effects_settled_in.map_or("NOT within 30 s".to_owned(), |d| format!("in {}", in_s(d))),
    );
    t.row(
        format!(
            "summaries differing from their children ({} repositories read through the node, {} rebuilt)",
            effects.repositories, rebuilt.repositories
        ),
        list(&v.summaries_differing),
    );
    match &v.topics {
        Some(topics) => {
            t.row(
                format!("topic frames received / connections (a watcher per node, {WATCHED} organizations each)"),
                format!("{} / {}", topics.frames, topics.connections),
            );
            t.row("topic version regressions", list(&topics.regressions));
            t.row(
                "topic frames repeating a version / patches not following the version held / refusals",
                format!("{} / {} / {:?}", topics.repeats, topics.base_gaps, topics.errors),
            );
        }
        None => t.row("topic version regressions", "not watched (cost scenario)"),
    }
    t.row("answers thrown away / retries answered by a replay", format!("{} / {}", v.lost_answers, v.replays));
    if !v.errors.is_empty() {
        t.row("given up, by last answer", format!("{:?}", v.errors));
    }
    t.row(
        "log audit: entries / actors / violations",
        format!("{} / {} / {}", audit.entries, audit.actors, list(&audit.violations)),
    );
    t.row("log entries appended after a later epoch began (late commits)", list(&audit.late_commits));
    v.clean() && audit.violations.is_empty() && audit.late_commits.is_empty()
}

async fn run(name: &str, args: Args) -> bool {
    let Some(mut s) = setup(name).await else {
        eprintln!("skipped {name}: PostgreSQL or nats-server not installed");
        return true;
    };
    if !name.starts_with("cost") {
        let watched = &s.target.orgs[..WATCHED];
        s.watch = Some(TopicWatch::start(&s.target.bases, &s.target.token, watched));
    }
    let mut t = Table(Vec::new());
    let (title, ok) = match name {
        "cost" => cost(&mut s, &mut t, args).await,
        "cost-small" => cost_small(&mut s, &mut t, args).await,
        "kill" => kill(&mut s, &mut t, args).await,
        "stop" => stop(&mut s, &mut t, args).await,
        "term" => term(&mut s, &mut t, args).await,
        "blackhole" => blackhole(&mut s, &mut t, args).await,
        _ => unreachable!(),
    };
    t.print(&title);
    ok
}

async fn cost(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(30);
    // Warm-up: every organization's actors open on their nodes.
    let warm = LoadConfig {
        rate: 50.0,
        duration: Duration::from_secs(3),
        lose_answer_every: 0,
        keyed: false,
        ..fault_load(3)
    };
    let mut all = chaos::run_load(s.client.clone(), s.target.clone(), warm).await;
    for keyed in [false, true] {
        let prefix = if keyed { "keyed" } else { "routed" };
        let target = Arc::new(Target { prefix: prefix.into(), ..clone_target(&s.target) });
        let cfg = LoadConfig { rate: args.rate, lose_answer_every: 0, keyed, ..fault_load(secs) };
        let journal = measure(s, t, prefix, target, cfg).await;
        all.ops.extend(journal.ops);
        all.late_starts += journal.late_starts;
        all.not_sent += journal.not_sent;
        all.ended = journal.ended;
    }
    let ok = check(s, t, &all, args.quiet).await;
    (format!("cost: {} creations/s, no faults, 3 nodes ({secs} s unkeyed, then {secs} s keyed)", args.rate), ok)
}

/// Runs one measured load and adds its rows, each named after `prefix`: the load's, and the commit log's cost from
/// the nodes' counters.
async fn measure(s: &Setup, t: &mut Table, prefix: &str, target: Arc<Target>, cfg: LoadConfig) -> Journal {
    let names = [
        "foundry_cluster_log_transactions_total",
        "foundry_cluster_log_appends_total",
        "foundry_cluster_log_bytes_total",
    ];
    let mut before = Vec::new();
    for n in names {
        before.push(total(s, n).await);
    }
    let journal = chaos::run_load(s.client.clone(), target, cfg).await;
    let span = (journal.ended.unwrap() - journal.started.unwrap()).as_secs_f64();
    let mut delta = Vec::new();
    for (n, b) in names.iter().zip(before) {
        delta.push(total(s, n).await.saturating_sub(b));
    }
    let acked = journal.acked().count().max(1) as f64;
    let mut sub = Table(Vec::new());
    load_rows(&mut sub, &journal);
    for (k, v) in sub.0 {
        t.row(format!("{prefix}: {k}"), v);
    }
    t.row(format!("{prefix}: PostgreSQL transactions/s (commit log)"), format!("{:.0}", delta[0] as f64 / span));
    t.row(
        format!("{prefix}: log entries per op / per transaction"),
        format!("{:.2} / {:.2}", delta[1] as f64 / acked, delta[1] as f64 / delta[0].max(1) as f64),
    );
    t.row(
        format!("{prefix}: bytes logged per entry / per op"),
        format!("{:.0} / {:.0}", delta[2] as f64 / delta[1].max(1) as f64, delta[2] as f64 / acked),
    );
    journal
}

async fn cost_small(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(30);
    // One repository per organization, journaled like any creation so that the checker covers them.
    let once = LoadConfig { lose_answer_every: 0, keyed: false, ..fault_load(secs) };
    let mut created = Journal { started: Some(Instant::now()), ..Journal::default() };
    for (i, org) in s.target.orgs.iter().enumerate() {
        let op = format!("small-{i}");
        created.ops.push(chaos::send_op(&s.client, &s.target, op, org.clone(), i % 3, once).await);
    }
    created.ended = Some(Instant::now());
    // One user per organization: user actors spread over the shards (one user would put every op on one actor).
    let mut users = Vec::new();
    for i in 0..s.target.orgs.len() {
        users.push(chaos::sign_in(&s.client, &s.target.bases, &format!("small-{i}"), Duration::from_secs(30)).await);
    }
    let models = chaos::two_models(&s.client, &s.target.bases[0], &users[0]).await;
    let target = Arc::new(Target { prefix: "small".into(), users, models, ..clone_target(&s.target) });
    let small = LoadConfig { lose_answer_every: 0, keyed: false, op: OpKind::SetDefaultModel, ..fault_load(secs) };
    // Warm-up: every user's actor open on its node, every node's connections made.
    let warm = LoadConfig { rate: 50.0, duration: Duration::from_secs(3), ..small };
    chaos::run_load(s.client.clone(), target.clone(), warm).await;
    let journal = measure(s, t, "small", target, LoadConfig { rate: args.rate, ..small }).await;
    let refused: usize = journal.ops.iter().filter(|o| o.ack.is_none()).count();
    t.row("small: ops not acknowledged (must be 0 without faults)", refused.to_string());
    let ok = check(s, t, &created, args.quiet).await;
    let title = format!(
        "cost-small: {} small mutations/s (`PUT /v1/me/default-model`, {} users), no faults, 3 nodes ({secs} s)",
        args.rate,
        s.target.orgs.len()
    );
    (title, ok && refused == 0)
}

fn clone_target(t: &Target) -> Target {
    Target {
        bases: t.bases.clone(),
        token: t.token.clone(),
        orgs: t.orgs.clone(),
        prefix: t.prefix.clone(),
        users: t.users.clone(),
        models: t.models.clone(),
    }
}

/// Small deterministic generator (the victims).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn kill(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(75);
    let load = tokio::spawn(chaos::run_load(
        s.client.clone(),
        s.target.clone(),
        LoadConfig { rate: args.rate, ..fault_load(secs) },
    ));
    let start = Instant::now();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut faults = Vec::new();
    for k in 1.. {
        let at = start + Duration::from_secs(20 * k);
        if at + Duration::from_secs(10) > start + Duration::from_secs(secs) {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let victim = rng.below(3);
        let shards = held_by(s, victim).await;
        let when = Instant::now();
        s.cluster.kill(victim);
        s.cluster.wipe(victim);
        faults.push(Fault {
            what: format!("kill -9 n{} at {:.0} s", victim + 1, (when - start).as_secs_f64()),
            at: when,
            shards,
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        s.cluster.spawn(victim);
    }
    let journal = load.await.unwrap();
    load_rows(t, &journal);
    let live = fault_rows(t, &journal, &faults, Duration::from_secs(13));
    let ok = check(s, t, &journal, args.quiet).await;
    (
        format!("kill: kill -9 of a random node every 20 s, back after 5 s with its disk wiped ({secs} s of load)"),
        ok && live,
    )
}

async fn stop(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(50);
    let load = tokio::spawn(chaos::run_load(
        s.client.clone(),
        s.target.clone(),
        LoadConfig { rate: args.rate, ..fault_load(secs) },
    ));
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let shards: Vec<_> = s.target.orgs.iter().map(|o| foundry::runtime::shard_of(o)).collect();
    let owners = chaos::owners(&s.pg, &shards).await;
    let victim = node_of(&s.cluster, &owners[&shards[0].0]).unwrap_or(0);
    let held = held_by(s, victim).await;
    let fenced_before = frozen_metric(s, victim, "foundry_cluster_log_fenced_total").await;
    s.cluster.slots[victim].pg_proxy.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop_at = Instant::now();
    s.cluster.stop(victim);
    tokio::time::sleep(Duration::from_secs(15)).await;
    s.cluster.slots[victim].pg_proxy.resume();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cont_at = Instant::now();
    s.cluster.cont(victim);
    let journal = load.await.unwrap();
    let fenced = frozen_metric(s, victim, "foundry_cluster_log_fenced_total").await.saturating_sub(fenced_before);
    load_rows(t, &journal);
    let faults = [Fault {
        what: format!("SIGSTOP n{} at {:.0} s for 15 s", victim + 1, (stop_at - start).as_secs_f64()),
        at: stop_at,
        shards: held.clone(),
    }];
    let live = fault_rows(t, &journal, &faults, Duration::from_secs(13));
    // In flight at the node when it froze, on its own shards, answered by it after the thaw: only a commit made
    // under the lost lease could be acknowledged so.
    let late_acks = journal
        .acked()
        .filter(|(_, a)| a.node == victim && a.attempt_sent < stop_at && a.at >= cont_at)
        .filter(|(o, _)| held.contains(&foundry::runtime::shard_of(&o.org).0))
        .count();
    let after_thaw = journal
        .acked()
        .filter(|(_, a)| a.node == victim && a.at >= cont_at && a.at < cont_at + Duration::from_secs(5))
        .count();
    t.row("acks by the frozen node for ops it had in flight on its shards (must be 0)", late_acks.to_string());
    t.row("its appends refused by the fence after the thaw", fenced.to_string());
    t.row("acks by it in the 5 s after the thaw (ops sent after, forwarded or re-acquired)", after_thaw.to_string());
    let ok = check(s, t, &journal, args.quiet).await;
    (format!("stop: SIGSTOP of the node holding org-0 for 15 s (> 10 s lease) with a commit in flight ({secs} s of load)"), ok && live && late_acks == 0)
}

async fn frozen_metric(s: &Setup, node: usize, name: &str) -> u64 {
    let text = s.cluster.metrics(&s.client, node).await.unwrap_or_default();
    metric(&text, name).unwrap_or(0)
}

async fn term(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(60);
    let load = tokio::spawn(chaos::run_load(
        s.client.clone(),
        s.target.clone(),
        LoadConfig { rate: args.rate, ..fault_load(secs) },
    ));
    let start = Instant::now();
    let mut faults = Vec::new();
    let mut exits = Vec::new();
    let mut timeline = Vec::new();
    for i in 0..3 {
        tokio::time::sleep_until((start + Duration::from_secs(10 + 15 * i as u64)).into()).await;
        let shards = held_by(s, i).await;
        let at = Instant::now();
        let status = s.cluster.term(i, Duration::from_secs(60)).await;
        exits.push(format!(
            "n{} {} in {}",
            i + 1,
            if status.success() { "exited 0" } else { "FAILED" },
            in_s(at.elapsed())
        ));
        faults.push(Fault { what: format!("SIGTERM n{} at {:.0} s", i + 1, (at - start).as_secs_f64()), at, shards });
        s.cluster.spawn(i);
        // When the restarted node holds its shards again (`/readyz`), to place a stretch without acks in time.
        let next = start + Duration::from_secs(10 + 15 * (i as u64 + 1));
        let spawned = Instant::now();
        while !s.cluster.is_ready(&s.client, i).await && Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let since = |at: Instant| (at - start).as_secs_f64();
        timeline.push(format!(
            "n{}: SIGTERM {:.2} s, exited {:.2} s, ready again {:.2} s",
            i + 1,
            since(at),
            since(spawned),
            since(Instant::now())
        ));
    }
    let journal = load.await.unwrap();
    load_rows(t, &journal);
    t.row("graceful exits", exits.join(", "));
    t.row("timeline (from the start of the bench's clock, ≈ the load's)", timeline.join("; "));
    let live = fault_rows(t, &journal, &faults, Duration::from_secs(2));
    let ok = check(s, t, &journal, args.quiet).await;
    (format!("term: rolling SIGTERM + restart of each node, one every 15 s ({secs} s of load)"), ok && live)
}

async fn blackhole(s: &mut Setup, t: &mut Table, args: Args) -> (String, bool) {
    let secs = args.secs.unwrap_or(50);
    let load = tokio::spawn(chaos::run_load(
        s.client.clone(),
        s.target.clone(),
        LoadConfig { rate: args.rate, ..fault_load(secs) },
    ));
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let victim = 1;
    let held = held_by(s, victim).await;
    let at = Instant::now();
    s.cluster.blackhole(victim, true);
    tokio::time::sleep(Duration::from_secs(15)).await;
    s.cluster.blackhole(victim, false);
    let healed = Instant::now();
    let journal = load.await.unwrap();
    load_rows(t, &journal);
    let faults = [Fault {
        what: format!("blackhole n{} (PostgreSQL + NATS) at {:.0} s for 15 s", victim + 1, (at - start).as_secs_f64()),
        at,
        shards: held.clone(),
    }];
    let live = fault_rows(t, &journal, &faults, Duration::from_secs(13));
    let cut_acks = journal
        .acked()
        .filter(|(_, a)| a.node == victim && a.at > at + Duration::from_secs(TTL_SECS) && a.at < healed)
        .filter(|(o, _)| held.contains(&foundry::runtime::shard_of(&o.org).0))
        .count();
    t.row(
        "acks by the cut-off node on its former shards after its lease ran out, before healing (must be 0)",
        cut_acks.to_string(),
    );
    let ok = check(s, t, &journal, args.quiet).await;
    (format!("blackhole: one node's PostgreSQL and NATS held for 15 s ({secs} s of load)"), ok && live && cut_acks == 0)
}
