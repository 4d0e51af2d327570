DROP TABLE accounts;
DROP INDEX auth_sessions_expires;
DROP INDEX auth_sessions_created;
DROP TABLE auth_sessions;
