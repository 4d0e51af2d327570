DROP INDEX _foundry_schedules_due;
DROP TABLE _foundry_schedules;
