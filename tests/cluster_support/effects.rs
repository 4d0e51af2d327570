//! The checker's reading of outbox effects through a node (issue 15: "summaries and audit counts match the
//! children"): each organization's `repository.added` audit entries per repository (`GET /v1/orgs/{org}/audit`, every
//! page), and where the organization's summary of a repository (`GET /v1/orgs/{org}`: its `repos` row and task
//! summaries) disagrees with the repository read on its own (`GET /v1/orgs/{org}/repos/{repo}/tasks`, which answers
//! 404 until the organization's `InitializeRepository` was delivered). Outboxes deliver after the commit that queued
//! them, asynchronously, so both are polled until they settle, within a bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::rebuild::AuditCounts;

/// What the node showed once delivery settled (or the bound ran out).
#[derive(Debug, Default)]
pub struct NodeEffects {
    pub audit: AuditCounts,
    /// `org/repo: what differs`.
    pub summaries_differing: Vec<String>,
    /// From the first read to audit entries matching the repositories (`None`: they did not within the bound).
    pub settled_in: Option<Duration>,
    /// Repositories read one by one.
    pub repositories: usize,
}

/// Reads the effects of `repos` (each organization's repository ids, as read through the same node) through `base`,
/// polling every second until each repository has exactly one `repository.added` entry and every summary agrees,
/// for at most `limit`. With nothing missing but duplicates, it stops once the counts held still for 3 s (a
/// duplicate never goes away).
pub async fn through_node(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    repos: &BTreeMap<String, Vec<String>>,
    limit: Duration,
) -> NodeEffects {
    let start = Instant::now();
    let deadline = start + limit;
    let mut out = NodeEffects::default();
    let (mut previous, mut still) = (None, 0);
    loop {
        let mut audit = AuditCounts::new();
        for org in repos.keys() {
            audit.insert(org.clone(), read_audit(client, base, token, org, deadline).await);
        }
        let missing = repos.iter().any(|(org, ids)| ids.iter().any(|id| !audit[org].contains_key(id)));
        let exact = !missing && repos.iter().all(|(org, ids)| audit[org].len() == ids.len());
        let exact = exact && audit.values().flat_map(BTreeMap::values).all(|n| *n == 1);
        still = if previous.as_ref() == Some(&audit) { still + 1 } else { 0 };
        previous = Some(audit);
        if exact || (!missing && still >= 3) || Instant::now() >= deadline {
            if exact {
                out.settled_in = Some(start.elapsed());
            }
            out.audit = previous.take().unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The summaries: every repository once, then again only those that differed, until the same bound.
    let mut pending: Vec<(String, String)> =
        repos.iter().flat_map(|(org, ids)| ids.iter().map(move |id| (org.clone(), id.clone()))).collect();
    out.repositories = pending.len();
    loop {
        let mut differing = Vec::new();
        let mut by_org: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (org, id) in pending {
            by_org.entry(org).or_default().push(id);
        }
        for (org, ids) in by_org {
            differing.extend(summaries(client, base, token, &org, &ids, deadline).await);
        }
        if differing.is_empty() || Instant::now() >= deadline {
            out.summaries_differing =
                differing.into_iter().map(|(org, id, what)| format!("{org}/{id}: {what}")).collect();
            return out;
        }
        pending = differing.into_iter().map(|(org, id, _)| (org, id)).collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// GET with retries until `deadline` (a node may still be taking a shard over); the JSON of a 200, or `None` for a
/// 404.
async fn get(client: &reqwest::Client, url: &str, token: &str, deadline: Instant) -> Option<Value> {
    loop {
        let res = client.get(url).bearer_auth(token).timeout(Duration::from_secs(10)).send().await;
        let last = match res {
            Ok(r) if r.status() == 200 => return Some(r.json().await.unwrap()),
            Ok(r) if r.status() == 404 => return None,
            Ok(r) => format!("{} {:?}", r.status(), r.text().await),
            Err(e) => e.to_string(),
        };
        assert!(Instant::now() < deadline, "{url} unreadable: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `org`'s `repository.added` entries per repository id, every page of its audit log.
async fn read_audit(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    org: &str,
    deadline: Instant,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut before: Option<i64> = None;
    loop {
        let page = before.map_or(String::new(), |b| format!("&before={b}"));
        let url = format!("{base}/v1/orgs/{org}/audit?limit=500{page}");
        let body = get(client, &url, token, deadline + Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{org}'s audit log answered 404"));
        for event in body["events"].as_array().expect("an audit page lists events") {
            if event["kind"] == "repository.added" {
                let repo = event["repoId"].as_str().unwrap_or_default().to_owned();
                *counts.entry(repo).or_insert(0) += 1;
            }
        }
        match body["nextBefore"].as_i64() {
            Some(next) => before = Some(next),
            None => return counts,
        }
    }
}

/// `(org, repo, what differs)` for each of `ids` whose summary in the organization disagrees with the repository.
async fn summaries(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    org: &str,
    ids: &[String],
    deadline: Instant,
) -> Vec<(String, String, String)> {
    let grace = deadline + Duration::from_secs(30);
    let snapshot = get(client, &format!("{base}/v1/orgs/{org}"), token, grace)
        .await
        .unwrap_or_else(|| panic!("{org} answered 404"));
    let rows: BTreeMap<&str, &Value> = snapshot["repos"]
        .as_array()
        .expect("the snapshot lists repositories")
        .iter()
        .map(|r| (r["repoId"].as_str().unwrap_or_default(), r))
        .collect();
    let mut kept: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for t in snapshot["taskSummaries"].as_array().expect("the snapshot lists task summaries") {
        kept.entry(t["repoId"].as_str().unwrap_or_default()).or_default().push(task_fields(t));
    }
    futures_util::stream::iter(ids)
        .map(|id| {
            let (row, kept) = (rows.get(id.as_str()).copied(), kept.get(id.as_str()).cloned().unwrap_or_default());
            async move {
                let url = format!("{base}/v1/orgs/{org}/repos/{id}/tasks");
                let differs = match (row, get(client, &url, token, grace).await) {
                    (None, _) => Some("not in the organization's snapshot".to_owned()),
                    (Some(_), None) => Some("repository not initialised (404)".to_owned()),
                    (Some(row), Some(tasks)) => compare(row, &kept, &tasks),
                };
                differs.map(|d| (org.to_owned(), id.clone(), d))
            }
        })
        .buffer_unordered(16)
        .filter_map(|d| async move { d })
        .collect()
        .await
}

/// What the organization's row (`repos` entry) and task summaries say of a repository against its own tasks.
fn compare(row: &Value, kept: &[Value], tasks: &Value) -> Option<String> {
    let tasks = tasks.as_array().map(Vec::as_slice).unwrap_or_default();
    let latest = tasks.iter().filter_map(|t| t["updatedAt"].as_i64()).max();
    let mut differs = Vec::new();
    if row["taskCount"].as_u64() != Some(tasks.len() as u64) {
        differs.push(format!("taskCount {} for {} tasks", row["taskCount"], tasks.len()));
    }
    if row["latestActivityAt"].as_i64() != latest {
        differs.push(format!("latestActivityAt {} for {latest:?}", row["latestActivityAt"]));
    }
    let mut own: Vec<Value> = tasks.iter().map(task_fields).collect();
    let mut kept = kept.to_vec();
    own.sort_by_key(Value::to_string);
    kept.sort_by_key(Value::to_string);
    if own != kept {
        differs.push(format!("{} task summaries kept, {} differ from the repository's", kept.len(), own.len()));
    }
    (!differs.is_empty()).then(|| differs.join("; "))
}

/// The fields of a task summary both levels must agree on.
fn task_fields(t: &Value) -> Value {
    serde_json::json!([t["taskId"], t["title"], t["status"], t["updatedAt"], t["sessions"].as_array().map(Vec::len)])
}
