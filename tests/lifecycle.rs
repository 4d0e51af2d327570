//! Actor lifecycle on real SQLite files: `on_create` once per database (and a refusal leaves nothing), `on_wake` on
//! every activation, `on_sleep` before passivation and shutdown with the database still open, keep-awake work holding
//! off idle passivation, and destroy — outbox settled first, then the file deleted, the key recreated fresh, callers
//! meanwhile waiting, a refusal changing nothing, subscribers ended, and a destroy cut by kill -9 resumed at recovery.
//!
//! The kill -9 child is this test binary, re-executed with `--exact child_process_starts_a_destroy_then_waits` and
//! `FOUNDRY_DESTROY_CHILD_DIR` set; in a normal run that test returns at once.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Accepts, ActivationFailure, CallError, Command, Delivery, EmbeddedMigrations, Entity, EntityCtx,
    HookResult, KindConfig, Mutation, Read, Registry, Runtime, RuntimeConfig, SleepReason, SnapshotError, Tx,
};
use serde::{Deserialize, Serialize};
// The fixture migration's tables (`tests/fixtures/migrations/tally`), declared once in the support module.
use support::entries;

/// Whether `Farewell` deliveries are accepted (otherwise refused as "not yet", which the sender retries).
static ACCEPT_FAREWELLS: AtomicBool = AtomicBool::new(true);

/// A kind that notes its lifecycle in its own `entries` table.
struct Life {
    key: String,
}

#[derive(Debug, thiserror::Error)]
enum LifeError {
    #[error("not ready yet")]
    NotYet,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

fn note(conn: &mut SqliteConnection, text: &str) -> QueryResult<()> {
    diesel::insert_into(entries::table).values(entries::note.eq(text)).execute(conn).map(drop)
}

impl Entity for Life {
    type Key = String;
    const KIND: &'static str = "life";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(key: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Life { key: key.clone() })
    }

    fn config() -> KindConfig {
        KindConfig { idle_timeout: Duration::from_secs(600), ..KindConfig::default() }
    }

    fn on_create(key: &String, tx: &mut Tx<'_>) -> HookResult {
        if key.starts_with("refuse-create") {
            return Err("this key may not exist".into());
        }
        note(tx.conn(), "created")?;
        Ok(())
    }

    fn on_wake(&mut self, ctx: &mut EntityCtx<'_, Self>) {
        let _ = ctx.write(|tx| note(tx.conn(), "woke"));
    }

    fn on_sleep(&mut self, ctx: &mut EntityCtx<'_, Self>, reason: SleepReason) {
        let _ = ctx.write(|tx| note(tx.conn(), &format!("slept: {reason:?}")));
    }

    fn on_destroy(&self, tx: &mut Tx<'_>) -> HookResult {
        if self.key.starts_with("refuse-destroy") {
            return Err("this one stays".into());
        }
        // Tell a friend, through the outbox: delivered before the database goes.
        tx.send(&format!("{}-friend", self.key), &Farewell { from: self.key.clone() })?;
        Ok(())
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        let notes: Vec<String> = entries::table.select(entries::note).order(entries::id).load(db)?;
        match topic {
            "notes" => Ok(serde_json::json!(notes)),
            _ => Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() }),
        }
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.accept::<Farewell>();
    }
}

#[derive(Serialize, Deserialize)]
struct Farewell {
    from: String,
}

impl Mutation for Farewell {
    type Entity = Life;
    type Output = ();
    type Error = LifeError;
    fn apply(self, _: &Life, tx: &mut Tx<'_>) -> Result<(), LifeError> {
        if !ACCEPT_FAREWELLS.load(Ordering::SeqCst) {
            return Err(LifeError::NotYet);
        }
        note(tx.conn(), &format!("farewell from {}", self.from))?;
        Ok(())
    }
}

impl Delivery for Farewell {
    const NAME: &'static str = "life.farewell";
    fn is_retryable(e: &LifeError) -> bool {
        matches!(e, LifeError::NotYet)
    }
}

struct AddNote(&'static str);

impl Mutation for AddNote {
    type Entity = Life;
    type Output = ();
    type Error = LifeError;
    fn apply(self, _: &Life, tx: &mut Tx<'_>) -> Result<(), LifeError> {
        note(tx.conn(), self.0)?;
        tx.touch("notes");
        Ok(())
    }
}

struct GetNotes;

impl Read for GetNotes {
    type Entity = Life;
    type Output = Vec<String>;
    type Error = LifeError;
    fn read(self, _: &Life, db: &mut SqliteConnection) -> Result<Vec<String>, LifeError> {
        Ok(entries::table.select(entries::note).order(entries::id).load(db)?)
    }
}

/// Background work that keeps the actor awake for `for_ms`, then notes that it finished.
struct WorkAwake {
    for_ms: u64,
}

impl Command for WorkAwake {
    type Entity = Life;
    type Output = ();
    type Error = LifeError;
    fn run(self, _: &mut Life, ctx: &mut EntityCtx<'_, Life>) -> Result<(), LifeError> {
        let me = ctx.myself();
        ctx.keep_awake(async move {
            tokio::time::sleep(Duration::from_millis(self.for_ms)).await;
            let _ = me.exec(WriteNote("work done")).await;
        });
        Ok(())
    }
}

struct WriteNote(&'static str);

impl Command for WriteNote {
    type Entity = Life;
    type Output = ();
    type Error = LifeError;
    fn run(self, _: &mut Life, ctx: &mut EntityCtx<'_, Life>) -> Result<(), LifeError> {
        ctx.write(|tx| note(tx.conn(), self.0).map_err(LifeError::from))
    }
}

/// The actor destroys itself once this command is done.
struct DestroyYourself;

impl Command for DestroyYourself {
    type Entity = Life;
    type Output = ();
    type Error = LifeError;
    fn run(self, _: &mut Life, ctx: &mut EntityCtx<'_, Life>) -> Result<(), LifeError> {
        ctx.destroy();
        Ok(())
    }
}

fn runtime_at(dir: &Path) -> Runtime {
    let mut config = RuntimeConfig::new(dir);
    config.arbiters = 2;
    Runtime::start(config).expect("runtime starts")
}

fn lives(rt: &Runtime, idle: Duration) -> Registry<Life> {
    rt.register::<Life>(KindConfig { idle_timeout: idle, ..KindConfig::default() })
}

fn file_of(dir: &Path, key: &str) -> PathBuf {
    dir.join("life").join(format!("{key}.sqlite3"))
}

/// The notes of a passivated (or destroyed) actor, read from its file.
fn notes_in_file(dir: &Path, key: &str) -> Vec<String> {
    let mut conn = support::observe_file(&file_of(dir, key));
    entries::table.select(entries::note).order(entries::id).load(&mut conn).unwrap()
}

fn k(s: &str) -> String {
    s.to_owned()
}

#[actix_rt::test]
async fn on_create_runs_once_per_database_and_on_wake_on_every_activation() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    reg.mutate(&k("a"), AddNote("first")).await.unwrap();
    assert_eq!(reg.read(&k("a"), GetNotes).await.unwrap(), ["created", "woke", "first"]);
    assert!(reg.passivate(&k("a")).await, "idle actor passivates");
    assert_eq!(reg.read(&k("a"), GetNotes).await.unwrap(), ["created", "woke", "first", "slept: Evicted", "woke"]);
    rt.shutdown().await;
    // A new process: the database exists, so it is not created again.
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    let notes = reg.read(&k("a"), GetNotes).await.unwrap();
    assert_eq!(notes.iter().filter(|n| *n == "created").count(), 1, "{notes:?}");
    assert_eq!(notes.last().map(String::as_str), Some("woke"));
    assert_eq!(notes[notes.len() - 2], "slept: Shutdown", "shutdown runs on_sleep: {notes:?}");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn an_on_create_refusal_fails_the_activation_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    let key = k("refuse-create-1");
    let err = reg.mutate(&key, AddNote("never")).await.unwrap_err();
    match err {
        CallError::Activation(e) => {
            assert!(matches!(e.reason, ActivationFailure::Create(ref m) if m.contains("may not exist")), "{e}")
        }
        other => panic!("expected an activation failure, got {other}"),
    }
    assert!(!file_of(dir.path(), &key).exists(), "no database is left behind");
    assert!(!reg.exists(&key).unwrap());
    assert!(matches!(reg.read_existing(&key, GetNotes).await, Err(CallError::NotFound { .. })));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn on_sleep_writes_before_idle_passivation_closes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_millis(150));
    reg.mutate(&k("idle"), AddNote("hello")).await.unwrap();
    support::eventually("the idle actor passivates", || !reg.is_live(&k("idle"))).await;
    // The file is closed: read it directly.
    assert_eq!(notes_in_file(dir.path(), "idle"), ["created", "woke", "hello", "slept: Idle"]);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn keep_awake_work_holds_off_idle_passivation_and_eviction_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_millis(100));
    reg.exec(&k("busy"), WorkAwake { for_ms: 700 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(reg.is_live(&k("busy")), "keep-awake work holds off idle passivation");
    assert!(!reg.passivate(&k("busy")).await, "nor can it be evicted");
    support::eventually("the actor passivates once the work is done", || !reg.is_live(&k("busy"))).await;
    let notes = notes_in_file(dir.path(), "busy");
    assert_eq!(notes, ["created", "woke", "work done", "slept: Idle"], "the work finished before the actor slept");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn destroy_settles_the_outbox_first_then_deletes_the_database_and_the_key_is_recreated_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    let key = k("doomed");
    reg.mutate(&key, AddNote("precious")).await.unwrap();
    let mut sub = reg.subscribe(&key, "notes").await.unwrap();
    assert!(sub.next().await.is_some(), "the subscriber gets the current snapshot");

    // The friend refuses the farewell for now: the destroy must wait for its outbox.
    ACCEPT_FAREWELLS.store(false, Ordering::SeqCst);
    let destroying = {
        let (reg, key) = (reg.clone(), key.clone());
        actix_rt::spawn(async move { reg.destroy(&key).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!destroying.is_finished(), "destroy waits for its outbox to settle");
    assert!(file_of(dir.path(), &key).exists());
    // A caller arriving now waits for the key, then gets a fresh actor.
    let later = {
        let (reg, key) = (reg.clone(), key.clone());
        actix_rt::spawn(async move { reg.read(&key, GetNotes).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!later.is_finished(), "calls wait while the actor is being destroyed");

    ACCEPT_FAREWELLS.store(true, Ordering::SeqCst);
    destroying.await.unwrap().expect("destroyed");
    assert_eq!(
        reg.read(&k("doomed-friend"), GetNotes).await.unwrap(),
        ["created", "woke", "farewell from doomed"],
        "on_destroy's outbox message was delivered before the database went"
    );
    let fresh = later.await.unwrap().unwrap();
    assert_eq!(fresh, ["created", "woke"], "the waiting caller got a fresh actor, not the old data");
    // The old subscription ended with the actor.
    let ended = tokio::time::timeout(Duration::from_secs(5), async { while sub.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "a destroyed actor's subscribers see the end of their stream");
    assert!(reg.connections(&key).is_empty(), "the fresh actor has none of the old actor's connections");
    assert_eq!(reg.stats().destroyed.load(Ordering::Relaxed), 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn destroying_an_unknown_key_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    assert!(matches!(reg.destroy(&k("nobody")).await, Err(CallError::NotFound { .. })));
    assert!(!file_of(dir.path(), "nobody").exists());
    // Destroyed once, the key names nothing for `*_existing` calls either.
    reg.mutate(&k("once"), AddNote("x")).await.unwrap();
    reg.destroy(&k("once")).await.unwrap();
    assert!(matches!(reg.destroy(&k("once")).await, Err(CallError::NotFound { .. })));
    assert!(matches!(reg.read_existing(&k("once"), GetNotes).await, Err(CallError::NotFound { .. })));
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", file_of(dir.path(), "once").display());
        assert!(!Path::new(&path).exists(), "{path} was deleted");
    }
    rt.shutdown().await;
}

#[actix_rt::test]
async fn an_on_destroy_refusal_changes_nothing_and_the_actor_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    let key = k("refuse-destroy-1");
    reg.mutate(&key, AddNote("kept")).await.unwrap();
    match reg.destroy(&key).await {
        Err(CallError::Handler(m)) => assert!(m.0.contains("stays"), "{m}"),
        other => panic!("expected the hook's refusal, got {other:?}"),
    }
    let notes = reg.read(&key, GetNotes).await.unwrap();
    assert!(notes.contains(&"kept".to_owned()), "{notes:?}");
    assert!(file_of(dir.path(), &key).exists());
    assert_eq!(reg.stats().destroyed.load(Ordering::Relaxed), 0);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn an_actor_can_destroy_itself() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    reg.exec(&k("self"), DestroyYourself).await.unwrap();
    support::eventually("the actor's file is deleted", || !file_of(dir.path(), "self").exists()).await;
    support::eventually("and the farewell delivered", || file_of(dir.path(), "self-friend").exists()).await;
    rt.shutdown().await;
}

const CHILD_TEST: &str = "child_process_starts_a_destroy_then_waits";
const CHILD_DIR_ENV: &str = "FOUNDRY_DESTROY_CHILD_DIR";
const READY: &str = "FOUNDRY_DESTROY_CHILD_READY";

/// The child: starts destroying `crash` while its friend refuses the farewell (so the destroy cannot finish), reports
/// once the destroy is committed, and waits to be killed.
#[actix_rt::test]
async fn child_process_starts_a_destroy_then_waits() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    ACCEPT_FAREWELLS.store(false, Ordering::SeqCst);
    let rt = runtime_at(Path::new(&dir));
    let reg = lives(&rt, Duration::from_secs(600));
    reg.mutate(&k("crash"), AddNote("before")).await.unwrap();
    let destroying = {
        let reg = reg.clone();
        actix_rt::spawn(async move { reg.destroy(&k("crash")).await })
    };
    // Committed once the friend has been asked (and refused) at least once: the farewell exists only in that commit.
    support::eventually("the farewell is attempted", || file_of(Path::new(&dir), "crash-friend").exists()).await;
    support::report_ready(READY);
    let _ = destroying.await;
    std::future::pending::<()>().await;
}

#[actix_rt::test]
async fn a_destroy_cut_by_kill_9_resumes_at_recovery() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    support::kill_9_child_when_ready(CHILD_TEST, CHILD_DIR_ENV, dir.path(), READY);
    assert!(file_of(dir.path(), "crash").exists(), "the kill came before the file was deleted");

    // A new process: recovery reactivates the actor, which resumes the destroy instead of serving calls.
    let rt = runtime_at(dir.path());
    let reg = lives(&rt, Duration::from_secs(600));
    let report = rt.recover().await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while file_of(dir.path(), "crash").exists() {
        assert!(Instant::now() < deadline, "the destroy did not resume after the crash");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let friend = reg.read(&k("crash-friend"), GetNotes).await.unwrap();
    assert_eq!(friend.iter().filter(|n| *n == "farewell from crash").count(), 1, "delivered once: {friend:?}");
    assert!(matches!(reg.read_existing(&k("crash"), GetNotes).await, Err(CallError::NotFound { .. })));
    rt.shutdown().await;
}
