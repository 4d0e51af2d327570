//! Keys of the domain actors. Compound keys (repository, task, session) carry their full path, so every message is
//! addressed by full key and nobody scans to resolve one.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::runtime::{EntityKey, KeyError};

/// Escapes the separator so any id text round-trips through `a/b/c`.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

fn unescape(part: &str) -> String {
    part.replace("%2F", "/").replace("%25", "%")
}

fn split<const N: usize>(text: &str) -> Result<[String; N], KeyError> {
    let parts: Vec<String> = text.split('/').map(unescape).collect();
    parts.try_into().map_err(|_| KeyError::Malformed(text.to_owned()))
}

/// An organization's repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoKey {
    pub org: String,
    pub repo: String,
}

/// A task of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    pub org: String,
    pub repo: String,
    pub task: String,
}

/// A session of a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    pub org: String,
    pub repo: String,
    pub task: String,
    pub session: String,
}

impl RepoKey {
    pub fn new(org: impl Into<String>, repo: impl Into<String>) -> Self {
        RepoKey { org: org.into(), repo: repo.into() }
    }
    pub fn task(&self, task: impl Into<String>) -> TaskKey {
        TaskKey { org: self.org.clone(), repo: self.repo.clone(), task: task.into() }
    }
}

impl TaskKey {
    pub fn repo_key(&self) -> RepoKey {
        RepoKey { org: self.org.clone(), repo: self.repo.clone() }
    }
    pub fn session(&self, session: impl Into<String>) -> SessionKey {
        SessionKey { org: self.org.clone(), repo: self.repo.clone(), task: self.task.clone(), session: session.into() }
    }
}

impl SessionKey {
    pub fn task_key(&self) -> TaskKey {
        TaskKey { org: self.org.clone(), repo: self.repo.clone(), task: self.task.clone() }
    }
}

impl EntityKey for RepoKey {
    fn encode(&self) -> String {
        format!("{}/{}", escape(&self.org), escape(&self.repo))
    }
    fn decode(text: &str) -> Result<Self, KeyError> {
        let [org, repo] = split(text)?;
        Ok(RepoKey { org, repo })
    }
}

impl EntityKey for TaskKey {
    fn encode(&self) -> String {
        format!("{}/{}/{}", escape(&self.org), escape(&self.repo), escape(&self.task))
    }
    fn decode(text: &str) -> Result<Self, KeyError> {
        let [org, repo, task] = split(text)?;
        Ok(TaskKey { org, repo, task })
    }
}

impl EntityKey for SessionKey {
    fn encode(&self) -> String {
        format!("{}/{}/{}/{}", escape(&self.org), escape(&self.repo), escape(&self.task), escape(&self.session))
    }
    fn decode(text: &str) -> Result<Self, KeyError> {
        let [org, repo, task, session] = split(text)?;
        Ok(SessionKey { org, repo, task, session })
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_keys_round_trip_any_text() {
        let k = SessionKey { org: "a/b".into(), repo: "100%".into(), task: "%2F".into(), session: "".into() };
        assert_eq!(SessionKey::decode(&k.encode()).unwrap(), k);
        let t = TaskKey { org: "o".into(), repo: "r".into(), task: "t1".into() };
        assert_eq!(t.encode(), "o/r/t1");
        assert_eq!(TaskKey::decode("o/r/t1").unwrap(), t);
        assert!(TaskKey::decode("o/r").is_err());
        assert!(RepoKey::decode("o/r/x").is_err());
    }
}
