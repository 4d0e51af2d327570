DROP INDEX auth_verification_expires;
DROP TABLE auth_verification;
DROP TABLE auth_account_index;
DROP TABLE auth_email_index;
DROP INDEX auth_session_index_expires;
DROP INDEX auth_session_index_user;
DROP TABLE auth_session_index;
