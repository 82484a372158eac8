-- Dashboard logins. The cookie carries a random session id; only its SHA-256 digest is stored,
-- so a database leak does not hand out live sessions. Each session has its own CSRF token.

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    user_id VARCHAR(64) NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token VARCHAR(64) NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires_ts);
CREATE INDEX IF NOT EXISTS dashboard_sessions_user ON dashboard_sessions (user_id);

-- The group page's "versions over time" chart reads a group's recent status history.
CREATE INDEX IF NOT EXISTS dashboard_history_group ON instance_status_history (group_id, created_ts);
