DROP TABLE task_processes;
