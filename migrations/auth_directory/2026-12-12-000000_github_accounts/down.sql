DROP TABLE github_account_index;
