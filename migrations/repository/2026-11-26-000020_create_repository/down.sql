DROP TABLE tasks; DROP TABLE repo_meta;
