-- rollbridge schema, MySQL/MariaDB dialect. Keep in step with db/sqlite/0001_init.sql.
-- utf8mb4_bin: names compare case-sensitively, as they do on SQLite.
-- Every statement is re-runnable (IF NOT EXISTS) because MySQL commits DDL one statement at a time.

CREATE TABLE IF NOT EXISTS teams (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL UNIQUE,
    created_ts BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    username VARCHAR(100) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    password_is_default TINYINT NOT NULL DEFAULT 0,
    team_id VARCHAR(64) NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS api_tokens (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    token_hash VARCHAR(128) NOT NULL UNIQUE,
    user_id VARCHAR(64) NOT NULL,
    created_ts BIGINT NOT NULL,
    last_used_ts BIGINT NULL,
    FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS applications (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    description TEXT NOT NULL,
    team_id VARCHAR(64) NOT NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE KEY uq_applications_team_name (team_id, name),
    FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS packages (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    application_id VARCHAR(64) NOT NULL,
    type INT NOT NULL,
    version VARCHAR(255) NOT NULL,
    url VARCHAR(1024) NOT NULL,
    filename VARCHAR(255) NOT NULL DEFAULT '',
    description TEXT NOT NULL,
    size VARCHAR(32) NOT NULL DEFAULT '',
    hash VARCHAR(128) NOT NULL DEFAULT '',
    image_repository VARCHAR(512) NOT NULL DEFAULT '',
    image_digest VARCHAR(128) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    UNIQUE KEY uq_packages_app_version (application_id, version),
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS coreos_actions (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    package_id VARCHAR(64) NOT NULL UNIQUE,
    event VARCHAR(20) NOT NULL DEFAULT 'postinstall',
    chromeos_version VARCHAR(255) NOT NULL DEFAULT '',
    sha256 VARCHAR(128) NOT NULL DEFAULT '',
    needs_admin TINYINT NOT NULL DEFAULT 0,
    is_delta TINYINT NOT NULL DEFAULT 0,
    disable_payload_backoff TINYINT NOT NULL DEFAULT 1,
    metadata_signature_rsa VARCHAR(1024) NOT NULL DEFAULT '',
    metadata_size VARCHAR(100) NOT NULL DEFAULT '',
    deadline VARCHAR(100) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS channels (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    color VARCHAR(32) NOT NULL DEFAULT '',
    application_id VARCHAR(64) NOT NULL,
    package_id VARCHAR(64) NULL,
    created_ts BIGINT NOT NULL,
    UNIQUE KEY uq_channels_app_name (application_id, name),
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS package_channel_blacklist (
    package_id VARCHAR(64) NOT NULL,
    channel_id VARCHAR(64) NOT NULL,
    PRIMARY KEY (package_id, channel_id),
    FOREIGN KEY (package_id) REFERENCES packages(id) ON DELETE CASCADE,
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS rollout_groups (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    description TEXT NOT NULL,
    application_id VARCHAR(64) NOT NULL,
    channel_id VARCHAR(64) NULL,
    track VARCHAR(255) NOT NULL,
    rollout_in_progress TINYINT NOT NULL DEFAULT 0,
    policy_updates_enabled TINYINT NOT NULL DEFAULT 1,
    policy_safe_mode TINYINT NOT NULL DEFAULT 1,
    policy_office_hours TINYINT NOT NULL DEFAULT 0,
    policy_timezone VARCHAR(64) NULL,
    policy_period_interval VARCHAR(64) NOT NULL,
    policy_max_updates_per_period BIGINT NOT NULL,
    policy_update_timeout VARCHAR(64) NOT NULL,
    policy_auto_pause_on_failure TINYINT NOT NULL DEFAULT 1,
    policy_poll_interval BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    UNIQUE KEY uq_groups_app_name (application_id, name),
    UNIQUE KEY uq_groups_app_track (application_id, track),
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS instances (
    id VARCHAR(128) NOT NULL PRIMARY KEY,
    ip VARCHAR(64) NOT NULL,
    alias VARCHAR(255) NOT NULL DEFAULT '',
    oem VARCHAR(255) NOT NULL DEFAULT '',
    aleph_version VARCHAR(255) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS instance_applications (
    instance_id VARCHAR(128) NOT NULL,
    application_id VARCHAR(64) NOT NULL,
    group_id VARCHAR(64) NULL,
    version VARCHAR(255) NOT NULL,
    status INT NULL,
    last_check_for_updates BIGINT NOT NULL,
    last_update_granted_ts BIGINT NULL,
    last_update_version VARCHAR(255) NULL,
    update_in_progress TINYINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (instance_id, application_id),
    KEY idx_instance_applications_group (group_id, last_check_for_updates),
    FOREIGN KEY (instance_id) REFERENCES instances(id) ON DELETE CASCADE,
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES rollout_groups(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS instance_status_history (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    instance_id VARCHAR(128) NOT NULL,
    application_id VARCHAR(64) NOT NULL,
    group_id VARCHAR(64) NULL,
    status INT NOT NULL,
    version VARCHAR(255) NOT NULL DEFAULT '',
    error_code VARCHAR(100) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    KEY idx_status_history_instance (instance_id, application_id, created_ts),
    FOREIGN KEY (instance_id) REFERENCES instances(id) ON DELETE CASCADE,
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES rollout_groups(id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    instance_id VARCHAR(128) NOT NULL,
    application_id VARCHAR(64) NOT NULL,
    event_type INT NOT NULL,
    event_result INT NOT NULL,
    previous_version VARCHAR(255) NOT NULL DEFAULT '',
    error_code VARCHAR(100) NOT NULL DEFAULT '',
    created_ts BIGINT NOT NULL,
    KEY idx_events_instance (instance_id, application_id, created_ts),
    FOREIGN KEY (instance_id) REFERENCES instances(id) ON DELETE CASCADE,
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS activity (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    class INT NOT NULL,
    severity INT NOT NULL,
    version VARCHAR(255) NOT NULL DEFAULT '',
    application_id VARCHAR(64) NOT NULL,
    group_id VARCHAR(64) NULL,
    channel_id VARCHAR(64) NULL,
    instance_id VARCHAR(128) NULL,
    description TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    KEY idx_activity_created (created_ts),
    KEY idx_activity_group_class (group_id, class, version),
    FOREIGN KEY (application_id) REFERENCES applications(id) ON DELETE CASCADE,
    FOREIGN KEY (group_id) REFERENCES rollout_groups(id) ON DELETE CASCADE,
    FOREIGN KEY (channel_id) REFERENCES channels(id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
