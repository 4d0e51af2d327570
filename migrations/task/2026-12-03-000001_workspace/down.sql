DROP TABLE task_workspace;
