//! The runtime inspector end to end: `/v1/admin/...` over HTTP against a running server with real actors (the
//! `tally` test kind, a kind with durable schedules, the domain's own kinds), and the per-actor trace through the
//! runtime's API. Only server admins get in (401 without a session, 403 `not_server_admin` otherwise); live actors
//! show their mailbox depth, topic versions and subscribers, outbox rows and dead letters, schedules; read-only SQL
//! refuses writes (the data stays as it was), caps rows and stops a runaway query; unknown kinds, keys and tables
//! are 404 and create nothing; the trace is bounded, records errors, and records nothing at size 0.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::actors::Domain;
use foundry::http::{Api, AuthSettings};
use foundry::runtime::inspect::{TraceKind, TraceOutcome};
use foundry::runtime::{
    embed_migrations, Accepts, CallError, EmbeddedMigrations, Entity, InspectError, Mutation, Runtime, RuntimeConfig,
    Scheduled, Tx,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::web::{start, TestServer};
use support::{
    eventually, eventually_some, observe_file, Add, AddAndForward, Gate, GetValue, PanicInRead, Tally, TallyError,
};

// ---------------------------------------------------------------------------------------------------------------
// A kind with durable schedules

struct Alarm;

impl Entity for Alarm {
    type Key = String;
    const KIND: &'static str = "alarm";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Alarm)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<Ring>();
    }
}

#[derive(Serialize, Deserialize)]
struct Ring;

impl Mutation for Ring {
    type Entity = Alarm;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Alarm, _: &mut Tx<'_>) -> QueryResult<()> {
        Ok(())
    }
}

impl Scheduled for Ring {
    const NAME: &'static str = "alarm.ring";
}

struct SetAlarm {
    after: Duration,
}

impl Mutation for SetAlarm {
    type Entity = Alarm;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Alarm, tx: &mut Tx<'_>) -> QueryResult<()> {
        tx.schedule_after(self.after, &Ring)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/// A server whose only server admin is `root`.
async fn server() -> TestServer {
    start(|api, _| api.server_admins = vec!["root".to_owned()]).await
}

async fn get(s: &TestServer, path: &str, token: &str) -> Value {
    let (status, body) = s.call("GET", path, Some(token), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn query(s: &TestServer, token: &str, kind: &str, key: &str, body: Value) -> (u16, Value) {
    s.call("POST", &format!("/v1/admin/kinds/{kind}/actors/{key}/query"), Some(token), Some(body)).await
}

fn actor<'a>(page: &'a Value, key: &str) -> &'a Value {
    page["actors"].as_array().unwrap().iter().find(|a| a["key"] == key).unwrap_or_else(|| panic!("{key} in {page}"))
}

/// Every file under `root` (what a refused request must not add to), but the test's own copies in `.observed/`.
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == ".observed") {
                    continue;
                }
                walk(&path, root, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn tally_value(path: &Path) -> i64 {
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        value: i64,
    }
    let rows: Vec<V> = diesel::sql_query("SELECT value FROM tally").load(&mut observe_file(path)).unwrap();
    rows[0].value
}

// ---------------------------------------------------------------------------------------------------------------
// Over HTTP

#[actix_rt::test]
async fn an_admin_sees_live_actors_with_mailbox_depth_topics_outbox_and_schedules() {
    let s = server().await;
    let root = s.sign_in("root").await;
    let tallies = s.rt.registry::<Tally>();
    let alarms = s.rt.registry::<Alarm>();
    let a = "a".to_owned();
    for by in 1..=3 {
        tallies.mutate(&a, Add::new(by)).await.unwrap();
    }
    // Two subscribers of a's topic (the version is its three changes).
    let _sub1 = tallies.subscribe(&a, "tally").await.unwrap();
    let _sub2 = tallies.subscribe(&a, "tally").await.unwrap();
    // a's outbox: a delivery b refuses (dead-lettered at a).
    tallies.mutate(&a, AddAndForward { by: -1, target: "b".into() }).await.unwrap();
    // d's outbox: a delivery c answers "not yet" to, so it stays pending.
    tallies.mutate(&"d".to_owned(), AddAndForward { by: 777, target: "c".into() }).await.unwrap();
    alarms.mutate(&"morning".to_owned(), SetAlarm { after: Duration::from_secs(3600) }).await.unwrap();

    let overview = get(&s, "/v1/admin/runtime", &root).await;
    let kinds: Vec<&str> = overview["kinds"].as_array().unwrap().iter().map(|k| k["kind"].as_str().unwrap()).collect();
    for kind in ["alarm", "tally", "organization", "auth_directory"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let tally_kind = overview["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "tally").unwrap();
    assert_eq!(tally_kind["live"], 4, "{tally_kind}");
    assert!(tally_kind["committedMutations"].as_u64().unwrap() >= 5, "{tally_kind}");
    assert_eq!(overview["traceSize"], foundry::runtime::system::DEFAULT_TRACE_SIZE);

    let page = eventually_some("a's dead letter and d's pending delivery", || async {
        let page = get(&s, "/v1/admin/kinds/tally/actors", &root).await;
        let dead = actor(&page, "a")["state"]["deadLetters"] == 1;
        let pending = actor(&page, "d")["state"]["outboxPending"] == 1;
        (dead && pending).then_some(page)
    })
    .await;
    assert_eq!(page["live"], 4);
    let keys: Vec<&str> = page["actors"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a", "b", "c", "d"], "sorted by key");
    let state_a = &actor(&page, "a")["state"];
    assert_eq!(state_a["topics"], json!([{ "topic": "tally", "version": 4, "subscribers": 2 }]), "{state_a}");
    assert_eq!(state_a["outboxPending"], 0);
    assert_eq!(actor(&page, "a")["mailboxDepth"], 0);
    let state_d = &actor(&page, "d")["state"];
    assert_eq!(state_d["deadLetters"], 0);
    assert_eq!(state_d["delivering"], true, "{state_d}");
    assert_eq!(state_d["topics"], json!([{ "topic": "tally", "version": 1, "subscribers": 0 }]));

    let alarm = get(&s, "/v1/admin/kinds/alarm/actors", &root).await;
    let state = &actor(&alarm, "morning")["state"];
    assert_eq!(state["schedules"], 1, "{state}");
    let due = state["nextDueMs"].as_i64().unwrap();
    let now = foundry::runtime::schedule::now_ms();
    assert!(due > now + 3_000_000 && due <= now + 3_600_000, "due {due}, now {now}");

    // Paging: one at a time, by `nextAfter`.
    let first = get(&s, "/v1/admin/kinds/tally/actors?limit=2", &root).await;
    assert_eq!(first["actors"].as_array().unwrap().len(), 2);
    assert_eq!(first["nextAfter"], "b");
    let rest = get(&s, "/v1/admin/kinds/tally/actors?limit=2&after=b", &root).await;
    let keys: Vec<&str> = rest["actors"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["c", "d"]);
    assert!(rest.get("nextAfter").is_none(), "{rest}");

    // A busy actor: its mailbox held by a gate, three reads queued behind it. It is listed with its depth and
    // without its state (it cannot answer).
    let (release, held) = tokio::sync::oneshot::channel();
    tallies.exec(&a, Gate { release: held }).await.unwrap();
    let reads: Vec<_> = (0..3)
        .map(|_| {
            let (tallies, a) = (tallies.clone(), a.clone());
            actix_rt::spawn(async move { tallies.read(&a, GetValue).await })
        })
        .collect();
    eventually("three reads queued", || tallies.mailbox_depth(&a) == 3).await;
    let page = get(&s, "/v1/admin/kinds/tally/actors", &root).await;
    assert_eq!(actor(&page, "a")["mailboxDepth"], 3, "{page}");
    assert_eq!(actor(&page, "a")["state"], Value::Null, "a held mailbox cannot answer");
    release.send(()).unwrap();
    for r in reads {
        assert_eq!(r.await.unwrap().unwrap(), 6 - 1);
    }
    s.stop().await;
}

#[actix_rt::test]
async fn only_server_admins_get_in() {
    let s = server().await;
    let root = s.sign_in("root").await;
    let bob = s.sign_in("bob").await;
    s.rt.registry::<Tally>().mutate(&"a".to_owned(), Add::new(1)).await.unwrap();
    let routes = [
        ("GET", "/v1/admin/runtime", None),
        ("GET", "/v1/admin/kinds/tally/actors", None),
        ("GET", "/v1/admin/kinds/tally/actors/a", None),
        ("GET", "/v1/admin/kinds/tally/actors/a/tables/tally", None),
        ("POST", "/v1/admin/kinds/tally/actors/a/query", Some(json!({ "sql": "SELECT 1" }))),
        ("GET", "/v1/admin/kinds/tally/actors/a/trace", None),
    ];
    for (method, path, body) in &routes {
        let (status, answer) = s.call(method, path, None, body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthenticated")), "{method} {path}");
        let (status, answer) = s.call(method, path, Some(&bob), body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("not_server_admin")), "{method} {path}");
        // Refused before looking: even a kind that does not exist is 403 for bob.
        let nope = path.replace("tally", "nope");
        let (status, _) = s.call(method, &nope, Some(&bob), body.clone()).await;
        assert_eq!(status, 403, "{method} {nope}");
        let (status, answer) = s.call(method, path, Some(&root), body.clone()).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    // Logins match case-insensitively.
    let root_again = s.sign_in("ROOT").await;
    assert_eq!(s.call("GET", "/v1/admin/runtime", Some(&root_again), None).await.0, 200);

    // The same user on a server where dev sign-in is off: a dev login is no admin there.
    let mut api = Api::new(Domain::new(s.rt.clone()), AuthSettings::default());
    api.server_admins = vec!["root".to_owned()];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let other = foundry::http::server_on(Arc::new(api), listener, 1).unwrap();
    let handle = other.handle();
    actix_rt::spawn(other);
    let res = s.client.get(format!("{base}/v1/admin/runtime")).bearer_auth(&root).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_server_admin");
    handle.stop(true).await;

    // And a server with no admins at all lets nobody in.
    let none = start(|_, _| {}).await;
    let root = none.sign_in("root").await;
    let (status, body) = none.call("GET", "/v1/admin/runtime", Some(&root), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("not_server_admin")));
    none.stop().await;
    s.stop().await;
}

#[actix_rt::test]
async fn read_only_sql_refuses_writes_caps_rows_and_stops_runaway_queries() {
    let s = server().await;
    let root = s.sign_in("root").await;
    let tallies = s.rt.registry::<Tally>();
    let a = "a".to_owned();
    for by in 1..=5 {
        tallies.mutate(&a, Add::new(by)).await.unwrap();
    }
    let file = s.dir.path().join("tally/a.sqlite3");
    let before = files(s.dir.path());

    let (status, body) =
        query(&s, &root, "tally", "a", json!({ "sql": "SELECT id, note FROM entries ORDER BY id" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!(["id", "note"]));
    assert_eq!(body["rows"][0], json!([1, "add 1"]));
    assert_eq!(body["rows"].as_array().unwrap().len(), 5);
    assert_eq!(body["truncated"], false);

    // Writes and escapes are refused before they run; the data is as it was.
    for sql in [
        "UPDATE tally SET value = 0",
        "DELETE FROM entries",
        "INSERT INTO entries (note) VALUES ('x')",
        "DROP TABLE entries",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE 'other.sqlite3' AS other",
        "PRAGMA user_version = 7",
        "VACUUM INTO 'copy.sqlite3'",
    ] {
        let (status, body) = query(&s, &root, "tally", "a", json!({ "sql": sql })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("sql_not_read_only")), "{sql}: {body}");
    }
    assert_eq!(tallies.read(&a, GetValue).await.unwrap(), 15);
    assert_eq!(tally_value(&file), 15);
    let (_, body) = query(&s, &root, "tally", "a", json!({ "sql": "SELECT COUNT(*) FROM entries" })).await;
    assert_eq!(body["rows"], json!([[5]]));

    // Rows are capped.
    let (status, body) = query(&s, &root, "tally", "a", json!({ "sql": "SELECT * FROM entries", "limit": 2 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 2);
    assert_eq!(body["truncated"], true);

    // A runaway query is stopped at its time limit.
    let runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let (status, body) = query(&s, &root, "tally", "a", json!({ "sql": runaway, "timeoutMs": 200 })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("sql_timeout")), "{body}");
    // The actor was never held up: it answers at once.
    assert_eq!(tallies.read(&a, GetValue).await.unwrap(), 15);

    for (body, code) in [
        (json!({ "sql": "SELEKT 1" }), "sql_invalid"),
        (json!({ "sql": "SELECT 1; SELECT 2" }), "sql_invalid"),
        (json!({ "sql": "SELECT 1", "limit": 0 }), "invalid_limit"),
        (json!({ "sql": "SELECT 1", "limit": 1001 }), "invalid_limit"),
        (json!({ "sql": "SELECT 1", "timeoutMs": 10001 }), "invalid_limit"),
        (json!({ "sql": "x".repeat(16 * 1024 + 1) }), "sql_invalid"),
        (json!({ "sql": "SELECT 1", "extra": true }), "invalid_field"),
    ] {
        let (status, answer) = query(&s, &root, "tally", "a", body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some(code)), "{body}: {answer}");
    }
    let (status, body) = query(&s, &root, "tally", "a", json!({ "sql": "SELECT randomblob(100000000)" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("sql_failed")), "{body}");

    // The actor's tables, with row counts; a page of one.
    let detail = get(&s, "/v1/admin/kinds/tally/actors/a", &root).await;
    let tables = detail["tables"].as_array().unwrap();
    let find = |name: &str| tables.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("{name}: {detail}"));
    assert_eq!(find("entries")["rows"], 5);
    assert_eq!(find("entries")["runtime"], false);
    assert_eq!(find("tally")["rows"], 1);
    assert_eq!(find("_foundry_outbox")["runtime"], true);
    assert!(detail["databaseBytes"].as_u64().unwrap() > 0);
    assert_eq!(detail["state"]["topics"][0]["version"], 5);
    let dump = get(&s, "/v1/admin/kinds/tally/actors/a/tables/entries?offset=1&limit=2", &root).await;
    assert_eq!(dump["total"], 5);
    assert_eq!(dump["rows"], json!([[2, "add 2"], [3, "add 3"]]));
    let (status, body) =
        s.call("GET", "/v1/admin/kinds/tally/actors/a/tables/entries?limit=501", Some(&root), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_limit")));
    let (status, body) = s.call("GET", "/v1/admin/kinds/tally/actors/a/tables/nope", Some(&root), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");

    let after = files(s.dir.path());
    let created: Vec<_> = after.difference(&before).collect();
    assert!(created.is_empty(), "no file was created: {created:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn unknown_kinds_keys_and_tables_are_404_and_create_nothing() {
    let s = server().await;
    let root = s.sign_in("root").await;
    s.rt.registry::<Tally>().mutate(&"a".to_owned(), Add::new(1)).await.unwrap();
    let before = files(s.dir.path());
    for (method, path) in [
        ("GET", "/v1/admin/kinds/nope/actors"),
        ("GET", "/v1/admin/kinds/nope/actors/a"),
        ("GET", "/v1/admin/kinds/tally/actors/ghost"),
        ("GET", "/v1/admin/kinds/tally/actors/ghost/tables/tally"),
        ("POST", "/v1/admin/kinds/tally/actors/ghost/query"),
        ("GET", "/v1/admin/kinds/tally/actors/ghost/trace"),
        ("GET", "/v1/admin/kinds/organization/actors/ghost"),
        ("GET", "/v1/admin/kinds/repository/actors/ghost%2Fnope"),
    ] {
        let body = (method == "POST").then(|| json!({ "sql": "SELECT 1" }));
        let (status, answer) = s.call(method, path, Some(&root), body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{method} {path}: {answer}");
    }
    // A key that cannot be a repository's (no `/`) is refused as such.
    let (status, answer) = s.call("GET", "/v1/admin/kinds/repository/actors/ghost", Some(&root), None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("invalid_input")), "{answer}");
    assert_eq!(files(s.dir.path()), before, "nothing was created");
    assert!(!s.rt.registry::<Tally>().is_live(&"ghost".to_owned()));
    s.stop().await;
}

#[actix_rt::test]
async fn a_passivated_actor_is_activated_to_be_inspected_and_keys_with_slashes_work() {
    let s = server().await;
    let root = s.sign_in("root").await;
    let tallies = s.rt.registry::<Tally>();
    let a = "a".to_owned();
    tallies.mutate(&a, Add::new(2)).await.unwrap();
    assert!(tallies.passivate(&a).await);
    eventually("a passivated", || !tallies.is_live(&a)).await;

    // Its trace does not activate it: a passivated actor has none.
    let trace = get(&s, "/v1/admin/kinds/tally/actors/a/trace", &root).await;
    assert_eq!(trace["live"], false);
    assert_eq!(trace["entries"], json!([]));
    assert!(!tallies.is_live(&a));
    // Listing does not either.
    let page = get(&s, "/v1/admin/kinds/tally/actors", &root).await;
    assert_eq!(page["actors"], json!([]));
    // Its detail does, and reads its committed state.
    let detail = get(&s, "/v1/admin/kinds/tally/actors/a", &root).await;
    assert!(tallies.is_live(&a));
    assert_eq!(detail["state"]["topics"][0], json!({ "topic": "tally", "version": 1, "subscribers": 0 }));
    let (_, rows) = query(&s, &root, "tally", "a", json!({ "sql": "SELECT value FROM tally" })).await;
    assert_eq!(rows["rows"], json!([[2]]));
    // Inspection is not activity: the trace of the reactivated actor is empty.
    let trace = get(&s, "/v1/admin/kinds/tally/actors/a/trace", &root).await;
    assert_eq!((trace["live"].clone(), trace["recorded"].clone()), (json!(true), json!(0)), "{trace}");

    // A domain actor whose key has `/` in it: one path segment, `/` as %2F.
    let org = json!({ "id": "acme", "displayName": "Acme" });
    assert_eq!(s.call("POST", "/v1/orgs", Some(&root), Some(org)).await.0, 201);
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    assert_eq!(s.call("POST", "/v1/orgs/acme/repos", Some(&root), Some(repo)).await.0, 201);
    let page = get(&s, "/v1/admin/kinds/repository/actors", &root).await;
    assert!(page["actors"].as_array().unwrap().iter().any(|a| a["key"] == "acme/r1"), "{page}");
    let detail = get(&s, "/v1/admin/kinds/repository/actors/acme%2Fr1", &root).await;
    assert_eq!(detail["key"], "acme/r1");
    let trace = get(&s, "/v1/admin/kinds/repository/actors/acme%2Fr1/trace", &root).await;
    assert!(!trace["entries"].as_array().unwrap().is_empty(), "{trace}");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// The trace, through the runtime's API

fn runtime_with_trace(size: usize) -> (Runtime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path());
    config.arbiters = 0;
    config.trace_size = size;
    (Runtime::start(config).unwrap(), dir)
}

#[actix_rt::test]
async fn the_trace_is_bounded_newest_first_and_records_errors() {
    let (rt, _dir) = runtime_with_trace(6);
    let tallies = rt.registry::<Tally>();
    let alarms = rt.registry::<Alarm>();
    let a = "a".to_owned();
    tallies.mutate(&a, Add::new(1)).await.unwrap();
    let refused = tallies.mutate(&a, Add::new(-1)).await;
    assert!(matches!(refused, Err(CallError::Handler(TallyError::Negative))));
    assert!(matches!(tallies.read(&a, PanicInRead).await, Err(CallError::Panicked { .. })));
    assert_eq!(tallies.read(&a, GetValue).await.unwrap(), 1);
    let (release, held) = tokio::sync::oneshot::channel();
    tallies.exec(&a, Gate { release: held }).await.unwrap();
    release.send(()).unwrap();
    // b receives a delivery from a's outbox.
    tallies.mutate(&a, AddAndForward { by: 3, target: "b".into() }).await.unwrap();
    eventually_some("b's delivery", || async {
        // b exists once the delivery activated it.
        let t = rt.inspector().trace("tally", "b").await.ok()?;
        t.entries.iter().any(|e| e.kind == TraceKind::Delivery).then_some(())
    })
    .await;

    let trace = rt.inspector().trace("tally", "a").await.unwrap();
    assert!(trace.live);
    assert_eq!(trace.size, 6);
    assert_eq!(trace.recorded, 6);
    let seen: Vec<(&str, TraceKind, TraceOutcome)> =
        trace.entries.iter().map(|e| (e.message.as_str(), e.kind, e.outcome)).collect();
    assert_eq!(
        seen,
        [
            ("AddAndForward", TraceKind::Mutation, TraceOutcome::Ok),
            ("Gate", TraceKind::Command, TraceOutcome::Ok),
            ("GetValue", TraceKind::Read, TraceOutcome::Ok),
            ("PanicInRead", TraceKind::Read, TraceOutcome::Panicked),
            ("Add", TraceKind::Mutation, TraceOutcome::Refused),
            ("Add", TraceKind::Mutation, TraceOutcome::Ok),
        ],
        "newest first"
    );
    let now = foundry::runtime::schedule::now_ms();
    assert!(trace.entries.iter().all(|e| e.at_ms <= now + 5 && e.at_ms > now - 60_000), "{trace:?}");
    assert!(trace.entries.windows(2).all(|w| w[0].at_ms >= w[1].at_ms), "{trace:?}");

    // Bounded: more messages push the oldest out.
    for _ in 0..10 {
        tallies.read(&a, GetValue).await.unwrap();
    }
    let trace = rt.inspector().trace("tally", "a").await.unwrap();
    assert_eq!(trace.entries.len(), 6);
    assert_eq!(trace.recorded, 16);
    assert!(trace.entries.iter().all(|e| e.message == "GetValue"));

    // A durable schedule firing is traced under its wire name.
    alarms.mutate(&"soon".to_owned(), SetAlarm { after: Duration::from_millis(20) }).await.unwrap();
    let fired = eventually_some("the alarm fired", || async {
        let t = rt.inspector().trace("alarm", "soon").await.unwrap();
        t.entries.into_iter().find(|e| e.kind == TraceKind::Schedule)
    })
    .await;
    assert_eq!((fired.message.as_str(), fired.outcome), ("alarm.ring", TraceOutcome::Ok));

    // Unknown kinds and keys.
    assert!(matches!(rt.inspector().trace("nope", "a").await, Err(CallError::Handler(InspectError::UnknownKind(_)))));
    assert!(matches!(rt.inspector().trace("tally", "ghost").await, Err(CallError::NotFound { .. })));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_trace_of_size_zero_records_nothing() {
    let (rt, _dir) = runtime_with_trace(0);
    let tallies = rt.registry::<Tally>();
    let a = "a".to_owned();
    tallies.mutate(&a, Add::new(1)).await.unwrap();
    let _ = tallies.mutate(&a, Add::new(-1)).await;
    tallies.read(&a, GetValue).await.unwrap();
    let trace = rt.inspector().trace("tally", "a").await.unwrap();
    assert!(trace.live);
    assert_eq!((trace.size, trace.recorded, trace.entries.len()), (0, 0, 0));
    let detail = rt.inspector().actor("tally", "a").await.unwrap();
    assert_eq!(detail.state.traced, 0);
    assert_eq!(rt.inspector().runtime().trace_size, 0);
    rt.shutdown().await;
}
