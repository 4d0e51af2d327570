//! Integrations with outside systems, each behind a trait with a local implementation usable without network.

pub mod agent;
pub mod git;
pub mod github;
