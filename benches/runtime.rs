//! Runtime benchmarks (plain program, `harness = false`).
//!
//! ```text
//! cargo bench --bench runtime -- [a|b|c|d|e|f|all] [name=value ...]
//! ```
//!
//! Sections:
//! - a: read round trip through the Registry vs a raw actix `Addr::send`, same arbiter and another arbiter.
//! - b: mutation commits/s on one actor: one transaction per message vs group commit, NORMAL and FULL.
//! - c: cold activations (sequential and bounded-concurrent), then RSS and fds with everything live, then with
//!   passivation bounding the live set.
//! - d: one topic with many subscribers: commit-to-last-delivery latency.
//! - e: the read guard (`RuntimeConfig::guard_reads`, `query_only` switched around each write batch) on an actor
//!   alternating mutations and reads, on and off side by side.
//! - f: the inspector's per-actor trace (`RuntimeConfig::trace_size`) on the hot path, on (the default size) and off
//!   side by side: reads (a no-op one and a one-statement one, one caller and many) and group-committed mutations.
//!
//! Sizes come from `name=value` arguments or `BENCH_<NAME>` environment variables (argument wins):
//! `reads`, `rounds`, `b_secs`, `b_conc`, `keys`, `seq_keys`, `conc`, `max_live_small`, `idle_ms`, `idle_keys`,
//! `subs`, `pubs`, `e_secs`, `e_rounds`, `e_conc`, `f_ms`, `f_rounds`, `f_conc`.
//! Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`, else the system temp dir) and is deleted.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, EmbeddedMigrations, Entity, KindConfig, Mutation, Read, Registry, Runtime, RuntimeConfig,
    SnapshotError, Synchronous, Tx,
};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};

use common::{ms, percentile, table, tmp_base, Opts};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// The bench kind: a counter whose value is published on the topic `topic`.
struct Bench;

impl Entity for Bench {
    type Key = String;
    const KIND: &'static str = "bench";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Bench)
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        match topic {
            "topic" => {
                let value: i64 = counter::table.select(counter::value).find(1).first(db)?;
                Ok(serde_json::json!({ "value": value }))
            }
            _ => Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() }),
        }
    }
}

/// A read that does nothing with the database.
struct NoopRead;

impl Read for NoopRead {
    type Entity = Bench;
    type Output = ();
    type Error = std::convert::Infallible;
    fn read(self, _: &Bench, _: &mut SqliteConnection) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
}

/// `UPDATE counter SET value = value + 1`, optionally touching `topic`.
struct Incr {
    touch: bool,
}

impl Mutation for Incr {
    type Entity = Bench;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Bench, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + 1)).execute(tx.conn())?;
        if self.touch {
            tx.touch("topic");
        }
        Ok(())
    }
}

/// `SELECT value FROM counter`: a read that runs one (cached) statement.
struct GetValue;

impl Read for GetValue {
    type Entity = Bench;
    type Output = i64;
    type Error = diesel::result::Error;
    fn read(self, _: &Bench, conn: &mut SqliteConnection) -> QueryResult<i64> {
        counter::table.select(counter::value).find(1).first(conn)
    }
}

/// The raw actix baseline: a no-op handler.
struct RawActor;

impl Actor for RawActor {
    type Context = Context<Self>;
}

struct Ping;

impl Message for Ping {
    type Result = ();
}

impl Handler<Ping> for RawActor {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
}

// ---------------------------------------------------------------------------------------------------------------
// Options, helpers

fn tempdir() -> tempfile::TempDir {
    common::tempdir("foundry-bench-")
}

fn start_runtime(dir: &tempfile::TempDir, f: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig::new(dir.path());
    f(&mut config);
    Runtime::start(config).expect("runtime starts")
}

fn kind_config(f: impl FnOnce(&mut KindConfig)) -> KindConfig {
    let mut c = KindConfig::default();
    f(&mut c);
    c
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn fd_limits() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    (lim.rlim_cur, lim.rlim_max)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

// ---------------------------------------------------------------------------------------------------------------
// (a) read round trip

async fn time_registry(reg: &Registry<Bench>, key: &String, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        reg.read(key, NoopRead).await.expect("read");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn time_raw(addr: &Addr<RawActor>, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        addr.send(Ping).await.expect("send");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

async fn section_a(o: &Opts) {
    let n = o.get("reads", 200_000);
    let rounds = o.get("rounds", 2).max(1);
    let warm = (n / 10).max(1000);
    println!("\n== (a) read round trip: {n} sequential awaits per round, {rounds} rounds (best kept), warm-up {warm}");
    let mut rows = Vec::new();
    let mut worst_ratio: f64 = 0.0;
    // `placement=0` or `placement=1` runs one placement only (for profiling).
    let placements: Vec<usize> = match o.get("placement", 2) {
        p @ (0 | 1) => vec![p as usize],
        _ => vec![0, 1],
    };
    for arbiters in placements {
        let dir = tempdir();
        let rt = start_runtime(&dir, |c| c.arbiters = arbiters);
        let reg = rt.registry::<Bench>();
        let key = "reader".to_owned();
        let raw_arbiter = (arbiters > 0).then(Arbiter::new);
        let addr = match &raw_arbiter {
            None => RawActor.start(),
            Some(a) => RawActor::start_in_arbiter(&a.handle(), |_| RawActor),
        };
        // Warm-up (also activates the registry actor).
        time_registry(&reg, &key, warm).await;
        time_raw(&addr, warm).await;
        let (mut best_reg, mut best_raw) = (0f64, 0f64);
        for _ in 0..rounds {
            best_raw = best_raw.max(time_raw(&addr, n).await);
            best_reg = best_reg.max(time_registry(&reg, &key, n).await);
        }
        let ratio = best_raw / best_reg;
        worst_ratio = worst_ratio.max(ratio);
        let placement = if arbiters == 0 { "same arbiter (arbiters=0)" } else { "other arbiter (arbiters=1)" };
        rows.push(vec![
            placement.to_owned(),
            format!("{best_raw:.0}"),
            format!("{best_reg:.0}"),
            format!("{:.2}", 1e6 / best_raw),
            format!("{:.2}", 1e6 / best_reg),
            format!("{ratio:.2}x"),
            verdict(ratio <= 1.3).to_owned(),
        ]);
        rt.shutdown().await;
        if let Some(a) = raw_arbiter {
            a.stop();
        }
    }
    table(
        "(a) read round trip (registry.read(&key, NoopRead) vs Addr::send(Ping))",
        &["placement", "raw msgs/s", "registry msgs/s", "raw us/msg", "registry us/msg", "slowdown", "target <=1.3x"],
        &rows,
    );
    println!("(a) worst slowdown {worst_ratio:.2}x -> target {}", verdict(worst_ratio <= 1.3));
}

// ---------------------------------------------------------------------------------------------------------------
// (b) mutation commits/s on one actor

struct BRun {
    mutations: u64,
    transactions: u64,
    secs: f64,
}

async fn run_b(sync: Synchronous, group_commit: bool, callers: usize, dur: Duration) -> BRun {
    let dir = tempdir();
    let rt = start_runtime(&dir, |c| {
        c.arbiters = 1;
        c.synchronous = sync;
    });
    let reg = rt.register::<Bench>(kind_config(|k| {
        k.group_commit = group_commit;
        k.mailbox_capacity = 1024;
        k.max_batch = 256;
    }));
    let key = "hot".to_owned();
    for _ in 0..50 {
        reg.mutate(&key, Incr { touch: false }).await.expect("warm-up mutate");
    }
    let tx0 = reg.stats().transactions.load(Ordering::Relaxed);
    let done = AtomicU64::new(0);
    let t = Instant::now();
    join_all((0..callers).map(|_| async {
        while t.elapsed() < dur {
            reg.mutate(&key, Incr { touch: false }).await.expect("mutate");
            done.fetch_add(1, Ordering::Relaxed);
        }
    }))
    .await;
    let secs = t.elapsed().as_secs_f64();
    let transactions = reg.stats().transactions.load(Ordering::Relaxed) - tx0;
    rt.shutdown().await;
    BRun { mutations: done.load(Ordering::Relaxed), transactions, secs }
}

async fn section_b(o: &Opts) {
    let dur = Duration::from_secs(o.get("b_secs", 2));
    let conc = o.get("b_conc", 128) as usize;
    println!("\n== (b) mutation commits on one actor, {:?} per run, concurrent runs with {conc} callers", dur);
    let mut rows = Vec::new();
    let mut normal_ratio = 0.0;
    for (sync, name) in [(Synchronous::Normal, "NORMAL"), (Synchronous::Full, "FULL")] {
        let mut base = 0.0;
        let mut base_conc = 0.0;
        for (label, gc, callers) in [
            ("1 txn/msg, sequential (group_commit=false, 1 caller)", false, 1),
            ("1 txn/msg, concurrent (group_commit=false)", false, conc),
            ("group commit, concurrent (group_commit=true)", true, conc),
        ] {
            let r = run_b(sync, gc, callers, dur).await;
            let rate = r.mutations as f64 / r.secs;
            if callers == 1 {
                base = rate;
            } else if !gc {
                base_conc = rate;
            }
            let ratio = rate / base;
            if gc && sync == Synchronous::Normal {
                normal_ratio = ratio;
            }
            rows.push(vec![
                name.to_owned(),
                label.to_owned(),
                callers.to_string(),
                r.mutations.to_string(),
                r.transactions.to_string(),
                format!("{:.1}", r.mutations as f64 / r.transactions.max(1) as f64),
                format!("{rate:.0}"),
                format!("{ratio:.2}x"),
                if callers == 1 { "-".to_owned() } else { format!("{:.2}x", rate / base_conc) },
            ]);
        }
    }
    table(
        "(b) mutations/s on one actor (UPDATE counter SET value = value + 1)",
        &[
            "sync",
            "mode",
            "callers",
            "mutations",
            "transactions",
            "muts/txn",
            "mutations/s",
            "vs 1 txn/msg seq",
            "vs 1 txn/msg conc",
        ],
        &rows,
    );
    println!(
        "(b) group commit vs one txn per message under NORMAL: {normal_ratio:.2}x -> target >=5x {}",
        verdict(normal_ratio >= 5.0)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// (e) the read guard (`query_only` switched around each write batch) on an actor that interleaves reads and writes

/// Callers alternate `mutate(Incr)` and `read(GetValue)` on one key for `dur`; answers (mutations + reads)/s.
async fn run_e(guard_reads: bool, callers: usize, dur: Duration) -> (u64, f64) {
    let dir = tempdir();
    let rt = start_runtime(&dir, |c| {
        c.arbiters = 1;
        c.guard_reads = guard_reads;
    });
    let reg = rt.register::<Bench>(kind_config(|k| {
        k.mailbox_capacity = 1024;
        k.max_batch = 256;
    }));
    let key = "hot".to_owned();
    for _ in 0..50 {
        reg.mutate(&key, Incr { touch: false }).await.expect("warm-up mutate");
        reg.read(&key, GetValue).await.expect("warm-up read");
    }
    let done = AtomicU64::new(0);
    let t = Instant::now();
    join_all((0..callers).map(|_| async {
        while t.elapsed() < dur {
            reg.mutate(&key, Incr { touch: false }).await.expect("mutate");
            reg.read(&key, GetValue).await.expect("read");
            done.fetch_add(2, Ordering::Relaxed);
        }
    }))
    .await;
    let secs = t.elapsed().as_secs_f64();
    rt.shutdown().await;
    (done.load(Ordering::Relaxed), secs)
}

async fn section_e(o: &Opts) {
    let dur = Duration::from_secs(o.get("e_secs", 2));
    let rounds = o.get("e_rounds", 2).max(1);
    let conc = o.get("e_conc", 64) as usize;
    println!("\n== (e) read guard on an actor alternating mutations and reads, {:?} per run, {rounds} rounds", dur);
    let mut rows = Vec::new();
    for callers in [1, conc] {
        // Rounds alternate guard on / off so drift on this shared machine hits both alike.
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for guard in [true, false] {
                let (ops, secs) = run_e(guard, callers, dur).await;
                if guard {
                    on.push(ops as f64 / secs)
                } else {
                    off.push(ops as f64 / secs)
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let fmt = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ");
        rows.push(vec![
            callers.to_string(),
            fmt(&on),
            fmt(&off),
            format!("{:.2}", 1e6 / mean(&on)),
            format!("{:.2}", 1e6 / mean(&off)),
            format!("{:.2}x", mean(&off) / mean(&on)),
        ]);
    }
    table(
        "(e) mutate + read alternating on one actor: answers/s with the read guard (query_only switched per write batch) and without",
        &["callers", "guard on: answers/s per round", "guard off: answers/s per round", "on: us/answer", "off: us/answer", "off vs on"],
        &rows,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// (f) the trace's cost on the hot path

#[derive(Clone, Copy)]
enum FLoad {
    NoopRead,
    Read,
    Mutation,
}

/// `callers` callers send `load` to one actor (on its own arbiter) for `dur`, with the trace at `trace_size`;
/// answers per second.
async fn run_f(trace_size: usize, load: FLoad, callers: usize, dur: Duration) -> f64 {
    let dir = tempdir();
    let rt = start_runtime(&dir, |c| {
        c.arbiters = 1;
        c.guard_reads = false;
        c.trace_size = trace_size;
    });
    let reg = rt.register::<Bench>(kind_config(|k| {
        k.mailbox_capacity = 1024;
        k.max_batch = 256;
    }));
    let key = "hot".to_owned();
    let one = |reg: Registry<Bench>, key: String| async move {
        match load {
            FLoad::NoopRead => reg.read(&key, NoopRead).await.map(|_| ()).expect("read"),
            FLoad::Read => reg.read(&key, GetValue).await.map(|_| ()).expect("read"),
            FLoad::Mutation => reg.mutate(&key, Incr { touch: false }).await.expect("mutate"),
        }
    };
    for _ in 0..200 {
        one(reg.clone(), key.clone()).await;
    }
    let done = AtomicU64::new(0);
    let t = Instant::now();
    join_all((0..callers).map(|_| async {
        while t.elapsed() < dur {
            one(reg.clone(), key.clone()).await;
            done.fetch_add(1, Ordering::Relaxed);
        }
    }))
    .await;
    let rate = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    rt.shutdown().await;
    rate
}

async fn section_f(o: &Opts) {
    let dur = Duration::from_millis(o.get("f_ms", 1500));
    let rounds = o.get("f_rounds", 2).max(1);
    let conc = o.get("f_conc", 64) as usize;
    let size = foundry::runtime::system::DEFAULT_TRACE_SIZE;
    println!("\n== (f) per-actor trace (size {size}) on vs off, {dur:?} per run, {rounds} rounds");
    let loads = [
        ("read, no-op", FLoad::NoopRead, 1),
        ("read, one SELECT", FLoad::Read, 1),
        ("read, one SELECT", FLoad::Read, conc),
        ("mutation, group commit", FLoad::Mutation, conc),
    ];
    let mut rows = Vec::new();
    let mut worst: f64 = 0.0;
    for (label, load, callers) in loads {
        // Rounds alternate on / off so drift on a shared machine hits both alike.
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            on.push(run_f(size, load, callers, dur).await);
            off.push(run_f(0, load, callers, dur).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let fmt = |v: &[f64]| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ");
        let overhead = (mean(&off) / mean(&on) - 1.0) * 100.0;
        worst = worst.max(overhead);
        rows.push(vec![
            label.to_owned(),
            callers.to_string(),
            fmt(&on),
            fmt(&off),
            format!("{:.2}", 1e6 / mean(&on)),
            format!("{:.2}", 1e6 / mean(&off)),
            format!("{overhead:+.1}%"),
            verdict(overhead <= 2.0).to_owned(),
        ]);
    }
    table(
        "(f) answers/s on one actor with the trace on and off (overhead: how much faster off is)",
        &[
            "load",
            "callers",
            "trace on: answers/s per round",
            "trace off: answers/s per round",
            "on: us/answer",
            "off: us/answer",
            "overhead",
            "target <=2%",
        ],
        &rows,
    );
    println!("(f) worst overhead {worst:+.1}% -> target {}", verdict(worst <= 2.0));
}

// ---------------------------------------------------------------------------------------------------------------
// (c) cold activations

struct CRun {
    lat: Vec<Duration>,
    secs: f64,
    failures: usize,
    peak_live: usize,
    /// Completion times since the run started, sorted: for the throughput of the first and last 1,000.
    done_at: Vec<Duration>,
}

impl CRun {
    /// Activations/s over the first and the last `w` completions.
    fn windows(&self, w: usize) -> (f64, f64) {
        let n = self.done_at.len();
        if n < w * 2 || w == 0 {
            return (0.0, 0.0);
        }
        let first = w as f64 / self.done_at[w - 1].as_secs_f64();
        let last = w as f64 / (self.done_at[n - 1] - self.done_at[n - 1 - w]).as_secs_f64();
        (first, last)
    }
}

async fn activate_keys(reg: &Registry<Bench>, prefix: &str, n: usize, conc: usize) -> CRun {
    let peak = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let t = Instant::now();
    let pairs: Vec<(Duration, Duration)> = stream::iter(0..n)
        .map(|i| {
            let (peak, failures) = (&peak, &failures);
            async move {
                let key = format!("{prefix}{i:06}");
                let s = Instant::now();
                if reg.mutate(&key, Incr { touch: false }).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                let d = s.elapsed();
                peak.fetch_max(reg.live_count(), Ordering::Relaxed);
                (d, t.elapsed())
            }
        })
        .buffer_unordered(conc.max(1))
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let (mut lat, mut done_at): (Vec<Duration>, Vec<Duration>) = pairs.into_iter().unzip();
    lat.sort();
    done_at.sort();
    CRun { lat, secs, failures: failures.load(Ordering::Relaxed), peak_live: peak.load(Ordering::Relaxed), done_at }
}

fn c_row(label: &str, r: &CRun) -> Vec<String> {
    vec![
        label.to_owned(),
        r.lat.len().to_string(),
        r.failures.to_string(),
        format!("{:.2}", r.secs),
        format!("{:.0}", r.lat.len() as f64 / r.secs),
        ms(percentile(&r.lat, 0.5)),
        ms(percentile(&r.lat, 0.99)),
        ms(r.lat.last().copied().unwrap_or_default()),
        {
            let (first, last) = r.windows(1_000);
            if first > 0.0 {
                format!("{first:.0} / {last:.0}")
            } else {
                "-".to_owned()
            }
        },
    ]
}

async fn section_c(o: &Opts) {
    let keys = o.get("keys", 10_000) as usize;
    let seq_keys = o.get("seq_keys", 500) as usize;
    let conc = o.get("conc", 64) as usize;
    let small_live = o.get("max_live_small", 1_000) as usize;
    let idle = Duration::from_millis(o.get("idle_ms", 200));
    let idle_keys = o.get("idle_keys", 2_000) as usize;
    let probe = RuntimeConfig::new(std::env::temp_dir());
    let (soft, hard) = fd_limits();
    let default_max_live = probe.max_live;
    drop(probe);
    println!(
        "\n== (c) cold activations (first mutate on a fresh data dir), fd limit soft={soft} hard={hard}, \
         RuntimeConfig default max_live={default_max_live}"
    );
    // This disk's file-creation cost right now: the runs below create two files per activation (database, WAL).
    let disk_before = common::disk_probe();
    let mut rows = Vec::new();
    let mut mem_rows = Vec::new();

    // Sequential.
    {
        let dir = tempdir();
        let rt = start_runtime(&dir, |c| c.max_live = c.max_live.max(seq_keys + 16));
        let reg = rt.registry::<Bench>();
        let r = activate_keys(&reg, "s", seq_keys, 1).await;
        rows.push(c_row("sequential (concurrency 1)", &r));
        rt.shutdown().await;
        common::defer_removal(dir);
    }

    // Bounded concurrency, everything stays live (as far as the fd limit allows: 2 fds per actor).
    let fd_cap = (soft.saturating_sub(256) / 2) as usize;
    let all_live = keys.min(fd_cap);
    let target_met;
    {
        let dir = tempdir();
        let rt = start_runtime(&dir, |c| c.max_live = all_live);
        let reg = rt.registry::<Bench>();
        let (rss0, fds0) = (rss_kib(), open_fds());
        let r = activate_keys(&reg, "k", keys, conc).await;
        let label = if all_live >= keys {
            format!("concurrency {conc}, all live (max_live={all_live})")
        } else {
            format!("concurrency {conc}, max_live={all_live} (fd cap; LRU eviction past it)")
        };
        rows.push(c_row(&label, &r));
        target_met = keys >= 10_000 && r.failures == 0 && r.secs <= 10.0 * keys as f64 / 10_000.0;
        let (rss1, fds1) = (rss_kib(), open_fds());
        mem_rows.push(vec![
            format!("after {keys} activations, max_live={all_live}"),
            reg.live_count().to_string(),
            format!("{:.1}", rss0 as f64 / 1024.0),
            format!("{:.1}", rss1 as f64 / 1024.0),
            format!("{:.1}", (rss1.saturating_sub(rss0)) as f64 / reg.live_count().max(1) as f64),
            fds0.to_string(),
            fds1.to_string(),
        ]);
        let t = Instant::now();
        let live = reg.live_count();
        rt.shutdown().await;
        println!("(c) shutdown with {live} live took {:.2} s", t.elapsed().as_secs_f64());
        common::defer_removal(dir);
    }
    if all_live < keys {
        println!(
            "(c) NOTE: at most {all_live} of {keys} actors kept live: fd soft limit {soft} (hard {hard}) / 2 fds per actor; \
             raise the hard limit (ulimit -n 65536 as a privileged user) for the full count"
        );
    }

    // Passivation bounding the live set: small max_live (LRU eviction), then small idle timeout.
    for variant in ["max_live", "idle"] {
        let dir = tempdir();
        let rt = start_runtime(&dir, |c| {
            // The idle variant keeps the runtime's default max_live (fd-derived); idle passivation bounds it.
            if variant == "max_live" {
                c.max_live = small_live;
            }
        });
        let reg = rt.register::<Bench>(kind_config(|k| {
            if variant == "idle" {
                k.idle_timeout = idle;
            }
        }));
        let (rss0, fds0) = (rss_kib(), open_fds());
        let n = if variant == "idle" { idle_keys } else { keys };
        let r = activate_keys(&reg, "p", n, conc).await;
        let label = if variant == "max_live" {
            format!("concurrency {conc}, max_live={small_live} (LRU eviction)")
        } else {
            format!("concurrency {conc}, idle_timeout={}ms", idle.as_millis())
        };
        rows.push(c_row(&label, &r));
        let (rss1, fds1, live1) = (rss_kib(), open_fds(), reg.live_count());
        mem_rows.push(vec![
            format!("{label}, at end of run (peak live {})", r.peak_live),
            live1.to_string(),
            format!("{:.1}", rss0 as f64 / 1024.0),
            format!("{:.1}", rss1 as f64 / 1024.0),
            "-".to_owned(),
            fds0.to_string(),
            fds1.to_string(),
        ]);
        if variant == "idle" {
            tokio::time::sleep(idle * 3 + Duration::from_millis(200)).await;
            mem_rows.push(vec![
                format!("{label}, {}ms later", (idle * 3 + Duration::from_millis(200)).as_millis()),
                reg.live_count().to_string(),
                format!("{:.1}", rss0 as f64 / 1024.0),
                format!("{:.1}", rss_kib() as f64 / 1024.0),
                "-".to_owned(),
                fds0.to_string(),
                open_fds().to_string(),
            ]);
        }
        rt.shutdown().await;
        common::defer_removal(dir);
    }

    table(
        "(c) cold activations (latency = first mutate on a new key: open, migrate, load, commit)",
        &["run", "keys", "failures", "total s", "activations/s", "p50 ms", "p99 ms", "max ms", "first/last 1k per s"],
        &rows,
    );
    table(
        "(c) resources (process-wide: VmRSS from /proc/self/status, fds = entries of /proc/self/fd)",
        &["state", "live actors", "RSS before MiB", "RSS after MiB", "KiB/actor", "fds before", "fds after"],
        &mem_rows,
    );
    println!("(c) {keys} activations at concurrency {conc} in <= 10 s per 10,000 -> target {}", verdict(target_met));
    println!("(c) disk: {disk_before:.0} us per file creation before the runs, {:.0} after", common::disk_probe());
}

// ---------------------------------------------------------------------------------------------------------------
// (d) topic fan-out

async fn section_d(o: &Opts) {
    let subs = o.get("subs", 1_000) as usize;
    let pubs = o.get("pubs", 200) as usize;
    let warm = 10usize;
    println!("\n== (d) topic fan-out: {subs} subscribers (System arbiter), {pubs} sequential mutations, arbiters=2");
    let dir = tempdir();
    let rt = start_runtime(&dir, |c| c.arbiters = 2);
    let reg = rt.registry::<Bench>();
    let key = "topic-owner".to_owned();
    reg.mutate(&key, Incr { touch: false }).await.expect("activate");

    let base = Instant::now();
    let versions = warm + pubs + 1;
    let count: Arc<Vec<AtomicUsize>> = Arc::new((0..=versions).map(|_| AtomicUsize::new(0)).collect());
    let last_ns: Arc<Vec<AtomicU64>> = Arc::new((0..=versions).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut sub = reg.subscribe(&key, "topic").await.expect("subscribe");
        let (count, last_ns) = (count.clone(), last_ns.clone());
        tasks.push(actix_rt::spawn(async move {
            while let Some(ev) = sub.next().await {
                let now = base.elapsed().as_nanos() as u64;
                let v = ev.version as usize;
                if v < count.len() {
                    last_ns[v].fetch_max(now, Ordering::SeqCst);
                    count[v].fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let start_version = reg.subscribe(&key, "topic").await.expect("probe").next().await.map_or(0, |e| e.version);
    let wait_all = |v: usize| {
        let count = count.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while count[v].load(Ordering::SeqCst) < subs {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::task::yield_now().await;
            }
            true
        }
    };
    if !wait_all(start_version as usize).await {
        println!("(d) subscribers did not all receive the initial snapshot");
    }
    let mut from_reply = Vec::with_capacity(pubs);
    let mut from_send = Vec::with_capacity(pubs);
    let mut mut_lat = Vec::with_capacity(pubs);
    let mut lost = 0usize;
    for i in 0..warm + pubs {
        let v = start_version as usize + i + 1;
        if v >= count.len() {
            break;
        }
        let sent = base.elapsed().as_nanos() as u64;
        reg.mutate(&key, Incr { touch: true }).await.expect("mutate");
        let replied = base.elapsed().as_nanos() as u64;
        if !wait_all(v).await {
            lost += 1;
            continue;
        }
        let last = last_ns[v].load(Ordering::SeqCst);
        if i >= warm {
            from_reply.push(Duration::from_nanos(last.saturating_sub(replied)));
            from_send.push(Duration::from_nanos(last.saturating_sub(sent)));
            mut_lat.push(Duration::from_nanos(replied - sent));
        }
    }
    for v in [&mut from_reply, &mut from_send, &mut mut_lat] {
        v.sort();
    }
    let row = |name: &str, v: &[Duration]| {
        vec![
            name.to_owned(),
            v.len().to_string(),
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(v.last().copied().unwrap_or_default()),
        ]
    };
    table(
        &format!("(d) one topic, {subs} subscribers, {pubs} mutations (after {warm} warm-up)"),
        &["interval", "samples", "p50 ms", "p99 ms", "max ms"],
        &[
            row("commit reply -> last subscriber received", &from_reply),
            row("mutate sent -> last subscriber received", &from_send),
            row("mutate sent -> commit reply (for scale)", &mut_lat),
        ],
    );
    if lost > 0 {
        println!("(d) {lost} versions were not received by every subscriber within 10 s");
    }
    let p99 = percentile(&from_reply, 0.99);
    println!(
        "(d) p99 commit-to-last-delivery {} ms -> target <=50 ms {}",
        ms(p99),
        verdict(lost == 0 && p99 <= Duration::from_millis(50))
    );
    rt.shutdown().await;
    for t in tasks {
        let _ = t.await;
    }
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    println!(
        "foundry runtime bench: section={} cores={} fd limit (soft, hard)={:?} tmp={}",
        o.section,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fd_limits(),
        tmp_base().display()
    );
    let t = Instant::now();
    if o.runs("a") {
        section_a(&o).await;
    }
    if o.runs("b") {
        section_b(&o).await;
    }
    if o.runs("c") {
        section_c(&o).await;
    }
    if o.runs("d") {
        section_d(&o).await;
    }
    if o.runs("e") {
        section_e(&o).await;
    }
    if o.runs("f") {
        section_f(&o).await;
    }
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
    common::remove_deferred();
}
