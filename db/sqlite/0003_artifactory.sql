-- Artifactory poller state: one row per (domain, environment, app folder). Replaces
-- artifactory-monitor's artifactory_deploys table, keyed and queried by all three columns.
-- in_progress_* marks a version being processed (a crash leaves it set and the next poll resumes
-- it); failed_* remembers a rejected payload so it is retried only when its checksum changes or
-- on /v1.0/force.

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
    failures INTEGER NOT NULL DEFAULT 0,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (domain, environment, app)
);
