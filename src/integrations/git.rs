//! Git hosting operations a task needs (publish a pull request, push, merge, revert a file). The real GitHub-backed
//! implementation comes with the GitHub work; `LocalGitHost` is a deterministic in-process host for development,
//! examples and tests.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::actors::summary::PullRequestSummary;
use crate::actors::TaskKey;

/// A refusal or failure of the git host.
#[derive(Debug, Clone, thiserror::Error)]
#[error("git host: {0}")]
pub struct GitError(pub String);

/// What the domain asks of a git host.
pub trait GitHost: Send + Sync + 'static {
    fn publish_pull_request(
        &self,
        repo_full_name: &str,
        task: &TaskKey,
        branch: &str,
        base: &str,
        title: &str,
    ) -> Result<PullRequestSummary, GitError>;
    fn push(&self, repo_full_name: &str, branch: &str) -> Result<String, GitError>;
    fn merge(&self, repo_full_name: &str, branch: &str, base: &str) -> Result<String, GitError>;
    fn revert_file(&self, repo_full_name: &str, branch: &str, path: &str) -> Result<(), GitError>;
}

/// Numbers pull requests from 1 and reports every operation as done.
#[derive(Debug, Default)]
pub struct LocalGitHost {
    next_pr: AtomicI64,
}

impl GitHost for LocalGitHost {
    fn publish_pull_request(
        &self,
        repo_full_name: &str,
        _task: &TaskKey,
        branch: &str,
        base: &str,
        title: &str,
    ) -> Result<PullRequestSummary, GitError> {
        let number = self.next_pr.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(PullRequestSummary {
            number,
            title: title.to_owned(),
            state: "open".to_owned(),
            url: format!("https://github.com/{repo_full_name}/pull/{number}"),
            head_ref: branch.to_owned(),
            base_ref: base.to_owned(),
            is_draft: false,
            author_login: None,
            updated_at: crate::actors::now_ms(),
        })
    }

    fn push(&self, _repo: &str, branch: &str) -> Result<String, GitError> {
        Ok(format!("pushed {branch}"))
    }

    fn merge(&self, _repo: &str, branch: &str, base: &str) -> Result<String, GitError> {
        Ok(format!("merged {branch} into {base}"))
    }

    fn revert_file(&self, _repo: &str, _branch: &str, path: &str) -> Result<(), GitError> {
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(GitError(format!("not a path inside the repository: {path:?}")));
        }
        Ok(())
    }
}
