//! Per-actor SQLite: where an actor's file lives, how it is opened (pragmas), migrated and guarded read-only.
//!
//! Each actor owns one plain `SqliteConnection` (no pool: one actor is the only user, and r2d2 would add three threads
//! per actor; see ARCHITECTURE.md). With [`ConnOptions::guard_reads`] the connection sits in `query_only` mode except
//! while the runtime runs a mutation batch, so a read handler that tries to write fails instead of silently writing.

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use super::error::ActivationFailure;
use super::key::file_stem;

/// The runtime's own tables, applied to every actor database before the kind's migrations.
pub const RUNTIME_MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/runtime");

/// `synchronous` setting for actor databases. `Normal` is safe against process crashes in WAL mode; `Full` also
/// survives power loss at the cost of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Normal,
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// How the runtime opens and uses actor connections (from `RuntimeConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOptions {
    pub synchronous: Synchronous,
    /// Keep the connection `query_only` outside write batches (see `RuntimeConfig::guard_reads` for its cost).
    pub guard_reads: bool,
    /// `wal_autocheckpoint = 0`: the runtime checkpoints itself, only after shipping what the WAL holds (cluster
    /// mode reads commits from the WAL, and SQLite's own checkpoints would rewind it under the reader).
    pub manual_checkpoints: bool,
}

/// `<data>/<kind>/<escaped key>.sqlite3`.
pub fn actor_path(data_dir: &Path, kind: &str, encoded_key: &str) -> Result<PathBuf, ActivationFailure> {
    let stem = file_stem(encoded_key)?;
    Ok(data_dir.join(kind).join(format!("{stem}.sqlite3")))
}

/// Opens (creating if needed) an actor database, sets the per-connection pragmas, applies pending migrations (runtime
/// tables first, then the kind's), checks the file belongs to this actor, and leaves the connection read-only when
/// reads are guarded.
pub fn open_actor_db(
    path: &Path,
    kind: &str,
    encoded_key: &str,
    migrations: EmbeddedMigrations,
    opts: ConnOptions,
    fresh: bool,
) -> Result<SqliteConnection, ActivationFailure> {
    open_actor_db_with(path, kind, encoded_key, migrations, opts, fresh, &mut |_| Ok(()))
}

/// The writes a kind makes once, when its actor's database is created (`Entity::on_create`); an error refuses the
/// activation and leaves the actor uncreated.
pub type OnCreate<'a> = &'a mut dyn FnMut(&mut SqliteConnection) -> Result<(), String>;

/// [`open_actor_db`], running `on_create` in the transaction that records the file's owner: it runs exactly once per
/// database, since a crash before that commit leaves no owner and the next open runs it again.
pub fn open_actor_db_with(
    path: &Path,
    kind: &str,
    encoded_key: &str,
    migrations: EmbeddedMigrations,
    opts: ConnOptions,
    fresh: bool,
    on_create: OnCreate<'_>,
) -> Result<SqliteConnection, ActivationFailure> {
    let sync = opts.synchronous;
    let url = path.to_str().ok_or_else(|| ActivationFailure::Open {
        path: path.display().to_string(),
        message: "path is not valid UTF-8".into(),
    })?;
    // `fresh`: the file did not exist before this activation (it may have just been copied from the template).
    let is_new = fresh || !path.exists();
    let open_err = |e: diesel::result::Error| ActivationFailure::Open { path: url.to_owned(), message: e.to_string() };
    // A brand-new file is created, switched to WAL and migrated with `synchronous = OFF`: that skips the six fsyncs
    // SQLite would spend on an empty database (journal, directory, WAL), which dominate activation cost. Each step
    // is still atomic, so a process crash leaves either no change or a complete one; only an OS crash in those few
    // milliseconds could lose the fresh file, and it holds no data yet. The real setting applies before any data.
    let setup_sync = if is_new { "OFF" } else { sync.pragma() };
    // journal_mode=WAL persists in the file; the others are per connection and must be set on every open.
    // `locking_mode = EXCLUSIVE` before the first access: the actor's connection is the file's only user, so it takes
    // the lock once and keeps it, and SQLite keeps the WAL index in memory instead of a `-shm` file: one file fewer to
    // create and delete per activation, two descriptors per live actor instead of three, no lock system calls per
    // transaction. Another connection (a tool, a test) can read the file once the actor has passivated.
    let setup = format!(
        "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT; PRAGMA busy_timeout = 5000; \
         PRAGMA synchronous = {setup_sync}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;"
    );
    let mut conn = open_exclusive(url, &setup)?;
    if opts.manual_checkpoints {
        // Before the migrations: their pages must stay in the WAL until shipped, like any commit's.
        conn.batch_execute("PRAGMA wal_autocheckpoint = 0").map_err(open_err)?;
    }
    // Listing applied migrations costs diesel two statements per source on every open; the stamp (one pragma) says
    // whether this file already has exactly the migrations this build knows.
    let stamp = migrations_stamp(&migrations);
    if user_version(&mut conn).map_err(open_err)? != stamp {
        run_migrations(&mut conn, RUNTIME_MIGRATIONS, kind, encoded_key)?;
        run_migrations(&mut conn, migrations, kind, encoded_key)?;
        conn.batch_execute(&format!("PRAGMA user_version = {stamp}")).map_err(open_err)?;
    }
    check_identity(&mut conn, kind, encoded_key, on_create)?;
    if is_new {
        conn.batch_execute(&format!("PRAGMA synchronous = {}", sync.pragma())).map_err(open_err)?;
    }
    if opts.guard_reads {
        set_writable(&mut conn, false).map_err(|e| ActivationFailure::Load(e.to_string()))?;
    }
    Ok(conn)
}

/// Opens `url` and runs `setup`, which first takes the file's exclusive lock (`BEGIN EXCLUSIVE` under exclusive
/// locking mode keeps it) with no busy timeout. Two openers of one file (an activation whose caller went away still
/// opening on the blocking pool while the next caller activates the key, or a reactivation while the previous
/// connection finishes closing) would otherwise each take a shared lock and wait for the other's in SQLite's busy
/// handler until it gives up; here the one refused closes (dropping every lock it held) and tries again after a
/// pause, until the other connection is gone (bounded like `busy_timeout`).
fn open_exclusive(url: &str, setup: &str) -> Result<SqliteConnection, ActivationFailure> {
    let open_err = |message: String| ActivationFailure::Open { path: url.to_owned(), message };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        // Diesel's own setup on connect can meet the lock too.
        let opened = SqliteConnection::establish(url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| conn.batch_execute(setup).map(|()| conn).map_err(|e| e.to_string()));
        match opened {
            Ok(conn) => return Ok(conn),
            Err(e) if e.contains("database is locked") && std::time::Instant::now() < deadline => {
                // Jitter, so two openers that collided do not retry in step.
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() % 1_000);
                std::thread::sleep(pause + std::time::Duration::from_micros(u64::from(jitter)));
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(open_err(e)),
        }
    }
}

/// Builds a migrated, empty database for a kind (runtime and kind migrations, WAL mode, no identity) and returns its
/// bytes. New actors of the kind start as a copy of it: writing ~40 KiB is far cheaper than creating a database and
/// running every migration, which is most of an activation's cost.
pub fn build_template(kind_dir: &Path, kind: &str, migrations: EmbeddedMigrations) -> Result<Vec<u8>, String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = kind_dir.join(format!(".template-{}-{nanos}.sqlite3", std::process::id()));
    let url = path.to_str().ok_or("kind directory is not valid UTF-8")?.to_owned();
    let stamp = migrations_stamp(&migrations);
    let built = (|| {
        let mut conn = SqliteConnection::establish(&url).map_err(|e| e.to_string())?;
        conn.batch_execute("PRAGMA synchronous = OFF; PRAGMA journal_mode = WAL;").map_err(|e| e.to_string())?;
        run_migrations(&mut conn, RUNTIME_MIGRATIONS, kind, "(template)").map_err(|e| e.to_string())?;
        run_migrations(&mut conn, migrations, kind, "(template)").map_err(|e| e.to_string())?;
        conn.batch_execute(&format!("PRAGMA user_version = {stamp}")).map_err(|e| e.to_string())?;
        // Fold the WAL into the main file so the bytes below are the whole database.
        conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| e.to_string())?;
        drop(conn);
        std::fs::read(&path).map_err(|e| e.to_string())
    })();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{url}{suffix}"));
    }
    built
}

/// Creates `path` as a copy of a kind's template, unless it exists. Written under a temporary name of its own and
/// then linked into place, so a crash never leaves a half-written database at `path`, and two openers of one new key
/// (an activation whose caller went away still runs on the blocking pool while the next caller activates the key)
/// never replace a file the other already created and opened: a rename would, and the first would write to an
/// unlinked file.
pub fn create_from_template(path: &Path, template: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("sqlite3.creating-{}-{n}", std::process::id()));
    std::fs::write(&tmp, template)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// What a file's `user_version` holds once every migration of this build (the runtime's, then the kind's) is applied:
/// a hash of their names, which is also what diesel compares. Never 0 (a new or older file), 31 bits (the pragma is a
/// signed 32-bit integer). A file whose stamp differs (new, older, or written by another build) has its pending
/// migrations listed and applied as before, then gets this stamp.
pub fn migrations_stamp(kind_migrations: &EmbeddedMigrations) -> i32 {
    use diesel::migration::MigrationSource;
    use diesel::sqlite::Sqlite;
    // FNV-1a over the names, each followed by a separator so ("ab","c") and ("a","bc") differ.
    let mut h: u32 = 0x811c_9dc5;
    for source in [&RUNTIME_MIGRATIONS, kind_migrations] {
        let names = MigrationSource::<Sqlite>::migrations(source)
            .map(|ms| ms.iter().map(|m| m.name().to_string()).collect::<Vec<_>>())
            .unwrap_or_default();
        for name in names.iter().map(String::as_bytes).chain([b"|".as_slice()]) {
            for &b in name.iter().chain(b"\n") {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
        }
    }
    ((h & 0x7fff_ffff) as i32).max(1)
}

#[derive(QueryableByName)]
struct UserVersion {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    user_version: i32,
}

fn user_version(conn: &mut SqliteConnection) -> QueryResult<i32> {
    let rows: Vec<UserVersion> = diesel::sql_query("PRAGMA user_version").load(conn)?;
    Ok(rows.into_iter().next().map_or(0, |r| r.user_version))
}

/// Runs pending migrations one by one so a failure names the migration that failed.
fn run_migrations(
    conn: &mut SqliteConnection,
    source: EmbeddedMigrations,
    kind: &str,
    key: &str,
) -> Result<(), ActivationFailure> {
    let pending = conn.pending_migrations(source).map_err(|e| ActivationFailure::Migration {
        migration: "(listing migrations)".into(),
        message: e.to_string(),
    })?;
    for migration in pending {
        let name = migration.name().to_string();
        conn.run_migration(&*migration)
            .map_err(|e| ActivationFailure::Migration { migration: name.clone(), message: e.to_string() })?;
        tracing::info!(kind, key, migration = %name, "migration applied");
    }
    Ok(())
}

#[derive(QueryableByName)]
struct IdentityRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    key: String,
}

/// Records the owner on first open; afterwards refuses a file that belongs to another (kind, key). Two keys can only
/// meet in one file through a hash collision of very long keys, so this is a guard, not a code path. Two openers of
/// one new file at once (see [`create_from_template`]) agree on the identity the first one wrote.
fn check_identity(
    conn: &mut SqliteConnection,
    kind: &str,
    key: &str,
    on_create: OnCreate<'_>,
) -> Result<(), ActivationFailure> {
    let load = |e: diesel::result::Error| ActivationFailure::Load(e.to_string());
    let stored = |conn: &mut SqliteConnection| -> Result<Option<IdentityRow>, ActivationFailure> {
        let rows: Vec<IdentityRow> =
            diesel::sql_query("SELECT kind, key FROM _foundry_identity WHERE id = 1").load(conn).map_err(load)?;
        Ok(rows.into_iter().next())
    };
    let row = match stored(conn)? {
        Some(row) => row,
        None => {
            // The owner and the kind's creation writes commit together (the file is this connection's alone).
            struct Failed(ActivationFailure);
            impl From<diesel::result::Error> for Failed {
                fn from(e: diesel::result::Error) -> Self {
                    Failed(ActivationFailure::Load(e.to_string()))
                }
            }
            conn.immediate_transaction::<_, Failed, _>(|conn| {
                diesel::sql_query(
                    "INSERT OR IGNORE INTO _foundry_identity (id, kind, key, incarnation) VALUES (1, ?, ?, ?)",
                )
                .bind::<Text, _>(kind)
                .bind::<Text, _>(key)
                .bind::<Text, _>(new_incarnation())
                .execute(conn)?;
                on_create(conn).map_err(|e| Failed(ActivationFailure::Create(e)))
            })
            .map_err(|Failed(e)| e)?;
            stored(conn)?.ok_or_else(|| ActivationFailure::Load("the identity row was not written".into()))?
        }
    };
    if row.kind == kind && row.key == key {
        Ok(())
    } else {
        Err(ActivationFailure::IdentityMismatch { stored_kind: row.kind, stored_key: row.key })
    }
}

/// A fresh identifier for a new database file: wall-clock nanoseconds mixed with the process id and a per-process
/// counter, enough to tell two lifetimes of one actor's file apart.
fn new_incarnation() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:x}-{:x}-{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// What the runtime reads of `_foundry_identity` on every open.
#[derive(QueryableByName)]
pub struct Identity {
    /// This database file's incarnation: a sender recreated from scratch restarts its outbox sequence under a new one.
    #[diesel(sql_type = Text)]
    pub incarnation: String,
    /// The actor is being destroyed (see `runtime/actor/lifecycle.rs`).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub destroying: bool,
}

/// This database file's identity row.
pub fn identity(conn: &mut SqliteConnection) -> QueryResult<Identity> {
    let rows: Vec<Identity> =
        diesel::sql_query("SELECT incarnation, destroying FROM _foundry_identity WHERE id = 1").load(conn)?;
    rows.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

/// Marks the actor as being destroyed, in the caller's transaction.
pub fn mark_destroying(conn: &mut SqliteConnection) -> QueryResult<()> {
    diesel::sql_query("UPDATE _foundry_identity SET destroying = 1 WHERE id = 1").execute(conn).map(drop)
}

/// Deletes an actor's database and its journal files, and cluster mode's files beside it (the connection must be
/// closed). A file already gone counts as deleted; the database goes last, so a crash midway leaves a file that
/// still says it is being destroyed.
pub fn remove_actor_files(path: &Path) -> std::io::Result<()> {
    let base = path.as_os_str().to_owned();
    for suffix in ["-shipped", "-restoring", "-wal", "-shm", "-journal", ""] {
        let mut name = base.clone();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Switches the connection between read-only (`query_only`) and writable. With guarded reads the runtime flips it
/// around each write (see [`writable`]); every other moment the connection refuses writes.
pub fn set_writable(conn: &mut SqliteConnection, writable: bool) -> QueryResult<()> {
    conn.batch_execute(if writable { "PRAGMA query_only = 0" } else { "PRAGMA query_only = 1" })
}

/// Runs `f` (a write transaction) with the connection writable: when reads are guarded, `query_only` is lifted for its
/// duration and restored after, whatever `f` answered.
pub fn writable<T, E: From<diesel::result::Error>>(
    conn: &mut SqliteConnection,
    guard_reads: bool,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T, E>,
) -> Result<T, E> {
    if !guard_reads {
        return f(conn);
    }
    set_writable(conn, true)?;
    let res = f(conn);
    let _ = set_writable(conn, false);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/runtime");
    const GUARDED: ConnOptions =
        ConnOptions { synchronous: Synchronous::Normal, guard_reads: true, manual_checkpoints: false };

    #[derive(QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = Text)]
        value: String,
    }

    fn pragma(conn: &mut SqliteConnection, name: &str) -> String {
        let column = if name == "busy_timeout" { "timeout" } else { name };
        let sql = format!("SELECT CAST({column} AS TEXT) AS value FROM pragma_{name}");
        let rows: Vec<Pragma> = diesel::sql_query(sql).load(conn).unwrap();
        rows.into_iter().next().unwrap().value
    }

    #[test]
    fn pragmas_are_set_and_connection_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        let mut conn = open_actor_db(&path, "k", "a", EMPTY, GUARDED, false).unwrap();
        assert_eq!(pragma(&mut conn, "journal_mode"), "wal");
        assert_eq!(pragma(&mut conn, "foreign_keys"), "1");
        assert_eq!(pragma(&mut conn, "synchronous"), "1"); // NORMAL
        assert_eq!(pragma(&mut conn, "busy_timeout"), "5000");
        let err = conn.batch_execute("INSERT INTO _foundry_topics VALUES ('t', 1)").unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        set_writable(&mut conn, true).unwrap();
        conn.batch_execute("INSERT INTO _foundry_topics VALUES ('t', 1)").unwrap();
    }

    fn has_table(conn: &mut SqliteConnection, name: &str) -> bool {
        let sql = format!("SELECT name AS value FROM sqlite_master WHERE type = 'table' AND name = '{name}'");
        !diesel::sql_query(sql).load::<Pragma>(conn).unwrap().is_empty()
    }

    #[test]
    fn the_migrations_stamp_decides_whether_migrations_are_listed() {
        const COUNTER: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/counter");
        assert_ne!(migrations_stamp(&EMPTY), migrations_stamp(&COUNTER));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        // A file with the runtime's migrations only, then opened by a build whose kind has one more: applied.
        let mut conn = open_actor_db(&path, "k", "a", EMPTY, GUARDED, false).unwrap();
        assert_eq!(pragma(&mut conn, "user_version"), migrations_stamp(&EMPTY).to_string());
        drop(conn);
        let mut conn = open_actor_db(&path, "k", "a", COUNTER, GUARDED, false).unwrap();
        assert!(has_table(&mut conn, "counter"));
        assert_eq!(pragma(&mut conn, "user_version"), migrations_stamp(&COUNTER).to_string());
        drop(conn);
        // A file already stamped for this build is trusted: nothing is listed or applied on open.
        let other = dir.path().join("b.sqlite3");
        drop(open_actor_db(&other, "k", "b", EMPTY, GUARDED, false).unwrap());
        let mut raw = SqliteConnection::establish(other.to_str().unwrap()).unwrap();
        raw.batch_execute(&format!("PRAGMA user_version = {}", migrations_stamp(&COUNTER))).unwrap();
        drop(raw);
        let mut conn = open_actor_db(&other, "k", "b", COUNTER, GUARDED, false).unwrap();
        assert!(!has_table(&mut conn, "counter"), "a stamped file is not migrated again");
    }

    #[test]
    fn a_file_of_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        drop(open_actor_db(&path, "k", "a", EMPTY, GUARDED, false).unwrap());
        let Err(err) = open_actor_db(&path, "k", "b", EMPTY, GUARDED, false) else { panic!("opened") };
        assert!(matches!(err, ActivationFailure::IdentityMismatch { .. }), "{err}");
        // Reopening with the right identity works and is idempotent.
        open_actor_db(
            &path,
            "k",
            "a",
            EMPTY,
            ConnOptions { synchronous: Synchronous::Full, guard_reads: true, manual_checkpoints: false },
            false,
        )
        .unwrap();
    }
}

#[cfg(test)]
mod concurrent_open_tests {
    use super::*;

    const RUNTIME_ONLY: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/runtime");
    const GUARDED: ConnOptions =
        ConnOptions { synchronous: Synchronous::Normal, guard_reads: true, manual_checkpoints: false };

    /// An activation whose caller went away keeps opening its file on the blocking pool while the next caller
    /// activates the same key: two opens of one new file at once must both succeed, as the same identity.
    #[test]
    fn two_opens_of_one_new_file_at_once_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let template = build_template(dir.path(), "k", RUNTIME_ONLY).unwrap();
        for i in 0..40 {
            let path = dir.path().join(format!("a{i}.sqlite3"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let opens: Vec<_> = (0..2)
                .map(|_| {
                    let (path, barrier, template) = (path.clone(), barrier.clone(), template.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        if !path.exists() {
                            let _ = create_from_template(&path, &template);
                        }
                        let mut conn = open_actor_db(&path, "k", "a", RUNTIME_ONLY, GUARDED, true)?;
                        identity(&mut conn).map(|i| i.incarnation).map_err(|e| ActivationFailure::Load(e.to_string()))
                    })
                })
                .collect();
            let results: Vec<_> = opens.into_iter().map(|t| t.join().unwrap()).collect();
            let incarnations: Vec<String> =
                results.into_iter().map(|r| r.unwrap_or_else(|e| panic!("open {i}: {e}"))).collect();
            assert_eq!(incarnations[0], incarnations[1], "one file, one identity");
        }
    }
}
