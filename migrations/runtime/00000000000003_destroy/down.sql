ALTER TABLE _foundry_identity DROP COLUMN destroying;
