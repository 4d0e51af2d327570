//! Real git for [`FakeGitHub`](super::FakeGitHub): bare repositories `<root>/<owner>/<name>.git` (seeded with
//! `git fast-import`, so histories are deterministic and large contents cheap), their branches read straight from
//! the ref files, the plumbing pull requests need (merge-tree, commit-tree, update-ref), and git's smart HTTP
//! protocol served by `git http-backend` under GitHub's auth rules.
//!
//! Every git process gets a configuration of its own (no system or global config, a fixed identity), so the
//! machine's settings never change what the fake does.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::super::app::base64_decode;
use super::{arrive, hooks, lock, now_epoch, FakeRepo, Shared, State, BASE_EPOCH};

/// The smart HTTP routes: `GET info/refs?service=...`, `POST git-upload-pack`, `POST git-receive-pack`.
pub(super) const ROUTE: &str = r"/{owner}/{repo:[^/]+\.git}/{service:info/refs|git-upload-pack|git-receive-pack}";

/// The sha git uses for "no commit" (a created or deleted ref).
pub(super) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Which fixture repositories have git, and where.
pub(super) struct GitState {
    pub(super) root: PathBuf,
    /// Lower-cased repository names.
    repos: HashSet<String>,
}

impl GitState {
    pub(super) fn new(root: PathBuf, names: impl Iterator<Item = String>) -> GitState {
        GitState { root, repos: names.map(|n| n.to_ascii_lowercase()).collect() }
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.repos.contains(&name.to_ascii_lowercase())
    }

    pub(super) fn add(&mut self, name: &str) {
        self.repos.insert(name.to_ascii_lowercase());
    }
}

pub(super) fn repo_dir(root: &Path, owner: &str, name: &str) -> PathBuf {
    root.join(owner).join(format!("{name}.git"))
}

pub(super) fn has_git(s: &State, r: &FakeRepo) -> bool {
    s.git.as_ref().is_some_and(|g| g.has(&r.name))
}

/// The bare repository of `r`, if it has one.
pub(super) fn dir_of(s: &State, r: &FakeRepo) -> Option<PathBuf> {
    let g = s.git.as_ref().filter(|g| g.has(&r.name))?;
    Some(repo_dir(&g.root, &s.fixture.owner, &r.name))
}

/// Branch -> head sha of `r`'s bare repository, if it has one (and it can be read).
pub(super) fn branch_refs(s: &State, r: &FakeRepo) -> Option<BTreeMap<String, String>> {
    read_refs(&dir_of(s, r)?).ok()
}

/// Makes `r.branches` the branches in `refs`: the ones still there keep their order, new ones follow.
pub(super) fn sync_branches(r: &mut FakeRepo, refs: &BTreeMap<String, String>) {
    r.branches.retain(|b| refs.contains_key(b));
    for name in refs.keys() {
        if !r.branches.contains(name) {
            r.branches.push(name.clone());
        }
    }
}

/// Branch -> sha from the ref files (loose refs over `packed-refs`): no process, so it is cheap enough to do while
/// answering a REST request, and it sees changes made to the repository by any means.
pub(super) fn read_refs(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut refs = BTreeMap::new();
    match std::fs::read_to_string(dir.join("packed-refs")) {
        Ok(text) => {
            for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with('^')) {
                if let Some((sha, name)) = line.split_once(' ') {
                    if let Some(branch) = name.strip_prefix("refs/heads/") {
                        refs.insert(branch.to_string(), sha.to_string());
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    read_loose(&dir.join("refs").join("heads"), "", &mut refs)?;
    Ok(refs)
}

fn read_loose(path: &Path, prefix: &str, refs: &mut BTreeMap<String, String>) -> io::Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if entry.file_type()?.is_dir() {
            read_loose(&entry.path(), &full, refs)?;
            continue;
        }
        if name.ends_with(".lock") {
            continue;
        }
        // A ref deleted between listing and reading is simply gone, as git would see it a moment later.
        match std::fs::read_to_string(entry.path()) {
            Ok(text) => {
                let sha = text.trim();
                if sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    refs.insert(full, sha.to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---- running git ----

/// `git` with a clean configuration, `HOME` at `home`, and the fake's identity (overridden per commit by env).
fn command(home: &Path) -> Command {
    let mut c = Command::new("git");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .args(["-c", "user.name=GitHub", "-c", "user.email=noreply@github.com"]);
    c
}

fn failed(what: &str, out: &std::process::Output) -> io::Error {
    io::Error::other(format!("git {what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
}

/// Runs git in the bare repository `dir` without blocking the runtime.
async fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> io::Result<std::process::Output> {
    let mut cmd = command(dir);
    cmd.arg("--git-dir").arg(dir).args(args).envs(env.iter().copied()).stdin(Stdio::null());
    tokio::process::Command::from(cmd).output().await
}

/// [`git`] that must succeed; its standard output.
pub(super) async fn text(dir: &Path, args: &[&str]) -> io::Result<String> {
    let out = git(dir, args, &[]).await?;
    if !out.status.success() {
        return Err(failed(args.first().copied().unwrap_or_default(), &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A commit's author or committer.
pub(super) struct Ident {
    pub(super) name: String,
    pub(super) email: String,
    /// Any date git accepts; now when `None`.
    pub(super) date: Option<String>,
}

impl Ident {
    pub(super) fn user(login: &str) -> Ident {
        Ident { name: login.to_string(), email: format!("{login}@users.noreply.github.com"), date: None }
    }

    pub(super) fn github() -> Ident {
        Ident { name: "GitHub".to_string(), email: "noreply@github.com".to_string(), date: None }
    }
}

/// The tree of merging `theirs` into `ours` (three-way, from `merge_base` or their merge base); `None` on a conflict.
pub(super) async fn merge_tree(
    dir: &Path,
    ours: &str,
    theirs: &str,
    merge_base: Option<&str>,
) -> io::Result<Option<String>> {
    let base_arg = merge_base.map(|b| format!("--merge-base={b}"));
    let mut args = vec!["merge-tree", "--write-tree"];
    args.extend(base_arg.as_deref());
    args.extend([ours, theirs]);
    let out = git(dir, &args, &[]).await?;
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)),
        Some(1) => Ok(None),
        _ => Err(failed("merge-tree", &out)),
    }
}

/// A new commit of `tree` with `parents`; its sha.
pub(super) async fn commit_tree(
    dir: &Path,
    tree: &str,
    parents: &[&str],
    message: &str,
    author: &Ident,
    committer: &Ident,
) -> io::Result<String> {
    let mut args = vec!["commit-tree", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    args.extend(["-m", message]);
    let mut env = vec![
        ("GIT_AUTHOR_NAME", author.name.as_str()),
        ("GIT_AUTHOR_EMAIL", author.email.as_str()),
        ("GIT_COMMITTER_NAME", committer.name.as_str()),
        ("GIT_COMMITTER_EMAIL", committer.email.as_str()),
    ];
    env.extend(author.date.as_deref().map(|d| ("GIT_AUTHOR_DATE", d)));
    env.extend(committer.date.as_deref().map(|d| ("GIT_COMMITTER_DATE", d)));
    let out = git(dir, &args, &env).await?;
    if !out.status.success() {
        return Err(failed("commit-tree", &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Moves `branch` from `old` to `new` atomically; false if it was no longer at `old`.
pub(super) async fn update_ref(dir: &Path, branch: &str, new: &str, old: &str) -> io::Result<bool> {
    let name = format!("refs/heads/{branch}");
    let out = git(dir, &["update-ref", "-m", "merge pull request", &name, new, old], &[]).await?;
    Ok(out.status.success())
}

/// The author and full message of `commit`.
pub(super) async fn commit_meta(dir: &Path, commit: &str) -> io::Result<(Ident, String)> {
    let out = text(dir, &["log", "-1", "--format=%an%x00%ae%x00%aI%x00%B", commit]).await?;
    let mut parts = out.splitn(4, '\0');
    let (Some(name), Some(email), Some(date), Some(message)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(io::Error::other(format!("unexpected git log output for {commit}")));
    };
    let ident = Ident { name: name.to_string(), email: email.to_string(), date: Some(date.to_string()) };
    Ok((ident, message.trim_end().to_string()))
}

/// Whether `ancestor` is reachable from `descendant`.
pub(super) async fn is_ancestor(dir: &Path, ancestor: &str, descendant: &str) -> bool {
    git(dir, &["merge-base", "--is-ancestor", ancestor, descendant], &[]).await.is_ok_and(|o| o.status.success())
}

/// The commits of `tip` not reachable from `exclude` (at most the newest 20, oldest first) as a push event lists
/// them. Empty if git cannot tell.
pub(super) async fn push_commits(dir: &Path, full_name: &str, tip: &str, exclude: &[&str]) -> Vec<Value> {
    let format = "--format=%H%x00%T%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%B%x1e";
    let mut args = vec!["log", "--max-count=20", "--reverse", format, tip, "--not"];
    args.extend(exclude.iter().copied().filter(|s| *s != ZERO_SHA));
    let Ok(out) = text(dir, &args).await else { return Vec::new() };
    out.split('\x1e')
        .filter_map(|record| {
            let f: Vec<&str> = record.trim_start_matches('\n').splitn(8, '\0').collect();
            let [id, tree, an, ae, date, cn, ce, message] = f.as_slice() else { return None };
            Some(json!({
                "id": id,
                "tree_id": tree,
                "distinct": true,
                "message": message.trim_end(),
                "timestamp": date,
                "url": format!("https://github.com/{full_name}/commit/{id}"),
                "author": {"name": an, "email": ae},
                "committer": {"name": cn, "email": ce},
                "added": [], "removed": [], "modified": [],
            }))
        })
        .collect()
}

// ---- creating repositories ----

/// One commit of a `git fast-import` stream. `parent` indexes an earlier commit of the same stream.
struct ImportCommit<'a> {
    branch: &'a str,
    parent: Option<usize>,
    epoch: u64,
    message: String,
    files: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
}

/// Creates (unless it exists) the bare repository of fixture repository `r`: three commits on the default branch
/// (README.md, src/main.rs and src/lib.rs, README.md again), then one commit per other listed branch adding
/// `notes/<branch>.md`, all with fixed dates so the shas are the same on every run. Returns its branches.
pub(super) fn seed(root: &Path, owner: &str, r: &FakeRepo) -> io::Result<BTreeMap<String, String>> {
    let dir = repo_dir(root, owner, &r.name);
    if dir.join("HEAD").exists() {
        return read_refs(&dir);
    }
    let name = &r.name;
    let file = |path: &str, text: String| (Cow::Owned(path.to_string()), Cow::Owned(text.into_bytes()));
    let readme = format!("# {name}\n\nA repository of {owner}, served by the fake GitHub.\n");
    let mut commits = vec![
        ImportCommit {
            branch: &r.default_branch,
            parent: None,
            epoch: BASE_EPOCH,
            message: "Initial commit".to_string(),
            files: vec![file("README.md", readme.clone())],
        },
        ImportCommit {
            branch: &r.default_branch,
            parent: Some(0),
            epoch: BASE_EPOCH + 60,
            message: "Add the sources".to_string(),
            files: vec![
                file("src/main.rs", format!("fn main() {{\n    println!(\"hello from {name}\");\n}}\n")),
                file("src/lib.rs", "pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n".to_string()),
            ],
        },
        ImportCommit {
            branch: &r.default_branch,
            parent: Some(1),
            epoch: BASE_EPOCH + 120,
            message: "Document usage".to_string(),
            files: vec![file("README.md", format!("{readme}\n## Usage\n\n    cargo run\n"))],
        },
    ];
    for (i, branch) in r.branches.iter().filter(|b| **b != r.default_branch).enumerate() {
        commits.push(ImportCommit {
            branch,
            parent: Some(2),
            epoch: BASE_EPOCH + 180 + 60 * i as u64,
            message: format!("Work on {branch}"),
            files: vec![file(
                &format!("notes/{}.md", branch.replace('/', "-")),
                format!("# {branch}\n\nWork in progress.\n"),
            )],
        });
    }
    import(root, &dir, &r.default_branch, owner, &commits)?;
    read_refs(&dir)
}

/// Creates the bare repository `dir` with one commit of `files` on `default_branch`.
pub(super) fn create_with_files(
    root: &Path,
    owner: &str,
    dir: &Path,
    default_branch: &str,
    files: &[(&str, Vec<u8>)],
) -> io::Result<()> {
    if dir.join("HEAD").exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", dir.display())));
    }
    let commit = ImportCommit {
        branch: default_branch,
        parent: None,
        epoch: BASE_EPOCH,
        message: "Initial commit".to_string(),
        files: files.iter().map(|(p, c)| (Cow::Borrowed(*p), Cow::Borrowed(c.as_slice()))).collect(),
    };
    import(root, dir, default_branch, owner, &[commit])
}

/// `git init --bare` and one `git fast-import` of `commits`, streamed (no work tree, index or temporary files).
fn import(home: &Path, dir: &Path, default_branch: &str, owner: &str, commits: &[ImportCommit<'_>]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut init = command(home);
    init.args(["init", "--bare", "--quiet"]).arg(format!("--initial-branch={default_branch}")).arg(dir);
    let out = init.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(failed("init", &out));
    }
    let mut import = command(home);
    import.arg("--git-dir").arg(dir).args(["fast-import", "--quiet"]);
    let mut child = import.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let ident = format!("{owner} <{owner}@users.noreply.github.com>");
    let written = match child.stdin.take() {
        Some(stdin) => write_stream(io::BufWriter::with_capacity(1 << 20, stdin), &ident, commits),
        None => Err(io::Error::other("git fast-import has no stdin")),
    };
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(failed("fast-import", &out));
    }
    written
}

fn write_stream(mut w: impl Write, ident: &str, commits: &[ImportCommit<'_>]) -> io::Result<()> {
    fn data(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
        writeln!(w, "data {}", bytes.len())?;
        w.write_all(bytes)?;
        writeln!(w)
    }
    for (i, c) in commits.iter().enumerate() {
        writeln!(w, "commit refs/heads/{}", c.branch)?;
        writeln!(w, "mark :{}", i + 1)?;
        writeln!(w, "author {ident} {} +0000", c.epoch)?;
        writeln!(w, "committer {ident} {} +0000", c.epoch)?;
        data(&mut w, c.message.as_bytes())?;
        if let Some(parent) = c.parent {
            writeln!(w, "from :{}", parent + 1)?;
        }
        for (path, content) in &c.files {
            // fast-import would need C-style quoting for these; no caller needs them.
            if path.contains('\n') || path.starts_with('"') || path.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unsupported path {path:?}")));
            }
            writeln!(w, "M 100644 inline {path}")?;
            data(&mut w, content)?;
        }
        writeln!(w)?;
    }
    w.flush()
}

// ---- smart HTTP ----

/// What an authorised smart HTTP request runs on.
struct Plan {
    root: PathBuf,
    dir: PathBuf,
    /// `/<owner>/<name>.git/<service>` with the fixture's spelling (the URL's may differ in case).
    path_info: String,
    repo: String,
    login: Option<String>,
}

fn text_reply(status: u16, body: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .insert_header(("content-type", "text/plain; charset=utf-8"))
        .body(format!("{body}\n"))
}

/// Why a smart HTTP request is refused.
enum Refusal {
    /// 401 with a Basic challenge.
    Unauthorized,
    Text(u16, String),
}

impl Refusal {
    fn into_response(self) -> HttpResponse {
        match self {
            Refusal::Unauthorized => unauthorized(),
            Refusal::Text(status, text) => text_reply(status, &text),
        }
    }
}

/// 401 with a Basic challenge, so a git client asks its credential helpers (or the user) for a token.
fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("www-authenticate", "Basic realm=\"GitHub\""))
        .insert_header(("content-type", "text/plain; charset=utf-8"))
        .body("Invalid username or token. Password authentication is not supported for Git operations.\n")
}

/// The token a git client presents: HTTP Basic with the token as password (or as user name with an empty
/// password, which GitHub also takes), or `Bearer`/`token`. `Some("")` for a header that carries none.
fn presented_token(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("authorization")?.to_str().unwrap_or_default().trim();
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    let value = value.trim();
    let token = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(value).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
        let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
        if password.is_empty() { user } else { password }.to_string()
    } else if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        value.to_string()
    } else {
        String::new()
    };
    Some(token)
}

/// The smart HTTP endpoint: GitHub's auth, fault injection, then `git http-backend` as CGI. Not rate limited.
pub(super) async fn serve(req: HttpRequest, payload: web::Payload, state: web::Data<Shared>) -> HttpResponse {
    arrive(&state).await;
    let info = req.match_info();
    let owner = info.get("owner").unwrap_or_default().to_string();
    let name = info.get("repo").unwrap_or_default().trim_end_matches(".git").to_string();
    let service_path = info.get("service").unwrap_or_default().to_string();
    let service = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("service").cloned());
    let method = req.method().as_str();
    let push = match (method, service_path.as_str(), service.as_deref()) {
        ("GET", "info/refs", Some("git-upload-pack")) | ("POST", "git-upload-pack", _) => false,
        ("GET", "info/refs", Some("git-receive-pack")) | ("POST", "git-receive-pack", _) => true,
        ("GET", "info/refs", _) => return text_reply(403, "The dumb HTTP protocol is not supported."),
        _ => return text_reply(405, "Method Not Allowed"),
    };
    let plan = match authorize(&state, &req, &owner, &name, &service_path, push) {
        Ok(plan) => plan,
        Err(refusal) => return refusal.into_response(),
    };
    let after_push = push && method == "POST";
    run_backend(&req, payload, &state, &plan, after_push).await
}

fn authorize(
    state: &Shared,
    req: &HttpRequest,
    owner: &str,
    name: &str,
    service_path: &str,
    push: bool,
) -> Result<Plan, Refusal> {
    let full_path = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    let mut s = lock(state);
    if let Some(status) = s.take_fault(&full_path) {
        let reason = StatusCode::from_u16(status).ok().and_then(|c| c.canonical_reason()).unwrap_or("Injected failure");
        return Err(Refusal::Text(status, reason.to_string()));
    }
    let login = match presented_token(req) {
        Some(token) => Some(s.token_login(&token, now_epoch()).ok_or(Refusal::Unauthorized)?),
        None => None,
    };
    let found = s.repo(owner, name).and_then(|r| Some((r, dir_of(&s, r)?)));
    let Some((repo, dir)) = found else {
        // Like GitHub, an anonymous caller is not told which repositories exist.
        let refusal =
            if login.is_some() { Refusal::Text(404, "Repository not found.".into()) } else { Refusal::Unauthorized };
        return Err(refusal);
    };
    if login.is_none() && (push || repo.private) {
        return Err(Refusal::Unauthorized);
    }
    let root = s.git.as_ref().map(|g| g.root.clone()).unwrap_or_default();
    Ok(Plan {
        root,
        dir,
        path_info: format!("/{}/{}.git/{service_path}", s.fixture.owner, repo.name),
        repo: repo.name.clone(),
        login,
    })
}

async fn run_backend(
    req: &HttpRequest,
    payload: web::Payload,
    state: &Shared,
    plan: &Plan,
    after_push: bool,
) -> HttpResponse {
    let mut cmd = command(&plan.root);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &plan.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &plan.path_info)
        .env("REQUEST_METHOD", req.method().as_str())
        .env("QUERY_STRING", req.query_string())
        .env("REMOTE_ADDR", req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default())
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1");
    // Git clients gzip large upload-pack requests; http-backend inflates them itself when told.
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ] {
        if let Some(value) = req.headers().get(header).and_then(|v| v.to_str().ok()) {
            cmd.env(var, value);
        }
    }
    // http-backend enables receive-pack only for an authenticated user.
    if let Some(login) = &plan.login {
        cmd.env("REMOTE_USER", login);
    }
    let post = req.method() == actix_web::http::Method::POST;
    cmd.stdin(if post { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let before = if after_push { read_refs(&plan.dir).ok() } else { None };
    let mut child = match tokio::process::Command::from(cmd).kill_on_drop(true).spawn() {
        Ok(child) => child,
        Err(e) => return text_reply(500, &format!("git http-backend: {e}")),
    };
    if let Some(stdin) = child.stdin.take() {
        actix_rt::spawn(feed(payload, stdin));
    }
    if let Some(stderr) = child.stderr.take() {
        actix_rt::spawn(log_stderr(stderr));
    }
    let Some(mut stdout) = child.stdout.take() else { return text_reply(500, "git http-backend: no output") };
    let (head, rest) = match read_cgi_head(&mut stdout).await {
        Ok(parts) => parts,
        Err(e) => return text_reply(502, &format!("git http-backend: {e}")),
    };
    let mut response = HttpResponse::build(StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in head.headers {
        response.insert_header((name, value));
    }
    let Some(before) = before else { return response.streaming(stream_rest(stdout, child, rest)) };
    // A push's answer (the short report-status) is read whole and the refs, the fixture and the webhooks are updated
    // before git hears back, so whoever pushed sees the new state at once.
    let mut body = rest;
    if let Err(e) = stdout.read_to_end(&mut body).await {
        return text_reply(502, &format!("git http-backend: {e}"));
    }
    let _ = child.wait().await;
    pushed(state, plan, before).await;
    response.body(body)
}

async fn feed(mut payload: web::Payload, mut stdin: ChildStdin) {
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else { return };
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
    // Dropping stdin is what ends the request for http-backend.
}

async fn log_stderr(mut stderr: impl AsyncRead + Unpin) {
    let mut text = String::new();
    if stderr.read_to_string(&mut text).await.is_ok() && !text.trim().is_empty() {
        tracing::debug!(stderr = %text.trim(), "fake GitHub: git http-backend");
    }
}

/// A CGI response head.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CgiHead {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
}

/// Parses CGI headers: `Status: 404 Not Found` sets the status (200 without it); `Content-Length` is dropped since
/// the body is re-framed.
pub(super) fn parse_cgi_head(bytes: &[u8]) -> CgiHead {
    let mut head = CgiHead { status: 200, headers: Vec::new() };
    for line in String::from_utf8_lossy(bytes).split('\n') {
        let Some((name, value)) = line.trim_end_matches('\r').split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            head.status = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(502);
        } else if !name.eq_ignore_ascii_case("content-length") {
            head.headers.push((name.to_string(), value.to_string()));
        }
    }
    head
}

/// Reads the CGI head; returns it and the body bytes already read.
async fn read_cgi_head(out: &mut ChildStdout) -> io::Result<(CgiHead, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
        let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
        if let Some((end, len)) = [crlf, lf].into_iter().flatten().min() {
            return Ok((parse_cgi_head(&buf[..end]), buf[end + len..].to_vec()));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("CGI head too long"));
        }
        let n = out.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "ended before its headers"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The rest of http-backend's output as a response body; reaps the process at the end.
fn stream_rest(out: ChildStdout, child: Child, first: Vec<u8>) -> impl Stream<Item = io::Result<web::Bytes>> {
    let start = (out, child, first, vec![0u8; 64 * 1024]);
    futures_util::stream::unfold(Some(start), |state| async move {
        let (mut out, mut child, pending, mut buf) = state?;
        if !pending.is_empty() {
            return Some((Ok(web::Bytes::from(pending)), Some((out, child, Vec::new(), buf))));
        }
        match out.read(&mut buf).await {
            Ok(0) => {
                let _ = child.wait().await;
                None
            }
            Ok(n) => {
                let bytes = web::Bytes::copy_from_slice(&buf[..n]);
                Some((Ok(bytes), Some((out, child, Vec::new(), buf))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// After a push: the fixture's branches follow the refs, and each changed branch is a `push` webhook (plus
/// `pull_request` `synchronize` for the open pulls it heads).
async fn pushed(state: &Shared, plan: &Plan, before: BTreeMap<String, String>) {
    let after = match read_refs(&plan.dir) {
        Ok(after) => after,
        Err(e) => {
            tracing::warn!(error = %e, repo = %plan.repo, "fake GitHub: reading refs after a push");
            return;
        }
    };
    let mut changed: Vec<(String, String, String)> = Vec::new();
    for name in before.keys().chain(after.keys().filter(|k| !before.contains_key(*k))) {
        let old = before.get(name).map_or(ZERO_SHA, String::as_str);
        let new = after.get(name).map_or(ZERO_SHA, String::as_str);
        if old != new {
            changed.push((name.clone(), old.to_string(), new.to_string()));
        }
    }
    if changed.is_empty() {
        return;
    }
    let full_name = {
        let s = lock(state);
        format!("{}/{}", s.fixture.owner, plan.repo)
    };
    let known: Vec<&str> = before.values().map(String::as_str).collect();
    let mut pushes = Vec::new();
    for (branch, old, new) in changed {
        let commits =
            if new == ZERO_SHA { Vec::new() } else { push_commits(&plan.dir, &full_name, &new, &known).await };
        let forced = old != ZERO_SHA && new != ZERO_SHA && !is_ancestor(&plan.dir, &old, &new).await;
        pushes.push(hooks::Push { branch, before: old, after: new, commits, forced });
    }
    let sender = plan.login.clone().unwrap_or_default();
    let mut s = lock(state);
    if let Some(r) = s.repo_mut(&plan.repo) {
        sync_branches(r, &after);
    }
    for push in pushes {
        let synchronized: Vec<u64> = match s.repo(&s.fixture.owner, &plan.repo) {
            Some(r) if push.after != ZERO_SHA => {
                r.pulls.iter().filter(|p| p.state == "open" && p.head_ref == push.branch).map(|p| p.number).collect()
            }
            _ => Vec::new(),
        };
        let (old, new) = (push.before.clone(), push.after.clone());
        hooks::push(&mut s, &plan.repo, &sender, push);
        for number in synchronized {
            let extra = json!({"before": old, "after": new});
            hooks::pull_request(&mut s, &plan.repo, number, "synchronize", &sender, extra);
        }
    }
}
