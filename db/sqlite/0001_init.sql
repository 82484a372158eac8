-- rollbridge schema, SQLite dialect. Keep in step with db/mysql/0001_init.sql (same tables,
-- columns and constraints). Ids are application-generated UUID text; times are unix milliseconds.

CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ts INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    password_is_default INTEGER NOT NULL DEFAULT 0,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    created_ts INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ts INTEGER NOT NULL,
    last_used_ts INTEGER
);

CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    created_ts INTEGER NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE IF NOT EXISTS packages (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    type INTEGER NOT NULL,
    version TEXT NOT NULL,
    url TEXT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    size TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL DEFAULT '',
    image_repository TEXT NOT NULL DEFAULT '',
    image_digest TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL,
    UNIQUE (application_id, version)
);

CREATE TABLE IF NOT EXISTS coreos_actions (
    id TEXT PRIMARY KEY,
    package_id TEXT NOT NULL UNIQUE REFERENCES packages(id) ON DELETE CASCADE,
    event TEXT NOT NULL DEFAULT 'postinstall',
    chromeos_version TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    needs_admin INTEGER NOT NULL DEFAULT 0,
    is_delta INTEGER NOT NULL DEFAULT 0,
    disable_payload_backoff INTEGER NOT NULL DEFAULT 1,
    metadata_signature_rsa TEXT NOT NULL DEFAULT '',
    metadata_size TEXT NOT NULL DEFAULT '',
    deadline TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS channels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    color TEXT NOT NULL DEFAULT '',
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    package_id TEXT REFERENCES packages(id) ON DELETE SET NULL,
    created_ts INTEGER NOT NULL,
    UNIQUE (application_id, name)
);

CREATE TABLE IF NOT EXISTS package_channel_blacklist (
    package_id TEXT NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    PRIMARY KEY (package_id, channel_id)
);

CREATE TABLE IF NOT EXISTS rollout_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    channel_id TEXT REFERENCES channels(id) ON DELETE SET NULL,
    track TEXT NOT NULL,
    rollout_in_progress INTEGER NOT NULL DEFAULT 0,
    policy_updates_enabled INTEGER NOT NULL DEFAULT 1,
    policy_safe_mode INTEGER NOT NULL DEFAULT 1,
    policy_office_hours INTEGER NOT NULL DEFAULT 0,
    policy_timezone TEXT,
    policy_period_interval TEXT NOT NULL,
    policy_max_updates_per_period INTEGER NOT NULL,
    policy_update_timeout TEXT NOT NULL,
    policy_auto_pause_on_failure INTEGER NOT NULL DEFAULT 1,
    policy_poll_interval INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL,
    UNIQUE (application_id, name),
    UNIQUE (application_id, track)
);

CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    alias TEXT NOT NULL DEFAULT '',
    oem TEXT NOT NULL DEFAULT '',
    aleph_version TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS instance_applications (
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    group_id TEXT REFERENCES rollout_groups(id) ON DELETE SET NULL,
    version TEXT NOT NULL,
    status INTEGER,
    last_check_for_updates INTEGER NOT NULL,
    last_update_granted_ts INTEGER,
    last_update_version TEXT,
    update_in_progress INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (instance_id, application_id)
);
CREATE INDEX IF NOT EXISTS idx_instance_applications_group
    ON instance_applications (group_id, last_check_for_updates);

CREATE TABLE IF NOT EXISTS instance_status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    group_id TEXT REFERENCES rollout_groups(id) ON DELETE SET NULL,
    status INTEGER NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    error_code TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_status_history_instance
    ON instance_status_history (instance_id, application_id, created_ts);

CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_type INTEGER NOT NULL,
    event_result INTEGER NOT NULL,
    previous_version TEXT NOT NULL DEFAULT '',
    error_code TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_events_instance ON events (instance_id, application_id, created_ts);

CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    class INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    group_id TEXT REFERENCES rollout_groups(id) ON DELETE CASCADE,
    channel_id TEXT REFERENCES channels(id) ON DELETE CASCADE,
    instance_id TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_activity_created ON activity (created_ts);
CREATE INDEX IF NOT EXISTS idx_activity_group_class ON activity (group_id, class, version);
