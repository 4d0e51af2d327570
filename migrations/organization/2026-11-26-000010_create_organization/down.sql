DROP TABLE members; DROP TABLE task_summaries; DROP TABLE repos; DROP TABLE organization_profile;
