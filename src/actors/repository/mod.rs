//! The repository actor (key: organization + repository id): the coordinator of its tasks. It owns the task index
//! (task ids, unique immutable branches, task summaries) and pushes its summary to the organization only.

mod messages;
pub mod naming;
pub mod schema;

use diesel::sqlite::SqliteConnection;

pub use messages::*;
pub use schema::RepoMeta;

use crate::actors::RepoKey;
use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity};

pub struct Repository {
    pub key: RepoKey,
}

impl Entity for Repository {
    type Key = RepoKey;
    const KIND: &'static str = "repository";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/repository");

    /// With its organization: a whole organization's actors share one shard (`runtime::placement`).
    fn placement_key(key: &Self::Key) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&key.org)
    }

    fn load(key: &RepoKey, _: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(Repository { key: key.clone() })
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<InitializeRepository>().accept::<ApplyTaskSummary>().accept::<ApplyPullRequests>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
    }
}
