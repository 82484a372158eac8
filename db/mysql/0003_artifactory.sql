-- Artifactory poller state. Keep in step with db/sqlite/0003_artifactory.sql.

CREATE TABLE IF NOT EXISTS artifactory_state (
    domain VARCHAR(190) NOT NULL,
    environment VARCHAR(190) NOT NULL,
    app VARCHAR(190) NOT NULL,
    last_version VARCHAR(255) NULL,
    last_checksum VARCHAR(128) NULL,
    in_progress_version VARCHAR(255) NULL,
    in_progress_ts BIGINT NULL,
    failed_version VARCHAR(255) NULL,
    failed_checksum VARCHAR(128) NULL,
    failed_reason TEXT NULL,
    failures INT NOT NULL DEFAULT 0,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (domain, environment, app)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
