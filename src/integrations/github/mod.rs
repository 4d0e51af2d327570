//! GitHub: the REST client the github-data actor uses (behind the `GitHubApi` trait), GitHub App authentication,
//! OAuth sign-in, and a local GitHub-compatible server for tests and examples (GitHub itself cannot be reached from
//! here).

pub mod app;
pub mod client;
pub mod fake;
pub mod oauth;
