DROP TABLE user_session_state;
DROP TABLE user_task_state;
DROP TABLE user_profile;
DROP TABLE user;
