//! Task workspaces: a directory holding a clone of a repository checked out on one branch, where an agent works, and
//! the git operations foundry runs there (provision, commit, push, state, diff, revert, release).
//!
//! Where the directory lives and how commands reach it is a [`Shell`]'s business: [`LocalShell`] runs git on this
//! host under the data directory; [`SandboxShell`] runs it on a sandbox-agent server through its
//! `POST /v1/processes/run`, so the workspace lives where that server (and its agent) runs. Remote providers (Docker,
//! E2B, Daytona) are further `Shell`s: anything that can run a command in a directory and remove a directory.
//!
//! Each repository gets one bare mirror per provider root, fetched for each provisioning (provisionings that wait
//! behind a fetch share the next one), and each workspace is a
//! local clone of that mirror (objects hard-linked, so the tenth task of a repository does not download it again).
//! Credentials reach git only through its environment (`GIT_CONFIG_*`: an `http.extraHeader`), never a remote URL,
//! an argument or a file. Operations on one workspace are serialised; different workspaces run in parallel.

mod git;
mod runner;
mod servers;
mod shell;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::integrations::github::app::GitHubApp;
use crate::integrations::github::client::AccountKind;

pub use git::{FileStat, GitState, LastCommit};
pub use runner::{serve_stdio as serve_runner, Runner};
pub use servers::SandboxServers;
pub use shell::{Cmd, CmdOutput, LocalShell, SandboxShell, Shell};

/// What a workspace is a checkout of. Plain data: the caller (the task) says what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSpec {
    /// Unique within this install and path-safe (`[A-Za-z0-9._-]`): names the workspace directory.
    pub id: String,
    /// The repository's clone URL (no credentials in it).
    pub remote_url: String,
    /// The branch work starts from and is compared with.
    pub base_branch: String,
    /// The branch the workspace works on (created from `base_branch` unless the remote has it).
    pub branch: String,
}

/// Who commits, and with which token git authenticates to the remote (if it needs one).
#[derive(Clone, Default)]
pub struct GitAuth {
    pub token: Option<String>,
    pub author_name: String,
    pub author_email: String,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .finish()
    }
}

/// Where git gets a token for a repository (`owner/name`): a fixed token, a GitHub App's installation token, or
/// none (public repositories, local remotes).
pub trait TokenSource: Send + Sync + 'static {
    fn token<'a>(&'a self, full_name: &'a str) -> BoxFuture<'a, Result<Option<String>, WorkspaceError>>;
}

/// The same token for every repository (`--github-token`), or none.
pub struct StaticToken(pub Option<String>);

impl TokenSource for StaticToken {
    fn token<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<String>, WorkspaceError>> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// A GitHub App's installation token for the repository's owner (cached by [`GitHubApp`]).
pub struct AppTokens(pub Arc<GitHubApp>);

impl TokenSource for AppTokens {
    fn token<'a>(&'a self, full_name: &'a str) -> BoxFuture<'a, Result<Option<String>, WorkspaceError>> {
        Box::pin(async move {
            let owner = full_name.split('/').next().unwrap_or(full_name);
            let unreachable = |e: crate::integrations::github::client::GitHubError| {
                WorkspaceError::Unreachable(format!("no installation token for {owner}: {e}"))
            };
            let id = match self.0.installation_for(owner, AccountKind::Organization).await {
                Ok(id) => id,
                Err(_) => self.0.installation_for(owner, AccountKind::User).await.map_err(unreachable)?,
            };
            self.0.installation_token(id).await.map(Some).map_err(unreachable)
        })
    }
}

/// Failures of workspace operations. Messages never contain a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    /// The machine the workspace lives on could not be reached (sandbox server down).
    #[error("the sandbox is unreachable: {0}")]
    Unreachable(String),
    /// A git command failed; `message` is git's own explanation.
    #[error("git {op} failed: {message}")]
    Git { op: &'static str, message: String },
    /// The request names something outside the repository or invalid.
    #[error("{0}")]
    Invalid(String),
    /// The workspace does not exist (never provisioned, or released).
    #[error("the workspace is not provisioned")]
    Missing,
}

/// A provisioned workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The workspace directory, as the shell's machine sees it.
    pub cwd: String,
    pub state: GitState,
}

/// Where the workspaces' commands run.
enum Backing {
    /// One shell for every workspace (this host, or one given sandbox-agent server).
    One(Arc<dyn Shell>),
    /// A sandbox-agent server per workspace, started by foundry.
    PerTask(Arc<SandboxServers>),
}

/// The workspaces of one provider, as a runtime service.
pub struct Workspaces {
    backing: Backing,
    /// One lock per workspace id and per mirror: git must not run twice at once in one repository.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per mirror: fetches started and the latest one that succeeded (see `provision`).
    fetches: Mutex<HashMap<String, Arc<MirrorFetches>>>,
}

/// Fetches of one mirror are numbered as they start (under the mirror's lock, so one at a time); `done` is the number
/// of the latest that succeeded. A provisioning needs a fetch that started after it asked: when `done` reaches it, a
/// fetch from someone else already covered it.
#[derive(Default)]
struct MirrorFetches {
    started: AtomicU64,
    done: AtomicU64,
}

impl Workspaces {
    pub fn new(shell: Arc<dyn Shell>) -> Self {
        Workspaces { backing: Backing::One(shell), locks: Mutex::default(), fetches: Mutex::default() }
    }

    /// Each workspace on its own sandbox-agent server, which its task's agent also uses.
    pub fn per_task(servers: Arc<SandboxServers>) -> Self {
        Workspaces { backing: Backing::PerTask(servers), locks: Mutex::default(), fetches: Mutex::default() }
    }

    /// `local` or `sandbox-agent`.
    pub fn provider(&self) -> &'static str {
        match &self.backing {
            Backing::One(shell) => shell.provider(),
            Backing::PerTask(_) => "sandbox-agent",
        }
    }

    fn root(&self) -> String {
        match &self.backing {
            Backing::One(shell) => shell.root().to_owned(),
            Backing::PerTask(servers) => servers.root(),
        }
    }

    /// The directory of workspace `id` on the shell's machine.
    pub fn dir(&self, id: &str) -> String {
        format!("{}/workspaces/{id}", self.root())
    }

    /// The sandbox-agent server of workspace `id` when each has its own (its agent must run there), else `None`.
    pub async fn agent_url(&self, id: &str) -> Result<Option<String>, WorkspaceError> {
        match &self.backing {
            Backing::One(_) => Ok(None),
            Backing::PerTask(servers) => servers.url_for(id).await.map(Some),
        }
    }

    async fn shell(&self, id: &str) -> Result<Arc<dyn Shell>, WorkspaceError> {
        match &self.backing {
            Backing::One(shell) => Ok(shell.clone()),
            Backing::PerTask(servers) => Ok(servers.shell_for(id).await?),
        }
    }

    fn fetches_for(&self, mirror: &str) -> Arc<MirrorFetches> {
        let mut fetches = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
        fetches.entry(mirror.to_owned()).or_default().clone()
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_owned()).or_default().clone()
    }

    /// Makes the workspace exist on its branch: updates the repository's mirror, then clones it (unless the workspace
    /// is already there) and checks out the branch. `progress` hears each step, for the task's status message.
    pub async fn provision(
        &self,
        spec: &WorkspaceSpec,
        auth: &GitAuth,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Provisioned, WorkspaceError> {
        validate_spec(spec)?;
        let mirror = format!("{}/mirrors/{}.git", self.root(), mirror_name(&spec.remote_url));
        let dir = self.dir(&spec.id);
        let shell = self.shell(&spec.id).await?;
        let git = git::Git::new(shell.as_ref(), auth);
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        if git.is_repo(&dir).await? {
            progress("workspace ready");
            return Ok(Provisioned { state: git.state(&dir, spec).await?, cwd: dir });
        }
        {
            // Provisionings of one repository that pile up behind a fetch share the next one: a burst of new tasks
            // costs a few fetches, not one each, and each workspace still starts from the remote as it was when
            // its provisioning asked (a fetch that started after that).
            let fetches = self.fetches_for(&mirror);
            let wanted = fetches.started.load(Ordering::SeqCst) + 1;
            let _m = self.lock_for(&mirror).lock_owned().await;
            if fetches.done.load(Ordering::SeqCst) < wanted {
                let n = fetches.started.fetch_add(1, Ordering::SeqCst) + 1;
                progress("fetching the repository");
                git.update_mirror(&mirror, &spec.remote_url).await?;
                fetches.done.store(n, Ordering::SeqCst);
            }
        }
        progress(&format!("checking out {}", spec.branch));
        git.clone_from_mirror(&mirror, &dir, spec).await?;
        progress("workspace ready");
        Ok(Provisioned { state: git.state(&dir, spec).await?, cwd: dir })
    }

    /// Commits everything changed (message `message`), then computes the git state: one round trip. Also whether a
    /// commit was made.
    pub async fn commit_and_state(
        &self,
        spec: &WorkspaceSpec,
        auth: &GitAuth,
        message: &str,
    ) -> Result<(GitState, bool), WorkspaceError> {
        let (shell, dir) = self.existing(spec, auth).await?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        git::Git::new(shell.as_ref(), auth).commit_and_state(&dir, spec, message).await
    }

    /// Commits pending changes, then pushes the branch to the remote.
    pub async fn push(&self, spec: &WorkspaceSpec, auth: &GitAuth) -> Result<GitState, WorkspaceError> {
        let (shell, dir) = self.existing(spec, auth).await?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        let git = git::Git::new(shell.as_ref(), auth);
        git.commit_all(&dir, "Work in progress").await?;
        git.push(&dir, &spec.branch).await?;
        git.state(&dir, spec).await
    }

    /// The workspace's git state (changes against the base branch, ahead/behind, last commit).
    pub async fn state(&self, spec: &WorkspaceSpec, auth: &GitAuth) -> Result<GitState, WorkspaceError> {
        let (shell, dir) = self.existing(spec, auth).await?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        git::Git::new(shell.as_ref(), auth).state(&dir, spec).await
    }

    /// The diff of one file against the base branch (committed and not yet committed changes).
    pub async fn file_diff(&self, spec: &WorkspaceSpec, auth: &GitAuth, path: &str) -> Result<String, WorkspaceError> {
        validate_path(path)?;
        let (shell, dir) = self.existing(spec, auth).await?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        git::Git::new(shell.as_ref(), auth).file_diff(&dir, spec, path).await
    }

    /// Restores one file as it is on the base branch (removes it if the base has none) and commits that.
    pub async fn revert_file(
        &self,
        spec: &WorkspaceSpec,
        auth: &GitAuth,
        path: &str,
    ) -> Result<GitState, WorkspaceError> {
        validate_path(path)?;
        let (shell, dir) = self.existing(spec, auth).await?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        let git = git::Git::new(shell.as_ref(), auth);
        git.revert_file(&dir, spec, path).await?;
        git.state(&dir, spec).await
    }

    /// Removes the workspace directory (what was not pushed is gone: callers check [`GitState::unpushed`] first),
    /// and stops its own sandbox-agent server if it has one.
    pub async fn release(&self, spec: &WorkspaceSpec) -> Result<(), WorkspaceError> {
        validate_spec(spec)?;
        let _ws = self.lock_for(&spec.id).lock_owned().await;
        let dir = self.dir(&spec.id);
        match &self.backing {
            Backing::One(shell) => shell.remove_dir(&dir).await,
            Backing::PerTask(servers) => {
                servers.stop(&spec.id).await;
                // The servers run on this host: the directory is removed here.
                LocalShell::new(servers.root()).remove_dir(&dir).await
            }
        }
    }

    async fn existing(&self, spec: &WorkspaceSpec, auth: &GitAuth) -> Result<(Arc<dyn Shell>, String), WorkspaceError> {
        validate_spec(spec)?;
        let dir = self.dir(&spec.id);
        let shell = self.shell(&spec.id).await?;
        if git::Git::new(shell.as_ref(), auth).is_repo(&dir).await? {
            Ok((shell, dir))
        } else {
            Err(WorkspaceError::Missing)
        }
    }
}

/// The mirror's directory name: the repository's name plus a hash of its URL (two remotes never share a mirror).
fn mirror_name(url: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name = url.trim_end_matches('/').trim_end_matches(".git").rsplit('/').next().unwrap_or("repo");
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    format!("{}-{hash}", name.trim_start_matches('.'))
}

fn validate_spec(spec: &WorkspaceSpec) -> Result<(), WorkspaceError> {
    let id_ok = !spec.id.is_empty()
        && !spec.id.starts_with('.')
        && spec.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(WorkspaceError::Invalid(format!("not a workspace id: {:?}", spec.id)));
    }
    for (what, branch) in [("branch", &spec.branch), ("base branch", &spec.base_branch)] {
        if branch.is_empty() || branch.starts_with('-') || branch.contains("..") || branch.contains(char::is_whitespace)
        {
            return Err(WorkspaceError::Invalid(format!("not a {what}: {branch:?}")));
        }
    }
    if spec.remote_url.is_empty() || spec.remote_url.starts_with('-') {
        return Err(WorkspaceError::Invalid(format!("not a remote: {:?}", spec.remote_url)));
    }
    Ok(())
}

/// A path inside the repository: relative, no `..`, not into `.git`.
pub fn validate_path(path: &str) -> Result<(), WorkspaceError> {
    let bad = path.is_empty()
        || path.len() > 4096
        || path.starts_with('/')
        || path.starts_with('-')
        || path.contains('\0')
        || path.split('/').any(|p| p == ".." || p == ".git" || p.is_empty());
    if bad {
        Err(WorkspaceError::Invalid(format!("not a path inside the repository: {path:?}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids_are_checked() {
        for ok in ["README.md", "src/lib.rs", "a/b/c.txt", ".github/workflows/ci.yml"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../b", ".git/config", "-rf", "a//b"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        let spec = |id: &str, branch: &str| WorkspaceSpec {
            id: id.into(),
            remote_url: "http://h/o/r.git".into(),
            base_branch: "main".into(),
            branch: branch.into(),
        };
        assert!(validate_spec(&spec("acme.web.t1", "fix/x")).is_ok());
        assert!(validate_spec(&spec("../x", "fix")).is_err());
        assert!(validate_spec(&spec("a", "--upload-pack=x")).is_err());
        assert_ne!(mirror_name("http://a/o/r.git"), mirror_name("http://b/o/r.git"));
        assert!(mirror_name("http://a/o/r.git").starts_with("r-"));
    }
}
