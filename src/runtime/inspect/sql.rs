//! Read-only SQL over a copy of one actor's database: the bytes the actor serialised (`sqlite3_serialize`), opened
//! as a private in-memory database on the blocking pool, never the actor's own connection.
//!
//! Why a copy: a live actor's file is locked exclusively by its connection, and a query on that connection would
//! run on the actor's thread, where a runaway query would stall its mailbox and every actor of its arbiter. The copy
//! is taken by a message the actor handles (a consistent committed state), and what runs on it cannot touch the
//! actor's data at all. diesel does not hand out its raw handle, so this opens its own connection through
//! libsqlite3-sys (the same bundled SQLite diesel links), which gives what a safe read needs: an authorizer that
//! admits only reads (no ATTACH, no writes, no pragma that sets anything), `sqlite3_stmt_readonly`, a progress
//! handler that interrupts at a deadline, limits on value sizes and attached databases, and values by their own
//! storage class (as JSON).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;
use serde_json::Value;

use super::InspectError;

/// Longest text or blob a query may produce (SQLite's length limit on this connection): `randomblob(1e9)` fails
/// instead of allocating a gigabyte.
const MAX_VALUE_BYTES: c_int = 16 * 1024 * 1024;
/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 16 * 1024;
/// Characters of a text value shown in an answer (longer ones are cut, and the answer says it was truncated).
const SHOWN_TEXT_CHARS: usize = 4096;
/// Bytes of a blob shown (as hex).
const SHOWN_BLOB_BYTES: usize = 1024;
/// About how many bytes of values one answer carries before its remaining rows are left out.
const ANSWER_BUDGET: usize = 4 * 1024 * 1024;
/// VM instructions between two looks at the clock.
const PROGRESS_EVERY: c_int = 1_000;

/// Pragmas a query may run, reading only. Those in `TAKES_NAME` take a table or index name as their argument; the
/// others must have none (`PRAGMA user_version = 3` sets, `PRAGMA user_version` reads).
const READ_PRAGMAS: &[&str] = &[
    "application_id",
    "collation_list",
    "compile_options",
    "database_list",
    "encoding",
    "foreign_key_check",
    "foreign_key_list",
    "freelist_count",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "module_list",
    "page_count",
    "page_size",
    "pragma_list",
    "quick_check",
    "schema_version",
    "table_info",
    "table_list",
    "table_xinfo",
    "user_version",
];
const TAKES_NAME: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];
/// SQL functions refused even though they read (they reach outside the database or configure the connection).
const REFUSED_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

/// Rows of one statement.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// More rows were left out (beyond the limit or the answer's size budget) or long values were cut.
    pub truncated: bool,
}

/// How one statement may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_rows: usize,
    pub time: Duration,
}

/// A private, read-only, in-memory copy of an actor's database.
pub(crate) struct Snapshot {
    db: *mut ffi::sqlite3,
    /// The serialised database the connection reads in place: it must outlive the connection (closed in `drop`).
    _bytes: Vec<u8>,
}

/// What the authorizer saw, for a precise refusal.
#[derive(Default)]
struct Guard {
    /// The first action refused (e.g. "INSERT", "ATTACH", "PRAGMA journal_mode = ...").
    refused: Option<String>,
}

/// What the progress handler checks.
struct Deadline {
    at: Instant,
    passed: bool,
}

impl Snapshot {
    /// Opens `bytes` (a database as `sqlite3_serialize` wrote it) as a read-only in-memory database.
    pub(crate) fn open(mut bytes: Vec<u8>) -> Result<Snapshot, InspectError> {
        // The header says WAL (bytes 18 and 19 are 2) for every actor file; an in-memory database has no WAL, and
        // SQLite refuses to read such an image. The pages are complete (the serialisation includes the WAL's
        // content), so the copy is marked as a rollback-journal database.
        if bytes.len() >= 100 && bytes[18] == 2 && bytes[19] == 2 {
            bytes[18] = 1;
            bytes[19] = 1;
        }
        let mut db = ptr::null_mut();
        let name = c":memory:";
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_MEMORY | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: a valid NUL-terminated name, an out-pointer on this stack and a null VFS name (the default).
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()) };
        // From here on `snapshot`'s drop closes `db` (even one that failed to open: sqlite3_close accepts it).
        let mut snapshot = Snapshot { db, _bytes: Vec::new() };
        if rc != ffi::SQLITE_OK {
            return Err(InspectError::Snapshot(snapshot.errmsg()));
        }
        // SAFETY: `db` is open; limits and db_config only change this connection's settings.
        unsafe {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_SQL_LENGTH, (MAX_SQL_BYTES * 2) as c_int);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
            ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_DEFENSIVE, 1 as c_int, ptr::null_mut::<c_int>());
        }
        if !bytes.is_empty() {
            // SAFETY: the buffer is kept in `snapshot._bytes` (moved, never touched again) until after the connection
            // closes; READONLY keeps SQLite from resizing or writing it; its length is both the size and the buffer.
            let rc = unsafe {
                ffi::sqlite3_deserialize(
                    db,
                    c"main".as_ptr(),
                    bytes.as_mut_ptr(),
                    bytes.len() as i64,
                    bytes.len() as i64,
                    ffi::SQLITE_DESERIALIZE_READONLY,
                )
            };
            snapshot._bytes = bytes;
            if rc != ffi::SQLITE_OK {
                return Err(InspectError::Snapshot(snapshot.errmsg()));
            }
        }
        // Sorts and temporary b-trees stay in memory: a query creates no file.
        snapshot.run_trusted("PRAGMA temp_store = MEMORY")?;
        snapshot.run_trusted("PRAGMA query_only = 1")?;
        Ok(snapshot)
    }

    fn errmsg(&self) -> String {
        if self.db.is_null() {
            return "out of memory".to_owned();
        }
        // SAFETY: `db` is a connection handle; the message is copied before any other call on it.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)).to_string_lossy().into_owned() }
    }

    /// Runs one statement of the runtime's own (table listings, counts) without the guards a caller's SQL gets.
    fn run_trusted(&mut self, sql: &str) -> Result<Rows, InspectError> {
        self.run(sql, Bounds { max_rows: usize::MAX, time: Duration::from_secs(60) }, false)
    }

    /// Runs one caller's statement: it must be a single read (see the module's documentation).
    pub(crate) fn query(&mut self, sql: &str, bounds: Bounds) -> Result<Rows, InspectError> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(InspectError::InvalidSql(format!("the SQL is longer than {MAX_SQL_BYTES} bytes")));
        }
        self.run(sql, bounds, true)
    }

    fn run(&mut self, sql: &str, bounds: Bounds, guarded: bool) -> Result<Rows, InspectError> {
        let text =
            CString::new(sql).map_err(|_| InspectError::InvalidSql("the SQL contains a NUL character".into()))?;
        let mut guard = Guard::default();
        let mut deadline = Deadline { at: Instant::now() + bounds.time, passed: false };
        // SAFETY: both callbacks get pointers to `guard` and `deadline`, which live on this stack frame until the
        // handlers are removed below, before this function returns; the connection is used by this thread only.
        unsafe {
            if guarded {
                ffi::sqlite3_set_authorizer(self.db, Some(authorize), (&mut guard as *mut Guard).cast::<c_void>());
            }
            ffi::sqlite3_progress_handler(
                self.db,
                PROGRESS_EVERY,
                Some(progress),
                (&mut deadline as *mut Deadline).cast::<c_void>(),
            );
        }
        let result = self.step_all(&text, bounds, guarded, &guard, &deadline);
        // SAFETY: removing the handlers before `guard` and `deadline` go out of scope.
        unsafe {
            ffi::sqlite3_set_authorizer(self.db, None, ptr::null_mut());
            ffi::sqlite3_progress_handler(self.db, 0, None, ptr::null_mut());
        }
        result
    }

    fn step_all(
        &mut self,
        text: &CStr,
        bounds: Bounds,
        guarded: bool,
        guard: &Guard,
        deadline: &Deadline,
    ) -> Result<Rows, InspectError> {
        let mut stmt = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        // SAFETY: `text` is NUL-terminated (length -1: read to the NUL); `stmt` and `tail` are out-pointers here.
        let rc = unsafe { ffi::sqlite3_prepare_v2(self.db, text.as_ptr(), -1, &mut stmt, &mut tail) };
        let stmt = Statement(stmt);
        if rc != ffi::SQLITE_OK {
            if let Some(what) = &guard.refused {
                return Err(InspectError::NotReadOnly(format!("only reads are allowed, not {what}")));
            }
            return Err(InspectError::InvalidSql(self.errmsg()));
        }
        if stmt.0.is_null() {
            return Err(InspectError::InvalidSql("there is no statement in the SQL".into()));
        }
        // SAFETY: `tail` points into `text` (at its end or at the next statement), which is still alive.
        let rest = unsafe { CStr::from_ptr(tail) }.to_string_lossy();
        if !rest.trim().trim_start_matches(';').trim().is_empty() {
            return Err(InspectError::InvalidSql("one statement at a time".into()));
        }
        // SAFETY: `stmt.0` is a prepared statement of this connection.
        if guarded && unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } == 0 {
            return Err(InspectError::NotReadOnly("only reads are allowed: this statement writes".into()));
        }
        // SAFETY: as above, for the column accessors below until `stmt` is finalised by its drop.
        let n = unsafe { ffi::sqlite3_column_count(stmt.0) };
        let columns = (0..n)
            .map(|i| {
                let name = unsafe { ffi::sqlite3_column_name(stmt.0, i) };
                if name.is_null() {
                    String::new()
                } else {
                    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
                }
            })
            .collect();
        let mut out = Rows { columns, ..Rows::default() };
        let mut budget = ANSWER_BUDGET;
        loop {
            // SAFETY: stepping the statement prepared above.
            let rc = unsafe { ffi::sqlite3_step(stmt.0) };
            match rc {
                ffi::SQLITE_ROW => {
                    if out.rows.len() >= bounds.max_rows || budget == 0 {
                        out.truncated = true;
                        break;
                    }
                    let row = (0..n).map(|i| self.value(&stmt, i, &mut budget, &mut out.truncated)).collect();
                    out.rows.push(row);
                }
                ffi::SQLITE_DONE => break,
                ffi::SQLITE_INTERRUPT if deadline.passed => return Err(InspectError::Timeout(bounds.time)),
                _ => return Err(InspectError::QueryFailed(self.errmsg())),
            }
        }
        Ok(out)
    }

    /// Column `i` of the current row as JSON: integers and reals as numbers, text as a string, a blob as
    /// `{"blob": "<hex>"}`, NULL as null. Long values are cut (and `truncated` set).
    fn value(&self, stmt: &Statement, i: c_int, budget: &mut usize, truncated: &mut bool) -> Value {
        // SAFETY: the statement has a current row (its last step answered SQLITE_ROW) and `i` is below its column
        // count; text and blob pointers are read before the next call on the statement.
        unsafe {
            match ffi::sqlite3_column_type(stmt.0, i) {
                ffi::SQLITE_INTEGER => {
                    *budget = budget.saturating_sub(8);
                    Value::from(ffi::sqlite3_column_int64(stmt.0, i))
                }
                ffi::SQLITE_FLOAT => {
                    *budget = budget.saturating_sub(8);
                    serde_json::Number::from_f64(ffi::sqlite3_column_double(stmt.0, i))
                        .map_or(Value::Null, Value::Number)
                }
                ffi::SQLITE_TEXT => {
                    let p = ffi::sqlite3_column_text(stmt.0, i);
                    let len = ffi::sqlite3_column_bytes(stmt.0, i).max(0) as usize;
                    let bytes = if p.is_null() { &[][..] } else { std::slice::from_raw_parts(p, len) };
                    let text = String::from_utf8_lossy(bytes);
                    *budget = budget.saturating_sub(len.min(SHOWN_TEXT_CHARS * 4));
                    match text.char_indices().nth(SHOWN_TEXT_CHARS) {
                        Some((cut, _)) => {
                            *truncated = true;
                            Value::from(format!("{}…", &text[..cut]))
                        }
                        None => Value::from(text.into_owned()),
                    }
                }
                ffi::SQLITE_BLOB => {
                    let p = ffi::sqlite3_column_blob(stmt.0, i).cast::<u8>();
                    let len = ffi::sqlite3_column_bytes(stmt.0, i).max(0) as usize;
                    let bytes = if p.is_null() { &[][..] } else { std::slice::from_raw_parts(p, len) };
                    if len > SHOWN_BLOB_BYTES {
                        *truncated = true;
                    }
                    let shown = &bytes[..len.min(SHOWN_BLOB_BYTES)];
                    *budget = budget.saturating_sub(shown.len() * 2);
                    let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
                    serde_json::json!({ "blob": hex })
                }
                _ => Value::Null,
            }
        }
    }

    /// The database's tables (the runtime's `_foundry_*` ones included, SQLite's own left out) with their row counts.
    pub(crate) fn tables(&mut self) -> Result<Vec<(String, i64)>, InspectError> {
        let names = self.run_trusted(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?;
        let mut out = Vec::new();
        for row in names.rows {
            let Some(name) = row.first().and_then(Value::as_str).map(str::to_owned) else { continue };
            let count = self.run_trusted(&format!("SELECT COUNT(*) FROM {}", quote(&name)))?;
            let rows = count.rows.first().and_then(|r| r.first()).and_then(Value::as_i64).unwrap_or(0);
            out.push((name, rows));
        }
        Ok(out)
    }

    /// Rows `offset..offset + limit` of `table` (which must be one of [`Snapshot::tables`]), in its stored order.
    pub(crate) fn dump(&mut self, table: &str, offset: u64, limit: usize) -> Result<Rows, InspectError> {
        let sql = format!("SELECT * FROM {} LIMIT {limit} OFFSET {offset}", quote(table));
        self.run(&sql, Bounds { max_rows: limit, time: Duration::from_secs(10) }, false)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: every statement was finalised (`Statement`'s drop) before; closing also frees a failed open's handle.
        unsafe {
            ffi::sqlite3_close(self.db);
        }
    }
}

/// A prepared statement, finalised on drop.
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: finalising null is a no-op; a statement is finalised once, here.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn text_arg(p: *const c_char) -> Option<String> {
    // SAFETY: SQLite passes NUL-terminated strings or null to the authorizer.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().to_ascii_lowercase())
}

/// The authorizer of a caller's statement: reads of tables, functions (but [`REFUSED_FUNCTIONS`]), recursive CTEs and
/// the reading pragmas; everything else is refused while the statement is prepared.
unsafe extern "C" fn authorize(
    data: *mut c_void,
    action: c_int,
    a: *const c_char,
    b: *const c_char,
    _db: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    let verdict: Result<(), String> = match action {
        ffi::SQLITE_SELECT | ffi::SQLITE_READ | ffi::SQLITE_RECURSIVE => Ok(()),
        ffi::SQLITE_FUNCTION => match text_arg(b) {
            Some(f) if REFUSED_FUNCTIONS.contains(&f.as_str()) => Err(format!("the function {f}()")),
            _ => Ok(()),
        },
        ffi::SQLITE_PRAGMA => {
            let name = text_arg(a).unwrap_or_default();
            let arg = text_arg(b);
            if READ_PRAGMAS.contains(&name.as_str()) && (arg.is_none() || TAKES_NAME.contains(&name.as_str())) {
                Ok(())
            } else {
                Err(match arg {
                    Some(v) => format!("PRAGMA {name} = {v}"),
                    None => format!("PRAGMA {name}"),
                })
            }
        }
        other => Err(action_name(other).to_owned()),
    };
    match verdict {
        Ok(()) => ffi::SQLITE_OK,
        Err(what) => {
            // SAFETY: `data` is the `Guard` `run` registered, alive and used by this thread only while it prepares.
            let guard = unsafe { &mut *data.cast::<Guard>() };
            guard.refused.get_or_insert(what);
            ffi::SQLITE_DENY
        }
    }
}

/// What a refused authorizer action is called in a refusal.
fn action_name(action: c_int) -> &'static str {
    match action {
        ffi::SQLITE_ATTACH => "ATTACH",
        ffi::SQLITE_DETACH => "DETACH",
        ffi::SQLITE_INSERT => "INSERT",
        ffi::SQLITE_UPDATE => "UPDATE",
        ffi::SQLITE_DELETE => "DELETE",
        ffi::SQLITE_TRANSACTION | ffi::SQLITE_SAVEPOINT => "a transaction statement",
        ffi::SQLITE_ALTER_TABLE => "ALTER TABLE",
        ffi::SQLITE_ANALYZE => "ANALYZE",
        ffi::SQLITE_REINDEX => "REINDEX",
        ffi::SQLITE_CREATE_INDEX
        | ffi::SQLITE_CREATE_TABLE
        | ffi::SQLITE_CREATE_TEMP_INDEX
        | ffi::SQLITE_CREATE_TEMP_TABLE
        | ffi::SQLITE_CREATE_TEMP_TRIGGER
        | ffi::SQLITE_CREATE_TEMP_VIEW
        | ffi::SQLITE_CREATE_TRIGGER
        | ffi::SQLITE_CREATE_VIEW
        | ffi::SQLITE_CREATE_VTABLE => "CREATE",
        ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_DROP_TEMP_INDEX
        | ffi::SQLITE_DROP_TEMP_TABLE
        | ffi::SQLITE_DROP_TEMP_TRIGGER
        | ffi::SQLITE_DROP_TEMP_VIEW
        | ffi::SQLITE_DROP_TRIGGER
        | ffi::SQLITE_DROP_VIEW
        | ffi::SQLITE_DROP_VTABLE => "DROP",
        _ => "this statement",
    }
}

/// The progress handler: interrupts the statement once its deadline has passed.
unsafe extern "C" fn progress(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Deadline` `run` registered, alive while the statement runs on this thread.
    let deadline = unsafe { &mut *data.cast::<Deadline>() };
    if Instant::now() >= deadline.at {
        deadline.passed = true;
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    /// A WAL-mode database in exclusive locking mode, as actors keep theirs, serialised by its own connection.
    fn copy_of(setup: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite3");
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.batch_execute("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;").unwrap();
        conn.batch_execute(setup).unwrap();
        let bytes = conn.serialize_database_to_buffer().try_as_slice().unwrap().to_vec();
        bytes
    }

    const BOUNDS: Bounds = Bounds { max_rows: 100, time: Duration::from_secs(5) };

    #[test]
    fn reads_see_committed_rows_of_a_wal_database_as_json() {
        let bytes = copy_of(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, note TEXT); \
             INSERT INTO t VALUES (1, 'a', 1.5, x'00ff', NULL), (2, 'b', 2.0, NULL, 'x');",
        );
        let mut s = Snapshot::open(bytes).unwrap();
        let rows = s.query("SELECT id, name, score, data, note FROM t ORDER BY id", BOUNDS).unwrap();
        assert_eq!(rows.columns, ["id", "name", "score", "data", "note"]);
        assert_eq!(
            rows.rows[0],
            vec![Value::from(1), Value::from("a"), Value::from(1.5), serde_json::json!({"blob": "00ff"}), Value::Null]
        );
        assert!(!rows.truncated);
        assert_eq!(s.tables().unwrap(), vec![("t".to_owned(), 2)]);
        let page = s.dump("t", 1, 10).unwrap();
        assert_eq!(page.rows.len(), 1);
        assert_eq!(page.rows[0][0], Value::from(2));
    }

    #[test]
    fn writes_and_escapes_are_refused_before_they_run() {
        let mut s =
            Snapshot::open(copy_of("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")).unwrap();
        for sql in [
            "INSERT INTO t VALUES (2)",
            "UPDATE t SET id = 5",
            "DELETE FROM t",
            "DROP TABLE t",
            "CREATE TABLE u (x)",
            "ATTACH DATABASE '/tmp/foundry-inspect-attach.sqlite3' AS other",
            "PRAGMA user_version = 5",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA temp_store_directory = '/tmp'",
            "BEGIN",
            "VACUUM INTO '/tmp/foundry-inspect-vacuum.sqlite3'",
            "SELECT load_extension('x')",
        ] {
            let err = s.query(sql, BOUNDS).unwrap_err();
            assert!(matches!(err, InspectError::NotReadOnly(_)), "{sql}: {err:?}");
        }
        assert!(!std::path::Path::new("/tmp/foundry-inspect-attach.sqlite3").exists());
        assert!(!std::path::Path::new("/tmp/foundry-inspect-vacuum.sqlite3").exists());
        assert_eq!(s.query("SELECT COUNT(*) FROM t", BOUNDS).unwrap().rows[0][0], Value::from(1));
        assert!(s.query("PRAGMA table_info(t)", BOUNDS).is_ok());
        assert!(s.query("PRAGMA user_version", BOUNDS).is_ok());
        let err = s.query("SELECT 1; SELECT 2", BOUNDS).unwrap_err();
        assert!(matches!(err, InspectError::InvalidSql(_)), "{err:?}");
        let err = s.query("SELEKT 1", BOUNDS).unwrap_err();
        assert!(matches!(err, InspectError::InvalidSql(_)), "{err:?}");
        let err = s.query("  -- nothing\n", BOUNDS).unwrap_err();
        assert!(matches!(err, InspectError::InvalidSql(_)), "{err:?}");
    }

    #[test]
    fn rows_values_and_time_are_bounded() {
        let mut s = Snapshot::open(copy_of("CREATE TABLE t (x);")).unwrap();
        let many = s
            .query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 500) SELECT x FROM c", BOUNDS)
            .unwrap();
        assert_eq!(many.rows.len(), 100);
        assert!(many.truncated);
        let long = s.query("SELECT printf('%.*c', 10000, 'x')", BOUNDS).unwrap();
        assert!(long.truncated);
        let err = s.query("SELECT randomblob(100000000)", BOUNDS).unwrap_err();
        assert!(matches!(err, InspectError::QueryFailed(_)), "{err:?}");
        let runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let err = s.query(runaway, Bounds { max_rows: 10, time: Duration::from_millis(100) }).unwrap_err();
        assert!(matches!(err, InspectError::Timeout(_)), "{err:?}");
        // The connection is usable after an interrupted statement.
        assert_eq!(s.query("SELECT 7", BOUNDS).unwrap().rows[0][0], Value::from(7));
    }
}
