//! The runtime's behaviours, one test each, against real SQLite files on disk.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foundry::runtime::{ActivationFailure, Backpressure, CallError, Entity, Runtime, RuntimeConfig};
use support::*;

fn key(s: &str) -> String {
    s.to_owned()
}

#[actix_rt::test]
async fn keys_map_to_files_inside_the_kind_directory() {
    let (rt, dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let long = "k".repeat(5000);
    for k in ["plain", "../escape", "/abs/path", "nul\0byte", "..", long.as_str()] {
        assert_eq!(reg.mutate(&key(k), Add::new(1)).await.unwrap(), 1, "key {k:?}");
    }
    let kind_dir = dir.path().join("tally");
    let files: Vec<_> = std::fs::read_dir(&kind_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sqlite3"))
        .collect();
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(files.contains(&"plain.sqlite3".to_owned()));
    assert!(files.contains(&"%2E%2E%2Fescape.sqlite3".to_owned()));
    // Nothing was created outside the data directory's kind folder.
    let top: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(top.iter().all(|n| n == "tally" || n.to_string_lossy().starts_with("_foundry_index")), "{top:?}");
    // The empty key is refused with a typed error, not a file named ".sqlite3".
    let err = reg.mutate(&key(""), Add::new(1)).await.unwrap_err();
    assert!(matches!(err, CallError::Activation(ref a) if matches!(a.reason, ActivationFailure::Key(_))), "{err}");
}

#[actix_rt::test]
async fn racing_callers_on_a_cold_key_get_one_instance() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let k = key("cold");
    let refs = futures_util::future::join_all((0..64).map(|_| reg.get_or_create(&k))).await;
    let first = refs[0].as_ref().unwrap().addr().clone();
    assert!(refs.iter().all(|r| r.as_ref().unwrap().addr() == &first));
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 1);
    // And racing mutations all land on that one instance.
    let adds = futures_util::future::join_all((0..64).map(|_| reg.mutate(&k, Add::new(1)))).await;
    for r in &adds {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 64);
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 1);
    // Many mutations racing on another cold key: all are admitted (none bounces off actix's initial mailbox size).
    let cold = key("cold-mutations");
    let adds = futures_util::future::join_all((0..200).map(|_| reg.mutate(&cold, Add::new(1)))).await;
    for r in &adds {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(reg.read(&cold, GetValue).await.unwrap(), 200);
}

#[actix_rt::test]
async fn singleton_tables_refuse_a_second_row() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let err = reg.mutate(&key("s"), InsertSecondRow).await.unwrap_err();
    match err {
        CallError::Handler(TallyError::Db(e)) => assert!(e.to_string().contains("CHECK constraint failed"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[actix_rt::test]
async fn a_failed_migration_names_kind_key_and_migration() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Broken>();
    let err = reg.read(&key("b1"), Ping).await.unwrap_err();
    let CallError::Activation(a) = err else { panic!("expected activation error, got {err:?}") };
    assert_eq!(a.kind, "broken");
    assert_eq!(a.key, "b1");
    match &a.reason {
        ActivationFailure::Migration { migration, .. } => {
            assert!(migration.contains("2026-01-02-000000_bad_sql"), "{migration}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = a.to_string();
    assert!(text.contains("broken") && text.contains("b1") && text.contains("bad_sql"), "{text}");
    assert!(!reg.is_live(&key("b1")));
}

/// A runtime with the read guard set explicitly (its default depends on the build profile).
fn runtime_guarding_reads(guard_reads: bool) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path());
    config.arbiters = 0;
    config.guard_reads = guard_reads;
    let rt = Runtime::start(config).unwrap();
    (rt, dir)
}

#[actix_rt::test]
async fn reads_cannot_write() {
    let (rt, _dir) = runtime_guarding_reads(true);
    let reg = rt.registry::<Tally>();
    let k = key("r");
    reg.mutate(&k, Add::new(5)).await.unwrap();
    let err = reg.read(&k, WriteInRead).await.unwrap_err();
    match err {
        CallError::Handler(TallyError::Db(e)) => assert!(e.to_string().contains("readonly"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 5);
}

/// Without the guard (the release default) reads run on a writable connection, and mutations still commit and
/// read back as before: the switch only decides whether a read's stray write is refused.
#[actix_rt::test]
async fn without_the_read_guard_reads_and_writes_interleave_as_before() {
    let (rt, _dir) = runtime_guarding_reads(false);
    let reg = rt.registry::<Tally>();
    let k = key("unguarded");
    for i in 1..=5 {
        reg.mutate(&k, Add::new(1)).await.unwrap();
        assert_eq!(reg.read(&k, GetValue).await.unwrap(), i);
    }
    // The stray write goes through: this is what the guard exists to catch in tests.
    reg.read(&k, WriteInRead).await.unwrap();
}

#[actix_rt::test]
async fn a_failing_mutation_rolls_back_everything_it_wrote() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let k = key("rb");
    reg.mutate(&k, Add::new(3)).await.unwrap();
    let err = reg.mutate(&k, Add::new(-1)).await.unwrap_err();
    assert!(matches!(err, CallError::Handler(TallyError::Negative)), "{err:?}");
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 3);
    assert_eq!(reg.read(&k, GetEntryCount).await.unwrap(), 1);
}

#[actix_rt::test]
async fn the_reply_comes_after_commit() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let k = key("commit");
    for i in 1..=20 {
        reg.mutate(&k, Add::new(1)).await.unwrap();
        // An outside connection sees the change as soon as the reply arrived.
        let mut outside = observe_file(&dir.path().join("tally/commit.sqlite3"));
        assert_eq!(current(&mut outside).unwrap(), i);
    }
}

#[actix_rt::test]
async fn a_full_mailbox_makes_callers_wait_or_fail_fast_and_drops_nothing() {
    let (rt, _dir) = runtime(0);
    let reg = rt.register::<Tally>(config(|c| c.mailbox_capacity = 4));
    let k = key("busy");
    let (release, gate) = tokio::sync::oneshot::channel();
    reg.exec(&k, Gate { release: gate }).await.unwrap();
    // Four calls fill the mailbox (they wait behind the gate).
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let reg = reg.clone();
            let k = k.clone();
            actix_rt::spawn(async move { reg.mutate(&k, Add::new(1)).await })
        })
        .collect();
    eventually("mailbox full", || reg.mailbox_depth(&k) == 4).await;
    let err = reg.mutate_with(&k, Add::new(100), Backpressure::FailFast).await.unwrap_err();
    assert!(matches!(err, CallError::Overloaded { capacity: 4, .. }), "{err:?}");
    let err = reg.mutate_with(&k, Add::new(100), Backpressure::WaitUpTo(Duration::from_millis(20))).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    // A waiting caller gets through once room frees up.
    let waiter = {
        let reg = reg.clone();
        let k = k.clone();
        actix_rt::spawn(async move { reg.mutate(&k, Add::new(10)).await })
    };
    release.send(()).unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    waiter.await.unwrap().unwrap();
    // The refused calls were never applied; every accepted one was.
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 14);
}

#[actix_rt::test]
async fn a_panicking_handler_is_isolated_and_the_actor_restarts_from_its_database() {
    let (rt, _dir) = runtime(1);
    let reg = rt.registry::<Tally>();
    let (a, b) = (key("a"), key("b"));
    reg.mutate(&a, Add::new(1)).await.unwrap();
    reg.mutate(&b, Add::new(1)).await.unwrap();
    let err = reg.mutate(&a, Add::panicking()).await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { message: "Add", .. }), "{err:?}");
    // Its writes were rolled back, the next message succeeds, and the other actor (same arbiter) never noticed.
    assert_eq!(reg.read(&a, GetValue).await.unwrap(), 1);
    assert_eq!(reg.mutate(&a, Add::new(1)).await.unwrap(), 2);
    assert_eq!(reg.mutate(&b, Add::new(1)).await.unwrap(), 2);
    let err = reg.read(&b, PanicInRead).await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }));
    assert_eq!(reg.read(&b, GetValue).await.unwrap(), 2);
    assert_eq!(reg.stats().restarts.load(Ordering::SeqCst), 2);
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 2, "restarts happen in place, not by reactivation");
}

#[actix_rt::test]
async fn repeated_failures_back_off() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let k = key("poison");
    let mut backoffs = Vec::new();
    for _ in 0..4 {
        assert!(reg.mutate(&k, Add::panicking()).await.is_err());
        backoffs.push(reg.stats().last_backoff_ms.load(Ordering::SeqCst));
    }
    assert_eq!(backoffs, vec![0, 10, 20, 40]);
    // A success resets the streak.
    reg.mutate(&k, Add::new(1)).await.unwrap();
    assert!(reg.mutate(&k, Add::panicking()).await.is_err());
    assert_eq!(reg.stats().last_backoff_ms.load(Ordering::SeqCst), 0);
}

#[actix_rt::test]
async fn idle_actors_passivate_and_come_back_with_their_state() {
    let (rt, dir) = runtime(2);
    let reg = rt.register::<Tally>(config(|c| c.idle_timeout = Duration::from_millis(50)));
    let k = key("sleepy");
    reg.mutate(&k, Add::new(7)).await.unwrap();
    assert!(reg.is_live(&k));
    // The actor runs on another arbiter: wait until it has closed its database and left the registry.
    eventually("passivated", || !reg.is_live(&k) && reg.live_count() == 0).await;
    // Its database is closed: no descriptor of this process points at the file any more.
    let path = std::fs::canonicalize(dir.path().join("tally/sleepy.sqlite3")).unwrap();
    assert!(!open_fds().iter().any(|p| p.starts_with(path.to_str().unwrap())), "db still open");
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 7);
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 2);
    assert!(reg.stats().passivations.load(Ordering::SeqCst) >= 1);
}

#[actix_rt::test]
async fn the_runtime_wide_idle_timeout_applies_to_kinds_without_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = foundry::runtime::RuntimeConfig::new(dir.path());
    cfg.arbiters = 2;
    cfg.idle_timeout = Some(Duration::from_millis(50));
    let rt = foundry::runtime::Runtime::start(cfg).unwrap();
    let reg = rt.registry::<Tally>();
    assert_eq!(reg.config().idle_timeout, Duration::from_millis(50));
    let k = key("sleepy");
    reg.mutate(&k, Add::new(3)).await.unwrap();
    eventually("passivated after the runtime's idle timeout", || !reg.is_live(&k)).await;
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 3);
}

fn open_fds() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[actix_rt::test]
async fn live_actors_and_open_files_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = foundry::runtime::RuntimeConfig::new(dir.path());
    cfg.arbiters = 2;
    cfg.max_live = 8;
    let rt = foundry::runtime::Runtime::start(cfg).unwrap();
    let reg = rt.registry::<Tally>();
    let data = std::fs::canonicalize(dir.path()).unwrap();
    let data = data.to_str().unwrap().to_owned();
    for i in 0..60 {
        reg.mutate(&format!("k{i}"), Add::new(i)).await.unwrap();
        assert!(reg.live_count() <= 8, "live {}", reg.live_count());
        let open = open_fds().iter().filter(|p| p.starts_with(&data) && p.contains("/tally/")).count();
        // Two descriptors per live actor: the database and its WAL (no shared-memory file, see below).
        assert!(open <= 8 * 2, "{open} files open");
    }
    for i in 0..60 {
        assert_eq!(reg.read(&format!("k{i}"), GetValue).await.unwrap(), i);
    }
}

/// Exclusive locking mode: a live actor keeps two files open (its database and WAL) and no shared-memory file, holds
/// the file against other connections, and leaves only its database behind when it passivates.
#[actix_rt::test]
async fn a_live_actor_holds_its_database_and_wal_and_no_shared_memory_file() {
    use diesel::connection::SimpleConnection;
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let k = key("files");
    reg.mutate(&k, Add::new(5)).await.unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("tally/files.sqlite3");
    let name = path.to_str().unwrap().to_owned();
    let mut open: Vec<String> = open_fds().into_iter().filter(|p| p.starts_with(&name)).collect();
    open.sort();
    assert_eq!(open, vec![name.clone(), format!("{name}-wal")]);
    assert!(!std::path::Path::new(&format!("{name}-shm")).exists(), "no shared-memory file");
    // Another connection cannot read the file while the actor holds it.
    let mut outside = open_file(&path);
    outside.batch_execute("PRAGMA busy_timeout = 0").unwrap();
    let err = current(&mut outside).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(outside);
    assert!(reg.passivate(&k).await);
    // The file is closed on the blocking pool after the actor stopped.
    let left = || {
        let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("files."))
            .collect();
        names.sort();
        names
    };
    eventually("the WAL folded back and removed", || left() == vec!["files.sqlite3".to_owned()]).await;
    assert_eq!(current(&mut open_file(&path)).unwrap(), 5, "readable once the actor passivated");
    // And the actor comes back with its state.
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 5);
}

#[actix_rt::test]
async fn background_work_is_cancelled_when_the_actor_stops_or_restarts() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let k = key("bg");
    let start = |ticks: &Arc<AtomicUsize>| {
        let flags =
            [Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false))];
        let cmd = StartBackground {
            ticks: ticks.clone(),
            interval_dropped: flags[0].clone(),
            timer_dropped: flags[1].clone(),
            future_dropped: flags[2].clone(),
        };
        (cmd, flags)
    };
    let ticks = Arc::new(AtomicUsize::new(0));
    let (cmd, flags) = start(&ticks);
    assert_eq!(reg.exec(&k, cmd).await.unwrap(), 3);
    eventually("interval ticks", || ticks.load(Ordering::SeqCst) >= 2).await;
    assert!(flags.iter().all(|f| !f.load(Ordering::SeqCst)));
    // Passivation cancels all three.
    assert!(reg.passivate(&k).await);
    eventually("background dropped", || flags.iter().all(|f| f.load(Ordering::SeqCst))).await;
    let after = ticks.load(Ordering::SeqCst);
    // A restart after a panic cancels them too.
    let ticks2 = Arc::new(AtomicUsize::new(0));
    let (cmd, flags) = start(&ticks2);
    reg.exec(&k, cmd).await.unwrap();
    assert!(reg.mutate(&k, Add::panicking()).await.is_err());
    eventually("background dropped on restart", || flags.iter().all(|f| f.load(Ordering::SeqCst))).await;
    // The first interval really stopped (its counter no longer moves once its flag dropped).
    assert_eq!(ticks.load(Ordering::SeqCst), after);
}

#[actix_rt::test]
async fn topics_deliver_current_snapshot_then_each_change_with_growing_versions() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let k = key("topic");
    reg.mutate(&k, Add::new(2)).await.unwrap();
    let mut sub = reg.subscribe(&k, "tally").await.unwrap();
    let first = sub.next().await.unwrap();
    assert_eq!(first.event_name(), "tallyUpdated");
    assert_eq!(first.version, 1);
    assert_eq!(first.snapshot_as::<serde_json::Value>().unwrap()["value"], 2);
    reg.mutate(&k, Add::new(3)).await.unwrap();
    let second = sub.next().await.unwrap();
    assert_eq!((second.version, second.snapshot_as::<serde_json::Value>().unwrap()["value"].as_i64()), (2, Some(5)));
    // A slow subscriber skips to the latest snapshot, never backwards.
    for _ in 0..30 {
        reg.mutate(&k, Add::new(1)).await.unwrap();
    }
    let latest = sub.next().await.unwrap();
    assert_eq!(latest.version, 32);
    assert_eq!(latest.snapshot_as::<serde_json::Value>().unwrap()["value"], 35);
    let frame: serde_json::Value = serde_json::from_str(&latest.to_frame()).unwrap();
    assert_eq!(frame["type"], "tallyUpdated");
    assert_eq!(frame["version"], 32);
    // A failed mutation publishes nothing.
    assert!(reg.mutate(&k, Add::new(-5)).await.is_err());
    assert!(futures_util::FutureExt::now_or_never(sub.next()).is_none());
    // Versions survive a restart of the whole runtime.
    rt.shutdown().await;
    let rt2 = runtime_at(dir.path(), 2);
    let reg2 = rt2.registry::<Tally>();
    let mut sub2 = reg2.subscribe(&k, "tally").await.unwrap();
    assert_eq!(sub2.next().await.unwrap().version, 32);
    reg2.mutate(&k, Add::new(1)).await.unwrap();
    assert_eq!(sub2.next().await.unwrap().version, 33);
    // Unknown topics are a typed error.
    assert!(matches!(reg2.subscribe(&k, "nope").await, Err(CallError::Handler(_))));
}

#[actix_rt::test]
async fn outbox_messages_are_delivered_in_order_and_removed() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let (a, b) = (key("sender"), key("receiver"));
    for i in 1..=25 {
        reg.mutate(&a, AddAndForward { by: i, target: b.clone() }).await.unwrap();
    }
    let expected: i64 = (1..=25).sum();
    let mut got = 0;
    for _ in 0..500 {
        got = reg.read(&b, GetValue).await.unwrap();
        if got == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, expected);
    // Delivered rows are gone from the sender's outbox, and the receiver recorded the last sequence it applied.
    let sender = dir.path().join("tally/sender.sqlite3");
    eventually("outbox drained", || foundry::runtime::outbox::pending_count(&mut observe_file(&sender)).unwrap() == 0)
        .await;
    // A forward that fails is rolled back with its outbox row: nothing is delivered.
    assert!(reg.mutate(&a, Add::new(-1)).await.is_err());
    assert_eq!(reg.read(&b, GetEntryCount).await.unwrap(), 25);
}

#[actix_rt::test]
async fn group_commit_shares_a_transaction_but_not_failures() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let k = key("batch");
    reg.mutate(&k, Add::new(0)).await.unwrap();
    let tx_before = reg.stats().transactions.load(Ordering::SeqCst);
    let (release, gate) = tokio::sync::oneshot::channel();
    reg.exec(&k, Gate { release: gate }).await.unwrap();
    let amounts = [1, 2, -3, 4, 5, 0, 7, 8, 9, 10];
    let calls: Vec<_> = amounts
        .iter()
        .map(|&by| {
            let reg = reg.clone();
            let k = k.clone();
            let msg = if by == 0 { Add::panicking() } else { Add::new(by) };
            actix_rt::spawn(async move { reg.mutate(&k, msg).await })
        })
        .collect();
    eventually("all queued behind the gate", || reg.mailbox_depth(&k) == amounts.len()).await;
    release.send(()).unwrap();
    let mut ok = 0;
    for (call, by) in calls.into_iter().zip(amounts) {
        match call.await.unwrap() {
            Ok(_) => {
                assert!(by > 0);
                ok += by;
            }
            Err(CallError::Handler(TallyError::Negative)) => assert_eq!(by, -3),
            Err(CallError::Panicked { .. }) => assert_eq!(by, 0),
            Err(other) => panic!("{by}: {other:?}"),
        }
    }
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), ok);
    assert_eq!(reg.read(&k, GetEntryCount).await.unwrap(), 1 + 8);
    let batches = reg.stats().transactions.load(Ordering::SeqCst) - tx_before;
    assert!(batches < 8, "10 queued mutations took {batches} transactions");
}

#[actix_rt::test]
async fn shutdown_drains_in_flight_mutations_and_closes_databases() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let keys: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    for k in &keys {
        reg.mutate(k, Add::new(0)).await.unwrap();
    }
    let calls: Vec<_> = (0..400)
        .map(|i| {
            let reg = reg.clone();
            let k = keys[i % keys.len()].clone();
            actix_rt::spawn(async move { (k.clone(), reg.mutate(&k, Add::new(1)).await) })
        })
        .collect();
    tokio::task::yield_now().await;
    rt.shutdown().await;
    let mut applied = std::collections::HashMap::<String, i64>::new();
    for c in calls {
        let (k, res) = c.await.unwrap();
        match res {
            Ok(_) => *applied.entry(k).or_default() += 1,
            Err(CallError::ShuttingDown) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(rt.live_actors(), 0);
    for k in &keys {
        let path = dir.path().join(format!("tally/{k}.sqlite3"));
        // Closed cleanly: the last connection checkpointed and removed the WAL.
        assert!(!path.with_extension("sqlite3-wal").exists(), "{k}: WAL left behind");
        let mut conn = open_file(&path);
        assert_eq!(current(&mut conn).unwrap(), applied.get(k).copied().unwrap_or(0), "{k}");
    }
    assert!(matches!(reg.mutate(&keys[0], Add::new(1)).await, Err(CallError::ShuttingDown)));
}

#[actix_rt::test]
async fn state_survives_a_restart_of_the_runtime() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    for i in 0..10 {
        reg.mutate(&format!("p{i}"), Add::new(i)).await.unwrap();
    }
    rt.shutdown().await;
    let rt = runtime_at(dir.path(), 2);
    let reg = rt.registry::<Tally>();
    for i in 0..10 {
        assert_eq!(reg.read(&format!("p{i}"), GetValue).await.unwrap(), i);
    }
    assert_eq!(Tally::KIND, "tally");
}

#[derive(diesel::QueryableByName)]
struct DeadLetter {
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    error: String,
}

#[actix_rt::test]
async fn refused_and_poison_deliveries_are_dead_lettered_without_blocking_the_rest() {
    use diesel::RunQueryDsl;
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let (a, b) = (key("dl-sender"), key("dl-receiver"));
    for by in [-5, 666, 7] {
        reg.mutate(&a, AddAndForward { by, target: b.clone() }).await.unwrap();
    }
    let sender = dir.path().join("tally/dl-sender.sqlite3");
    eventually("outbox drained", || foundry::runtime::outbox::pending_count(&mut observe_file(&sender)).unwrap() == 0)
        .await;
    let mut conn = observe_file(&sender);
    // Only the good message was applied; the refused one and the panicking one changed nothing.
    assert_eq!(reg.read(&b, GetValue).await.unwrap(), 7);
    assert_eq!(reg.read(&b, GetEntryCount).await.unwrap(), 1);
    let dead: Vec<DeadLetter> =
        diesel::sql_query("SELECT payload, error FROM _foundry_dead_letters ORDER BY seq").load(&mut conn).unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[0].payload.contains("-5") && dead[0].error.contains("negative"), "{}", dead[0].error);
    assert!(dead[1].payload.contains("666") && dead[1].error.contains("panicked"), "{}", dead[1].error);
}

#[actix_rt::test]
async fn a_retryable_refusal_is_retried_until_the_receiver_is_ready() {
    let (rt, dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    let (a, b) = (key("ny-sender"), key("ny-receiver"));
    // The receiver refuses 777 with a retryable error until it holds at least 10.
    reg.mutate(&a, AddAndForward { by: 777, target: b.clone() }).await.unwrap();
    let sender = dir.path().join("tally/ny-sender.sqlite3");
    let pending = || foundry::runtime::outbox::pending_count(&mut observe_file(&sender)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pending(), 1, "kept, not dead-lettered");
    assert_eq!(reg.read(&b, GetValue).await.unwrap(), 0);
    reg.mutate(&b, Add::new(10)).await.unwrap();
    eventually("delivered once ready", || pending() == 0).await;
    let mut conn = observe_file(&sender);
    assert_eq!(reg.read(&b, GetValue).await.unwrap(), 787);
    let dead: i64 = {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT COUNT(*) AS n FROM _foundry_dead_letters").load::<Count>(&mut conn).unwrap()[0].n
    };
    assert_eq!(dead, 0);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Every `.sqlite3` file under the data directory (any kind), for "nothing was created" checks.
fn db_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for kind in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        for f in std::fs::read_dir(&kind).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()) {
            if f.ends_with(".sqlite3") {
                out.push(format!("{}/{f}", kind.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[actix_rt::test]
async fn existing_only_calls_create_nothing_for_an_unknown_key() {
    let (rt, dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let before = db_files(dir.path());
    for k in ["unknown", ".", "..", "a/b"] {
        let k = key(k);
        assert!(reg.get_existing(&k).await.unwrap().is_none(), "{k:?}");
        assert!(!reg.exists(&k).unwrap());
        let err = reg.read_existing(&k, GetValue).await.unwrap_err();
        assert!(matches!(err, CallError::NotFound { kind: "tally", .. }), "{err:?}");
        let err = reg.mutate_existing(&k, Add::new(1)).await.unwrap_err();
        assert!(matches!(err, CallError::NotFound { .. }), "{err:?}");
        let err = reg.exec_existing(&k, Gate { release: tokio::sync::oneshot::channel().1 }).await.unwrap_err();
        assert!(matches!(err, CallError::NotFound { .. }), "{err:?}");
        assert!(matches!(reg.subscribe_existing(&k, "tally").await, Err(CallError::NotFound { .. })));
        assert!(!reg.is_live(&k));
    }
    assert_eq!(db_files(dir.path()), before, "no database was created");
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 0);
    assert_eq!(reg.live_count(), 0);
    // A malformed key is still a typed activation error, as on the creating path.
    let err = reg.read_existing(&key(""), GetValue).await.unwrap_err();
    assert!(matches!(err, CallError::Activation(ref a) if matches!(a.reason, ActivationFailure::Key(_))), "{err}");
}

#[actix_rt::test]
async fn existing_only_calls_reach_live_and_passivated_actors() {
    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let k = key("known");
    reg.mutate(&k, Add::new(3)).await.unwrap();
    // Live.
    assert!(reg.get_existing(&k).await.unwrap().is_some());
    assert_eq!(reg.read_existing(&k, GetValue).await.unwrap(), 3);
    // Passivated: the database is on disk, so it is activated again.
    assert!(reg.passivate(&k).await);
    for _ in 0..100 {
        if !reg.is_live(&k) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!reg.is_live(&k));
    assert!(reg.exists(&k).unwrap());
    assert_eq!(reg.mutate_existing(&k, Add::new(1)).await.unwrap(), 4);
    assert!(reg.is_live(&k));
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn existing_only_lookups_racing_a_creation_share_its_one_actor() {
    let (rt, _dir) = runtime(2);
    let reg = rt.registry::<Tally>();
    for round in 0..20 {
        let k = key(&format!("race-{round}"));
        let lookups = (0..16).map(|i| {
            let reg = reg.clone();
            let k = k.clone();
            async move {
                if i % 2 == 0 {
                    reg.get_existing(&k).await.unwrap().map(|r| r.addr().clone())
                } else {
                    Some(reg.get_or_create(&k).await.unwrap().addr().clone())
                }
            }
        });
        let addrs: Vec<_> = futures_util::future::join_all(lookups).await.into_iter().flatten().collect();
        assert!(addrs.len() >= 8, "every creating lookup succeeded");
        assert!(addrs.iter().all(|a| a == &addrs[0]), "one actor per key");
        // The key exists now, and a later existing-only call finds the same actor.
        assert_eq!(reg.get_existing(&k).await.unwrap().unwrap().addr(), &addrs[0]);
    }
    assert_eq!(reg.stats().activations.load(Ordering::SeqCst), 20);
}

/// A kind whose actors never agree to passivate (as an actor with an outbox to deliver or a turn running).
struct Pinned;

impl Entity for Pinned {
    type Key = String;
    const KIND: &'static str = "pinned";
    const MIGRATIONS: foundry::runtime::EmbeddedMigrations =
        foundry::runtime::embed_migrations!("tests/fixtures/migrations/tally");

    fn load(_key: &String, _db: &mut diesel::sqlite::SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(Pinned)
    }

    fn can_passivate(&self) -> bool {
        false
    }
}

struct Touch;

impl foundry::runtime::Read for Touch {
    type Entity = Pinned;
    type Output = ();
    type Error = diesel::result::Error;
    fn read(self, _: &Pinned, _: &mut diesel::sqlite::SqliteConnection) -> diesel::QueryResult<()> {
        Ok(())
    }
}

#[actix_rt::test]
async fn eviction_passes_over_actors_that_refuse_and_picks_across_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = foundry::runtime::RuntimeConfig::new(dir.path());
    cfg.arbiters = 2;
    cfg.max_live = 4;
    cfg.activation_wait = Duration::from_secs(3);
    let rt = foundry::runtime::Runtime::start(cfg).unwrap();
    // Registered first, and the least recently used: the old eviction asked these again and again and never got
    // to the idle tallies behind them.
    let pinned = rt.registry::<Pinned>();
    let tallies = rt.registry::<Tally>();
    pinned.read(&key("p1"), Touch).await.unwrap();
    pinned.read(&key("p2"), Touch).await.unwrap();
    // Each activation needs an eviction; one that found no slot within `activation_wait` fails the unwrap.
    for i in 0..40 {
        tallies.mutate(&format!("k{i}"), Add::new(1)).await.unwrap();
    }
    assert!(pinned.is_live(&key("p1")) && pinned.is_live(&key("p2")), "refusing actors stay");
    assert!(rt.live_actors() <= 4, "live {}", rt.live_actors());
    assert_eq!(tallies.stats().activation_failures.load(Ordering::Relaxed), 0);
    rt.shutdown().await;
}
