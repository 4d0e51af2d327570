//! The `auth_directory` actor kind: the app-level routing index of authentication. One instance
//! ([`AUTH_DIRECTORY_KEY`]) resolves what a request carries — a session token, an email, an OAuth account — to a user
//! id, before any user or organization actor is known.
//!
//! It holds only indexes; the user actor is the authority on its own sessions and accounts (`user::auth`). Secrets
//! never reach it: session tokens and OAuth `state` values arrive as SHA-256 hex, generated and hashed by the HTTP
//! layer.
//!
//! - Sessions: [`IndexAuthSession`], [`ResolveAuthSession`], [`RemoveAuthSession`], [`RemoveUserAuthSessions`].
//! - Accounts and emails: [`LinkAccount`] (find or assign the user of an OAuth sign-in), [`ResolveAccount`],
//!   [`ResolveEmail`], [`IndexEmail`].
//! - OAuth flows: [`CreateVerification`], [`ConsumeVerification`] (single use).
//! - Organization membership from linked accounts: [`SetOrganizationAccounts`] (from each organization's GitHub
//!   mirror); see `orgs.rs`.
//! - GitHub accounts by numeric id -> the one organization connected to each: [`ClaimGitHubAccount`],
//!   [`ReleaseGitHubAccount`], [`ResolveGitHubAccount`] (webhook routing); see `github.rs`.
//!
//! It publishes no topic. Messages and limits are in [`messages`], tables and queries in [`schema`]; migrations in
//! `migrations/auth_directory/`.

mod github;
pub mod messages;
mod orgs;
pub mod schema;

use diesel::sqlite::SqliteConnection;
use diesel::QueryResult;

use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity};

pub use github::{ClaimGitHubAccount, ReleaseGitHubAccount, ResolveGitHubAccount};
pub use messages::*;
pub use orgs::{OrgAccount, SetOrganizationAccounts};

/// The key of the one auth directory.
pub const AUTH_DIRECTORY_KEY: &str = "app";

/// The auth directory actor. Holds only its key; every index lives in SQLite.
pub struct AuthDirectory {
    key: String,
}

impl AuthDirectory {
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Entity for AuthDirectory {
    type Key = String;
    const KIND: &'static str = "auth_directory";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/auth_directory");

    fn load(key: &String, _db: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(AuthDirectory { key: key.clone() })
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<SetOrganizationAccounts>().accept::<ReleaseGitHubAccount>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
        github::accept_remote(deliveries);
        orgs::accept_remote(deliveries);
    }

    /// Every authenticated request reads this one actor: a deep mailbox, and it never passivates (reopening it would
    /// stall every request at once).
    fn config() -> crate::runtime::KindConfig {
        crate::runtime::KindConfig {
            mailbox_capacity: 8192,
            idle_timeout: std::time::Duration::from_secs(365 * 24 * 3600),
            ..Default::default()
        }
    }
}
