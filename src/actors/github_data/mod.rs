//! The github-data actor (key: organization id): mirrors what the organization needs from GitHub. A sync runs as its
//! background work, one at a time: repositories page by page, then branches and pull requests per batch of
//! repositories, then members. Each chunk is stored in its own transaction as it arrives, stamped with the sync's
//! generation; rows of older generations are swept only when their phase completes, so a failed sync keeps every row
//! it had and every row it fetched. Progress goes to the organization (its snapshot shows it live), new repositories
//! are imported into it, and pull requests go to their repository coordinator. A failed or interrupted sync is
//! retried on its own (`retry.rs`, a durable schedule).
//!
//! The connection records the account's GitHub id as well as its login: webhooks reach this actor by that id (through
//! the auth directory's account index), and a delivery that shows the account under a new login updates the login.

mod retry;
pub mod schema;
mod sync;
pub mod webhook;

use std::sync::Arc;

use actix::SpawnHandle;
use diesel::sqlite::SqliteConnection;

pub use retry::{RetrySync, SyncRetry};
pub use sync::*;
pub use webhook::{delivery_account, verify_signature, HandleWebhook, WebhookOutcome};

use crate::integrations::github::client::GitHubApi;
use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity};

/// The GitHub API the sync uses, provided to the runtime (`Runtime::provide(Arc::new(GitHubService(..)))`).
pub struct GitHubService(pub Arc<dyn GitHubApi>);

pub struct GitHubData {
    pub org: String,
    /// The running sync (a runtime handle, not state).
    sync: Option<SpawnHandle>,
    /// Which automatic retry the running sync is (0: started by someone), so its failure schedules the next one.
    retry_attempt: u32,
}

impl Entity for GitHubData {
    type Key = String;
    const KIND: &'static str = "github_data";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/github_data");

    fn load(key: &String, _: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(GitHubData { org: key.clone(), sync: None, retry_attempt: 0 })
    }

    fn on_wake(&mut self, ctx: &mut crate::runtime::EntityCtx<'_, Self>) {
        // A sync cut by a restart is reported as failed; its rows stay and the next sync starts cleanly.
        if let Err(e) = sync::fail_interrupted(self, ctx) {
            tracing::error!(org = %self.org, error = %e, "could not recover the sync state");
        }
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<RetrySync>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        sync::accept_remote(a);
        retry::accept_remote(a);
        webhook::accept_remote(a);
    }
}
