//! The organization actor (key: organization id): profile, the coordinator index of its repositories, and the task
//! summaries its repositories push up. Publishes the `organization` topic (its frequent changes as row-level patches:
//! `changes.rs`).

mod changes;
mod members;
mod messages;
pub mod schema;

use diesel::sqlite::SqliteConnection;
use serde::Serialize;

pub use members::*;
pub use messages::*;
pub use schema::{MemberRow, ProfileRow, RepoRow};

use crate::actors::summary::TaskSummary;
use crate::actors::DomainResult;
use crate::runtime::{embed_migrations, Accepts, Connect, EmbeddedMigrations, Entity, Refusal, SnapshotError};

pub const TOPIC: &str = "organization";

pub struct Organization {
    pub id: String,
}

/// What `organizationUpdated` carries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSnapshot {
    pub organization_id: String,
    pub profile: ProfileRow,
    pub repos: Vec<RepoRow>,
    pub members: Vec<MemberRow>,
    pub task_summaries: Vec<TaskSummary>,
}

impl Organization {
    /// Four queries, whatever the number of repositories and tasks.
    fn build_snapshot(&self, db: &mut SqliteConnection) -> DomainResult<OrganizationSnapshot> {
        let profile = schema::require_profile(db, &self.id)?;
        Ok(OrganizationSnapshot {
            organization_id: self.id.clone(),
            profile,
            repos: schema::list_repos(db)?,
            members: schema::list_members(db)?,
            task_summaries: schema::list_task_summaries(db)?,
        })
    }
}

impl Entity for Organization {
    type Key = String;
    const KIND: &'static str = "organization";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/organization");

    fn load(key: &String, _: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(Organization { id: key.clone() })
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        crate::actors::topic_snapshot(Self::KIND, topic, TOPIC, || self.build_snapshot(db))
    }

    /// Only members subscribe to the organization's topic; the connection keeps the role they had when it opened.
    /// A subscriber inside the process (no caller) is the service itself.
    fn before_connect(&self, request: &Connect, db: &mut SqliteConnection) -> Result<serde_json::Value, Refusal> {
        let Some(user) = &request.caller else { return Ok(serde_json::Value::Null) };
        let member = schema::require_profile(db, &self.id).and_then(|_| schema::find_member(db, user));
        match member {
            Ok(Some(m)) => Ok(serde_json::json!({ "role": m.role })),
            Ok(None) => Err(Refusal::new("forbidden", format!("not a member of organization {:?}", self.id))),
            Err(crate::actors::DomainError::Db(e)) => {
                tracing::error!(org = %self.id, error = %e, "membership check failed");
                Err(Refusal::new("internal", "internal error; see the server log"))
            }
            Err(e) => Err(Refusal::new(e.code(), e.to_string())),
        }
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries
            .accept::<ApplyRepoSummary>()
            .accept::<ImportRepository>()
            .accept::<ApplySyncProgress>()
            .accept::<ApplyGitHubAccount>()
            .accept::<ApplyLinkedMember>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
        members::accept_remote(deliveries);
    }
}
