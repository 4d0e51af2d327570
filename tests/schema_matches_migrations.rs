//! The `diesel::table!` definitions of every kind match what its migrations create: each kind's migrations are
//! applied to a fresh database, then every table is compared with its `table!` (same columns in the same order, same
//! storage class, same nullability, same primary key), and every migrated table must have a `table!` listed here —
//! a migration that adds, renames, retypes or drops a column without the schema module (or the reverse) fails here
//! instead of at the first query that touches it in production.

use diesel::prelude::*;
use diesel::sql_types::{is_nullable, HasSqlType, Integer, SqlType, Text};
use diesel::sqlite::{Sqlite, SqliteType};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use foundry::actors::audit_log::{schema as audit, AuditLog};
use foundry::actors::auth_directory::{schema as auth, AuthDirectory};
use foundry::actors::github_data::{schema as gh, GitHubData};
use foundry::actors::organization::{schema as org, Organization};
use foundry::actors::repository::{schema as repo, Repository};
use foundry::actors::session::{schema as session, Session};
use foundry::actors::task::processes::task_processes;
use foundry::actors::task::workspace::task_workspace;
use foundry::actors::task::{schema as task, Task};
use foundry::actors::user::{schema as user, User};
use foundry::runtime::Entity;

/// The guide's example kind (docs/writing-an-actor-kind.md); only its schema is used here.
#[allow(dead_code)]
#[path = "../examples/bookmarks/kind.rs"]
mod guide_kind;

/// A column as both sides describe it.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Col {
    name: String,
    /// SQLite's storage class for the column: `INTEGER`, `TEXT`, `REAL` or `BLOB`.
    class: &'static str,
    nullable: bool,
}

trait Nullness {
    const NULLABLE: bool;
}
impl Nullness for is_nullable::NotNull {
    const NULLABLE: bool = false;
}
impl Nullness for is_nullable::IsNullable {
    const NULLABLE: bool = true;
}

fn class_of(ty: SqliteType) -> &'static str {
    match ty {
        SqliteType::SmallInt | SqliteType::Integer | SqliteType::Long => "INTEGER",
        SqliteType::Text => "TEXT",
        SqliteType::Float | SqliteType::Double => "REAL",
        SqliteType::Binary => "BLOB",
    }
}

/// The columns a `table!` declares, in order: implemented for each column type and for tuples of them
/// (`Table::AllColumns`, composite `PrimaryKey`s). `M` only keeps the two impls apart for coherence (a tuple could,
/// as far as the compiler knows, implement `Column` some day); it is inferred at every use.
trait Columns<M> {
    fn push(out: &mut Vec<Col>);
}

struct One;

impl<C> Columns<One> for C
where
    C: Column,
    C: Expression,
    <C as Expression>::SqlType: SqlType,
    <<C as Expression>::SqlType as SqlType>::IsNull: Nullness,
    Sqlite: HasSqlType<<C as Expression>::SqlType>,
{
    fn push(out: &mut Vec<Col>) {
        out.push(Col {
            name: C::NAME.to_owned(),
            class: class_of(<Sqlite as HasSqlType<<C as Expression>::SqlType>>::metadata(&mut ())),
            nullable: <<<C as Expression>::SqlType as SqlType>::IsNull as Nullness>::NULLABLE,
        });
    }
}

macro_rules! tuple_columns {
    ($($t:ident / $m:ident),+) => {
        impl<$($t: Columns<$m>, $m),+> Columns<($($m,)+)> for ($($t,)+) {
            fn push(out: &mut Vec<Col>) {
                $(<$t as Columns<$m>>::push(out);)+
            }
        }
    };
}
tuple_columns!(A / MA, B / MB);
tuple_columns!(A / MA, B / MB, C / MC);
tuple_columns!(A / MA, B / MB, C / MC, D / MD);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH, I / MI);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH, I / MI, J / MJ);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH, I / MI, J / MJ, K / MK);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH, I / MI, J / MJ, K / MK, L / ML);
tuple_columns!(A / MA, B / MB, C / MC, D / MD, E / ME, F / MF, G / MG, H / MH, I / MI, J / MJ, K / MK, L / ML, M / MM);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS,
    T / MT
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS,
    T / MT,
    U / MU
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS,
    T / MT,
    U / MU,
    V / MV
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS,
    T / MT,
    U / MU,
    V / MV,
    W / MW
);
tuple_columns!(
    A / MA,
    B / MB,
    C / MC,
    D / MD,
    E / ME,
    F / MF,
    G / MG,
    H / MH,
    I / MI,
    J / MJ,
    K / MK,
    L / ML,
    M / MM,
    N / MN,
    O / MO,
    P / MP,
    Q / MQ,
    R / MR,
    S / MS,
    T / MT,
    U / MU,
    V / MV,
    W / MW,
    X / MX
);

/// One `table!` as the test sees it.
struct Declared {
    name: String,
    columns: Vec<Col>,
    primary_key: Vec<String>,
}

fn declared<T, MA, MK>(_: T) -> Declared
where
    T: diesel::Table + diesel::query_source::QuerySource,
    T::AllColumns: Columns<MA>,
    T::PrimaryKey: Columns<MK>,
    <T as QuerySource>::FromClause: diesel::query_builder::QueryFragment<Sqlite>,
    T: Default,
{
    let mut columns = Vec::new();
    <T::AllColumns as Columns<MA>>::push(&mut columns);
    let mut pk = Vec::new();
    <T::PrimaryKey as Columns<MK>>::push(&mut pk);
    // The table's SQL name, as diesel renders it in a FROM clause (`\`name\``).
    let from = diesel::debug_query::<Sqlite, _>(&T::default().from_clause()).to_string();
    let name = from.split('`').nth(1).unwrap_or_else(|| panic!("no table name in {from}")).to_owned();
    Declared { name, columns, primary_key: pk.into_iter().map(|c| c.name).collect() }
}

#[derive(QueryableByName)]
struct PragmaColumn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    ty: String,
    #[diesel(sql_type = Integer)]
    not_null: i32,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// SQLite's affinity rules (https://www.sqlite.org/datatype3.html, 3.1), with NUMERIC (e.g. `BOOLEAN`) holding
/// integers: the class a value of the declared type is stored as.
fn affinity(declared: &str) -> &'static str {
    let t = declared.to_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.is_empty() || t.contains("BLOB") {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "INTEGER"
    }
}

fn tables(conn: &mut SqliteConnection) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name != '__diesel_schema_migrations' ORDER BY name",
    )
    .load(conn)
    .unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

/// Tables every actor database has from the runtime's own migrations (queried with plain SQL, no `table!`).
fn runtime_tables() -> Vec<String> {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.run_pending_migrations(foundry::runtime::db::RUNTIME_MIGRATIONS).unwrap();
    tables(&mut conn)
}

fn check_kind(kind: &str, migrations: EmbeddedMigrations, declared: Vec<Declared>) -> Vec<String> {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.run_pending_migrations(migrations).unwrap_or_else(|e| panic!("{kind}: migrations: {e}"));
    let runtime = runtime_tables();
    let mut problems = Vec::new();
    for table in tables(&mut conn) {
        if !runtime.contains(&table) && !declared.iter().any(|d| d.name == table) {
            problems.push(format!("{kind}: table `{table}` is migrated but has no table! listed in this test"));
        }
    }
    for d in declared {
        let rows: Vec<PragmaColumn> =
            diesel::sql_query("SELECT name, type AS ty, \"notnull\" AS not_null, pk FROM pragma_table_info(?)")
                .bind::<Text, _>(&d.name)
                .load(&mut conn)
                .unwrap();
        if rows.is_empty() {
            problems.push(format!("{kind}: table! `{}` names a table the migrations do not create", d.name));
            continue;
        }
        let mut pk: Vec<(i32, String)> = rows.iter().filter(|r| r.pk > 0).map(|r| (r.pk, r.name.clone())).collect();
        pk.sort();
        let pk: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
        let migrated: Vec<Col> = rows
            .into_iter()
            .map(|r| Col {
                class: affinity(&r.ty),
                // SQLite lets a non-INTEGER primary key hold NULL unless NOT NULL is declared; diesel's table! always
                // treats key columns as NOT NULL, so the migration must say so too (no exception for keys).
                nullable: r.not_null == 0 && !(r.pk > 0 && affinity(&r.ty) == "INTEGER" && pk.len() == 1),
                name: r.name,
            })
            .collect();
        if migrated != d.columns {
            problems.push(format!(
                "{kind}.{}: table! declares\n    {:?}\n  the migrations create\n    {:?}",
                d.name, d.columns, migrated
            ));
        }
        if pk != d.primary_key {
            problems.push(format!("{kind}.{}: primary key {:?} in table!, {:?} migrated", d.name, d.primary_key, pk));
        }
    }
    problems
}

#[test]
fn every_table_definition_matches_the_migrated_schema() {
    let kinds: Vec<(&str, EmbeddedMigrations, Vec<Declared>)> = vec![
        ("audit_log", AuditLog::MIGRATIONS, vec![declared(audit::events::table)]),
        (
            "auth_directory",
            AuthDirectory::MIGRATIONS,
            vec![
                declared(auth::auth_session_index::table),
                declared(auth::auth_email_index::table),
                declared(auth::auth_account_index::table),
                declared(auth::auth_verification::table),
                declared(auth::account_orgs::table),
                declared(auth::auth_login_index::table),
                declared(auth::github_account_index::table),
            ],
        ),
        (
            "github_data",
            GitHubData::MIGRATIONS,
            vec![
                declared(gh::github_meta::table),
                declared(gh::repositories::table),
                declared(gh::branches::table),
                declared(gh::pull_requests::table),
                declared(gh::webhook_deliveries::table),
                declared(gh::members::table),
            ],
        ),
        (
            "organization",
            Organization::MIGRATIONS,
            vec![
                declared(org::organization_profile::table),
                declared(org::repos::table),
                declared(org::task_summaries::table),
                declared(org::members::table),
            ],
        ),
        ("repository", Repository::MIGRATIONS, vec![declared(repo::repo_meta::table), declared(repo::tasks::table)]),
        (
            "session",
            Session::MIGRATIONS,
            vec![
                declared(session::session_meta::table),
                declared(session::pending_prompts::table),
                declared(session::transcript::table),
            ],
        ),
        (
            "task",
            Task::MIGRATIONS,
            vec![
                declared(task::task::table),
                declared(task::task_runtime::table),
                declared(task::task_sessions::table),
                declared(task_processes::table),
                declared(task_workspace::table),
            ],
        ),
        (
            "user",
            User::MIGRATIONS,
            vec![
                declared(user::user::table),
                declared(user::user_profile::table),
                declared(user::user_org_details::table),
                declared(user::user_task_state::table),
                declared(user::user_session_state::table),
                declared(user::auth_sessions::table),
                declared(user::accounts::table),
            ],
        ),
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for (kind, migrations, declared) in kinds {
        checked += declared.len();
        problems.extend(check_kind(kind, migrations, declared));
    }
    assert!(problems.is_empty(), "{} mismatch(es):\n{}", problems.len(), problems.join("\n"));
    assert_eq!(checked, 35, "every table! of the eight domain kinds is listed");
}

/// The comparison itself notices a drift: a column the migration has but `table!` lacks, and a changed type.
#[test]
fn a_drifted_table_is_reported() {
    diesel::table! {
        events (id) {
            id -> BigInt,
            at_ms -> BigInt,
        }
    }
    let problems = check_kind("audit_log", AuditLog::MIGRATIONS, vec![declared(events::table)]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("audit_log.events"), "{problems:?}");
}

/// The kind of docs/writing-an-actor-kind.md, checked the same way (its tables are not part of the domain's count).
#[test]
fn the_guide_kinds_table_definitions_match_its_migrations() {
    use guide_kind::{bookmarks, shelf, Bookmarks};
    let declared = vec![declared(shelf::table), declared(bookmarks::table)];
    let problems = check_kind("bookmarks", Bookmarks::MIGRATIONS, declared);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
