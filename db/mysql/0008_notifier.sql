-- Notifications: the last activity entry handed to the notification endpoints and when the
-- notifying replica last wrote it, so that the replica taking over notifying (or this one after
-- a restart) resumes where the last one stopped instead of skipping or repeating entries.
-- Keep in step with db/sqlite/0008_notifier.sql. Re-runnable: IF NOT EXISTS, INSERT IGNORE.

CREATE TABLE IF NOT EXISTS notifier_state (
    id INT NOT NULL PRIMARY KEY,
    last_activity_id BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- updated_ts 0: no notifier ran yet, so the first one starts from the newest entry.
INSERT IGNORE INTO notifier_state (id, last_activity_id, updated_ts) VALUES (1, 0, 0);
