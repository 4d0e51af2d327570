DROP INDEX events_repo_task_id;
DROP INDEX events_repo_id;
DROP TABLE events;
