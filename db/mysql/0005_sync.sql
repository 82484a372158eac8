-- Upstream sync and floors. Keep in step with db/sqlite/0005_sync.sql.

CREATE TABLE IF NOT EXISTS channel_floors (
    channel_id VARCHAR(64) NOT NULL,
    package_id VARCHAR(64) NOT NULL,
    reason VARCHAR(1024) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (channel_id, package_id),
    KEY channel_floors_package (package_id),
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE,
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sync_state (
    channel_id VARCHAR(64) NOT NULL PRIMARY KEY,
    machine_id VARCHAR(64) NOT NULL,
    upstream_track VARCHAR(255) NOT NULL DEFAULT '',
    last_attempt_ts BIGINT NULL,
    last_success_ts BIGINT NULL,
    last_error VARCHAR(2048) NOT NULL DEFAULT '',
    consecutive_failures INT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
