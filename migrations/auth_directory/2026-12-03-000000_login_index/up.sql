-- Sign-in login (lowercased) -> user, per provider: lets an admin add a member by the login they know. Refreshed at
-- every sign-in, so a renamed GitHub account is found under its new login once that user signs in again.
CREATE TABLE auth_login_index (
    provider TEXT NOT NULL,
    login TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (provider, login)
);
CREATE INDEX auth_login_index_user ON auth_login_index (provider, user_id);
