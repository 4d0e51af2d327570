//! Messages of the organization: its profile, its repository index and the task summaries its repositories push.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::changes;
use super::schema::{self, organization_profile, repos, RepoRow};
use super::{Organization, OrganizationSnapshot, TOPIC};
use crate::actors::repository::InitializeRepository;
use crate::actors::summary::TaskSummary;
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult, RepoKey};
use crate::runtime::{Delivery, Mutation, Read, Tx};

/// Personal account or GitHub organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Personal,
    Organization,
}

impl OrgKind {
    fn as_str(self) -> &'static str {
        match self {
            OrgKind::Personal => "personal",
            OrgKind::Organization => "organization",
        }
    }
}

/// Creates the organization (once), with its first owner if given (in the same transaction, so an organization
/// created over the API is never left without one).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CreateOrganization {
    pub login: String,
    pub display_name: String,
    pub kind: OrgKind,
    pub owner: Option<Owner>,
}

/// The first owner of a new organization.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub user_id: String,
    pub login: String,
}

impl CreateOrganization {
    /// Every check that does not need the organization's state. The HTTP layer runs it before the mutation too:
    /// a refused creation must not leave an organization database behind.
    pub fn validate(&self, org_id: &str) -> DomainResult<()> {
        validate::org_id("id", org_id)?;
        validate::name("login", &self.login, 100)?;
        validate::display_name("display_name", &self.display_name)?;
        if let Some(owner) = &self.owner {
            validate::user_id("owner.user_id", &owner.user_id)?;
            validate::name("owner.login", &owner.login, 100)?;
        }
        Ok(())
    }
}

impl Mutation for CreateOrganization {
    type Entity = Organization;
    type Output = ();
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<()> {
        self.validate(&org.id)?;
        if schema::profile(tx.conn())?.is_some() {
            return Err(DomainError::Conflict(format!("organization {:?} already exists", org.id)));
        }
        let now = now_ms();
        diesel::insert_into(organization_profile::table)
            .values((
                organization_profile::id.eq(1),
                organization_profile::login.eq(self.login.trim()),
                organization_profile::display_name.eq(self.display_name.trim()),
                organization_profile::kind.eq(self.kind.as_str()),
                organization_profile::created_at.eq(now),
                organization_profile::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        if let Some(owner) = &self.owner {
            super::members::put_member(org, tx, &owner.user_id, &owner.login, super::MemberRole::Owner, "manual")?;
        }
        tx.touch(TOPIC);
        let audit = Audit { user: self.owner.as_ref().map(|o| o.user_id.as_str()), ..Audit::org(&org.id) };
        audit.append(tx, "organization.created", serde_json::json!({ "login": self.login }))
    }
}

/// Imports a repository: the organization is its coordinator and alone creates it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AddRepository {
    pub repo_id: String,
    pub full_name: String,
    pub remote_url: String,
    pub default_branch: String,
    pub user_id: Option<String>,
}

impl Mutation for AddRepository {
    type Entity = Organization;
    type Output = RepoRow;
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<RepoRow> {
        schema::require_profile(tx.conn(), &org.id)?;
        validate::repo_id("repo_id", &self.repo_id)?;
        validate::name("full_name", &self.full_name, 200)?;
        validate::name("remote_url", &self.remote_url, 2000)?;
        validate::branch(&self.default_branch).map_err(|e| e.with_field("default_branch"))?;
        if schema::find_repo(tx.conn(), &self.repo_id)?.is_some() {
            return Err(DomainError::Conflict(format!("repository {:?} already exists", self.repo_id)));
        }
        let row = RepoRow {
            repo_id: self.repo_id.clone(),
            full_name: self.full_name.trim().to_owned(),
            remote_url: self.remote_url.trim().to_owned(),
            default_branch: self.default_branch.clone(),
            task_count: 0,
            latest_activity_at: None,
            created_at: now_ms(),
        };
        diesel::insert_into(repos::table).values(&row).execute(tx.conn()).map_err(|e| match e {
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                DomainError::Conflict(format!("repository {:?} is already imported", self.full_name))
            }
            e => e.into(),
        })?;
        let init = InitializeRepository {
            full_name: row.full_name.clone(),
            remote_url: row.remote_url.clone(),
            default_branch: row.default_branch.clone(),
        };
        tx.send(&RepoKey::new(&org.id, &row.repo_id), &init)?;
        let added = changes::repo(tx.conn(), &row.repo_id, true)?;
        tx.patch(TOPIC, vec![added]);
        let audit = Audit { repo: Some(&row.repo_id), user: self.user_id.as_deref(), ..Audit::org(&org.id) };
        audit.append(tx, "repository.added", serde_json::json!({ "fullName": row.full_name }))?;
        Ok(row)
    }
}

/// A repository's summary, pushed up after its tasks change: its counters and the task summaries that changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRepoSummary {
    pub repo_id: String,
    pub task_count: i32,
    pub latest_activity_at: Option<i64>,
    pub changed: Vec<TaskSummary>,
}

impl Mutation for ApplyRepoSummary {
    type Entity = Organization;
    type Output = ();
    type Error = DomainError;
    fn apply(self, _: &Organization, tx: &mut Tx<'_>) -> DomainResult<()> {
        let updated = diesel::update(repos::table.find(&self.repo_id))
            .set((repos::task_count.eq(self.task_count), repos::latest_activity_at.eq(self.latest_activity_at)))
            .execute(tx.conn())?;
        if updated == 0 {
            return Err(DomainError::not_found("repository", &self.repo_id));
        }
        let mut ops = vec![changes::repo(tx.conn(), &self.repo_id, false)?];
        for summary in &self.changed {
            changes::put_task_summary(tx.conn(), summary, &mut ops)?;
        }
        tx.patch(TOPIC, ops);
        Ok(())
    }
}

impl Delivery for ApplyRepoSummary {
    const NAME: &'static str = "organization.apply_repo_summary";
}

/// Recovery: replaces everything the organization holds about one repository's tasks with `tasks` (as read from the
/// repository coordinator).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AdminReplaceRepoTasks {
    pub repo_id: String,
    pub tasks: Vec<TaskSummary>,
}

impl Mutation for AdminReplaceRepoTasks {
    type Entity = Organization;
    type Output = usize;
    type Error = DomainError;
    fn apply(self, _: &Organization, tx: &mut Tx<'_>) -> DomainResult<usize> {
        if schema::find_repo(tx.conn(), &self.repo_id)?.is_none() {
            return Err(DomainError::not_found("repository", &self.repo_id));
        }
        schema::delete_repo_summaries(tx.conn(), &self.repo_id)?;
        for summary in &self.tasks {
            schema::upsert_task_summary(tx.conn(), summary)?;
        }
        let latest = self.tasks.iter().map(|t| t.updated_at).max();
        diesel::update(repos::table.find(&self.repo_id))
            .set((repos::task_count.eq(self.tasks.len() as i32), repos::latest_activity_at.eq(latest)))
            .execute(tx.conn())?;
        tx.touch(TOPIC);
        Ok(self.tasks.len())
    }
}

/// The organization snapshot (profile, repositories, task summaries of all repositories).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetOrganizationSnapshot;

impl Read for GetOrganizationSnapshot {
    type Entity = Organization;
    type Output = OrganizationSnapshot;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<OrganizationSnapshot> {
        org.build_snapshot(db)
    }
}

/// The profile alone (cheap, whatever the number of repositories and tasks).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetOrganizationProfile;

impl Read for GetOrganizationProfile {
    type Entity = Organization;
    type Output = schema::ProfileRow;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<schema::ProfileRow> {
        schema::require_profile(db, &org.id)
    }
}

/// One repository of the index.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetRepository {
    pub repo_id: String,
}

impl Read for GetRepository {
    type Entity = Organization;
    type Output = RepoRow;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<RepoRow> {
        schema::require_profile(db, &org.id)?;
        schema::find_repo(db, &self.repo_id)?.ok_or_else(|| DomainError::not_found("repository", &self.repo_id))
    }
}

/// The repository index.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ListRepositories;

impl Read for ListRepositories {
    type Entity = Organization;
    type Output = Vec<RepoRow>;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<Vec<RepoRow>> {
        schema::require_profile(db, &org.id)?;
        schema::list_repos(db)
    }
}

/// A repository found by the GitHub sync: imported into the index (once) and its coordinator initialised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRepository {
    pub repo_id: String,
    pub full_name: String,
    pub remote_url: String,
    pub default_branch: String,
}

impl Mutation for ImportRepository {
    type Entity = Organization;
    type Output = bool;
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<bool> {
        schema::require_profile(tx.conn(), &org.id)?;
        if schema::find_repo(tx.conn(), &self.repo_id)?.is_some() {
            return Ok(false);
        }
        let row = RepoRow {
            repo_id: self.repo_id.clone(),
            full_name: self.full_name.clone(),
            remote_url: self.remote_url.clone(),
            default_branch: self.default_branch.clone(),
            task_count: 0,
            latest_activity_at: None,
            created_at: now_ms(),
        };
        diesel::insert_into(repos::table).values(&row).execute(tx.conn())?;
        let init = InitializeRepository {
            full_name: self.full_name,
            remote_url: self.remote_url,
            default_branch: self.default_branch,
        };
        tx.send(&RepoKey::new(&org.id, &row.repo_id), &init)?;
        let added = changes::repo(tx.conn(), &row.repo_id, true)?;
        tx.patch(TOPIC, vec![added]);
        Ok(true)
    }
}

impl Delivery for ImportRepository {
    const NAME: &'static str = "organization.import_repository";

    /// A sync can run before the organization was created: retry until it exists.
    fn is_retryable(error: &DomainError) -> bool {
        matches!(error, DomainError::NotFound { what: "organization", .. })
    }
}

/// The GitHub account the organization is connected to, as its login is now (sent by the github-data actor on connect
/// and when a delivery shows the account renamed): the profile's `login` and `kind` show it. The organization's id
/// stays what it was created with: ids are foundry's own namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyGitHubAccount {
    pub login: String,
    pub kind: OrgKind,
}

impl Mutation for ApplyGitHubAccount {
    type Entity = Organization;
    type Output = ();
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<()> {
        schema::require_profile(tx.conn(), &org.id)?;
        validate::name("login", &self.login, 100)?;
        diesel::update(organization_profile::table.find(1))
            .set((
                organization_profile::login.eq(self.login.trim()),
                organization_profile::kind.eq(self.kind.as_str()),
                organization_profile::updated_at.eq(now_ms()),
            ))
            .execute(tx.conn())?;
        tx.touch(TOPIC);
        Ok(())
    }
}

impl Delivery for ApplyGitHubAccount {
    const NAME: &'static str = "organization.apply_github_account";

    fn is_retryable(error: &DomainError) -> bool {
        matches!(error, DomainError::NotFound { what: "organization", .. })
    }
}

/// GitHub sync progress, pushed by the github-data actor; the organization snapshot shows it live.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplySyncProgress {
    pub generation: i32,
    pub status: String,
    pub phase: Option<String>,
    pub synced: i32,
    pub total: i32,
    pub error: Option<String>,
    pub finished_at: Option<i64>,
}

impl Mutation for ApplySyncProgress {
    type Entity = Organization;
    type Output = ();
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<()> {
        let profile = schema::require_profile(tx.conn(), &org.id)?;
        // Progress of an older sync arriving late never overwrites a newer one.
        if self.generation < profile.sync_generation {
            return Ok(());
        }
        diesel::update(organization_profile::table.find(1))
            .set((
                organization_profile::sync_generation.eq(self.generation),
                organization_profile::sync_status.eq(&self.status),
                organization_profile::sync_phase.eq(&self.phase),
                organization_profile::sync_synced.eq(self.synced),
                organization_profile::sync_total.eq(self.total),
                organization_profile::sync_error.eq(&self.error),
                organization_profile::last_sync_at.eq(self.finished_at.or(profile.last_sync_at)),
                organization_profile::updated_at.eq(now_ms()),
            ))
            .execute(tx.conn())?;
        let profile = changes::profile(tx.conn(), &org.id)?;
        tx.patch(TOPIC, vec![profile]);
        Ok(())
    }
}

impl Delivery for ApplySyncProgress {
    const NAME: &'static str = "organization.apply_sync_progress";

    fn is_retryable(error: &DomainError) -> bool {
        matches!(error, DomainError::NotFound { what: "organization", .. })
    }
}

crate::actors::remote::remote_messages! {
    super::Organization;
    mutations: CreateOrganization, AddRepository, ApplyRepoSummary, AdminReplaceRepoTasks, ImportRepository, ApplyGitHubAccount, ApplySyncProgress;
    reads: GetOrganizationSnapshot, GetOrganizationProfile, GetRepository, ListRepositories;
}
