//! The outbox survives a real crash: a child process hammers `AddAndForward` on several senders and is killed with
//! SIGKILL at varying moments; after each restart every committed outbox message must be applied exactly once.
//!
//! The child is this very test binary, re-executed with `--exact child_process_forwards_until_killed` and
//! `FOUNDRY_CRASH_CHILD_DIR` set; in a normal run that test returns at once.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use foundry::runtime::outbox::pending_count;
use support::*;

const CHILD_TEST: &str = "child_process_forwards_until_killed";
const CHILD_DIR_ENV: &str = "FOUNDRY_CRASH_CHILD_DIR";
const CHILD_PACE_ENV: &str = "FOUNDRY_CRASH_CHILD_PACE_MS";
const READY: &str = "FOUNDRY_CRASH_CHILD_READY";
const SENDERS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const RECEIVER: &str = "receiver";

/// The child: forwards `by: 1` from every sender to the receiver, concurrently, until it is killed.
#[actix_rt::test]
async fn child_process_forwards_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let pace = std::env::var(CHILD_PACE_ENV).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let rt = runtime_at(Path::new(&dir), 2);
    let reg = rt.registry::<Tally>();
    let (first_commit, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    for s in SENDERS {
        let reg = reg.clone();
        let first_commit = first_commit.clone();
        actix_rt::spawn(async move {
            let key = s.to_owned();
            loop {
                let res = reg.mutate(&key, AddAndForward { by: 1, target: RECEIVER.into() }).await;
                if let Err(e) = res {
                    eprintln!("child: {s}: {e}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let _ = first_commit.send(());
                if pace > 0 {
                    tokio::time::sleep(Duration::from_millis(pace)).await;
                }
            }
        });
    }
    ready.recv().await;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n{READY}");
        let _ = out.flush();
    }
    std::future::pending::<()>().await;
}

/// Kills the child if the parent fails before it did.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When to kill the child in one round.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the process was spawned, whether or not it committed anything yet (activation, migrations).
    AfterSpawn(Duration),
    /// This long after its first committed mutation.
    AfterReady(Duration),
}

/// Spawns the child and SIGKILLs it at `at`. Returns whether it had reported its first commit.
fn run_child_and_kill(dir: &Path, at: KillAt, pace_ms: u64) -> bool {
    let exe = std::env::current_exe().expect("current test binary");
    let child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_PACE_ENV, pace_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Keeps draining the pipe until the child dies, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY) {
                let _ = tx.send(());
            }
        }
    });
    let ready = match at {
        KillAt::AfterSpawn(d) => {
            std::thread::sleep(d);
            rx.try_recv().is_ok()
        }
        KillAt::AfterReady(d) => {
            match rx.recv_timeout(Duration::from_secs(15)) {
                Ok(()) => {}
                Err(e) => panic!("child never committed a mutation ({e}); status {:?}", child.0.try_wait()),
            }
            std::thread::sleep(d);
            true
        }
    };
    assert!(child.0.try_wait().expect("child status").is_none(), "child exited before it was killed");
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("reap child");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "child ended by {status:?}");
    }
    ready
}

fn actor_file(dir: &Path, key: &str) -> PathBuf {
    dir.join("tally").join(format!("{key}.sqlite3"))
}

/// An actor's committed tally value and outbox length, read from its file without activating it. A file that was
/// never created, or whose migrations never committed, counts as zero.
fn file_state(dir: &Path, key: &str) -> (i64, i64) {
    let path = actor_file(dir, key);
    if !path.exists() {
        return (0, 0);
    }
    let mut conn = observe_file(&path);
    let value = match current(&mut conn) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such table") => 0,
        Err(e) => panic!("{key}: reading value: {e}"),
    };
    let pending = match pending_count(&mut conn) {
        Ok(n) => n,
        Err(e) if e.to_string().contains("no such table") => 0,
        Err(e) => panic!("{key}: reading outbox: {e}"),
    };
    (value, pending)
}

#[derive(QueryableByName, Debug)]
struct Marker {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    key: String,
}

fn recovery_markers(dir: &Path) -> Vec<(String, String)> {
    let path = dir.join("_foundry_index.sqlite3");
    if !path.exists() {
        return Vec::new();
    }
    let mut conn = open_file(&path);
    let rows: Vec<Marker> = diesel::sql_query("SELECT kind, key FROM outbox_pending ORDER BY kind, key")
        .load(&mut conn)
        .unwrap_or_default();
    rows.into_iter().map(|m| (m.kind, m.key)).collect()
}

#[actix_rt::test]
async fn committed_outbox_messages_are_applied_exactly_once_across_sigkills() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Kill points vary so they land before the first commit (activation, migrations), right after it, and deep
    // into a backlog; paced rounds keep the outbox short so kills also land around individual deliveries.
    let rounds: [(KillAt, u64); 7] = [
        (KillAt::AfterSpawn(Duration::from_millis(15)), 0),
        (KillAt::AfterReady(Duration::from_millis(0)), 0),
        (KillAt::AfterReady(Duration::from_millis(150)), 0),
        (KillAt::AfterReady(Duration::from_millis(300)), 2),
        (KillAt::AfterReady(Duration::from_millis(500)), 0),
        (KillAt::AfterReady(Duration::from_millis(75)), 1),
        (KillAt::AfterReady(Duration::from_millis(700)), 0),
    ];
    let mut rounds_with_backlog = 0;
    let mut previous_sum = 0;
    for (round, (kill_at, pace)) in rounds.into_iter().enumerate() {
        let ready = run_child_and_kill(dir, kill_at, pace);

        // What the dead process committed, read from the files before anything is reactivated.
        let senders: Vec<(i64, i64)> = SENDERS.iter().map(|s| file_state(dir, s)).collect();
        let sum: i64 = senders.iter().map(|(v, _)| v).sum();
        let backlog: i64 = senders.iter().map(|(_, p)| p).sum();
        let (receiver_at_kill, _) = file_state(dir, RECEIVER);
        eprintln!(
            "round {round}: kill {kill_at:?} pace {pace}ms ready {ready}: senders {senders:?} sum {sum}, \
             receiver {receiver_at_kill}, backlog {backlog}"
        );
        assert!(sum >= previous_sum, "round {round}: committed sender values went backwards");
        assert!(receiver_at_kill <= sum, "round {round}: receiver {receiver_at_kill} > senders' sum {sum}");
        // Every committed forward is applied or still queued; a row can be both (applied, not yet acknowledged),
        // at most one per sender since each delivers one row at a time.
        let accounted = receiver_at_kill + backlog;
        assert!(
            (sum..=sum + SENDERS.len() as i64).contains(&accounted),
            "round {round}: receiver {receiver_at_kill} + backlog {backlog} vs committed {sum}"
        );
        if backlog > 0 {
            rounds_with_backlog += 1;
        }
        previous_sum = sum;

        // Restart in-process; only recovery (not our reads) reactivates the senders.
        let rt = runtime_at(dir, 2);
        let reg = rt.registry::<Tally>();
        let report = rt.recover().await;
        assert!(report.failed.is_empty(), "round {round}: recovery failures {:?}", report.failed);
        assert!(report.unknown_kinds.is_empty(), "round {round}: {:?}", report.unknown_kinds);
        let receiver = RECEIVER.to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = reg.read(&receiver, GetValue).await.expect("read receiver");
        while got != sum {
            assert!(got < sum, "round {round}: receiver applied {got} > {sum} committed forwards (double apply)");
            assert!(
                Instant::now() < deadline,
                "round {round}: receiver stuck at {got} of {sum}; recovery resumed {} sender(s)",
                report.resumed
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            got = reg.read(&receiver, GetValue).await.expect("read receiver");
        }
        // Outbox rows are deleted right after the receiver replied: give the acknowledgements a moment.
        loop {
            let pending: Vec<i64> = SENDERS.iter().map(|s| file_state(dir, s).1).collect();
            if pending.iter().all(|&p| p == 0) {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: outboxes not drained: {pending:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Settled: still exactly the sum, and each applied forward wrote exactly one entry.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reg.read(&receiver, GetValue).await.unwrap(), sum, "round {round}");
        assert_eq!(reg.read(&receiver, GetEntryCount).await.unwrap(), sum, "round {round}: receiver entries");
        rt.shutdown().await;

        // And on disk after a clean shutdown, with sender values untouched by the recovery.
        for (s, (v, _)) in SENDERS.iter().zip(&senders) {
            assert_eq!(file_state(dir, s), (*v, 0), "round {round}: sender {s} after shutdown");
        }
        assert_eq!(file_state(dir, RECEIVER), (sum, 0), "round {round}: receiver after shutdown");
        eprintln!("round {round}: recovered; markers left {:?}", recovery_markers(dir));
    }
    assert!(previous_sum > 0, "the child never committed anything");
    assert!(rounds_with_backlog >= 2, "only {rounds_with_backlog} round(s) left undelivered rows to recover");
    eprintln!("crash test took {:?}", started.elapsed());
}

#[derive(QueryableByName)]
struct LastSeq {
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

fn inbox_last_seq(dir: &Path, receiver: &str, sender: &str) -> i64 {
    let mut conn = open_file(&actor_file(dir, receiver));
    let rows: Vec<LastSeq> =
        diesel::sql_query("SELECT last_seq FROM _foundry_inbox WHERE source_kind = 'tally' AND source_key = ?")
            .bind::<Text, _>(sender)
            .load(&mut conn)
            .unwrap();
    rows.first().expect("receiver recorded the sender").last_seq
}

/// Recreates the state a crash leaves between "receiver committed" and "sender deleted its row": the rows the
/// receiver already applied are back in the sender's outbox (with a different payload, so any re-apply shows), and the
/// sender is listed in the recovery index. Redelivering them must change nothing; a fresh row must still apply.
#[actix_rt::test]
async fn redelivered_outbox_rows_are_ignored_by_the_receiver() {
    let (rt, tmp) = runtime(2);
    let dir = tmp.path().to_owned();
    let reg = rt.registry::<Tally>();
    let (sender, receiver) = ("dup-sender".to_owned(), "dup-receiver".to_owned());
    for _ in 0..2 {
        reg.mutate(&sender, AddAndForward { by: 3, target: receiver.clone() }).await.unwrap();
    }
    let file = actor_file(&dir, &sender);
    eventually("outbox drained", || pending_count(&mut observe_file(&file)).unwrap() == 0).await;
    assert_eq!(reg.read(&receiver, GetValue).await.unwrap(), 6);
    rt.shutdown().await;

    let last = inbox_last_seq(&dir, &receiver, &sender);
    assert_eq!(last, 2, "two rows delivered, sequence numbers start at 1");
    let mut conn = open_file(&actor_file(&dir, &sender));
    for seq in 1..=last {
        diesel::sql_query(
            "INSERT INTO _foundry_outbox (seq, target_kind, target_key, message, payload, created_at_ms) \
             VALUES (?, 'tally', ?, 'tally.received', '{\"by\":100}', 0)",
        )
        .bind::<BigInt, _>(seq)
        .bind::<Text, _>(&receiver)
        .execute(&mut conn)
        .unwrap();
    }
    assert_eq!(pending_count(&mut conn).unwrap(), 2);
    drop(conn);
    let mut index = open_file(&dir.join("_foundry_index.sqlite3"));
    diesel::sql_query("INSERT OR IGNORE INTO outbox_pending (kind, key) VALUES ('tally', ?)")
        .bind::<Text, _>(&sender)
        .execute(&mut index)
        .unwrap();
    drop(index);

    let rt = runtime_at(&dir, 2);
    let reg = rt.registry::<Tally>();
    let report = rt.recover().await;
    assert_eq!(report.resumed, 1, "{report:?}");
    let file = actor_file(&dir, &sender);
    eventually("duplicates acknowledged", || pending_count(&mut observe_file(&file)).unwrap() == 0).await;
    let mut conn = observe_file(&file);
    assert_eq!(reg.read(&receiver, GetValue).await.unwrap(), 6, "a redelivered row was applied again");
    assert_eq!(reg.read(&receiver, GetEntryCount).await.unwrap(), 2);
    // Not dead-lettered either: a duplicate is acknowledged, not refused.
    let dead: i64 = {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<N> =
            diesel::sql_query("SELECT COUNT(*) AS n FROM _foundry_dead_letters").load(&mut conn).unwrap();
        rows[0].n
    };
    assert_eq!(dead, 0);

    // Sequence numbers keep growing past the re-inserted rows, so the next forward is fresh and applied once.
    reg.mutate(&sender, AddAndForward { by: 4, target: receiver.clone() }).await.unwrap();
    eventually("fresh row delivered", || pending_count(&mut observe_file(&file)).unwrap() == 0).await;
    assert_eq!(reg.read(&receiver, GetValue).await.unwrap(), 10);
    assert_eq!(reg.read(&receiver, GetEntryCount).await.unwrap(), 3);
    rt.shutdown().await;
    assert_eq!(inbox_last_seq(&dir, &receiver, &sender), 3);
}

/// A process killed after its senders drained their outboxes, but before they stopped, leaves their recovery markers
/// behind. Recovery reactivates them; a sender that opens with an empty outbox must still clear its marker, or every
/// later recovery would reactivate it again.
#[actix_rt::test]
async fn recovery_clears_markers_of_senders_with_empty_outboxes() {
    let (rt, tmp) = runtime(2);
    let dir = tmp.path().to_owned();
    let reg = rt.registry::<Tally>();
    let sender = "m-sender".to_owned();
    reg.mutate(&sender, AddAndForward { by: 1, target: "m-receiver".into() }).await.unwrap();
    let file = actor_file(&dir, &sender);
    eventually("outbox drained", || pending_count(&mut observe_file(&file)).unwrap() == 0).await;
    rt.shutdown().await;
    assert_eq!(recovery_markers(&dir), Vec::<(String, String)>::new(), "a clean stop clears the marker");
    // The state SIGKILL leaves after the drain: marker present, outbox empty.
    let mut index = open_file(&dir.join("_foundry_index.sqlite3"));
    diesel::sql_query("INSERT INTO outbox_pending (kind, key) VALUES ('tally', ?)")
        .bind::<Text, _>(&sender)
        .execute(&mut index)
        .unwrap();
    drop(index);

    let rt = runtime_at(&dir, 2);
    let _reg = rt.registry::<Tally>();
    assert_eq!(rt.recover().await.resumed, 1);
    rt.shutdown().await;
    assert_eq!(recovery_markers(&dir), Vec::<(String, String)>::new(), "stale marker survived recovery");
}

#[actix_rt::test]
async fn markers_clear_once_an_outbox_settles_so_recovery_costs_what_is_pending() {
    let (rt, tmp) = runtime(2);
    let dir = tmp.path().to_owned();
    let reg = rt.registry::<Tally>();
    for i in 0..20 {
        reg.mutate(&format!("settle-{i}"), AddAndForward { by: 1, target: "settle-receiver".into() }).await.unwrap();
    }
    assert_eq!(recovery_markers(&dir).len(), 20, "each sender is marked while its message is on its way");
    // Delivered and quiet for a moment: the markers go although every sender is still live, so a SIGKILL now
    // would make the next start recover nothing.
    eventually("markers cleared", || recovery_markers(&dir).is_empty()).await;
    assert!((0..20).all(|i| reg.is_live(&format!("settle-{i}"))), "cleared without passivating");
    assert_eq!(reg.read(&"settle-receiver".to_owned(), GetValue).await.unwrap(), 20);
    // A later outbox write marks again, inside its transaction.
    reg.mutate(&"settle-0".to_owned(), AddAndForward { by: 1, target: "settle-receiver".into() }).await.unwrap();
    assert!(recovery_markers(&dir).contains(&("tally".to_owned(), "settle-0".to_owned())));
    rt.shutdown().await;
}
