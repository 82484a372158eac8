-- Upstream sync and floors: channel floors (mandatory intermediate versions, Nebraska's
-- channel_package_floors) and the syncer's per-channel state (its stable machine id and the
-- outcome of the last attempt, so errors are reported once, not on every retry).

CREATE TABLE IF NOT EXISTS channel_floors (
    channel_id VARCHAR(64) NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    package_id VARCHAR(64) NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    reason TEXT NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (channel_id, package_id)
);
CREATE INDEX IF NOT EXISTS channel_floors_package ON channel_floors (package_id);

CREATE TABLE IF NOT EXISTS sync_state (
    channel_id VARCHAR(64) NOT NULL PRIMARY KEY REFERENCES channels(id) ON DELETE CASCADE,
    machine_id VARCHAR(64) NOT NULL,
    upstream_track VARCHAR(255) NOT NULL DEFAULT '',
    last_attempt_ts BIGINT NULL,
    last_success_ts BIGINT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL
);
