//! Every singleton table of the domain kinds (`CHECK (id = 1)` in its migration) refuses a second row: each kind's
//! migrations are applied to a fresh database, then, per singleton table, a row with `id = 1` is accepted and one
//! with `id = 2` is refused by the CHECK constraint (not by anything else), with NOT NULL columns filled in.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use foundry::actors::audit_log::AuditLog;
use foundry::actors::auth_directory::AuthDirectory;
use foundry::actors::github_data::GitHubData;
use foundry::actors::organization::Organization;
use foundry::actors::repository::Repository;
use foundry::actors::session::Session;
use foundry::actors::task::Task;
use foundry::actors::user::User;
use foundry::runtime::Entity;

/// The guide's example kind (docs/writing-an-actor-kind.md); only its schema is used here.
#[allow(dead_code)]
#[path = "../examples/bookmarks/kind.rs"]
mod guide_kind;

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    ty: String,
    #[diesel(sql_type = Integer)]
    not_null: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    dflt_value: Option<String>,
}

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    sql: String,
}

/// The first literal a column's `CHECK (col IN ('a', ...))` allows, from the table's SQL.
fn allowed_literal(table_sql: &str, column: &str) -> Option<String> {
    let lower = table_sql.to_lowercase();
    for pat in [format!("{column} in ("), format!("{column} in(")] {
        if let Some(i) = lower.find(&pat) {
            let rest = &table_sql[i + pat.len()..];
            let start = rest.find('\'')? + 1;
            let end = start + rest[start..].find('\'')?;
            return Some(format!("'{}'", &rest[start..end]));
        }
    }
    None
}

fn insert(conn: &mut SqliteConnection, table: &Table, columns: &[Column], id: i32) -> Result<(), String> {
    let table_sql = &table.sql;
    let table = &table.name;
    let mut names = Vec::new();
    let mut values = Vec::new();
    for c in columns {
        if c.name == "id" {
            names.push("id".to_owned());
            values.push(id.to_string());
        } else if c.not_null == 1 && c.dflt_value.is_none() {
            names.push(format!("\"{}\"", c.name));
            let ty = c.ty.to_uppercase();
            let dummy = if ty.contains("INT") || ty.contains("REAL") || ty.contains("BOOL") { "0" } else { "''" };
            values.push(allowed_literal(table_sql, &c.name).unwrap_or_else(|| dummy.into()));
        }
    }
    let sql = format!("INSERT INTO \"{table}\" ({}) VALUES ({})", names.join(", "), values.join(", "));
    conn.batch_execute(&sql).map_err(|e| format!("{sql}: {e}"))
}

fn check_kind(kind: &str, migrations: EmbeddedMigrations) -> usize {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.run_pending_migrations(migrations).unwrap_or_else(|e| panic!("{kind}: migrations: {e}"));
    let tables: Vec<Table> =
        diesel::sql_query("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL")
            .load(&mut conn)
            .unwrap();
    let mut checked = 0;
    for t in tables {
        let compact: String = t.sql.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
        if !compact.contains("check(id=1)") {
            continue;
        }
        let columns: Vec<Column> =
            diesel::sql_query("SELECT name, type AS ty, \"notnull\" AS not_null, dflt_value FROM pragma_table_info(?)")
                .bind::<Text, _>(&t.name)
                .load(&mut conn)
                .unwrap();
        // Foreign keys would refuse the dummy row for another reason; this test is about the CHECK.
        conn.batch_execute("PRAGMA foreign_keys = OFF").unwrap();
        // A table may already hold its singleton (seeded by a migration): start from none.
        conn.batch_execute(&format!("DELETE FROM \"{}\"", t.name)).unwrap();
        insert(&mut conn, &t, &columns, 1).unwrap_or_else(|e| panic!("{kind}.{}: id 1 refused: {e}", t.name));
        let second = insert(&mut conn, &t, &columns, 2);
        let err = second.expect_err(&format!("{kind}.{} accepted a second row", t.name));
        assert!(err.contains("CHECK constraint failed"), "{kind}.{}: refused for another reason: {err}", t.name);
        checked += 1;
    }
    checked
}

#[test]
fn singleton_tables_refuse_a_second_row() {
    let kinds: [(&str, EmbeddedMigrations); 8] = [
        ("organization", Organization::MIGRATIONS),
        ("repository", Repository::MIGRATIONS),
        ("task", Task::MIGRATIONS),
        ("session", Session::MIGRATIONS),
        ("user", User::MIGRATIONS),
        ("github_data", GitHubData::MIGRATIONS),
        ("audit_log", AuditLog::MIGRATIONS),
        ("auth_directory", AuthDirectory::MIGRATIONS),
    ];
    let mut total = 0;
    for (kind, migrations) in kinds {
        let n = check_kind(kind, migrations);
        // The kinds whose migrations declare singletons (see `migrations/<kind>/`) must have been found.
        if ["organization", "repository", "task", "session", "user", "github_data"].contains(&kind) {
            assert!(n > 0, "{kind}: no singleton table found");
        }
        total += n;
    }
    assert!(total >= 7, "{total} singleton tables checked");
}

/// The kind of docs/writing-an-actor-kind.md: its `shelf` is a singleton too.
#[test]
fn the_guide_kinds_singleton_refuses_a_second_row() {
    assert_eq!(check_kind("bookmarks", guide_kind::Bookmarks::MIGRATIONS), 1);
}
