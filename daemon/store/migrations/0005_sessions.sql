-- hitvault schema version 5: sessions decided when hits are stored.
-- `sess` is the number of the hit's session within its visitor's UTC day
-- (1, 2, ...): a gap of more than 30 minutes between a visitor's hits
-- starts the next one. A session is (site_id, visitor, day, sess); queries
-- group by it instead of deriving sessions. After this statement the
-- migration numbers every stored hit (the rule lives in the store's code,
-- `sessions.rs`); NULL only ever means "not numbered yet", inside an
-- import's transaction.

ALTER TABLE hits ADD COLUMN sess UTINYINT;
