-- Notifications: the last activity entry handed to the notification endpoints and when the
-- notifying replica last wrote it, so that the replica taking over notifying (or this one after
-- a restart) resumes where the last one stopped instead of skipping or repeating entries.
-- Keep in step with db/mysql/0008_notifier.sql.

CREATE TABLE IF NOT EXISTS notifier_state (
    id INTEGER PRIMARY KEY,
    last_activity_id INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL
);
-- updated_ts 0: no notifier ran yet, so the first one starts from the newest entry.
INSERT OR IGNORE INTO notifier_state (id, last_activity_id, updated_ts) VALUES (1, 0, 0);
