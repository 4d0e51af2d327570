//! A small test kind, `tally`, exercising every runtime feature: reads, mutations that fail or panic after writing,
//! outbox deliveries, topics, scoped background work, and a gate that holds the mailbox.
#![allow(dead_code)]

pub mod browser;
pub mod routes;
pub mod sandbox;
pub mod web;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Accepts, Command, Delivery, EmbeddedMigrations, Entity, EntityCtx, KindConfig, Mutation, Read,
    Runtime, RuntimeConfig, SnapshotError, Tx,
};
use serde::{Deserialize, Serialize};

diesel::table! {
    tally (id) {
        id -> Integer,
        value -> BigInt,
    }
}

diesel::table! {
    entries (id) {
        id -> Integer,
        note -> Text,
    }
}

pub struct Tally {
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    #[error("negative amounts are refused")]
    Negative,
    #[error("not ready for this amount yet")]
    NotYet,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl Entity for Tally {
    type Key = String;
    const KIND: &'static str = "tally";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(key: &String, _db: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Tally { key: key.clone() })
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        match topic {
            "tally" => {
                let value = current(db)?;
                let entries: i64 = entries::table.count().get_result(db)?;
                Ok(serde_json::json!({ "key": self.key, "value": value, "entries": entries }))
            }
            _ => Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() }),
        }
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<Received>();
    }
}

pub fn current(db: &mut SqliteConnection) -> QueryResult<i64> {
    tally::table.select(tally::value).find(1).first(db)
}

fn add(tx: &mut Tx<'_>, by: i64, note: &str) -> QueryResult<i64> {
    diesel::update(tally::table.find(1)).set(tally::value.eq(tally::value + by)).execute(tx.conn())?;
    diesel::insert_into(entries::table).values(entries::note.eq(note)).execute(tx.conn())?;
    tx.touch("tally");
    current(tx.conn())
}

/// Adds `by`. Writes first, then refuses negative amounts (so a refusal must roll back real writes) and panics on
/// the note "panic" (so a panic must too).
pub struct Add {
    pub by: i64,
    pub note: String,
}

impl Add {
    pub fn new(by: i64) -> Self {
        Add { by, note: format!("add {by}") }
    }
    pub fn panicking() -> Self {
        Add { by: 1000, note: "panic".into() }
    }
}

impl Mutation for Add {
    type Entity = Tally;
    type Output = i64;
    type Error = TallyError;
    fn apply(self, _: &Tally, tx: &mut Tx<'_>) -> Result<i64, TallyError> {
        let v = add(tx, self.by, &self.note)?;
        if self.note == "panic" {
            panic!("poisoned mutation");
        }
        if self.by < 0 {
            return Err(TallyError::Negative);
        }
        Ok(v)
    }
}

/// Adds `by` here and tells `target` (through the outbox) to add it too.
pub struct AddAndForward {
    pub by: i64,
    pub target: String,
}

impl Mutation for AddAndForward {
    type Entity = Tally;
    type Output = i64;
    type Error = TallyError;
    fn apply(self, _: &Tally, tx: &mut Tx<'_>) -> Result<i64, TallyError> {
        let v = add(tx, self.by, "forward")?;
        tx.send(&self.target, &Received { by: self.by })?;
        Ok(v)
    }
}

/// The outbox message `AddAndForward` sends.
#[derive(Serialize, Deserialize)]
pub struct Received {
    pub by: i64,
}

impl Mutation for Received {
    type Entity = Tally;
    type Output = i64;
    type Error = TallyError;
    fn apply(self, _: &Tally, tx: &mut Tx<'_>) -> Result<i64, TallyError> {
        let v = add(tx, self.by, "received")?;
        // Poison amounts, to test how refused, not-yet and panicking deliveries end.
        match self.by {
            666 => panic!("receiver cannot take 666"),
            777 if v < 777 + 10 => Err(TallyError::NotYet),
            by if by < 0 => Err(TallyError::Negative),
            _ => Ok(v),
        }
    }
}

impl Delivery for Received {
    const NAME: &'static str = "tally.received";

    fn is_retryable(error: &TallyError) -> bool {
        matches!(error, TallyError::NotYet)
    }
}

/// Tries to insert a second row into the singleton table.
pub struct InsertSecondRow;

impl Mutation for InsertSecondRow {
    type Entity = Tally;
    type Output = ();
    type Error = TallyError;
    fn apply(self, _: &Tally, tx: &mut Tx<'_>) -> Result<(), TallyError> {
        diesel::insert_into(tally::table).values((tally::id.eq(2), tally::value.eq(0))).execute(tx.conn())?;
        Ok(())
    }
}

pub struct GetValue;

impl Read for GetValue {
    type Entity = Tally;
    type Output = i64;
    type Error = TallyError;
    fn read(self, _: &Tally, db: &mut SqliteConnection) -> Result<i64, TallyError> {
        Ok(current(db)?)
    }
}

pub struct GetEntryCount;

impl Read for GetEntryCount {
    type Entity = Tally;
    type Output = i64;
    type Error = TallyError;
    fn read(self, _: &Tally, db: &mut SqliteConnection) -> Result<i64, TallyError> {
        Ok(entries::table.count().get_result(db)?)
    }
}

/// A read that (wrongly) tries to write.
pub struct WriteInRead;

impl Read for WriteInRead {
    type Entity = Tally;
    type Output = ();
    type Error = TallyError;
    fn read(self, _: &Tally, db: &mut SqliteConnection) -> Result<(), TallyError> {
        diesel::update(tally::table.find(1)).set(tally::value.eq(999)).execute(db)?;
        Ok(())
    }
}

pub struct PanicInRead;

impl Read for PanicInRead {
    type Entity = Tally;
    type Output = ();
    type Error = TallyError;
    fn read(self, _: &Tally, _: &mut SqliteConnection) -> Result<(), TallyError> {
        panic!("read panicked");
    }
}

/// Sets its flag when dropped: proves a future was cancelled.
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Starts scoped background work: an interval bumping `ticks`, a timer far in the future and a pending future; each
/// holds a `DropFlag`, so the test sees them cancelled.
pub struct StartBackground {
    pub ticks: Arc<AtomicUsize>,
    pub interval_dropped: Arc<AtomicBool>,
    pub timer_dropped: Arc<AtomicBool>,
    pub future_dropped: Arc<AtomicBool>,
}

impl Command for StartBackground {
    type Entity = Tally;
    type Output = usize;
    type Error = TallyError;
    fn run(self, _: &mut Tally, ctx: &mut EntityCtx<'_, Tally>) -> Result<usize, TallyError> {
        let ticks = self.ticks;
        let interval_flag = DropFlag(self.interval_dropped);
        ctx.run_interval(Duration::from_millis(5), move |_, _| {
            let _keep = &interval_flag;
            ticks.fetch_add(1, Ordering::SeqCst);
        });
        let timer_flag = DropFlag(self.timer_dropped);
        ctx.run_later(Duration::from_secs(3600), move |_, _| drop(timer_flag));
        let future_flag = DropFlag(self.future_dropped);
        ctx.spawn(async move {
            let _keep = future_flag;
            std::future::pending::<()>().await;
        });
        Ok(ctx.background_count())
    }
}

/// Holds the actor's mailbox until `release` fires, so tests can queue messages deterministically.
pub struct Gate {
    pub release: tokio::sync::oneshot::Receiver<()>,
}

impl Command for Gate {
    type Entity = Tally;
    type Output = ();
    type Error = TallyError;
    fn run(self, _: &mut Tally, ctx: &mut EntityCtx<'_, Tally>) -> Result<(), TallyError> {
        let rx = self.release;
        ctx.wait(async move {
            let _ = rx.await;
        });
        Ok(())
    }
}

/// A kind whose second migration is broken.
pub struct Broken;

impl Entity for Broken {
    type Key = String;
    const KIND: &'static str = "broken";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/broken");
    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Broken)
    }
}

pub struct Ping;

impl Read for Ping {
    type Entity = Broken;
    type Output = ();
    type Error = std::convert::Infallible;
    fn read(self, _: &Broken, _: &mut SqliteConnection) -> Result<(), std::convert::Infallible> {
        Ok(())
    }
}

/// A runtime on a fresh temporary directory; the directory lives as long as the returned guard.
pub fn runtime(arbiters: usize) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime_at(dir.path(), arbiters);
    (rt, dir)
}

pub fn runtime_at(path: &std::path::Path, arbiters: usize) -> Runtime {
    let mut config = RuntimeConfig::new(path);
    config.arbiters = arbiters;
    Runtime::start(config).expect("runtime starts")
}

pub fn config(f: impl FnOnce(&mut KindConfig)) -> KindConfig {
    let mut c = KindConfig::default();
    f(&mut c);
    c
}

/// Waits (bounded) until `cond` holds; for effects that happen in the background, not for timing assertions.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Polls `f` until it answers `Some` (every 25 ms, for up to 15 s) and returns that value.
pub async fn eventually_some<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Opens a database file directly (a second connection): for files no runtime holds open (the runtime is stopped, the
/// actor passivated, its process killed) and for the runtime's own index. A live actor holds its file's lock for as
/// long as it is open (exclusive locking mode); to read one, use [`observe_file`].
pub fn open_file(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open db file")
}

/// Opens a copy of an actor's database file and its WAL as they are on disk at this moment: what an outside observer
/// sees of a live actor's committed state (a WAL frame is only valid once its commit is complete). Read-only in
/// spirit: writes go to the copy. The copy sits under `<data>/.observed/` (inside the test's own directory) and is
/// replaced by the next observation of the same file.
pub fn observe_file(path: &std::path::Path) -> SqliteConnection {
    let data = path.parent().and_then(|kind| kind.parent()).expect("<data>/<kind>/<file>");
    let kind = path.parent().and_then(|k| k.file_name()).expect("kind directory");
    let dir = data.join(".observed").join(kind);
    std::fs::create_dir_all(&dir).expect("observer dir");
    let copy = dir.join(path.file_name().expect("file name"));
    let with = |p: &std::path::Path, suffix: &str| std::path::PathBuf::from(format!("{}{suffix}", p.display()));
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with(&copy, suffix));
    }
    // A consistent pair: the WAL read before and after the database must be the same bytes. A commit (frames
    // appended) or a checkpoint that restarted the WAL in between would otherwise pair a database with a WAL of
    // another moment — a copy showing an older state, which made an `eventually` pass early.
    let read_wal = || std::fs::read(with(path, "-wal")).ok();
    let (db, wal) = (0..200)
        .find_map(|_| {
            let before = read_wal();
            let db = std::fs::read(path).expect("read the database file");
            let after = read_wal();
            if before == after {
                return Some((db, after));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
            None
        })
        .expect("the database kept changing while it was copied");
    std::fs::write(&copy, db).expect("write the copy");
    if let Some(wal) = wal {
        std::fs::write(with(&copy, "-wal"), wal).expect("write the WAL copy");
    }
    SqliteConnection::establish(copy.to_str().expect("utf-8 path")).expect("open the copy")
}

/// Polls `read` every 100 ms until two reads in a row agree (asynchronous work has landed); bounded.
pub async fn until_stable<T: PartialEq + std::fmt::Debug>(what: &str, mut read: impl FnMut() -> T) -> T {
    let mut last = read();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("{what} keeps changing: {last:?}");
}

/// Tells the parent of a [`kill_9_child_when_ready`] child that it reached the point to be killed at.
pub fn report_ready(marker: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{marker}");
    let _ = out.flush();
}

/// Re-runs this test binary as a child running only `test` with `env = dir` (the child test does its work when that
/// variable is set and returns at once otherwise), waits until it prints `marker` ([`report_ready`]), then SIGKILLs
/// it and checks it died of that signal: a crash at a chosen moment, with the child's files left as they were.
pub fn kill_9_child_when_ready(test: &str, env: &str, dir: &std::path::Path, marker: &str) {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().expect("this test binary");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn the child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker_owned = marker.to_owned();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(&marker_owned) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the child {test} never reported {marker}");
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "child ended by {status:?}");
}
