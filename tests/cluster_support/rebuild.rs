//! What the fault harness's checker reads from PostgreSQL alone: organizations, their audit logs and their
//! repositories rebuilt from the commit log (newest snapshot + the entries after it, as a new node restores them),
//! with the nodes stopped. From those files: each organization's repositories, its `repository.added` audit entries
//! per repository, and where the summary the organization keeps of a repository (the `repos` row: names and
//! counters) disagrees with that repository's own state.

use std::collections::BTreeMap;
use std::path::Path;

use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::cluster::{self, ClusterConfig, LeaseHooks, PgLog};
use foundry::runtime::durable::{restore, CommitLog, LogKey};
use futures_util::StreamExt;

/// Per organization, per repository id: how many `repository.added` audit entries name it.
pub type AuditCounts = BTreeMap<String, BTreeMap<String, usize>>;

// The actors' own table definitions: the rebuild reads the files they wrote.
use foundry::actors::audit_log::schema as audit;
use foundry::actors::organization::schema as org;
use foundry::actors::repository::schema as repo;

/// The organization's row for one repository: (full name, remote, default branch, task count, latest activity).
type RepoSummary = (String, String, String, i32, Option<i64>);

/// Everything rebuilt from the log.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Each organization's repository ids, sorted.
    pub repos: BTreeMap<String, Vec<String>>,
    pub audit: AuditCounts,
    /// `org/repo: what differs` between the organization's summary of a repository and the repository rebuilt.
    pub summaries_differing: Vec<String>,
    /// Repository actors rebuilt (one per repository of every organization).
    pub repositories: usize,
}

/// Rebuilds `orgs` (their organization and audit-log actors, and every repository they list) into `dir`. The nodes
/// must be stopped: the probe registers as a node to get a lease view for the log client.
pub async fn rebuild(pg_url: &str, orgs: &[String], dir: &Path) -> Rebuilt {
    let cfg = ClusterConfig::new("probe", pg_url.to_owned());
    let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("probe lease manager");
    let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("probe log client");
    let mut out = Rebuilt::default();
    for org_id in orgs {
        let shard = foundry::runtime::shard_of(org_id);
        let mut conn = restore_actor(&log, "organization", org_id, shard, dir)
            .await
            .unwrap_or_else(|| panic!("{org_id} is in the log"));
        let rows: Vec<(String, RepoSummary)> = org::repos::table
            .select((
                org::repos::repo_id,
                (
                    org::repos::full_name,
                    org::repos::remote_url,
                    org::repos::default_branch,
                    org::repos::task_count,
                    org::repos::latest_activity_at,
                ),
            ))
            .order(org::repos::repo_id)
            .load(&mut conn)
            .unwrap();
        let summarised: BTreeMap<String, i64> = org::task_summaries::table
            .group_by(org::task_summaries::repo_id)
            .select((org::task_summaries::repo_id, count_star()))
            .load::<(String, i64)>(&mut conn)
            .unwrap()
            .into_iter()
            .collect();
        out.repos.insert(org_id.clone(), rows.iter().map(|(id, _)| id.clone()).collect());

        // An organization always has its log (`organization.created` at least); none would be an effect lost.
        let mut counts = BTreeMap::new();
        match restore_actor(&log, "audit_log", org_id, shard, dir).await {
            Some(mut conn) => {
                let added: Vec<Option<String>> = audit::events::table
                    .filter(audit::events::kind.eq("repository.added"))
                    .select(audit::events::repo_id)
                    .load(&mut conn)
                    .unwrap();
                for repo_id in added {
                    *counts.entry(repo_id.unwrap_or_default()).or_insert(0) += 1;
                }
            }
            None => out.summaries_differing.push(format!("{org_id}: no audit log in PostgreSQL")),
        }
        out.audit.insert(org_id.clone(), counts);

        // Each repository against the organization's summary of it, a few restores at a time.
        let checks = futures_util::stream::iter(rows)
            .map(|(repo_id, summary)| {
                let log = &log;
                let tasks = summarised.get(&repo_id).copied().unwrap_or(0);
                async move {
                    let key = format!("{}/{}", escape(org_id), escape(&repo_id));
                    let differs = match restore_actor(log, "repository", &key, shard, dir).await {
                        None => Some("no repository actor in PostgreSQL".to_owned()),
                        Some(mut conn) => compare_repo(&mut conn, &summary, tasks),
                    };
                    differs.map(|d| format!("{org_id}/{repo_id}: {d}"))
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        out.repositories += checks.len();
        out.summaries_differing.extend(checks.into_iter().flatten());
    }
    drop(leases);
    out
}

/// What differs between the organization's summary of a repository (`summary`, and the number of task summaries it
/// keeps for it) and the repository's own state.
fn compare_repo(conn: &mut SqliteConnection, summary: &RepoSummary, org_tasks: i64) -> Option<String> {
    let meta: Option<(String, String, String)> = repo::repo_meta::table
        .find(1)
        .select((repo::repo_meta::full_name, repo::repo_meta::remote_url, repo::repo_meta::default_branch))
        .first(conn)
        .optional()
        .unwrap();
    let Some(meta) = meta else { return Some("repository not initialised".into()) };
    let (count, latest): (i64, Option<i64>) =
        repo::tasks::table.select((count_star(), max(repo::tasks::updated_at))).first(conn).unwrap();
    let (full_name, remote_url, default_branch, task_count, latest_activity_at) = summary;
    let mut differs = Vec::new();
    if (&meta.0, &meta.1, &meta.2) != (full_name, remote_url, default_branch) {
        differs.push(format!("names {meta:?} vs the organization's {:?}", (full_name, remote_url, default_branch)));
    }
    if i64::from(*task_count) != count || org_tasks != count {
        differs.push(format!("{count} tasks, the organization counts {task_count} and keeps {org_tasks} summaries"));
    }
    if *latest_activity_at != latest {
        differs.push(format!("latest activity {latest:?} vs the organization's {latest_activity_at:?}"));
    }
    (!differs.is_empty()).then(|| differs.join("; "))
}

/// The key encoding of compound keys (`src/actors/keys.rs`).
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

/// Restores one actor from the log into `dir` and opens it; `None` when the log does not know it.
async fn restore_actor(
    log: &PgLog,
    kind: &'static str,
    key: &str,
    shard: foundry::runtime::ShardId,
    dir: &Path,
) -> Option<SqliteConnection> {
    let actor = LogKey { kind, key: key.to_owned(), shard };
    let history = log.history(&actor).await.unwrap()?;
    let path = dir.join(format!("{kind}-{}.sqlite3", key.replace(['/', '%'], "_")));
    restore(&path, &history).unwrap();
    Some(SqliteConnection::establish(path.to_str().unwrap()).unwrap())
}
