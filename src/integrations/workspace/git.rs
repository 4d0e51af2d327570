//! The git commands behind [`Workspaces`](super::Workspaces), run through a [`Shell`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::shell::{Cmd, CmdOutput, Shell};
use super::{GitAuth, WorkspaceError, WorkspaceSpec};

/// One file changed against the base branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStat {
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed` or `changed` (type changes and the like).
    pub status: String,
    /// Lines added and removed (`None` for binary files).
    pub added: Option<u32>,
    pub removed: Option<u32>,
}

/// The newest commit on the workspace's branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCommit {
    pub sha: String,
    pub message: String,
    pub author: String,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// A workspace's git state, as the task view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitState {
    pub branch: String,
    pub base: String,
    pub head: Option<String>,
    /// Commits on the branch and not on the base / on the base and not on the branch.
    pub ahead: u32,
    pub behind: u32,
    /// Commits not on the remote branch yet (all of `ahead` if it was never pushed).
    pub unpushed: u32,
    /// Whether the remote has the branch.
    pub pushed: bool,
    /// Changes not committed yet.
    pub dirty: bool,
    pub last_commit: Option<LastCommit>,
    /// Files changed against the base (committed or not), in path order.
    pub files: Vec<FileStat>,
}

impl GitState {
    /// Whether releasing the workspace now would lose work.
    pub fn has_unpushed_work(&self) -> bool {
        self.dirty || self.unpushed > 0
    }
}

const QUICK: Duration = Duration::from_secs(60);

/// Put before [`STATE_SCRIPT`] to commit first (`$3`: the message): `git commit` runs only if something is staged.
const COMMIT_SCRIPT: &str = r#"set -e
git add --all
if git diff --cached --quiet; then printf '\036committed\nno\n'; else
  git commit --quiet --no-verify -m "$3"; printf '\036committed\nyes\n'; fi
"#;

/// `sh -c STATE_SCRIPT sh <base ref> <remote branch ref>`: see [`Git::state`]. Staging everything first makes new
/// files count as changes; comparing with the merge base shows only the branch's own work.
const STATE_SCRIPT: &str = r#"set -e
printf '\036status\n'; git status --porcelain
git add --all
mb=$(git merge-base "$1" HEAD 2>/dev/null || echo "$1")
printf '\036numstat\n'; git diff --cached --numstat -z -M "$mb"
printf '\036names\n'; git diff --cached --name-status -z -M "$mb"
printf '\036counts\n'; git rev-list --left-right --count "$1...HEAD" 2>/dev/null || true
printf '\036remote\n'
if git rev-parse --verify --quiet "$2" >/dev/null; then echo yes; git rev-list --count "$2..HEAD"; fi
printf '\036log\n'; git log -1 --format=%H%x1f%s%x1f%an%x1f%ct 2>/dev/null || true
"#;
const NETWORK: Duration = Duration::from_secs(600);

pub(super) struct Git<'a> {
    shell: &'a dyn Shell,
    env: Vec<(String, String)>,
}

impl<'a> Git<'a> {
    pub(super) fn new(shell: &'a dyn Shell, auth: &GitAuth) -> Self {
        // No prompts (a missing credential fails at once), no system or user configuration: git behaves the same on
        // every machine. The token travels in the environment only.
        let mut env: Vec<(String, String)> = [
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", "true"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("LC_ALL", "C"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let name = if auth.author_name.is_empty() { "foundry" } else { auth.author_name.as_str() };
        let email = if auth.author_email.is_empty() { "foundry@localhost" } else { auth.author_email.as_str() };
        for var in ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"] {
            env.push((var.to_owned(), name.to_owned()));
        }
        for var in ["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"] {
            env.push((var.to_owned(), email.to_owned()));
        }
        let mut config = vec![("credential.helper".to_owned(), String::new())];
        if let Some(token) = &auth.token {
            let basic = base64(format!("x-access-token:{token}").as_bytes());
            config.push(("http.extraHeader".to_owned(), format!("Authorization: Basic {basic}")));
        }
        env.push(("GIT_CONFIG_COUNT".to_owned(), config.len().to_string()));
        for (i, (k, v)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), k));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), v));
        }
        Git { shell, env }
    }

    async fn raw(&self, cwd: &str, args: &[&str], timeout: Duration) -> Result<CmdOutput, WorkspaceError> {
        self.shell
            .run(Cmd {
                program: "git".into(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                cwd: Some(cwd.to_owned()),
                env: self.env.clone(),
                timeout,
            })
            .await
    }

    /// Runs git; a non-zero exit is an error carrying git's message.
    async fn ok(
        &self,
        op: &'static str,
        cwd: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, WorkspaceError> {
        let out = self.raw(cwd, args, timeout).await?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(WorkspaceError::Git { op, message: git_message(&out) })
        }
    }

    pub(super) async fn is_repo(&self, dir: &str) -> Result<bool, WorkspaceError> {
        let out = self
            .shell
            .run(Cmd {
                program: "test".into(),
                args: vec!["-e".into(), format!("{dir}/.git/HEAD")],
                timeout: QUICK,
                ..Cmd::default()
            })
            .await?;
        Ok(out.success())
    }

    /// Creates the bare mirror if needed and fetches every branch into it. A new mirror is configured under a
    /// temporary name and renamed into place, and the configuration is rewritten every time: a process killed halfway
    /// through never leaves a mirror that fetches nothing (one without its fetch refspec would make every later
    /// workspace of the repository fail with "no branch").
    pub(super) async fn update_mirror(&self, mirror: &str, url: &str) -> Result<(), WorkspaceError> {
        let head = format!("{mirror}/HEAD");
        let exists = self
            .shell
            .run(Cmd { program: "test".into(), args: vec!["-e".into(), head], timeout: QUICK, ..Cmd::default() })
            .await?
            .success();
        let configure = |dir: String| async move {
            // The remote's URL may have changed (a renamed repository, another server).
            self.ok("config", &dir, &["config", "remote.origin.url", url], QUICK).await?;
            self.ok("config", &dir, &["config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"], QUICK).await
        };
        if exists {
            configure(mirror.to_owned()).await?;
        } else {
            let tmp = format!("{mirror}.partial");
            self.shell.remove_dir(&tmp).await?;
            self.ok("init", "/", &["init", "--quiet", "--bare", &tmp], QUICK).await?;
            configure(tmp.clone()).await?;
            self.rename(&tmp, mirror).await?;
        }
        self.ok("fetch", mirror, &["fetch", "--quiet", "--prune", "origin"], NETWORK).await.map(drop)
    }

    /// `mv -T from to`: atomic on one filesystem, so `to` is either absent or complete.
    async fn rename(&self, from: &str, to: &str) -> Result<(), WorkspaceError> {
        let out = self
            .shell
            .run(Cmd {
                program: "mv".into(),
                args: vec!["-T".into(), "--".into(), from.to_owned(), to.to_owned()],
                timeout: QUICK,
                ..Cmd::default()
            })
            .await?;
        if !out.success() {
            return Err(WorkspaceError::Git { op: "rename", message: out.stderr.trim().to_owned() });
        }
        Ok(())
    }

    /// Clones the mirror into `dir` (hard-linked objects), points `origin` at the real remote and checks out the
    /// branch: the remote's if it has one, else a new one from the base.
    pub(super) async fn clone_from_mirror(
        &self,
        mirror: &str,
        dir: &str,
        spec: &WorkspaceSpec,
    ) -> Result<(), WorkspaceError> {
        let tmp = format!("{dir}.partial");
        self.shell.remove_dir(&tmp).await?;
        self.ok("clone", "/", &["clone", "--quiet", "--no-checkout", mirror, &tmp], NETWORK).await?;
        self.ok("remote", &tmp, &["remote", "set-url", "origin", &spec.remote_url], QUICK).await?;
        let remote_branch = format!("refs/remotes/origin/{}", spec.branch);
        let start = if self.has_ref(&tmp, &remote_branch).await? {
            format!("origin/{}", spec.branch)
        } else {
            let base = format!("refs/remotes/origin/{}", spec.base_branch);
            if !self.has_ref(&tmp, &base).await? {
                return Err(WorkspaceError::Git {
                    op: "checkout",
                    message: format!("the repository has no branch {:?}", spec.base_branch),
                });
            }
            format!("origin/{}", spec.base_branch)
        };
        self.ok("checkout", &tmp, &["checkout", "--quiet", "--no-track", "-B", &spec.branch, &start], NETWORK).await?;
        self.rename(&tmp, dir).await
    }

    async fn has_ref(&self, dir: &str, name: &str) -> Result<bool, WorkspaceError> {
        Ok(self.raw(dir, &["rev-parse", "--verify", "--quiet", name], QUICK).await?.success())
    }

    /// Stages everything (new files too) so that diffs against the index see all changes.
    async fn stage_all(&self, dir: &str) -> Result<(), WorkspaceError> {
        self.ok("add", dir, &["add", "--all"], QUICK).await.map(drop)
    }

    /// Commits everything changed, if anything (the state that follows reports the new head).
    pub(super) async fn commit_all(&self, dir: &str, message: &str) -> Result<(), WorkspaceError> {
        self.stage_all(dir).await?;
        if self.raw(dir, &["diff", "--cached", "--quiet"], QUICK).await?.success() {
            return Ok(());
        }
        let message = if message.trim().is_empty() { "Work in progress" } else { message };
        self.ok("commit", dir, &["commit", "--quiet", "--no-verify", "-m", message], QUICK).await.map(drop)
    }

    pub(super) async fn push(&self, dir: &str, branch: &str) -> Result<(), WorkspaceError> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.ok("push", dir, &["push", "--quiet", "--porcelain", "origin", &refspec], NETWORK).await?;
        // Record what the remote now has (push updates the tracking ref only when a fetch refspec maps it).
        let tracking = format!("refs/remotes/origin/{branch}");
        self.ok("update-ref", dir, &["update-ref", &tracking, "HEAD"], QUICK).await.map(drop)
    }

    async fn merge_base(&self, dir: &str, spec: &WorkspaceSpec) -> Result<String, WorkspaceError> {
        let base = format!("refs/remotes/origin/{}", spec.base_branch);
        let out = self.raw(dir, &["merge-base", &base, "HEAD"], QUICK).await?;
        if out.success() {
            Ok(out.stdout.trim().to_owned())
        } else {
            // Unrelated histories: compare with the base itself.
            Ok(base)
        }
    }

    /// The git state in one shell round trip (one HTTP call on a sandbox-agent server instead of nine): the script
    /// prints each command's output after a `\x1e<name>` marker line.
    pub(super) async fn state(&self, dir: &str, spec: &WorkspaceSpec) -> Result<GitState, WorkspaceError> {
        self.state_after(dir, spec, None).await.map(|(state, _)| state)
    }

    /// Commits everything changed (if anything) with `message`, then the git state, in one shell round trip; also
    /// whether a commit was made.
    pub(super) async fn commit_and_state(
        &self,
        dir: &str,
        spec: &WorkspaceSpec,
        message: &str,
    ) -> Result<(GitState, bool), WorkspaceError> {
        let message = if message.trim().is_empty() { "Work in progress" } else { message };
        self.state_after(dir, spec, Some(message)).await
    }

    async fn state_after(
        &self,
        dir: &str,
        spec: &WorkspaceSpec,
        commit: Option<&str>,
    ) -> Result<(GitState, bool), WorkspaceError> {
        let script = match commit {
            Some(_) => format!("{COMMIT_SCRIPT}{STATE_SCRIPT}"),
            None => STATE_SCRIPT.to_owned(),
        };
        let out = self
            .shell
            .run(Cmd {
                program: "sh".into(),
                args: vec![
                    "-c".into(),
                    script,
                    "sh".into(),
                    format!("refs/remotes/origin/{}", spec.base_branch),
                    format!("refs/remotes/origin/{}", spec.branch),
                    commit.unwrap_or_default().to_owned(),
                ],
                cwd: Some(dir.to_owned()),
                env: self.env.clone(),
                timeout: QUICK,
            })
            .await?;
        if !out.success() {
            return Err(WorkspaceError::Git { op: "status", message: git_message(&out) });
        }
        let mut sections = std::collections::HashMap::new();
        for part in out.stdout.split('\x1e').skip(1) {
            let (name, body) = part.split_once('\n').unwrap_or((part, ""));
            sections.insert(name, body);
        }
        let section = |name: &str| sections.get(name).copied().unwrap_or_default();
        let mut parts = section("counts").split_whitespace().map(|n| n.parse::<u32>().unwrap_or(0));
        let (behind, ahead) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let mut remote = section("remote").lines();
        let pushed = remote.next() == Some("yes");
        let unpushed = if pushed { remote.next().and_then(|n| n.trim().parse().ok()).unwrap_or(0) } else { ahead };
        let last_commit = parse_log(section("log"));
        let state = GitState {
            branch: spec.branch.clone(),
            base: spec.base_branch.clone(),
            head: last_commit.as_ref().map(|c| c.sha.clone()),
            ahead,
            behind,
            unpushed,
            pushed,
            dirty: !section("status").trim().is_empty(),
            last_commit,
            files: parse_files(section("numstat"), section("names")),
        };
        Ok((state, section("committed").trim() == "yes"))
    }

    pub(super) async fn file_diff(
        &self,
        dir: &str,
        spec: &WorkspaceSpec,
        path: &str,
    ) -> Result<String, WorkspaceError> {
        self.stage_all(dir).await?;
        let mb = self.merge_base(dir, spec).await?;
        self.ok("diff", dir, &["diff", "--cached", "-M", &mb, "--", path], QUICK).await
    }

    pub(super) async fn revert_file(&self, dir: &str, spec: &WorkspaceSpec, path: &str) -> Result<(), WorkspaceError> {
        self.stage_all(dir).await?;
        let mb = self.merge_base(dir, spec).await?;
        let in_base = self.raw(dir, &["cat-file", "-e", &format!("{mb}:{path}")], QUICK).await?.success();
        if in_base {
            self.ok("checkout", dir, &["checkout", &mb, "--", path], QUICK).await?;
        } else {
            let tracked = self.ok("ls-files", dir, &["ls-files", "--", path], QUICK).await?;
            if tracked.trim().is_empty() {
                return Err(WorkspaceError::Invalid(format!("{path:?} is not changed in this workspace")));
            }
            self.ok("rm", dir, &["rm", "-r", "-f", "--quiet", "--", path], QUICK).await?;
        }
        self.commit_all(dir, &format!("Revert {path}")).await
    }
}

/// git's explanation of a failure: its stderr without credentials (git never prints the extra header, but a
/// remote's error page might echo a URL).
fn git_message(out: &CmdOutput) -> String {
    let text = if out.stderr.trim().is_empty() { out.stdout.trim() } else { out.stderr.trim() };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n");
    if tail.is_empty() {
        format!("exit status {}", out.code)
    } else {
        tail
    }
}

fn parse_log(line: &str) -> Option<LastCommit> {
    let mut parts = line.trim_end_matches('\n').split('\x1f');
    let sha = parts.next()?.to_owned();
    let message = parts.next()?.to_owned();
    let author = parts.next()?.to_owned();
    let at = parts.next()?.trim().parse::<i64>().ok()? * 1000;
    Some(LastCommit { sha, message, author, at })
}

/// Joins `--numstat -z` and `--name-status -z` output (both list files in the same order; renames name two paths).
fn parse_files(numstat: &str, names: &str) -> Vec<FileStat> {
    let mut stats = Vec::new();
    let mut fields = numstat.split('\0').filter(|f| !f.is_empty()).peekable();
    while let Some(head) = fields.next() {
        let mut cols = head.splitn(3, '\t');
        let added = cols.next().and_then(|n| n.parse().ok());
        let removed = cols.next().and_then(|n| n.parse().ok());
        let path = match cols.next() {
            Some(p) if !p.is_empty() => p.to_owned(),
            // A rename: the two paths follow as their own fields.
            _ => {
                let _from = fields.next();
                fields.next().unwrap_or_default().to_owned()
            }
        };
        stats.push((path, added, removed));
    }
    let mut statuses = std::collections::HashMap::new();
    let mut fields = names.split('\0').filter(|f| !f.is_empty());
    while let Some(code) = fields.next() {
        let status = match code.chars().next() {
            Some('A') => "added",
            Some('M') => "modified",
            Some('D') => "deleted",
            Some('R') => {
                let _from = fields.next();
                "renamed"
            }
            Some('C') => {
                let _from = fields.next();
                "added"
            }
            _ => "changed",
        };
        if let Some(path) = fields.next() {
            statuses.insert(path.to_owned(), status);
        }
    }
    let mut files: Vec<FileStat> = stats
        .into_iter()
        .map(|(path, added, removed)| FileStat {
            status: statuses.get(&path).copied().unwrap_or("modified").to_owned(),
            path,
            added,
            removed,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Standard base64 with padding (HTTP Basic credentials).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"x-access-token:abc"), "eC1hY2Nlc3MtdG9rZW46YWJj");
    }

    #[test]
    fn diff_listings_join() {
        let numstat = "3\t1\tsrc/a.rs\0-\t-\tlogo.png\0".to_owned() + "0\t0\t\0old.txt\0new.txt\0";
        let names = "M\0src/a.rs\0A\0logo.png\0R100\0old.txt\0new.txt\0";
        let files = parse_files(&numstat, names);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0], FileStat { path: "logo.png".into(), status: "added".into(), added: None, removed: None });
        assert_eq!(files[1].path, "new.txt");
        assert_eq!(files[1].status, "renamed");
        assert_eq!((files[2].added, files[2].removed), (Some(3), Some(1)));
    }
}
