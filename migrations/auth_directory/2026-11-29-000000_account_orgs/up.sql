-- Which organizations an external account belongs to, as each organization's GitHub mirror last reported it: links a
-- user who signs in with that account to those organizations (and the organizations to users already signed in).
CREATE TABLE account_orgs (
    provider TEXT NOT NULL,
    account_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    login TEXT NOT NULL,
    PRIMARY KEY (provider, account_id, org_id)
);
CREATE INDEX account_orgs_by_org ON account_orgs (org_id, provider);
