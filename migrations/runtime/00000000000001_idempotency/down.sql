DROP TABLE _foundry_idempotency;
