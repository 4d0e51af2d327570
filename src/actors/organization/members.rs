//! Membership: who may see and change the organization. The `members` table is the authority the HTTP layer checks
//! on every route and subscription; each change is also pushed to the user's own actor (their `app` snapshot lists
//! their organizations) through the outbox.

use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::schema::{self, MemberRow};
use super::{Organization, TOPIC};
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult};
use crate::runtime::{Mutation, Read, Tx};

/// What a member may do: owners and admins manage members and run admin operations; members use the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Member,
    Admin,
    Owner,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(MemberRole::Owner),
            "admin" => Some(MemberRole::Admin),
            "member" => Some(MemberRole::Member),
            _ => None,
        }
    }
}

impl MemberRow {
    /// The stored role (the table's CHECK constraint admits only the three names).
    pub fn role(&self) -> MemberRole {
        MemberRole::parse(&self.role).unwrap_or(MemberRole::Member)
    }
}

const SOURCE_MANUAL: &str = "manual";
const SOURCE_GITHUB: &str = "github";

fn check_user(user_id: &str, login: Option<&str>) -> DomainResult<()> {
    validate::user_id("user_id", user_id)?;
    if let Some(login) = login {
        validate::name("login", login, 100)?;
    }
    Ok(())
}

/// Adds a member or changes their role. Demoting the last owner is refused: an organization always has one.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AddMember {
    pub user_id: String,
    pub login: String,
    pub role: MemberRole,
    /// Who made the change (audit).
    pub by: Option<String>,
    /// Only add (an invitation): an existing member is refused with `Conflict`, decided in this transaction so that
    /// a keyed retry of the invitation replays it instead of meeting the member it added.
    pub new_only: bool,
}

/// Writes a member row and tells the user's actor (used by [`AddMember`] and organization creation).
pub(super) fn put_member(
    org: &Organization,
    tx: &mut Tx<'_>,
    user_id: &str,
    login: &str,
    role: MemberRole,
    source: &str,
) -> DomainResult<MemberRow> {
    let row = MemberRow {
        user_id: user_id.to_owned(),
        login: login.trim().to_owned(),
        role: role.as_str().to_owned(),
        state: "active".to_owned(),
        updated_at: now_ms(),
        source: source.to_owned(),
    };
    schema::upsert_member(tx.conn(), &row)?;
    // The user's `app` snapshot names the organization and their role without asking it: tell them both.
    let display_name = schema::require_profile(tx.conn(), &org.id)?.display_name;
    let grant = crate::actors::user::GrantOrganization {
        org_id: org.id.clone(),
        display_name: Some(display_name),
        role: Some(row.role.clone()),
    };
    tx.send(&row.user_id, &grant)?;
    let members = super::changes::members(tx.conn())?;
    tx.patch(TOPIC, vec![members]);
    Ok(row)
}

impl Mutation for AddMember {
    type Entity = Organization;
    type Output = MemberRow;
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<MemberRow> {
        schema::require_profile(tx.conn(), &org.id)?;
        check_user(&self.user_id, Some(&self.login))?;
        let before = schema::find_member(tx.conn(), &self.user_id)?;
        if self.new_only && before.is_some() {
            return Err(DomainError::Conflict(format!("{} is already a member", self.login)));
        }
        if before.as_ref().is_some_and(|m| m.role() == MemberRole::Owner && self.role != MemberRole::Owner) {
            refuse_last_owner(tx.conn())?;
        }
        // An admin's explicit change makes the membership manual: GitHub no longer removes it.
        let row = put_member(org, tx, &self.user_id, &self.login, self.role, SOURCE_MANUAL)?;
        let audit = Audit { user: self.by.as_deref(), ..Audit::org(&org.id) };
        let payload = serde_json::json!({ "userId": row.user_id, "role": row.role });
        audit.append(tx, if before.is_some() { "member.role_changed" } else { "member.added" }, payload)?;
        Ok(row)
    }
}

fn refuse_last_owner(conn: &mut SqliteConnection) -> DomainResult<()> {
    if schema::count_owners(conn)? <= 1 {
        return Err(DomainError::Conflict("an organization keeps at least one owner".into()));
    }
    Ok(())
}

/// Removes a member (not the last owner). Returns whether they were a member.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RemoveMember {
    pub user_id: String,
    pub by: Option<String>,
}

impl Mutation for RemoveMember {
    type Entity = Organization;
    type Output = bool;
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<bool> {
        schema::require_profile(tx.conn(), &org.id)?;
        check_user(&self.user_id, None)?;
        let Some(before) = schema::find_member(tx.conn(), &self.user_id)? else { return Ok(false) };
        if before.role() == MemberRole::Owner {
            refuse_last_owner(tx.conn())?;
        }
        schema::delete_member(tx.conn(), &self.user_id)?;
        tx.send(&self.user_id, &crate::actors::user::RevokeOrganization { org_id: org.id.clone() })?;
        let members = super::changes::members(tx.conn())?;
        tx.patch(TOPIC, vec![members]);
        let audit = Audit { user: self.by.as_deref(), ..Audit::org(&org.id) };
        audit.append(tx, "member.removed", serde_json::json!({ "userId": self.user_id }))?;
        Ok(true)
    }
}

/// One member, or `None` if the user is not a member (`NotFound` if the organization does not exist).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetMember {
    pub user_id: String,
}

impl Read for GetMember {
    type Entity = Organization;
    type Output = Option<MemberRow>;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<Option<MemberRow>> {
        schema::require_profile(db, &org.id)?;
        schema::find_member(db, &self.user_id)
    }
}

/// Every member, by user id.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ListMembers;

impl Read for ListMembers {
    type Entity = Organization;
    type Output = Vec<MemberRow>;
    type Error = DomainError;
    fn read(self, org: &Organization, db: &mut SqliteConnection) -> DomainResult<Vec<MemberRow>> {
        schema::require_profile(db, &org.id)?;
        schema::list_members(db)
    }
}

/// A user linked to an account of the organization's GitHub mirror (they signed in with it, or GitHub reported them
/// as a member): `present` adds them as a `member` unless they already are one; absent removes them only if they
/// joined that way and are not an owner. Sent by the auth directory through its outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyLinkedMember {
    pub user_id: String,
    pub login: String,
    pub present: bool,
}

impl Mutation for ApplyLinkedMember {
    type Entity = Organization;
    type Output = ();
    type Error = DomainError;
    fn apply(self, org: &Organization, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_user(&self.user_id, None)?;
        // An organization that does not exist (any more) has nobody to add.
        if schema::profile(tx.conn())?.is_none() {
            return Ok(());
        }
        let before = schema::find_member(tx.conn(), &self.user_id)?;
        let audit = Audit::org(&org.id);
        match (self.present, before) {
            (true, None) => {
                let login = if self.login.trim().is_empty() { self.user_id.clone() } else { self.login.clone() };
                put_member(org, tx, &self.user_id, &login, MemberRole::Member, SOURCE_GITHUB)?;
                audit.append(tx, "member.added", serde_json::json!({ "userId": self.user_id, "source": "github" }))
            }
            (false, Some(m)) if m.source == SOURCE_GITHUB && m.role() != MemberRole::Owner => {
                schema::delete_member(tx.conn(), &self.user_id)?;
                tx.send(&self.user_id, &crate::actors::user::RevokeOrganization { org_id: org.id.clone() })?;
                let members = super::changes::members(tx.conn())?;
                tx.patch(TOPIC, vec![members]);
                audit.append(tx, "member.removed", serde_json::json!({ "userId": self.user_id, "source": "github" }))
            }
            _ => Ok(()),
        }
    }
}

impl crate::runtime::Delivery for ApplyLinkedMember {
    const NAME: &'static str = "organization.apply_linked_member";
}

crate::actors::remote::remote_messages! {
    super::Organization;
    mutations: AddMember, RemoveMember, ApplyLinkedMember;
    reads: GetMember, ListMembers;
}
