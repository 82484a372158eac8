-- Dashboard logins. Keep in step with db/sqlite/0004_dashboard.sql.

CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    user_id VARCHAR(64) NOT NULL,
    csrf_token VARCHAR(64) NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    KEY dashboard_sessions_expires (expires_ts),
    KEY dashboard_sessions_user (user_id),
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The group page's "versions over time" chart reads a group's recent status history.
-- (Plain CREATE INDEX, which MySQL 8 also accepts; a re-run skips an existing index, see
-- Db::exec_script.)
CREATE INDEX dashboard_history_group ON instance_status_history (group_id, created_ts);
