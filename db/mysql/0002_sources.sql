-- Release sources. Keep in step with db/sqlite/0002_sources.sql.

CREATE TABLE IF NOT EXISTS bindings (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    application_id VARCHAR(64) NOT NULL,
    kind VARCHAR(20) NOT NULL,
    match_value VARCHAR(255) NOT NULL,
    channel_id VARCHAR(64) NULL,
    tag_filter VARCHAR(255) NOT NULL DEFAULT '',
    allow_prerelease TINYINT NOT NULL DEFAULT 0,
    secret VARCHAR(255) NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE KEY bindings_app_kind_match (application_id, kind, match_value),
    KEY bindings_kind_match (kind, match_value),
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

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
    UNIQUE KEY deliveries_source_key (source, delivery_key),
    KEY deliveries_created (created_ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS package_sources (
    package_id VARCHAR(64) NOT NULL PRIMARY KEY,
    source VARCHAR(20) NOT NULL,
    selector VARCHAR(255) NOT NULL,
    image_tag VARCHAR(255) NOT NULL DEFAULT '',
    metadata MEDIUMTEXT NULL,
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS package_files (
    package_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    content MEDIUMBLOB NOT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) NOT NULL,
    PRIMARY KEY (package_id, name),
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
