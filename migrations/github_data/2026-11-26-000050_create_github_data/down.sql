DROP TABLE webhook_deliveries; DROP TABLE members; DROP TABLE pull_requests; DROP TABLE branches; DROP TABLE repositories; DROP TABLE github_meta;
