//! The read side of [`FakeGitHub`](super::FakeGitHub)'s REST API: repositories, branches, pull requests and members
//! of the fixture as GitHub's JSON, with `Link` pagination. Branch and pull shas come from the real refs when the
//! repository has git.

use std::collections::{BTreeMap, HashMap};

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use super::{fake_sha, rfc3339, FakePull, FakeRepo, Reply, State, BASE_EPOCH};

pub(super) fn route(s: &State, req: &HttpRequest) -> Reply {
    let query: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    let f = &s.fixture;
    let owner_matches = |o: &str| o.eq_ignore_ascii_case(&f.owner);
    let find_repo = |o: &str, name: &str| {
        if owner_matches(o) {
            f.repos.iter().find(|r| r.name.eq_ignore_ascii_case(name))
        } else {
            None
        }
    };
    let all_repos = || f.repos.iter().map(|r| repo_json(s, r)).collect::<Vec<_>>();

    match segments.as_slice() {
        ["orgs", org, "repos"] if owner_matches(org) => paginate(s, req, all_repos(), false),
        ["user", "repos"] => paginate(s, req, all_repos(), false),
        // Another account's public repositories: the fixture owner's, and none for any other login.
        ["users", user, "repos"] => {
            let public = if owner_matches(user) {
                f.repos.iter().filter(|r| !r.private).map(|r| repo_json(s, r)).collect()
            } else {
                Vec::new()
            };
            paginate(s, req, public, false)
        }
        ["installation", "repositories"] => paginate(s, req, all_repos(), true),
        ["orgs", org, "members"] if owner_matches(org) => {
            // GitHub's `role` filter: `all` (the default), `admin` or `member`.
            let role = query.get("role").map_or("all", String::as_str);
            let members = f
                .members
                .iter()
                .filter(|m| role == "all" || (role == "admin") == m.admin)
                .map(|m| json!({"id": m.id, "login": m.login, "type": "User"}))
                .collect();
            paginate(s, req, members, false)
        }
        ["repos", o, name] => match find_repo(o, name) {
            Some(r) => Reply::ok(repo_json(s, r)),
            None => Reply::not_found(),
        },
        ["repos", o, name, "branches"] => match find_repo(o, name) {
            Some(r) => {
                let branch =
                    |name: &str, sha: String| json!({"name": name, "commit": {"sha": sha}, "protected": false});
                // With git the refs are the truth (in GitHub's order, by name), however they were changed.
                let branches = match super::git::branch_refs(s, r) {
                    Some(refs) => refs.into_iter().map(|(name, sha)| branch(&name, sha)).collect(),
                    None => r.branches.iter().map(|b| branch(b, branch_sha(s, r, None, b))).collect(),
                };
                paginate(s, req, branches, false)
            }
            None => Reply::not_found(),
        },
        ["repos", o, name, "pulls"] => match find_repo(o, name) {
            Some(r) => {
                let state = query.get("state").map(String::as_str).unwrap_or("open");
                let head = query.get("head").map(|h| h.split_once(':').map_or(h.as_str(), |(_, b)| b));
                let base = query.get("base");
                let mut pulls: Vec<&FakePull> = r
                    .pulls
                    .iter()
                    .filter(|p| state == "all" || p.state == state)
                    .filter(|p| head.is_none_or(|h| p.head_ref == h))
                    .filter(|p| base.is_none_or(|b| &p.base_ref == b))
                    .collect();
                // GitHub: sort defaults to `created`; direction defaults to desc for `created`, asc otherwise.
                let sort = query.get("sort").map(String::as_str).unwrap_or("created");
                let desc = match query.get("direction").map(String::as_str) {
                    Some("asc") => false,
                    Some("desc") => true,
                    _ => sort == "created",
                };
                if sort == "updated" || sort == "long-running" {
                    pulls.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.number.cmp(&b.number)));
                } else {
                    pulls.sort_by_key(|p| p.number);
                }
                if desc {
                    pulls.reverse();
                }
                let refs = super::git::branch_refs(s, r);
                let items = pulls.into_iter().map(|p| pull_json(s, r, p, refs.as_ref())).collect();
                paginate(s, req, items, false)
            }
            None => Reply::not_found(),
        },
        ["repos", o, name, "pulls", number] => {
            let pull = find_repo(o, name).and_then(|r| {
                let n: u64 = number.parse().ok()?;
                r.pulls.iter().find(|p| p.number == n).map(|p| (r, p))
            });
            match pull {
                Some((r, p)) => {
                    let mut pull = pull_json(s, r, p, super::git::branch_refs(s, r).as_ref());
                    // Only the single-pull answer carries mergeability; without git it is never computed.
                    pull["mergeable"] = Value::Null;
                    pull["mergeable_state"] = Value::from("unknown");
                    Reply::ok(pull)
                }
                None => Reply::not_found(),
            }
        }
        _ => Reply::not_found(),
    }
}

/// A repository as GitHub's JSON; with git, `clone_url` points at this server's smart HTTP.
pub(super) fn repo_json(s: &State, r: &FakeRepo) -> Value {
    let owner = &s.fixture.owner;
    let full_name = format!("{owner}/{}", r.name);
    let updated_at = rfc3339(BASE_EPOCH + (r.id % 10_000) * 3600);
    let clone_url = if super::git::has_git(s, r) {
        format!("{}/{full_name}.git", s.base_url)
    } else {
        format!("https://github.com/{full_name}.git")
    };
    json!({
        "id": r.id,
        "node_id": format!("R_fake{}", r.id),
        "name": r.name,
        "full_name": full_name,
        "private": r.private,
        "visibility": if r.private { "private" } else { "public" },
        "fork": false,
        "archived": false,
        "description": null,
        "default_branch": r.default_branch,
        "clone_url": clone_url,
        "html_url": format!("https://github.com/{full_name}"),
        "owner": {"login": owner, "id": s.fixture.owner_id, "type": "Organization"},
        "updated_at": updated_at,
        "pushed_at": updated_at,
    })
}

/// The real head of `branch` when the repository has git and the branch exists, else a stable made-up sha.
pub(super) fn branch_sha(s: &State, r: &FakeRepo, refs: Option<&BTreeMap<String, String>>, branch: &str) -> String {
    match refs.and_then(|refs| refs.get(branch)) {
        Some(sha) => sha.clone(),
        None => fake_sha(&format!("{}/{}:{branch}", s.fixture.owner, r.name)),
    }
}

/// A pull request as GitHub's JSON (without `mergeable`, which only the single-pull answer has). `refs`: the
/// repository's branches, when it has git. A merged pull keeps the shas it was merged at.
pub(super) fn pull_json(s: &State, r: &FakeRepo, p: &FakePull, refs: Option<&BTreeMap<String, String>>) -> Value {
    let full_name = format!("{}/{}", s.fixture.owner, r.name);
    let key = (r.name.to_ascii_lowercase(), p.number);
    let merge = s.merges.get(&key).filter(|_| p.merged);
    let head_sha = merge.map_or_else(|| branch_sha(s, r, refs, &p.head_ref), |m| m.head.clone());
    let base_sha = merge.map_or_else(|| branch_sha(s, r, refs, &p.base_ref), |m| m.base.clone());
    let created_at = s.pull_created.get(&key).cloned().unwrap_or_else(|| rfc3339(BASE_EPOCH - 86_400 + p.number * 60));
    let closed = p.state == "closed";
    json!({
        "id": r.id * 100_000 + p.number,
        "number": p.number,
        "title": p.title,
        "body": p.body,
        "state": p.state,
        "draft": p.draft,
        "merged": p.merged,
        "merged_at": if p.merged { Value::from(p.updated_at.clone()) } else { Value::Null },
        "merge_commit_sha": merge.map(|m| m.commit.clone()),
        "closed_at": if closed { Value::from(p.updated_at.clone()) } else { Value::Null },
        "created_at": created_at,
        "updated_at": p.updated_at,
        "html_url": format!("https://github.com/{full_name}/pull/{}", p.number),
        "head": {
            "ref": p.head_ref,
            "sha": head_sha,
            "repo": {"full_name": full_name},
        },
        "base": {
            "ref": p.base_ref,
            "sha": base_sha,
            "repo": {"full_name": full_name},
        },
        "user": {"login": p.author, "type": "User"},
    })
}

/// Slices `items` by `page`/`per_page` and adds a GitHub-style `Link` header.
pub(super) fn paginate(s: &State, req: &HttpRequest, items: Vec<Value>, wrap_installation: bool) -> Reply {
    let mut page = 1u64;
    let mut per_page = 30u64;
    let mut kept: Vec<&str> = Vec::new();
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "page" => page = value.parse().ok().filter(|&p| p >= 1).unwrap_or(1),
            "per_page" => per_page = value.parse().ok().filter(|&p| p >= 1).unwrap_or(30).min(100),
            _ => kept.push(pair),
        }
    }
    let total = items.len() as u64;
    let last = total.div_ceil(per_page).max(1);
    let start = ((page - 1) * per_page).min(total) as usize;
    let end = (page * per_page).min(total) as usize;
    let slice: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();

    let url = |n: u64| {
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("{}{}?{q}page={n}&per_page={per_page}", s.base_url, req.path())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }

    let body =
        if wrap_installation { json!({"total_count": total, "repositories": slice}) } else { Value::Array(slice) };
    Reply {
        status: 200,
        body,
        link: (!links.is_empty()).then(|| links.join(", ")),
        retry_after: None,
        headers: Vec::new(),
    }
}
