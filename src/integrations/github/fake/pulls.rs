//! Pull request writes of [`FakeGitHub`](super::FakeGitHub) with GitHub's answers and refusals: open
//! (`POST /repos/{o}/{r}/pulls`), update (`PATCH .../pulls/{n}`), merge (`PUT .../pulls/{n}/merge`, done in the bare
//! repository without a work tree: merge-tree, commit-tree, a compare-and-swap update-ref), and the single-pull read
//! with `mergeable` when the repository has git. Git runs with the state unlocked; each step locks only to read or
//! to apply.

use std::path::Path;

use actix_web::HttpRequest;
use serde_json::{json, Map, Value};

use super::git::{self, Ident};
use super::hooks::{self, Push};
use super::rest::pull_json;
use super::{fake_sha, lock, now_epoch, rfc3339, FakePull, MergeShas, Reply, Shared, State};

const CREATE_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const MERGE_DOCS: &str = "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request";
const NOT_MERGEABLE: &str = "Pull Request is not mergeable";

/// A pull request request that runs outside the lock (the repository's name as the fixture spells it).
pub(super) enum PullOp {
    Create(String),
    Update(String, u64),
    Merge(String, u64),
    Get(String, u64),
}

/// The pull request routes of an existing repository; anything else is left to the read-only routes.
pub(super) fn classify(s: &State, req: &HttpRequest) -> Option<PullOp> {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    let ["repos", owner, name, "pulls", rest @ ..] = segments.as_slice() else { return None };
    let r = s.repo(owner, name)?;
    let repo = r.name.clone();
    let number = |n: &str| n.parse::<u64>().ok();
    match (req.method().as_str(), rest) {
        ("POST", []) => Some(PullOp::Create(repo)),
        ("PATCH", [n]) => Some(PullOp::Update(repo, number(n)?)),
        ("PUT", [n, "merge"]) => Some(PullOp::Merge(repo, number(n)?)),
        ("GET", [n]) if git::has_git(s, r) => Some(PullOp::Get(repo, number(n)?)),
        _ => None,
    }
}

/// A refusal is a finished answer too; `?` returns it.
type Answer = Result<Reply, Reply>;

pub(super) async fn serve(state: &Shared, op: PullOp, login: &str, body: &[u8]) -> Reply {
    let params = match op {
        PullOp::Get(..) => Map::new(),
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(params)) => params,
            _ => {
                let docs = "https://docs.github.com/rest/pulls/pulls";
                return Reply::json(400, json!({"message": "Problems parsing JSON", "documentation_url": docs}));
            }
        },
    };
    let answer = match op {
        PullOp::Create(repo) => create(state, &repo, login, &params).await,
        PullOp::Update(repo, number) => update(state, &repo, number, login, &params),
        PullOp::Merge(repo, number) => merge(state, &repo, number, login, &params).await,
        PullOp::Get(repo, number) => get(state, &repo, number).await,
    };
    answer.unwrap_or_else(|refusal| refusal)
}

fn validation(error: Value, docs: &str) -> Reply {
    Reply::json(
        422,
        json!({"message": "Validation Failed", "errors": [error], "documentation_url": docs, "status": "422"}),
    )
}

fn invalid(field: &str) -> Reply {
    validation(json!({"resource": "PullRequest", "field": field, "code": "invalid"}), CREATE_DOCS)
}

fn custom(message: &str) -> Reply {
    validation(json!({"resource": "PullRequest", "code": "custom", "message": message}), CREATE_DOCS)
}

fn refuse(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"message": message, "documentation_url": MERGE_DOCS, "status": status.to_string()}))
}

fn internal(e: std::io::Error) -> Reply {
    tracing::warn!(error = %e, "fake GitHub: git failed");
    Reply::json(500, json!({"message": format!("git: {e}")}))
}

fn string(params: &Map<String, Value>, key: &str) -> Option<String> {
    params.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Pull `number` of `repo` as JSON, with its current shas.
fn current_json(s: &State, repo: &str, number: u64) -> Option<Value> {
    let r = s.repo(&s.fixture.owner, repo)?;
    let p = r.pulls.iter().find(|p| p.number == number)?;
    Some(pull_json(s, r, p, git::branch_refs(s, r).as_ref()))
}

async fn create(state: &Shared, repo: &str, login: &str, params: &Map<String, Value>) -> Answer {
    let missing = |field: &str| {
        validation(json!({"resource": "PullRequest", "field": field, "code": "missing_field"}), CREATE_DOCS)
    };
    let title = string(params, "title").filter(|t| !t.trim().is_empty()).ok_or_else(|| missing("title"))?;
    let head = string(params, "head").ok_or_else(|| missing("head"))?;
    let base = string(params, "base").ok_or_else(|| missing("base"))?;
    let (owner, dir, branches) = {
        let s = lock(state);
        let r = s.repo(&s.fixture.owner, repo).ok_or_else(Reply::not_found)?;
        (s.fixture.owner.clone(), git::dir_of(&s, r), r.branches.clone())
    };
    // `owner:branch` may name a fork's branch; the fake has no forks.
    let head = match head.split_once(':') {
        Some((o, branch)) if o.eq_ignore_ascii_case(&owner) => branch.to_string(),
        Some(_) => return Err(invalid("head")),
        None => head,
    };
    match &dir {
        Some(dir) => {
            let refs = git::read_refs(dir).map_err(internal)?;
            let head_sha = refs.get(&head).ok_or_else(|| invalid("head"))?;
            let base_sha = refs.get(&base).ok_or_else(|| invalid("base"))?;
            let ahead =
                git::text(dir, &["rev-list", "--count", &format!("{base_sha}..{head_sha}")]).await.map_err(internal)?;
            if ahead.trim() == "0" {
                return Err(custom(&format!("No commits between {base} and {head}")));
            }
        }
        None if !branches.contains(&head) => return Err(invalid("head")),
        None if !branches.contains(&base) => return Err(invalid("base")),
        None => {}
    }
    let mut s = lock(state);
    let r = s.repo_mut(repo).ok_or_else(Reply::not_found)?;
    // Checked only now, under the lock, so two concurrent creates cannot both pass.
    if r.pulls.iter().any(|p| p.state == "open" && p.head_ref == head && p.base_ref == base) {
        return Err(custom(&format!("A pull request already exists for {owner}:{head}.")));
    }
    let number = r.pulls.iter().map(|p| p.number).max().unwrap_or(0) + 1;
    let now = rfc3339(now_epoch());
    r.pulls.push(FakePull {
        number,
        title,
        body: string(params, "body"),
        state: "open".to_string(),
        draft: params.get("draft").and_then(Value::as_bool).unwrap_or(false),
        merged: false,
        head_ref: head,
        base_ref: base,
        author: login.to_string(),
        updated_at: now.clone(),
    });
    s.pull_created.insert((repo.to_ascii_lowercase(), number), now);
    let pull = current_json(&s, repo, number).ok_or_else(Reply::not_found)?;
    hooks::pull_request(&mut s, repo, number, "opened", login, json!({}));
    Ok(Reply::json(201, pull))
}

fn update(state: &Shared, repo: &str, number: u64, login: &str, params: &Map<String, Value>) -> Answer {
    let new_state = match params.get("state") {
        None => None,
        Some(Value::String(st)) if st == "open" || st == "closed" => Some(st.clone()),
        Some(_) => return Err(invalid("state")),
    };
    let mut s = lock(state);
    let owner = s.fixture.owner.clone();
    let r = s.repo_mut(repo).ok_or_else(Reply::not_found)?;
    let i = r.pulls.iter().position(|p| p.number == number).ok_or_else(Reply::not_found)?;
    let reopening = new_state.as_deref() == Some("open") && r.pulls[i].state == "closed";
    if reopening {
        if r.pulls[i].merged {
            return Err(custom("state cannot be changed. The pull request cannot be reopened because it was merged."));
        }
        let p = &r.pulls[i];
        if r.pulls.iter().any(|q| q.state == "open" && q.head_ref == p.head_ref && q.base_ref == p.base_ref) {
            return Err(custom(&format!("A pull request already exists for {owner}:{}.", p.head_ref)));
        }
    }
    let p = &mut r.pulls[i];
    let mut changes = Map::new();
    if let Some(title) = string(params, "title").filter(|t| *t != p.title) {
        changes.insert("title".to_string(), json!({"from": std::mem::replace(&mut p.title, title)}));
    }
    if let Some(body) = string(params, "body").filter(|b| Some(b) != p.body.as_ref()) {
        changes.insert("body".to_string(), json!({"from": p.body.replace(body)}));
    }
    let mut actions = Vec::new();
    if !changes.is_empty() {
        actions.push(("edited", json!({"changes": changes})));
    }
    if reopening {
        p.state = "open".to_string();
        actions.push(("reopened", json!({})));
    } else if new_state.as_deref() == Some("closed") && p.state == "open" {
        p.state = "closed".to_string();
        actions.push(("closed", json!({})));
    }
    if !actions.is_empty() {
        p.updated_at = rfc3339(now_epoch());
    }
    let pull = current_json(&s, repo, number).ok_or_else(Reply::not_found)?;
    for (action, extra) in actions {
        hooks::pull_request(&mut s, repo, number, action, login, extra);
    }
    Ok(Reply::ok(pull))
}

async fn get(state: &Shared, repo: &str, number: u64) -> Answer {
    let (mut pull, dir, heads) = {
        let s = lock(state);
        let r = s.repo(&s.fixture.owner, repo).ok_or_else(Reply::not_found)?;
        let p = r.pulls.iter().find(|p| p.number == number).ok_or_else(Reply::not_found)?;
        let refs = git::branch_refs(&s, r);
        let open = p.state == "open" && !p.merged;
        let heads = refs
            .as_ref()
            .filter(|_| open)
            .and_then(|refs| Some((refs.get(&p.base_ref)?.clone(), refs.get(&p.head_ref)?.clone(), p.draft)));
        (pull_json(&s, r, p, refs.as_ref()), git::dir_of(&s, r), heads)
    };
    // GitHub reports null until it has computed mergeability, and for closed pulls; here it is computed at once.
    let (mergeable, merge_state) = match (dir, heads) {
        (Some(dir), Some((base, head, draft))) => match git::merge_tree(&dir, &base, &head, None).await {
            Ok(Some(_)) => (Value::from(true), if draft { "draft" } else { "clean" }),
            Ok(None) => (Value::from(false), "dirty"),
            Err(e) => {
                tracing::warn!(error = %e, "fake GitHub: mergeability");
                (Value::Null, "unknown")
            }
        },
        _ => (Value::Null, "unknown"),
    };
    pull["mergeable"] = mergeable;
    pull["mergeable_state"] = Value::from(merge_state);
    Ok(Reply::ok(pull))
}

/// A done merge: the shas it joined, its commit, and the commits it brought to the base (for the push webhook).
struct Merged {
    head: String,
    base: String,
    commit: String,
    commits: Vec<Value>,
}

async fn merge(state: &Shared, repo: &str, number: u64, login: &str, params: &Map<String, Value>) -> Answer {
    let method = string(params, "merge_method").unwrap_or_else(|| "merge".to_string());
    if !matches!(method.as_str(), "merge" | "squash" | "rebase") {
        return Err(validation(
            json!({"resource": "PullRequest", "field": "merge_method", "code": "invalid"}),
            MERGE_DOCS,
        ));
    }
    let (pull, dir, owner) = {
        let s = lock(state);
        let r = s.repo(&s.fixture.owner, repo).ok_or_else(Reply::not_found)?;
        let p = r.pulls.iter().find(|p| p.number == number).ok_or_else(Reply::not_found)?;
        if p.state != "open" || p.merged {
            return Err(refuse(405, NOT_MERGEABLE));
        }
        if p.draft {
            return Err(refuse(405, "Pull Request is still a draft"));
        }
        (p.clone(), git::dir_of(&s, r), s.fixture.owner.clone())
    };
    let expected = string(params, "sha");
    let merged = match &dir {
        Some(dir) => merge_in_git(dir, &owner, repo, &pull, login, &method, params, expected.as_deref()).await?,
        None => {
            // Without git a merge is bookkeeping only, with made-up shas.
            let head = fake_sha(&format!("{owner}/{repo}:{}", pull.head_ref));
            if expected.as_ref().is_some_and(|sha| *sha != head) {
                return Err(refuse(409, "Head branch was modified. Review and try the merge again."));
            }
            let base = fake_sha(&format!("{owner}/{repo}:{}", pull.base_ref));
            let commit = fake_sha(&format!("{owner}/{repo}#{number}:{method}"));
            Merged { head, base, commit, commits: Vec::new() }
        }
    };
    let mut s = lock(state);
    let p =
        s.repo_mut(repo).and_then(|r| r.pulls.iter_mut().find(|p| p.number == number)).ok_or_else(Reply::not_found)?;
    p.state = "closed".to_string();
    p.merged = true;
    p.updated_at = rfc3339(now_epoch());
    let key = (repo.to_ascii_lowercase(), number);
    let shas = MergeShas { head: merged.head, base: merged.base.clone(), commit: merged.commit.clone() };
    s.merges.insert(key, shas);
    hooks::pull_request(&mut s, repo, number, "closed", login, json!({}));
    if dir.is_some() {
        let push = Push {
            branch: pull.base_ref.clone(),
            before: merged.base,
            after: merged.commit.clone(),
            commits: merged.commits,
            forced: false,
        };
        hooks::push(&mut s, repo, login, push);
    }
    Ok(Reply::ok(json!({"sha": merged.commit, "merged": true, "message": "Pull Request successfully merged"})))
}

#[allow(clippy::too_many_arguments)]
async fn merge_in_git(
    dir: &Path,
    owner: &str,
    repo: &str,
    pull: &FakePull,
    login: &str,
    method: &str,
    params: &Map<String, Value>,
    expected: Option<&str>,
) -> Result<Merged, Reply> {
    let refs = git::read_refs(dir).map_err(internal)?;
    let (Some(head), Some(base)) = (refs.get(&pull.head_ref).cloned(), refs.get(&pull.base_ref).cloned()) else {
        return Err(refuse(405, NOT_MERGEABLE));
    };
    if expected.is_some_and(|sha| sha != head) {
        return Err(refuse(409, "Head branch was modified. Review and try the merge again."));
    }
    let title = string(params, "commit_title");
    let message = string(params, "commit_message");
    let join = |title: String, body: String| if body.is_empty() { title } else { format!("{title}\n\n{body}") };
    let commit = if method == "rebase" {
        rebase(dir, &base, &head).await?
    } else {
        let tree = git::merge_tree(dir, &base, &head, None).await.map_err(internal)?;
        let tree = tree.ok_or_else(|| refuse(405, NOT_MERGEABLE))?;
        let made = if method == "squash" {
            let title = title.unwrap_or_else(|| format!("{} (#{})", pull.title, pull.number));
            let body = match message {
                Some(m) => m,
                None => git::text(dir, &["log", "--reverse", "--format=* %s", &format!("{base}..{head}")])
                    .await
                    .map_err(internal)?
                    .trim_end()
                    .to_string(),
            };
            let author = Ident::user(&pull.author);
            git::commit_tree(dir, &tree, &[&base], &join(title, body), &author, &Ident::github()).await
        } else {
            let default_title = format!("Merge pull request #{} from {owner}/{}", pull.number, pull.head_ref);
            let body = message.unwrap_or_else(|| pull.title.clone());
            let message = join(title.unwrap_or(default_title), body);
            git::commit_tree(dir, &tree, &[&base, &head], &message, &Ident::user(login), &Ident::github()).await
        };
        made.map_err(internal)?
    };
    if !git::update_ref(dir, &pull.base_ref, &commit, &base).await.map_err(internal)? {
        return Err(refuse(409, "Base branch was modified. Review and try the merge again."));
    }
    let commits = git::push_commits(dir, &format!("{owner}/{repo}"), &commit, &[&base]).await;
    Ok(Merged { head, base, commit, commits })
}

/// Replays each commit of `base..head` onto `base` (as a cherry-pick: a three-way merge from its parent), keeping
/// authors and messages; the new tip.
async fn rebase(dir: &Path, base: &str, head: &str) -> Result<String, Reply> {
    let range = format!("{base}..{head}");
    let list =
        git::text(dir, &["rev-list", "--reverse", "--topo-order", "--parents", &range]).await.map_err(internal)?;
    let mut tip = base.to_string();
    for line in list.lines() {
        let ids: Vec<&str> = line.split_whitespace().collect();
        // Merge commits (and a root) have no single parent to replay from; GitHub refuses to rebase those too.
        let [commit, parent] = ids.as_slice() else { return Err(refuse(405, NOT_MERGEABLE)) };
        let tree = git::merge_tree(dir, &tip, commit, Some(parent)).await.map_err(internal)?;
        let tree = tree.ok_or_else(|| refuse(405, NOT_MERGEABLE))?;
        let (author, message) = git::commit_meta(dir, commit).await.map_err(internal)?;
        tip = git::commit_tree(dir, &tree, &[&tip], &message, &author, &Ident::github()).await.map_err(internal)?;
    }
    Ok(tip)
}
