//! GitHub: the REST client the github-data actor uses (behind the `GitHubApi` trait), GitHub App authentication,
//! OAuth sign-in, proof that a user controls an account (`control`), and a local GitHub-compatible server for tests
//! and examples (GitHub itself cannot be reached from here).

pub mod app;
pub mod client;
pub mod control;
pub mod fake;
pub mod oauth;
