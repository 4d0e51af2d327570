//! Organization membership from linked accounts. Each organization's GitHub mirror reports its members' accounts
//! ([`SetOrganizationAccounts`], after every members sync and member webhook); a user is a member of the organizations
//! that list an account they signed in with. Both directions go to the organization as [`ApplyLinkedMember`] through
//! the outbox: an account reported for a user who already signed in, and a sign-in with an account already reported.

use serde::{Deserialize, Serialize};

use super::messages::MAX_ACCOUNT_ID_CHARS;
use super::schema;
use super::AuthDirectory;
use crate::actors::organization::ApplyLinkedMember;
use crate::actors::{validate, DomainError, DomainResult};
use crate::runtime::{Delivery, Mutation, Tx};

/// Tells each organization listing this account that `user_id` is theirs (idempotent on the organization's side).
pub(super) fn link_to_orgs(tx: &mut Tx<'_>, provider: &str, account_id: &str, user_id: &str) -> DomainResult<()> {
    for (org_id, login) in schema::orgs_of_account(tx.conn(), provider, account_id)? {
        tx.send(&org_id, &ApplyLinkedMember { user_id: user_id.to_owned(), login, present: true })?;
    }
    Ok(())
}

/// One member account of an organization, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgAccount {
    pub account_id: String,
    pub login: String,
}

/// Replaces the accounts `provider` reports for an organization. Accounts that appeared and belong to a signed-in
/// user make that user a member; accounts that disappeared remove users who joined that way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOrganizationAccounts {
    pub org_id: String,
    pub provider: String,
    pub accounts: Vec<OrgAccount>,
}

impl Mutation for SetOrganizationAccounts {
    type Entity = AuthDirectory;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::org_id("org_id", &self.org_id)?;
        validate::id("provider", &self.provider)?;
        let mut now: Vec<(String, String)> = Vec::with_capacity(self.accounts.len());
        for a in self.accounts {
            validate::opaque_id("account_id", &a.account_id, MAX_ACCOUNT_ID_CHARS)?;
            now.push((a.account_id, a.login.chars().take(200).collect()));
        }
        now.sort();
        now.dedup_by(|a, b| a.0 == b.0);
        let before = schema::accounts_of_org(tx.conn(), &self.org_id, &self.provider)?;
        let had = |id: &str| before.binary_search_by(|(a, _)| a.as_str().cmp(id)).is_ok();
        let has = |id: &str| now.binary_search_by(|(a, _)| a.as_str().cmp(id)).is_ok();
        let mut changes = Vec::new();
        for (account_id, login) in now.iter().filter(|(id, _)| !had(id)) {
            changes.push((account_id.clone(), login.clone(), true));
        }
        for (account_id, login) in before.iter().filter(|(id, _)| !has(id)) {
            changes.push((account_id.clone(), login.clone(), false));
        }
        schema::replace_org_accounts(tx.conn(), &self.org_id, &self.provider, &now)?;
        for (account_id, login, present) in changes {
            if let Some(user_id) = schema::find_account(tx.conn(), &self.provider, &account_id)? {
                tx.send(&self.org_id, &ApplyLinkedMember { user_id, login, present })?;
            }
        }
        Ok(())
    }
}

impl Delivery for SetOrganizationAccounts {
    const NAME: &'static str = "auth_directory.set_organization_accounts";
}

crate::actors::remote::remote_messages! {
    super::AuthDirectory;
    mutations: SetOrganizationAccounts;
}
