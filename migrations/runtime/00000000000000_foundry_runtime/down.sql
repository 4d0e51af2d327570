DROP TABLE _foundry_topics;
DROP TABLE _foundry_inbox;
DROP TABLE _foundry_dead_letters;
DROP TABLE _foundry_outbox;
DROP TABLE _foundry_identity;
