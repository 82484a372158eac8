-- Release sources: bindings (source selector -> application + promotion rule), deliveries (one
-- row per received release, deduplicated by delivery key), where each package came from, and the
-- files an Artifactory payload carried.

CREATE TABLE IF NOT EXISTS bindings (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    application_id VARCHAR(64) NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    kind VARCHAR(20) NOT NULL,
    match_value VARCHAR(255) NOT NULL,
    channel_id VARCHAR(64) NULL REFERENCES channels(id) ON DELETE SET NULL,
    tag_filter VARCHAR(255) NOT NULL DEFAULT '',
    allow_prerelease INTEGER NOT NULL DEFAULT 0,
    secret VARCHAR(255) NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE (application_id, kind, match_value)
);
CREATE INDEX IF NOT EXISTS bindings_kind_match ON bindings (kind, match_value);

CREATE TABLE IF NOT EXISTS deliveries (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    source VARCHAR(20) NOT NULL,
    delivery_key VARCHAR(255) NULL,
    selector VARCHAR(255) NOT NULL,
    version VARCHAR(255) NOT NULL,
    outcome VARCHAR(20) NOT NULL,
    message TEXT NOT NULL,
    application_id VARCHAR(64) NULL,
    package_id VARCHAR(64) NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE (source, delivery_key)
);
CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries (created_ts);

CREATE TABLE IF NOT EXISTS package_sources (
    package_id VARCHAR(64) NOT NULL PRIMARY KEY REFERENCES packages(id) ON DELETE CASCADE,
    source VARCHAR(20) NOT NULL,
    selector VARCHAR(255) NOT NULL,
    image_tag VARCHAR(255) NOT NULL DEFAULT '',
    metadata TEXT NULL
);

CREATE TABLE IF NOT EXISTS package_files (
    package_id VARCHAR(64) NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    content BLOB NOT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) NOT NULL,
    PRIMARY KEY (package_id, name)
);
