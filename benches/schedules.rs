//! Durable schedule benchmarks (plain program, `harness = false`).
//!
//! ```text
//! cargo bench --bench schedules -- [a|b|all] [name=value ...]
//! ```
//!
//! Sections:
//! - a: fire latency on live actors (due -> applied, p50/p99): `actors` actors each set one schedule `delay_ms`
//!   ahead, `rounds` times; the scheduled mutation stores the wall-clock time it ran.
//! - b: schedules due per second with `keys` passivated actors: each sets one schedule due at the same instant, the
//!   runtime is shut down (every actor closed) and started again before it, so only the due index can wake them;
//!   reports the rate from the due instant to the last applied, and the latency spread.
//!
//! Sizes: `actors` (100), `rounds` (5), `delay_ms` (200), `keys` (10000), `lead_ms` (0: derived from `keys`),
//! `conc` (64). Temporary data goes under `BENCH_TMP` and is deleted.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::schedule::now_ms;
use foundry::runtime::{
    embed_migrations, Accepts, EmbeddedMigrations, Entity, KindConfig, Mutation, Read, Registry, Runtime,
    RuntimeConfig, Scheduled, Tx,
};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use common::{ms, percentile, table, tempdir, Opts};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Alarm;

impl Entity for Alarm {
    type Key = String;
    const KIND: &'static str = "alarm";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Alarm)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<Stamp>();
    }
}

/// The scheduled message: stores when it was applied (unix ms).
#[derive(Serialize, Deserialize)]
struct Stamp;

impl Mutation for Stamp {
    type Entity = Alarm;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(now_ms())).execute(tx.conn()).map(|_| ())
    }
}

impl Scheduled for Stamp {
    const NAME: &'static str = "bench.stamp";
}

/// Schedules a `Stamp` at `due` (unix ms).
struct SetAlarm {
    due: i64,
}

impl Mutation for SetAlarm {
    type Entity = Alarm;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> QueryResult<()> {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(self.due as u64);
        tx.schedule_at(at, &Stamp).map(|_| ())
    }
}

struct GetStamp;

impl Read for GetStamp {
    type Entity = Alarm;
    type Output = i64;
    type Error = diesel::result::Error;
    fn read(self, _: &Alarm, db: &mut SqliteConnection) -> QueryResult<i64> {
        counter::table.select(counter::value).find(1).first(db)
    }
}

fn start(dir: &Path, max_live: Option<usize>) -> (Runtime, Registry<Alarm>) {
    let mut config = RuntimeConfig::new(dir);
    if let Some(m) = max_live {
        config.max_live = m;
    }
    let rt = Runtime::start(config).expect("runtime starts");
    let reg = rt.register::<Alarm>(KindConfig::default());
    (rt, reg)
}

fn fired(reg: &Registry<Alarm>) -> u64 {
    reg.stats().schedules_fired.load(Ordering::Relaxed)
}

async fn wait_fired(reg: &Registry<Alarm>, want: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while fired(reg) < want {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn lateness(due: i64, applied: &mut [i64]) -> Vec<Duration> {
    let mut late: Vec<Duration> =
        applied.iter().map(|a| Duration::from_millis(a.saturating_sub(due).max(0) as u64)).collect();
    late.sort();
    late
}

async fn section_a(o: &Opts) {
    let (actors, rounds, delay) = (o.get("actors", 100) as usize, o.get("rounds", 5), o.get("delay_ms", 200) as i64);
    let dir = tempdir("sched-a-");
    let (rt, reg) = start(dir.path(), None);
    let keys: Vec<String> = (0..actors).map(|i| format!("a{i}")).collect();
    let mut all = Vec::new();
    for round in 0..rounds {
        let due = now_ms() + delay;
        stream::iter(&keys)
            .for_each_concurrent(64, |k| {
                let reg = reg.clone();
                async move { reg.mutate(k, SetAlarm { due }).await.expect("set alarm") }
            })
            .await;
        let want = (round + 1) * actors as u64;
        assert!(wait_fired(&reg, want, Duration::from_secs(60)).await, "round {round}: not all fired");
        let mut stamps = Vec::with_capacity(actors);
        for k in &keys {
            stamps.push(reg.read(k, GetStamp).await.expect("read stamp"));
        }
        all.extend(lateness(due, &mut stamps));
    }
    all.sort();
    table(
        "a: fire latency, live actors (due -> applied)",
        &["actors", "schedules", "p50 ms", "p99 ms", "max ms"],
        &[vec![
            format!("{actors} x {rounds} rounds, {delay} ms ahead"),
            all.len().to_string(),
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99)),
            ms(percentile(&all, 1.0)),
        ]],
    );
    rt.shutdown().await;
}

async fn section_b(o: &Opts) {
    let keys = o.get("keys", 10_000) as usize;
    let conc = o.get("conc", 64) as usize;
    // Setting up costs a few ms per actor (activation + commit): the due instant is placed after it.
    let lead = match o.get("lead_ms", 0) {
        0 => 3_000 + keys as i64 * 8,
        l => l as i64,
    };
    let dir = tempdir("sched-b-");
    let due = now_ms() + lead;
    let names: Vec<String> = (0..keys).map(|i| format!("p{i}")).collect();
    {
        let (rt, reg) = start(dir.path(), None);
        stream::iter(&names)
            .for_each_concurrent(conc, |k| {
                let reg = reg.clone();
                async move { reg.mutate(k, SetAlarm { due }).await.expect("set alarm") }
            })
            .await;
        rt.shutdown().await;
    }
    let setup_left = due - now_ms();
    if setup_left <= 0 {
        println!("b: setup overran the due instant by {} ms; raise lead_ms", -setup_left);
    }
    // A new process's view: nothing live, every actor closed, only the due index knows.
    let (rt, reg) = start(dir.path(), None);
    let started = Instant::now();
    let complete = wait_fired(&reg, keys as u64, Duration::from_secs(600)).await;
    let fired_count = fired(&reg);
    let done_ms = now_ms();
    let waited = started.elapsed();
    rt.shutdown().await;
    let mut stamps: Vec<i64> = names.iter().map(|k| stamp_on_disk(dir.path(), k)).filter(|s| *s > 0).collect();
    let late = lateness(due, &mut stamps);
    let span_ms = (done_ms - due.max(now_ms() - waited.as_millis() as i64)).max(1);
    table(
        "b: schedules due at once on passivated actors (woken by the due index)",
        &["actors", "fired", "per s", "p50 ms", "p99 ms", "max ms"],
        &[vec![
            format!("{keys}{}", if complete { "" } else { " (incomplete)" }),
            fired_count.to_string(),
            format!("{:.0}", fired_count as f64 * 1000.0 / span_ms as f64),
            ms(percentile(&late, 0.5)),
            ms(percentile(&late, 0.99)),
            ms(percentile(&late, 1.0)),
        ]],
    );
}

fn stamp_on_disk(dir: &Path, key: &str) -> i64 {
    let path = dir.join("alarm").join(format!("{key}.sqlite3"));
    let Some(url) = path.to_str() else { return 0 };
    let Ok(mut conn) = SqliteConnection::establish(url) else { return 0 };
    counter::table.select(counter::value).find(1).first(&mut conn).unwrap_or(0)
}

#[actix_rt::main]
async fn main() {
    // `RUST_LOG=...` shows the runtime's own account (wake failures, evictions) when a figure needs explaining.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let o = Opts::parse();
    if o.runs("a") {
        section_a(&o).await;
    }
    if o.runs("b") {
        section_b(&o).await;
    }
}
