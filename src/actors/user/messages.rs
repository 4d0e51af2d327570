//! Messages of the user actor and their handlers. Every mutation validates its input before touching the database and
//! refuses with [`DomainError::Invalid`] (or [`DomainError::NotFound`] for a user never upserted), changing nothing.
//! Mutations that change the [`AppSnapshot`] touch the `app` topic; writes that change nothing touch nothing.
//! Auth sessions and OAuth accounts are in [`super::auth`].

use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::schema::{self, ProfileRow, UserRow};
use super::{
    app_snapshot, overlay_topic, task_overlay, user_snapshot, AppSnapshot, Draft, DraftAttachment, ProfileInfo,
    StarterRepoStatus, TaskOverlay, User, UserSnapshot, APP_TOPIC,
};
use crate::actors::{models, now_ms, validate, DomainError, DomainResult, SessionKey, TaskKey};
use crate::runtime::{Delivery, Mutation, Read, Tx};

/// Longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email address, in characters.
pub const MAX_EMAIL_CHARS: usize = 320;
/// Longest avatar URL, in characters.
pub const MAX_AVATAR_URL_CHARS: usize = 2048;
/// Longest GitHub login, in characters (GitHub's own limit).
pub const MAX_GITHUB_LOGIN_CHARS: usize = 39;
/// Longest role name, in characters.
pub const MAX_ROLE_CHARS: usize = 64;
/// Longest id (organization, repository, task, session, attachment), in characters.
pub const MAX_ID_CHARS: usize = 200;
/// Most eligible organizations.
pub const MAX_ELIGIBLE_ORGS: usize = 1000;
/// Largest draft text, in bytes (64 KiB).
pub const MAX_DRAFT_TEXT_BYTES: usize = 64 * 1024;
/// Most attachments of one draft.
pub const MAX_DRAFT_ATTACHMENTS: usize = 20;
/// Longest attachment file path, in characters.
pub const MAX_ATTACHMENT_PATH_CHARS: usize = 1024;
/// Largest attached line, in bytes (8 KiB).
pub const MAX_ATTACHMENT_LINE_BYTES: usize = 8 * 1024;

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn check_id(field: &'static str, what: &str, id: &str) -> DomainResult<()> {
    if id.is_empty() {
        return Err(DomainError::invalid(field, format!("{what} is empty")));
    }
    if chars(id) > MAX_ID_CHARS {
        return Err(DomainError::invalid(field, format!("{what} is longer than {MAX_ID_CHARS} characters")));
    }
    Ok(())
}

fn check_task(task: &TaskKey) -> DomainResult<()> {
    check_id("task", "organization id", &task.org)?;
    check_id("task", "repository id", &task.repo)?;
    check_id("task", "task id", &task.task)
}

fn check_session(session: &SessionKey) -> DomainResult<()> {
    check_id("session", "organization id", &session.org)?;
    check_id("session", "repository id", &session.repo)?;
    check_id("session", "task id", &session.task)?;
    check_id("session", "session id", &session.session)
}

fn not_found(user: &User) -> DomainError {
    DomainError::not_found("user", user.key())
}

pub(super) fn require_user(user: &User, conn: &mut SqliteConnection) -> DomainResult<()> {
    if schema::user_exists(conn)? {
        Ok(())
    } else {
        Err(not_found(user))
    }
}

fn require_profile(user: &User, conn: &mut SqliteConnection) -> DomainResult<ProfileRow> {
    schema::find_profile(conn)?.ok_or_else(|| not_found(user))
}

/// Writes `profile` if it differs from `before` and touches `app`; returns whether it changed.
fn save_profile_if_changed(tx: &mut Tx<'_>, before: &ProfileRow, mut profile: ProfileRow) -> DomainResult<bool> {
    if profile == *before {
        return Ok(false);
    }
    profile.updated_at = now_ms();
    schema::save_profile(tx.conn(), &profile)?;
    tx.touch(APP_TOPIC);
    Ok(true)
}

/// Creates the user (with a profile whose default model is the catalog's default, [`models::default_for`]) or updates
/// name, email and avatar (and replaces a default model the catalog no longer offers). Replies with the stored user.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UpsertUser {
    pub name: String,
    pub email: String,
    pub avatar_url: Option<String>,
}

impl UpsertUser {
    fn validate(&self) -> DomainResult<()> {
        validate::name("name", &self.name, MAX_NAME_CHARS)?;
        if !self.email.contains('@') {
            return Err(DomainError::invalid("email", "is not an email address"));
        }
        if chars(&self.email) > MAX_EMAIL_CHARS {
            return Err(DomainError::invalid("email", format!("is longer than {MAX_EMAIL_CHARS} characters")));
        }
        if let Some(url) = &self.avatar_url {
            if chars(url) > MAX_AVATAR_URL_CHARS {
                return Err(DomainError::invalid(
                    "avatar_url",
                    format!("is longer than {MAX_AVATAR_URL_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }
}

impl Mutation for UpsertUser {
    type Entity = User;
    type Output = UserSnapshot;
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<UserSnapshot> {
        self.validate()?;
        let now = now_ms();
        match schema::find_user(tx.conn())? {
            None => {
                let row = UserRow {
                    user_id: user.key().to_owned(),
                    name: self.name.trim().to_owned(),
                    email: self.email,
                    avatar_url: self.avatar_url,
                    created_at: now,
                    updated_at: now,
                };
                // From the live catalog: a fixed name may not exist on the agent server in use.
                let default_model = models::default_for(tx);
                schema::insert_user(tx.conn(), &row, &default_model)?;
                tx.touch(APP_TOPIC);
            }
            Some(before) => {
                let row = UserRow {
                    name: self.name.trim().to_owned(),
                    email: self.email,
                    avatar_url: self.avatar_url,
                    ..before.clone()
                };
                if row != before {
                    schema::save_user(tx.conn(), &UserRow { updated_at: now, ..row })?;
                    tx.touch(APP_TOPIC);
                }
                // A default the catalog no longer offers would make every task this user creates fail validation.
                if let Some(profile) = schema::find_profile(tx.conn())? {
                    if !models::is_allowed(tx, &profile.default_model) {
                        let default_model = models::default_for(tx);
                        save_profile_if_changed(tx, &profile, ProfileRow { default_model, ..profile.clone() })?;
                    }
                }
            }
        }
        user_snapshot(tx.conn())?.ok_or_else(|| not_found(user))
    }
}

/// Updates the profile fields that are `Some`; the others stay. Eligible organization ids are stored deduplicated, in
/// the given order. Replies with the stored profile.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct UpdateProfile {
    pub github_login: Option<String>,
    pub role: Option<String>,
    pub eligible_org_ids: Option<Vec<String>>,
}

impl UpdateProfile {
    fn validate(&self) -> DomainResult<()> {
        if let Some(login) = &self.github_login {
            if login.is_empty() || chars(login) > MAX_GITHUB_LOGIN_CHARS {
                return Err(DomainError::invalid(
                    "github_login",
                    format!("must be 1 to {MAX_GITHUB_LOGIN_CHARS} characters"),
                ));
            }
        }
        if let Some(role) = &self.role {
            if role.trim().is_empty() || chars(role) > MAX_ROLE_CHARS {
                return Err(DomainError::invalid("role", format!("must be 1 to {MAX_ROLE_CHARS} characters")));
            }
        }
        if let Some(ids) = &self.eligible_org_ids {
            if ids.len() > MAX_ELIGIBLE_ORGS {
                return Err(DomainError::invalid(
                    "eligible_org_ids",
                    format!("more than {MAX_ELIGIBLE_ORGS} organizations"),
                ));
            }
            for id in ids {
                check_id("eligible_org_ids", "organization id", id)?;
            }
        }
        Ok(())
    }
}

impl Mutation for UpdateProfile {
    type Entity = User;
    type Output = ProfileInfo;
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<ProfileInfo> {
        self.validate()?;
        let before = require_profile(user, tx.conn())?;
        let mut profile = before.clone();
        if let Some(login) = self.github_login {
            profile.github_login = Some(login);
        }
        if let Some(role) = self.role {
            profile.role = role;
        }
        if let Some(ids) = self.eligible_org_ids {
            let mut unique: Vec<String> = Vec::with_capacity(ids.len());
            for id in ids {
                if !unique.contains(&id) {
                    unique.push(id);
                }
            }
            profile.eligible_org_ids = schema::encode_json(&unique)?;
        }
        let info = super::profile_info(&profile)?;
        save_profile_if_changed(tx, &before, profile)?;
        Ok(info)
    }
}

/// Applies `edit` to the eligible organization ids, saving (and touching `app`) only if they changed. A user never
/// upserted has no profile to reflect anything in: nothing happens, successfully.
fn edit_eligible_orgs(tx: &mut Tx<'_>, edit: impl FnOnce(&mut Vec<String>) -> DomainResult<()>) -> DomainResult<()> {
    let Some(before) = schema::find_profile(tx.conn())? else { return Ok(()) };
    let mut ids: Vec<String> = schema::decode_json(&before.eligible_org_ids)?;
    edit(&mut ids)?;
    let profile = ProfileRow { eligible_org_ids: schema::encode_json(&ids)?, ..before.clone() };
    save_profile_if_changed(tx, &before, profile)?;
    Ok(())
}

/// Reflects a membership in the user's eligible organizations (appended; already there: no change to the list) with
/// what the organization tells about it: its display name and the user's role, stored for the `app` snapshot. Sent
/// again by the organization whenever either changes. A no-op for a user never upserted, as the organization's
/// member table, not this list, authorizes. Deliverable from the organization's outbox (`user.grant_organization`)
/// or sent directly with `registry.mutate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantOrganization {
    pub org_id: String,
    /// Absent in deliveries queued before organizations sent it: the details stay as they were.
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

impl GrantOrganization {
    /// A grant without details (the list only).
    pub fn new(org_id: impl Into<String>) -> Self {
        GrantOrganization { org_id: org_id.into(), display_name: None, role: None }
    }
}

impl Mutation for GrantOrganization {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_id("org_id", "organization id", &self.org_id)?;
        if schema::find_profile(tx.conn())?.is_none() {
            return Ok(());
        }
        edit_eligible_orgs(tx, |ids| {
            if ids.contains(&self.org_id) {
                return Ok(());
            }
            if ids.len() >= MAX_ELIGIBLE_ORGS {
                return Err(DomainError::invalid("org_id", format!("more than {MAX_ELIGIBLE_ORGS} organizations")));
            }
            ids.push(self.org_id.clone());
            Ok(())
        })?;
        if let (Some(display_name), Some(role)) = (self.display_name, self.role) {
            let row = schema::OrgDetailsRow { org_id: self.org_id, display_name, role };
            if schema::put_org_details(tx.conn(), &row, now_ms())? {
                tx.touch(APP_TOPIC);
            }
        }
        Ok(())
    }
}

impl Delivery for GrantOrganization {
    const NAME: &'static str = "user.grant_organization";
}

/// Removes an organization from the user's eligible organizations, with its details (absent: no change; user never
/// upserted: no-op); the app opens elsewhere if it was the active one. Deliverable (`user.revoke_organization`) or
/// sent directly, like [`GrantOrganization`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeOrganization {
    pub org_id: String,
}

impl Mutation for RevokeOrganization {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_id("org_id", "organization id", &self.org_id)?;
        let Some(before) = schema::find_profile(tx.conn())? else { return Ok(()) };
        let mut ids: Vec<String> = schema::decode_json(&before.eligible_org_ids)?;
        ids.retain(|id| *id != self.org_id);
        let active = before.active_org_id.clone().filter(|a| *a != self.org_id);
        let profile =
            ProfileRow { eligible_org_ids: schema::encode_json(&ids)?, active_org_id: active, ..before.clone() };
        save_profile_if_changed(tx, &before, profile)?;
        if schema::delete_org_details(tx.conn(), &self.org_id)? {
            tx.touch(APP_TOPIC);
        }
        Ok(())
    }
}

impl Delivery for RevokeOrganization {
    const NAME: &'static str = "user.revoke_organization";
}

/// Chooses the organization the user's app opens in (`activeOrganizationId` of the `app` snapshot). The caller
/// checks membership first (the organization's member table is the authority): the user's own list may not have
/// received a new membership yet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SetActiveOrganization {
    pub org_id: String,
}

impl Mutation for SetActiveOrganization {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_id("org_id", "organization id", &self.org_id)?;
        let before = require_profile(user, tx.conn())?;
        let profile = ProfileRow { active_org_id: Some(self.org_id), ..before.clone() };
        save_profile_if_changed(tx, &before, profile)?;
        Ok(())
    }
}

/// Sets the user's default model (a model of the catalog, see [`models::is_known_model`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SetDefaultModel {
    pub model: String,
}

impl Mutation for SetDefaultModel {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        if !models::is_allowed(tx, &self.model) {
            return Err(DomainError::invalid("model", format!("unknown model {:?}", self.model)));
        }
        let before = require_profile(user, tx.conn())?;
        let profile = ProfileRow { default_model: self.model, ..before.clone() };
        save_profile_if_changed(tx, &before, profile)?;
        Ok(())
    }
}

/// Records the starter-repository onboarding choice (`Starred` or `Skipped`; `Pending` is only the initial state).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SetStarterRepoStatus {
    pub status: StarterRepoStatus,
}

impl Mutation for SetStarterRepoStatus {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        if self.status == StarterRepoStatus::Pending {
            return Err(DomainError::invalid("status", "must be starred or skipped"));
        }
        let before = require_profile(user, tx.conn())?;
        let profile = ProfileRow { starter_repo_status: self.status.as_str().to_owned(), ..before.clone() };
        save_profile_if_changed(tx, &before, profile)?;
        Ok(())
    }
}

/// Sets which session tab of `task` the user has open.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SetActiveSession {
    pub task: TaskKey,
    pub session_id: String,
}

impl Mutation for SetActiveSession {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_task(&self.task)?;
        check_id("session_id", "session id", &self.session_id)?;
        require_user(user, tx.conn())?;
        schema::set_active_session(tx.conn(), &self.task, &self.session_id, now_ms())?;
        tx.touch(&overlay_topic(&self.task));
        Ok(())
    }
}

/// Marks a session read or unread for this user.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MarkSessionUnread {
    pub session: SessionKey,
    pub unread: bool,
}

impl Mutation for MarkSessionUnread {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_session(&self.session)?;
        require_user(user, tx.conn())?;
        schema::set_unread(tx.conn(), &self.session, self.unread, now_ms())?;
        tx.touch(&overlay_topic(&self.session.task_key()));
        Ok(())
    }
}

/// Replaces the draft of a session (text and attachments). Limits: [`MAX_DRAFT_TEXT_BYTES`],
/// [`MAX_DRAFT_ATTACHMENTS`], [`MAX_ATTACHMENT_PATH_CHARS`], [`MAX_ATTACHMENT_LINE_BYTES`]. Replies with the stored
/// draft.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SaveDraft {
    pub session: SessionKey,
    pub text: String,
    pub attachments: Vec<DraftAttachment>,
}

impl SaveDraft {
    fn validate(&self) -> DomainResult<()> {
        check_session(&self.session)?;
        if self.text.len() > MAX_DRAFT_TEXT_BYTES {
            return Err(DomainError::invalid("draft", format!("text is larger than {MAX_DRAFT_TEXT_BYTES} bytes")));
        }
        if self.attachments.len() > MAX_DRAFT_ATTACHMENTS {
            return Err(DomainError::invalid("attachments", format!("more than {MAX_DRAFT_ATTACHMENTS} attachments")));
        }
        for a in &self.attachments {
            check_id("attachments", "attachment id", &a.id)?;
            if a.file_path.is_empty() || chars(&a.file_path) > MAX_ATTACHMENT_PATH_CHARS {
                return Err(DomainError::invalid(
                    "attachments",
                    format!("file path must be 1 to {MAX_ATTACHMENT_PATH_CHARS} characters"),
                ));
            }
            if a.line_content.len() > MAX_ATTACHMENT_LINE_BYTES {
                return Err(DomainError::invalid(
                    "attachments",
                    format!("line content is larger than {MAX_ATTACHMENT_LINE_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

impl Mutation for SaveDraft {
    type Entity = User;
    type Output = Draft;
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<Draft> {
        self.validate()?;
        require_user(user, tx.conn())?;
        let now = now_ms();
        let attachments_json = schema::encode_json(&self.attachments)?;
        schema::save_draft(tx.conn(), &self.session, &self.text, &attachments_json, now)?;
        tx.touch(&overlay_topic(&self.session.task_key()));
        Ok(Draft { text: self.text, attachments: self.attachments, updated_at_ms: Some(now) })
    }
}

/// The stored user with profile and default model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetUser;

impl Read for GetUser {
    type Entity = User;
    type Output = UserSnapshot;
    type Error = DomainError;

    fn read(self, user: &User, db: &mut SqliteConnection) -> DomainResult<UserSnapshot> {
        user_snapshot(db)?.ok_or_else(|| not_found(user))
    }
}

/// This user's state of one task: active session and, per session, unread flag and draft (two queries in all).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetTaskOverlay {
    pub task: TaskKey,
}

impl Read for GetTaskOverlay {
    type Entity = User;
    type Output = TaskOverlay;
    type Error = DomainError;

    fn read(self, user: &User, db: &mut SqliteConnection) -> DomainResult<TaskOverlay> {
        task_overlay(db, &self.task)?.ok_or_else(|| not_found(user))
    }
}

/// The `app` snapshot, as the topic publishes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetAppSnapshot;

impl Read for GetAppSnapshot {
    type Entity = User;
    type Output = AppSnapshot;
    type Error = DomainError;

    fn read(self, user: &User, db: &mut SqliteConnection) -> DomainResult<AppSnapshot> {
        app_snapshot(db)?.ok_or_else(|| not_found(user))
    }
}

crate::actors::remote::remote_messages! {
    super::User;
    mutations: UpsertUser, UpdateProfile, GrantOrganization, RevokeOrganization, SetActiveOrganization, SetDefaultModel, SetStarterRepoStatus, SetActiveSession, MarkSessionUnread, SaveDraft;
    reads: GetUser, GetTaskOverlay, GetAppSnapshot;
}
