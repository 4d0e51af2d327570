ALTER TABLE user_profile DROP COLUMN active_org_id;
DROP TABLE user_org_details;
