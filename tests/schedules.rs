//! Durable schedules (alarms) on real SQLite files: they fire after their delay against the committed state, can be
//! cancelled and listed, vanish with a rolled-back mutation, wake a passivated actor, repeat, are retried with
//! back-off when their handler fails, and survive a kill -9 of the process that set them.
//!
//! The kill -9 child is this test binary, re-executed with `--exact child_process_schedules_then_waits` and
//! `FOUNDRY_SCHEDULE_CHILD_DIR` set; in a normal run that test returns at once.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Accepts, CancelSchedule, EmbeddedMigrations, Entity, KindConfig, ListSchedules, Mutation, Read,
    Registry, Runtime, RuntimeConfig, ScheduleId, Scheduled, Tx,
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

/// A kind whose state is one number and a list of notes, with alarms.
struct Alarm;

#[derive(Debug, thiserror::Error)]
enum AlarmError {
    #[error("refused on purpose")]
    Refused,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl Entity for Alarm {
    type Key = String;
    const KIND: &'static str = "alarm";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Alarm)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<Note>().schedule::<Flaky>().schedule::<Poison>();
    }
}

fn value(db: &mut SqliteConnection) -> QueryResult<i64> {
    tally::table.select(tally::value).find(1).first(db)
}

fn note(tx: &mut Tx<'_>, text: &str) -> QueryResult<()> {
    diesel::insert_into(entries::table).values(entries::note.eq(text)).execute(tx.conn()).map(|_| ())
}

/// The scheduled message: notes the value it sees as `<label> saw <value>`.
#[derive(Serialize, Deserialize)]
struct Note {
    label: String,
}

impl Mutation for Note {
    type Entity = Alarm;
    type Output = ();
    type Error = AlarmError;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> Result<(), AlarmError> {
        let v = value(tx.conn())?;
        note(tx, &format!("{} saw {v}", self.label))?;
        Ok(())
    }
}

impl Scheduled for Note {
    const NAME: &'static str = "alarm.note";
}

/// Fails (after writing, so the write must roll back) until it has been attempted `fail_times` times.
#[derive(Serialize, Deserialize)]
struct Flaky {
    fail_times: usize,
}

static FLAKY_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

impl Mutation for Flaky {
    type Entity = Alarm;
    type Output = ();
    type Error = AlarmError;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> Result<(), AlarmError> {
        note(tx, "flaky ran")?;
        if FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) < self.fail_times {
            return Err(AlarmError::Refused);
        }
        Ok(())
    }
}

impl Scheduled for Flaky {
    const NAME: &'static str = "alarm.flaky";
}

/// Panics the first time it runs.
#[derive(Serialize, Deserialize)]
struct Poison;

static POISON_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

impl Mutation for Poison {
    type Entity = Alarm;
    type Output = ();
    type Error = AlarmError;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> Result<(), AlarmError> {
        note(tx, "poison ran")?;
        if POISON_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("poisoned alarm");
        }
        Ok(())
    }
}

impl Scheduled for Poison {
    const NAME: &'static str = "alarm.poison";
}

/// A message the kind does not declare with `Accepts::schedule`.
#[derive(Serialize, Deserialize)]
struct Undeclared;

impl Mutation for Undeclared {
    type Entity = Alarm;
    type Output = ();
    type Error = AlarmError;
    fn apply(self, _: &Alarm, _: &mut Tx<'_>) -> Result<(), AlarmError> {
        Ok(())
    }
}

impl Scheduled for Undeclared {
    const NAME: &'static str = "alarm.undeclared";
}

/// What to schedule.
enum What {
    Note(&'static str),
    Flaky(usize),
    Poison,
    Undeclared,
}

/// Sets `value` (when given) and schedules `what` after `after` (repeating every `after` if `repeat`); refuses after
/// writing both when `refuse`.
struct Set {
    value: Option<i64>,
    what: What,
    after: Duration,
    repeat: bool,
    refuse: bool,
}

impl Set {
    fn note(label: &'static str, after_ms: u64) -> Self {
        Set {
            value: None,
            what: What::Note(label),
            after: Duration::from_millis(after_ms),
            repeat: false,
            refuse: false,
        }
    }
}

impl Mutation for Set {
    type Entity = Alarm;
    type Output = ScheduleId;
    type Error = AlarmError;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> Result<ScheduleId, AlarmError> {
        if let Some(v) = self.value {
            diesel::update(tally::table.find(1)).set(tally::value.eq(v)).execute(tx.conn())?;
        }
        let id = match (self.what, self.repeat) {
            (What::Note(label), false) => tx.schedule_after(self.after, &Note { label: label.into() })?,
            (What::Note(label), true) => tx.schedule_every(self.after, &Note { label: label.into() })?,
            (What::Flaky(fail_times), _) => tx.schedule_after(self.after, &Flaky { fail_times })?,
            (What::Poison, _) => tx.schedule_after(self.after, &Poison)?,
            (What::Undeclared, _) => tx.schedule_after(self.after, &Undeclared)?,
        };
        if self.refuse {
            return Err(AlarmError::Refused);
        }
        Ok(id)
    }
}

struct SetValue(i64);

impl Mutation for SetValue {
    type Entity = Alarm;
    type Output = ();
    type Error = AlarmError;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> Result<(), AlarmError> {
        diesel::update(tally::table.find(1)).set(tally::value.eq(self.0)).execute(tx.conn())?;
        Ok(())
    }
}

struct GetNotes;

impl Read for GetNotes {
    type Entity = Alarm;
    type Output = Vec<String>;
    type Error = AlarmError;
    fn read(self, _: &Alarm, db: &mut SqliteConnection) -> Result<Vec<String>, AlarmError> {
        Ok(entries::table.select(entries::note).order(entries::id).load(db)?)
    }
}

fn runtime_at(dir: &Path) -> Runtime {
    let mut config = RuntimeConfig::new(dir);
    config.arbiters = 2;
    Runtime::start(config).expect("runtime starts")
}

fn alarms(rt: &Runtime) -> Registry<Alarm> {
    rt.register::<Alarm>(KindConfig { idle_timeout: Duration::from_secs(600), ..KindConfig::default() })
}

/// Polls `key`'s notes until `done` holds (or fails after a generous deadline, which only a broken runtime hits).
async fn notes_until(reg: &Registry<Alarm>, key: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let notes = reg.read(&key.to_owned(), GetNotes).await.expect("read notes");
        if done(&notes) {
            return notes;
        }
        assert!(Instant::now() < deadline, "condition never held; notes: {notes:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads an actor's notes from its file (no actor involved): a live actor holds its file, so through a copy of the
/// file and its WAL as they are on disk (`support::observe_file`), the committed state.
fn notes_on_disk(dir: &Path, key: &str) -> Vec<String> {
    let mut conn = support::observe_file(&dir.join("alarm").join(format!("{key}.sqlite3")));
    entries::table.select(entries::note).order(entries::id).load(&mut conn).unwrap()
}

#[actix_rt::test]
async fn a_schedule_fires_after_its_delay_against_the_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "a".to_owned();
    let set = Set { value: Some(5), ..Set::note("alarm", 300) };
    let id = reg.mutate(&key, set).await.unwrap();
    // Committed, but not applied at once.
    assert!(reg.read(&key, GetNotes).await.unwrap().is_empty());
    // A later commit is part of the state the alarm sees.
    reg.mutate(&key, SetValue(6)).await.unwrap();
    let notes = notes_until(&reg, &key, |n| !n.is_empty()).await;
    assert_eq!(notes, vec!["alarm saw 6".to_owned()]);
    // Fired once, and its row went with it.
    assert!(reg.read(&key, ListSchedules::new()).await.unwrap().is_empty());
    assert!(!reg.mutate(&key, CancelSchedule::new(id)).await.unwrap(), "nothing left to cancel");
    assert_eq!(rt.scheduled_actors().unwrap(), 0, "the due index forgets an actor with no schedules");
    assert_eq!(reg.stats().schedules_fired.load(Ordering::Relaxed), 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_cancelled_schedule_never_fires() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "c".to_owned();
    let cancelled = reg.mutate(&key, Set::note("cancelled", 200)).await.unwrap();
    reg.mutate(&key, Set::note("kept", 400)).await.unwrap();
    assert!(reg.mutate(&key, CancelSchedule::new(cancelled)).await.unwrap());
    let notes = notes_until(&reg, &key, |n| !n.is_empty()).await;
    assert_eq!(notes, vec!["kept saw 0".to_owned()], "only the kept schedule fired, and the cancelled one was earlier");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_rolled_back_mutation_leaves_no_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "r".to_owned();
    let refused = reg.mutate(&key, Set { refuse: true, ..Set::note("rolled back", 0) }).await;
    assert!(matches!(refused, Err(foundry::runtime::CallError::Handler(AlarmError::Refused))), "{refused:?}");
    assert!(reg.read(&key, ListSchedules::new()).await.unwrap().is_empty());
    // A later schedule fires alone: the rolled-back one (due at once) never does.
    reg.mutate(&key, Set::note("later", 100)).await.unwrap();
    let notes = notes_until(&reg, &key, |n| !n.is_empty()).await;
    assert_eq!(notes, vec!["later saw 0".to_owned()]);
    // An undeclared message is refused at scheduling time, with its transaction.
    let undeclared = reg.mutate(&key, Set { what: What::Undeclared, ..Set::note("", 0) }).await;
    let Err(foundry::runtime::CallError::Handler(AlarmError::Db(e))) = undeclared else { panic!("{undeclared:?}") };
    assert!(e.to_string().contains("does not declare alarm.undeclared"), "{e}");
    assert!(reg.read(&key, ListSchedules::new()).await.unwrap().is_empty());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn schedules_are_listed_earliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "l".to_owned();
    let late = reg.mutate(&key, Set::note("late", 3_600_000)).await.unwrap();
    let every = reg.mutate(&key, Set { repeat: true, ..Set::note("every", 1_800_000) }).await.unwrap();
    let list = reg.read(&key, ListSchedules::new()).await.unwrap();
    assert_eq!(list.iter().map(|s| ScheduleId(s.id)).collect::<Vec<_>>(), vec![every, late]);
    assert_eq!(list[0].message, "alarm.note");
    assert_eq!(list[0].every_ms, Some(1_800_000));
    assert_eq!(list[1].every_ms, None);
    assert_eq!(list[1].decode::<Note>().map(|n| n.label), Some("late".to_owned()));
    assert!(list[0].due_at_ms < list[1].due_at_ms);
    assert_eq!((list[0].attempts, list[0].last_error.as_deref()), (0, None));
    assert_eq!(rt.scheduled_actors().unwrap(), 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_passivated_actor_is_woken_when_its_schedule_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "p".to_owned();
    reg.mutate(&key, Set { value: Some(7), ..Set::note("woken", 500) }).await.unwrap();
    assert!(reg.passivate(&key).await, "the idle actor passivates, schedule or not");
    let deadline = Instant::now() + Duration::from_secs(5);
    while reg.is_live(&key) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!reg.is_live(&key));
    // Nobody calls it: only the due index can bring it back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while notes_on_disk(dir.path(), &key).is_empty() {
        assert!(Instant::now() < deadline, "the passivated actor was never woken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notes_on_disk(dir.path(), &key), vec!["woken saw 7".to_owned()]);
    assert!(reg.stats().activations.load(Ordering::Relaxed) >= 2, "woken by a new activation");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_repeating_schedule_fires_until_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "e".to_owned();
    let id = reg.mutate(&key, Set { repeat: true, ..Set::note("tick", 100) }).await.unwrap();
    notes_until(&reg, &key, |n| n.len() >= 3).await;
    let list = reg.read(&key, ListSchedules::new()).await.unwrap();
    assert_eq!(list.len(), 1, "one row, moved on each time");
    assert!(reg.mutate(&key, CancelSchedule::new(id)).await.unwrap());
    let after_cancel = reg.read(&key, GetNotes).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reg.read(&key, GetNotes).await.unwrap().len(), after_cancel, "no tick after the cancel");
    assert_eq!(rt.scheduled_actors().unwrap(), 0);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_failing_scheduled_handler_is_retried_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "f".to_owned();
    let id = reg.mutate(&key, Set { what: What::Flaky(3), ..Set::note("", 0) }).await.unwrap();
    // After the first failure the row is still there, counted, with the error, and due later than it was.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let list = reg.read(&key, ListSchedules::new()).await.unwrap();
        if let Some(s) = list.iter().find(|s| s.id == id.0 && s.attempts >= 1) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "no failed attempt recorded: {list:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(first.last_error.as_deref(), Some("refused on purpose"));
    let notes = notes_until(&reg, &key, |n| !n.is_empty()).await;
    // Every failed attempt rolled back its write; the fourth applied once.
    assert_eq!(notes, vec!["flaky ran".to_owned()]);
    assert_eq!(FLAKY_ATTEMPTS.load(Ordering::SeqCst), 4, "three failures, one success, no hot loop");
    assert_eq!(reg.stats().schedule_failures.load(Ordering::Relaxed), 3);
    assert!(reg.read(&key, ListSchedules::new()).await.unwrap().is_empty());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_panicking_scheduled_handler_restarts_the_actor_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    let key = "x".to_owned();
    reg.mutate(&key, Set { what: What::Poison, ..Set::note("", 0) }).await.unwrap();
    let notes = notes_until(&reg, &key, |n| !n.is_empty()).await;
    assert_eq!(notes, vec!["poison ran".to_owned()], "the panicking attempt's write was rolled back");
    assert_eq!(POISON_ATTEMPTS.load(Ordering::SeqCst), 2);
    assert!(reg.stats().restarts.load(Ordering::Relaxed) >= 1);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn overdue_schedules_fire_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = runtime_at(dir.path());
        let reg = alarms(&rt);
        reg.mutate(&"g".to_owned(), Set::note("after restart", 300)).await.unwrap();
        rt.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rt = runtime_at(dir.path());
    let reg = alarms(&rt);
    // Not asked for: the scanner finds it overdue and wakes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while notes_on_disk(dir.path(), "g").is_empty() {
        assert!(Instant::now() < deadline, "the overdue schedule never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(notes_on_disk(dir.path(), "g"), vec!["after restart saw 0".to_owned()]);
    drop(reg);
    rt.shutdown().await;
}

/// More actors due at once than may be live: each is woken once and fires before the scanner moves on, so making room
/// for the next wake-up never evicts one that has not fired yet (which would wake it again and again).
#[actix_rt::test]
async fn more_due_actors_than_the_live_cap_are_each_woken_once() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("cap{i}")).collect();
    {
        let rt = runtime_at(dir.path());
        let reg = alarms(&rt);
        for k in &keys {
            reg.mutate(k, Set::note("capped", 200)).await.unwrap();
        }
        rt.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut config = RuntimeConfig::new(dir.path());
    config.arbiters = 2;
    config.max_live = 8;
    let rt = Runtime::start(config).unwrap();
    let reg = alarms(&rt);
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in &keys {
        while notes_on_disk(dir.path(), k).is_empty() {
            assert!(Instant::now() < deadline, "{k} never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(notes_on_disk(dir.path(), k), vec!["capped saw 0".to_owned()], "{k} fired once");
    }
    let activations = reg.stats().activations.load(Ordering::Relaxed);
    assert!(activations <= keys.len() as u64 + 4, "{activations} activations for {} wake-ups", keys.len());
    rt.shutdown().await;
}

const CHILD_TEST: &str = "child_process_schedules_then_waits";
const CHILD_DIR_ENV: &str = "FOUNDRY_SCHEDULE_CHILD_DIR";
const READY: &str = "FOUNDRY_SCHEDULE_CHILD_READY";
const CRASH_KEYS: [&str; 3] = ["k0", "k1", "k2"];

/// The child: sets one alarm per key (1 s away, after which the parent has killed it), reports, and waits.
#[actix_rt::test]
async fn child_process_schedules_then_waits() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let rt = runtime_at(Path::new(&dir));
    let reg = alarms(&rt);
    for (i, k) in CRASH_KEYS.iter().enumerate() {
        reg.mutate(&k.to_string(), Set { value: Some(i as i64), ..Set::note("crash", 1_000) }).await.unwrap();
    }
    support::report_ready(READY);
    std::future::pending::<()>().await;
}

#[actix_rt::test]
async fn schedules_survive_kill_9_and_fire_after_restart() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    support::kill_9_child_when_ready(CHILD_TEST, CHILD_DIR_ENV, dir.path(), READY);
    for k in CRASH_KEYS {
        assert!(notes_on_disk(dir.path(), k).is_empty(), "{k} fired before the kill");
    }
    let rt = runtime_at(dir.path());
    let _reg = alarms(&rt);
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, k) in CRASH_KEYS.iter().enumerate() {
        while notes_on_disk(dir.path(), k).is_empty() {
            assert!(Instant::now() < deadline, "{k}'s schedule did not survive the kill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(notes_on_disk(dir.path(), k), vec![format!("crash saw {i}")], "{k} fired exactly once");
    }
    rt.shutdown().await;
}
