DROP TABLE auth_login_index;
