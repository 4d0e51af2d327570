//! The `user` actor kind: one signed-in person, keyed by user id, with their own database.
//!
//! It owns the user row and profile (GitHub login, role, eligible organizations, starter-repo onboarding status and
//! the **default model**, a per-user preference), plus the per-user UI state of tasks and sessions: the active session
//! tab per task, and per session the unread flag and the unsent draft (text and code-line attachments). Task status
//! never derives from this state; the task actor overlays it for its viewer through [`GetTaskOverlay`].
//!
//! Topic `app` carries [`AppSnapshot`] (user, profile, default model, organizations); every mutation that changes it
//! touches the topic. Organization membership reaches it as [`GrantOrganization`] / [`RevokeOrganization`]
//! (deliveries from an organization's outbox), which edit the eligible organizations.
//!
//! It is also the authority on the user's sign-in sessions (token stored only as a SHA-256 hash, revocable one by one
//! or all at once) and linked OAuth accounts (with their access token, never listed); see [`auth`]. The app-level
//! [`AuthDirectory`](crate::actors::auth_directory::AuthDirectory) indexes them to route requests here.
//!
//! Messages and their validation limits are in [`messages`] and [`auth`], tables and queries in [`schema`];
//! migrations in `migrations/user/`.

pub mod auth;
pub mod messages;
pub mod schema;

use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity, SnapshotError};

pub use auth::*;
pub use messages::*;

/// The per-user topic of the app shell.
pub const APP_TOPIC: &str = "app";

/// The per-user topic of this user's overlay of one task (active session, unread marks, drafts): its snapshot is the
/// [`TaskOverlay`]. Only the user's own connections subscribe to it; they compose it with the shared task detail.
pub fn overlay_topic(task: &crate::actors::TaskKey) -> String {
    use crate::runtime::EntityKey;
    format!("{OVERLAY_TOPIC_PREFIX}{}", task.encode())
}

const OVERLAY_TOPIC_PREFIX: &str = "overlay/";

/// A user actor. Holds only its key (the user id); all state is in its SQLite database.
pub struct User {
    key: String,
}

impl User {
    /// The user id.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Entity for User {
    type Key = String;
    const KIND: &'static str = "user";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/user");

    fn load(key: &String, _db: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(User { key: key.clone() })
    }

    /// `app`: the [`AppSnapshot`], or `null` while the user has never been created; `overlay/<task>`: the
    /// [`TaskOverlay`] of that task (see [`overlay_topic`]).
    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        use crate::runtime::EntityKey;
        let unknown = || SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() };
        match topic {
            APP_TOPIC => Ok(serde_json::to_value(app_snapshot(db)?)?),
            _ => {
                let task = topic.strip_prefix(OVERLAY_TOPIC_PREFIX).ok_or_else(unknown)?;
                let task = crate::actors::TaskKey::decode(task).map_err(|_| unknown())?;
                Ok(serde_json::to_value(task_overlay(db, &task)?)?)
            }
        }
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<GrantOrganization>().accept::<RevokeOrganization>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
        auth::accept_remote(deliveries);
    }
}

/// Onboarding status of the starter repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StarterRepoStatus {
    Pending,
    Starred,
    Skipped,
}

impl StarterRepoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StarterRepoStatus::Pending => "pending",
            StarterRepoStatus::Starred => "starred",
            StarterRepoStatus::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(StarterRepoStatus::Pending),
            "starred" => Some(StarterRepoStatus::Starred),
            "skipped" => Some(StarterRepoStatus::Skipped),
            _ => None,
        }
    }
}

/// Who the user is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub email: String,
    pub avatar_url: Option<String>,
}

/// The user's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileInfo {
    pub github_login: Option<String>,
    pub role: String,
    pub eligible_org_ids: Vec<String>,
    pub starter_repo_status: StarterRepoStatus,
}

/// Everything stored about the user (reply of [`GetUser`] and [`UpsertUser`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSnapshot {
    pub user: UserInfo,
    pub profile: ProfileInfo,
    pub default_model: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One of the user's organizations, as the `app` snapshot and `GET /v1/orgs` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationEntry {
    pub id: String,
    /// The organization's display name (its id until the organization has told it).
    pub display_name: String,
    /// The user's role there (`owner`, `admin`, `member`); `None` until the organization has told it.
    pub role: Option<String>,
}

/// The `app` topic's snapshot (and reply of [`GetAppSnapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSnapshot {
    pub user: UserInfo,
    pub profile: ProfileInfo,
    pub default_model: String,
    /// The organizations the user may use, in the order they joined.
    pub organizations: Vec<OrganizationEntry>,
    /// Where the user's app opens: the one they last chose while still a member, else the first; `None` without any.
    pub active_organization_id: Option<String>,
}

/// A code line attached to a draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraftAttachment {
    /// Limits as [`SaveDraft`] checks them (tests/openapi.rs compares the two): at most `MAX_ID_CHARS` characters.
    #[schema(min_length = 1, max_length = 200)]
    pub id: String,
    /// At most `MAX_ATTACHMENT_PATH_CHARS` characters.
    #[schema(min_length = 1, max_length = 1024)]
    pub file_path: String,
    pub line_number: Option<u32>,
    /// At most `MAX_ATTACHMENT_LINE_BYTES` of UTF-8 (so never more characters than that; a quarter as many always
    /// fit). The same type is answered in drafts, so the schema states the bound every stored line meets.
    #[schema(max_length = 8192)]
    pub line_content: String,
}

/// The unsent message of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Draft {
    pub text: String,
    pub attachments: Vec<DraftAttachment>,
    /// When the draft was last saved; `None` if it never was.
    pub updated_at_ms: Option<i64>,
}

/// This user's state of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionOverlay {
    pub session_id: String,
    pub unread: bool,
    pub draft: Draft,
}

/// This user's state of one task (reply of [`GetTaskOverlay`]); sessions sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverlay {
    pub active_session_id: Option<String>,
    pub sessions: Vec<SessionOverlay>,
}

fn user_info(row: schema::UserRow) -> UserInfo {
    UserInfo { id: row.user_id, name: row.name, email: row.email, avatar_url: row.avatar_url }
}

fn profile_info(row: &schema::ProfileRow) -> diesel::QueryResult<ProfileInfo> {
    let starter_repo_status = StarterRepoStatus::parse(&row.starter_repo_status).ok_or_else(|| {
        diesel::result::Error::DeserializationError(
            format!("unknown starter repo status {:?}", row.starter_repo_status).into(),
        )
    })?;
    Ok(ProfileInfo {
        github_login: row.github_login.clone(),
        role: row.role.clone(),
        eligible_org_ids: schema::decode_json(&row.eligible_org_ids)?,
        starter_repo_status,
    })
}

/// The full user (one query); `None` if never created.
pub fn user_snapshot(db: &mut SqliteConnection) -> diesel::QueryResult<Option<UserSnapshot>> {
    let Some((user, profile)) = schema::find_user_with_profile(db)? else { return Ok(None) };
    Ok(Some(UserSnapshot {
        profile: profile_info(&profile)?,
        default_model: profile.default_model,
        created_at_ms: user.created_at,
        updated_at_ms: user.updated_at.max(profile.updated_at),
        user: user_info(user),
    }))
}

/// The `app` snapshot (two queries); `None` if the user was never created.
pub fn app_snapshot(db: &mut SqliteConnection) -> diesel::QueryResult<Option<AppSnapshot>> {
    let Some((user, profile)) = schema::find_user_with_profile(db)? else { return Ok(None) };
    let mut details: std::collections::HashMap<String, schema::OrgDetailsRow> =
        schema::org_details(db)?.into_iter().map(|d| (d.org_id.clone(), d)).collect();
    let info = profile_info(&profile)?;
    let organizations: Vec<OrganizationEntry> = info
        .eligible_org_ids
        .iter()
        .map(|id| match details.remove(id) {
            Some(d) => OrganizationEntry { id: id.clone(), display_name: d.display_name, role: Some(d.role) },
            None => OrganizationEntry { id: id.clone(), display_name: id.clone(), role: None },
        })
        .collect();
    let active_organization_id = profile
        .active_org_id
        .filter(|a| organizations.iter().any(|o| o.id == *a))
        .or_else(|| organizations.first().map(|o| o.id.clone()));
    Ok(Some(AppSnapshot {
        user: user_info(user),
        profile: info,
        default_model: profile.default_model,
        organizations,
        active_organization_id,
    }))
}

fn session_overlay(row: schema::SessionStateRow) -> diesel::QueryResult<SessionOverlay> {
    Ok(SessionOverlay {
        session_id: row.session_id,
        unread: row.unread,
        draft: Draft {
            text: row.draft_text,
            attachments: schema::decode_json(&row.draft_attachments)?,
            updated_at_ms: row.draft_updated_at,
        },
    })
}

/// This user's overlay of `task` (two queries); `None` if the user was never created.
pub fn task_overlay(
    db: &mut SqliteConnection,
    task: &crate::actors::TaskKey,
) -> diesel::QueryResult<Option<TaskOverlay>> {
    let Some((active_session_id, rows)) = schema::task_overlay(db, task)? else { return Ok(None) };
    let sessions = rows.into_iter().map(session_overlay).collect::<diesel::QueryResult<_>>()?;
    Ok(Some(TaskOverlay { active_session_id, sessions }))
}
