//! Cluster mode's commit log (issue 15, slice 3): what the output gate costs a mutation. Plain program
//! (`harness = false`); starts its own PostgreSQL (Debian's `postgresql` server binaries or `$FOUNDRY_PG_BIN`) with
//! `fsync = on`, one node (lease manager + commit log pump + runtime), and the same load on a single-node runtime,
//! side by side.
//!
//! ```text
//! cargo bench --bench cluster -- [all] [name=value ...]
//! ```
//!
//! - sequential: one caller, one mutation at a time over `keys` actors (`seq` of them): latency p50/p99.
//! - paced: `rate` mutations/s for `secs` seconds spread over `keys` actors, each sent on time whatever the
//!   replies do (open loop): latency p50/p99 (the issue's "p99 at 200 req/s" on one node).
//! - closed: `conc` callers as fast as they can for `secs` seconds: mutations/s, and for the cluster node the
//!   Postgres transactions/s, appends per transaction and bytes logged per mutation.
//!
//! Sizes: `seq`, `keys`, `rate`, `secs`, `conc` (arguments or `BENCH_<NAME>`). Temporary data under `BENCH_TMP`.

#[path = "../tests/cluster_support/mod.rs"]
mod cluster_support;
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::cluster::{self, ClusterConfig, LeaseHooks, PgLog};
use foundry::runtime::{
    embed_migrations, EmbeddedMigrations, Entity, KindConfig, Mutation, Registry, Runtime, RuntimeConfig, Tx,
    SHARD_COUNT,
};
use futures_util::future::join_all;

use common::{ms, percentile, table, tmp_base, Opts};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Bench;

impl Entity for Bench {
    type Key = String;
    const KIND: &'static str = "bench";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Bench)
    }
}

/// `UPDATE counter SET value = value + 1`: the smallest mutation (one table page, plus the WAL's commit).
struct Incr;

impl Mutation for Incr {
    type Entity = Bench;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Bench, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + 1)).execute(tx.conn()).map(drop)
    }
}

struct Setup {
    label: &'static str,
    rt: Runtime,
    reg: Registry<Bench>,
    log: Option<PgLog>,
}

async fn measure_sequential(s: &Setup, n: u64, keys: u64) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let t = Instant::now();
        s.reg.mutate(&key, Incr).await.expect("mutation");
        lat.push(t.elapsed());
    }
    lat.sort();
    lat
}

async fn measure_paced(s: &Setup, rate: u64, secs: u64, keys: u64) -> Vec<Duration> {
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut calls = Vec::new();
    for i in 0..rate * secs {
        tokio::time::sleep_until(start + every * i as u32).await;
        let reg = s.reg.clone();
        let key = format!("k{}", i % keys);
        calls.push(actix_rt::spawn(async move {
            let t = Instant::now();
            reg.mutate(&key, Incr).await.expect("mutation");
            t.elapsed()
        }));
    }
    let mut lat: Vec<Duration> = join_all(calls).await.into_iter().map(|r| r.expect("call task")).collect();
    lat.sort();
    lat
}

async fn measure_closed(s: &Setup, conc: u64, secs: u64, keys: u64) -> (u64, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let workers = (0..conc).map(|w| {
        let reg = s.reg.clone();
        actix_rt::spawn(async move {
            let mut done = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                reg.mutate(&format!("k{}", i % keys), Incr).await.expect("mutation");
                done += 1;
                i += conc;
            }
            done
        })
    });
    let total = join_all(workers).await.into_iter().map(|r| r.expect("worker")).sum();
    (total, started.elapsed())
}

fn log_counts(s: &Setup) -> (u64, u64, u64, u64) {
    match &s.log {
        Some(log) => {
            let st = log.stats();
            (
                st.appends.load(Ordering::Relaxed),
                st.batches.load(Ordering::Relaxed),
                st.bytes.load(Ordering::Relaxed),
                st.batch_micros.load(Ordering::Relaxed),
            )
        }
        None => (0, 0, 0, 0),
    }
}

fn main() {
    let opts = Opts::parse();
    let (seq, keys, rate, secs, conc) = (
        opts.get("seq", 2000),
        opts.get("keys", 64),
        opts.get("rate", 200),
        opts.get("secs", 10),
        opts.get("conc", 32),
    );
    actix_rt::System::new().block_on(async move {
        let Some(pg) = cluster_support::postgres::PgServer::start_durable().await else {
            eprintln!("no PostgreSQL server binaries: install `postgresql` or set FOUNDRY_PG_BIN");
            std::process::exit(1);
        };
        let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.expect("connect");
        actix_rt::spawn(async move {
            let _ = conn.await;
        });
        // The tests run Postgres without fsync; a cost figure needs each commit made durable.
        let fsync: String = client.query_one("SHOW fsync", &[]).await.expect("show fsync").get(0);
        println!("PostgreSQL fsync = {fsync}, synchronous_commit = on");
        let base = tmp_base().join(format!("cluster-bench-{}", std::process::id()));
        let cfg = ClusterConfig::new("bench-node", pg.url());
        let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("lease manager");
        while leases.view().serving().len() < usize::from(SHARD_COUNT) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("commit log");
        let mut setups = Vec::new();
        for (label, clustered) in [("single node", false), ("cluster node", true)] {
            let mut rc = RuntimeConfig::new(base.join(label.replace(' ', "-")));
            rc.arbiters = 2;
            if clustered {
                rc.router = Some(Arc::new(leases.view()));
                rc.commit_log = Some(Arc::new(log.clone()));
            }
            let rt = Runtime::start(rc).expect("runtime");
            let reg = rt.register::<Bench>(KindConfig::default());
            // Activated (and, in the cluster, given their first snapshot) before anything is timed.
            for k in 0..keys {
                reg.mutate(&format!("k{k}"), Incr).await.expect("warm-up");
            }
            setups.push(Setup { label, rt, reg, log: clustered.then(|| log.clone()) });
        }

        let mut rows = Vec::new();
        for s in &setups {
            let lat = measure_sequential(s, seq, keys).await;
            rows.push(vec![s.label.into(), seq.to_string(), ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99))]);
        }
        table(&format!("sequential: one caller, {keys} actors"), &["setup", "mutations", "p50 ms", "p99 ms"], &rows);

        let mut rows = Vec::new();
        for s in &setups {
            let lat = measure_paced(s, rate, secs, keys).await;
            rows.push(vec![
                s.label.into(),
                format!("{rate}/s × {secs} s"),
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&Duration::ZERO)),
            ]);
        }
        table(
            &format!("paced (open loop) over {keys} actors"),
            &["setup", "load", "p50 ms", "p99 ms", "max ms"],
            &rows,
        );

        let mut rows = Vec::new();
        for s in &setups {
            let before = log_counts(s);
            let (done, took) = measure_closed(s, conc, secs, keys).await;
            let after = log_counts(s);
            let (appends, batches, bytes, micros) =
                (after.0 - before.0, after.1 - before.1, after.2 - before.2, after.3 - before.3);
            let per_s = |n: u64| format!("{:.0}", n as f64 / took.as_secs_f64());
            let or_dash = |v: String| if s.log.is_some() { v } else { "-".into() };
            rows.push(vec![
                s.label.into(),
                per_s(done),
                or_dash(per_s(batches)),
                or_dash(format!("{:.1}", appends as f64 / batches.max(1) as f64)),
                or_dash(format!("{:.0}", bytes as f64 / done.max(1) as f64)),
                or_dash(format!("{:.2}", micros as f64 / batches.max(1) as f64 / 1e3)),
            ]);
        }
        table(
            &format!("closed loop: {conc} callers over {keys} actors for {secs} s"),
            &["setup", "mutations/s", "PG tx/s", "appends/tx", "bytes/mutation", "PG tx ms"],
            &rows,
        );

        for s in setups {
            s.rt.shutdown().await;
        }
        drop(leases);
        let _ = std::fs::remove_dir_all(&base);
    });
}
