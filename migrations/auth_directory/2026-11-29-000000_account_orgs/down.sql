DROP TABLE account_orgs;
